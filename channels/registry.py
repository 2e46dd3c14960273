"""Channel names -> factories: the flows ask for "email", the settings decide which adapter answers.

Like schwifty's registry of bank data: a module-level table filled by a decorator at import time.
For now every name is answered by the local outbox rooted at `settings.resolved_outbox_dir`; the
provider adapters (SendGrid/SMTP, SMS gateway, print shop, Bancontact) will register factories that
pick themselves or the local outbox from the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from creditflow.channels.base import Channel
from creditflow.channels.local_outbox import LocalEmailOutbox, LocalPostOutbox, LocalSmsOutbox
from creditflow.config.settings import Settings

ChannelFactory = Callable[[Settings], Channel]

_FACTORIES: dict[str, ChannelFactory] = {}


class UnknownChannelError(LookupError):
    """A profile or caller asked for a channel nobody registered."""

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(
            f"unknown channel {name!r}; known channels: {', '.join(self.known) or '(none)'}"
        )


def register(name: str) -> Callable[[ChannelFactory], ChannelFactory]:
    """Decorator: `factory(settings) -> Channel` answers for `name`. A name is registered once, so
    two adapters cannot silently shadow each other depending on import order."""

    def decorator(factory: ChannelFactory) -> ChannelFactory:
        if name in _FACTORIES:
            raise ValueError(f"channel {name!r} is already registered by {_FACTORIES[name]!r}")
        _FACTORIES[name] = factory
        return factory

    return decorator


def known_channels() -> tuple[str, ...]:
    return tuple(sorted(_FACTORIES))


def build_channels(names: Iterable[str], settings: Settings) -> dict[str, Channel]:
    """One adapter per distinct name, in the order asked; every unknown name is refused up front
    (before any adapter is built) so a bad profile fails at start, not halfway through a batch."""
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if name not in _FACTORIES:
            raise UnknownChannelError(name, _FACTORIES)
    channels: dict[str, Channel] = {}
    for name in wanted:
        channel = _FACTORIES[name](settings)
        if channel.name != name:
            raise ValueError(f"the factory for {name!r} built a {channel.name!r} channel")
        channels[name] = channel
    return channels


@register("email")
def _local_email(settings: Settings) -> Channel:
    return LocalEmailOutbox(settings.resolved_outbox_dir)


@register("sms")
def _local_sms(settings: Settings) -> Channel:
    return LocalSmsOutbox(settings.resolved_outbox_dir)


@register("post")
def _local_post(settings: Settings) -> Channel:
    return LocalPostOutbox(settings.resolved_outbox_dir)
