"""Logical channels -> provider adapters: profiles say "email", the settings say "SendGrid".

Profiles name logical channels (email | sms | post | payment_request); which provider answers each
is an operator's choice made once per installation (`CREDITFLOW_EMAIL_PROVIDER=sendgrid` ...), so a
creditor profile never carries credentials or provider names. `build_channels` returns the adapters
keyed by the logical name the outbox stores in `deliveries.channel`.

Provider modules are imported only when chosen: an installation that sends through SMTP never
imports the SendGrid client, and a missing provider credential fails when the runtime opens, not in
the middle of a batch. Each provider module registers its factory under its provider name
(`@register("sendgrid")`); those names can also be built directly (tests, tools).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditflow.channels.base import Channel
from creditflow.channels.local_outbox import LocalEmailOutbox, LocalPostOutbox, LocalSmsOutbox
from creditflow.config.settings import Settings

ChannelFactory = Callable[[Settings], Channel]

_FACTORIES: dict[str, ChannelFactory] = {}

# Provider name -> the module that registers its factory (imported on first use).
_PROVIDER_MODULES: dict[str, str] = {
    "sendgrid": "creditflow.channels.sendgrid_email",
    "smtp": "creditflow.channels.smtp_email",
    "sms-http": "creditflow.channels.sms_gateway",
    "printshop": "creditflow.channels.printshop",
    "bancontact": "creditflow.channels.bancontact",
}

# Logical channel -> {provider setting value: factory name}; None means "this channel is off".
LOGICAL_CHANNELS: dict[str, dict[str, str | None]] = {
    "email": {"local": "email", "sendgrid": "sendgrid", "smtp": "smtp"},
    "sms": {"local": "sms", "sms-http": "sms-http"},
    "post": {"local": "post", "printshop": "printshop"},
    "payment_request": {"bancontact": "bancontact", "none": None},
}


class ChannelRouting(BaseSettings):
    """`CREDITFLOW_<CHANNEL>_PROVIDER`: which provider serves each logical channel.

    The local outbox is the default for the message channels (nothing leaves the machine until an
    operator chooses a provider); payment requests have no local stand-in, so they default to off.
    """

    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_", extra="ignore")

    email_provider: Literal["local", "sendgrid", "smtp"] = "local"
    sms_provider: Literal["local", "sms-http"] = "local"
    post_provider: Literal["local", "printshop"] = "local"
    payment_request_provider: Literal["bancontact", "none"] = Field("none")

    def provider_for(self, channel: str) -> str:
        return getattr(self, f"{channel}_provider")

    def factory_for(self, channel: str) -> str | None:
        return LOGICAL_CHANNELS[channel][self.provider_for(channel)]


class UnknownChannelError(LookupError):
    """A profile or caller asked for a channel nobody registered."""

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(
            f"unknown channel {name!r}; known channels: {', '.join(self.known) or '(none)'}"
        )


def register(name: str) -> Callable[[ChannelFactory], ChannelFactory]:
    """Decorator: `factory(settings) -> Channel` answers for provider `name`. A name is registered
    once, so two adapters cannot silently shadow each other depending on import order."""

    def decorator(factory: ChannelFactory) -> ChannelFactory:
        if name in _FACTORIES:
            raise ValueError(f"channel {name!r} is already registered by {_FACTORIES[name]!r}")
        _FACTORIES[name] = factory
        return factory

    return decorator


def known_channels() -> tuple[str, ...]:
    """Every name `build_channels` accepts: logical channels, providers, registered factories."""
    return tuple(sorted(set(_FACTORIES) | set(_PROVIDER_MODULES) | set(LOGICAL_CHANNELS)))


def _factory(name: str) -> ChannelFactory:
    if name not in _FACTORIES and name in _PROVIDER_MODULES:
        importlib.import_module(_PROVIDER_MODULES[name])  # registers itself on import
    return _FACTORIES[name]


def build_channels(names: Iterable[str], settings: Settings, *,
                   routing: ChannelRouting | None = None) -> dict[str, Channel]:
    """One adapter per distinct name, in the order asked, keyed by the name asked for.

    A logical name is resolved through `routing` (default: the environment); a logical channel
    switched off (`payment_request` with provider "none") is left out of the result, so the outbox
    treats it as unavailable and moves on. Every unknown name is refused before any adapter is
    built, so a bad profile fails at start, not halfway through a batch.
    """
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in LOGICAL_CHANNELS and n not in _FACTORIES
               and n not in _PROVIDER_MODULES]
    if unknown:
        raise UnknownChannelError(unknown[0], known_channels())
    if any(name in LOGICAL_CHANNELS for name in wanted) and routing is None:
        routing = ChannelRouting()
    channels: dict[str, Channel] = {}
    for name in wanted:
        factory_name = routing.factory_for(name) if name in LOGICAL_CHANNELS else name
        if factory_name is None:
            continue
        channel = _factory(factory_name)(settings)
        if channel.name != factory_name:
            raise ValueError(f"the factory for {factory_name!r} built a {channel.name!r} channel")
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
