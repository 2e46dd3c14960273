"""The channel contract, after httpx's transports: one `send()`, provider errors mapped at the edge.

An adapter turns a `Message` into one provider call and returns a `SendResult`, or raises
`TransientSendError` (try again later: timeouts, 429, 5xx) or `PermanentSendError` (this channel will
never deliver this message: invalid address, rejected content; the outbox moves on to the next channel).
Nothing else may escape `send()`. Adapters never touch the ledger: the outbox records the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from creditflow.renderers.messages import Message


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str  # the provider's id for the message (or our key where it has none)
    detail: str = ""
    duplicate: bool = False  # the provider (or outbox folder) already had this idempotency key


class SendError(Exception):
    """Root of the errors a channel raises."""

    transient = False

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class TransientSendError(SendError):
    """Worth retrying later with the same idempotency key."""

    transient = True


class PermanentSendError(SendError):
    """Never going to work on this channel; try the next one."""


@runtime_checkable
class Channel(Protocol):
    name: str

    def send(self, message: Message) -> SendResult: ...

    def close(self) -> None: ...
