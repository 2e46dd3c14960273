"""HTTP outcomes -> the channel contract's two errors, the same way for every HTTP provider.

The outbox only understands "retry later" (TransientSendError, with an optional delay) and "never on
this channel" (PermanentSendError). Credentials problems are permanent too (no retry fixes a
revoked key) but carry the code "credentials", so the operator sees a configuration problem and not
a batch of bad addresses. Provider bodies are quoted shortened; requests are never quoted, so an
error message cannot carry our key.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from creditflow.channels.base import PermanentSendError, SendError, TransientSendError

BODY_QUOTE_CHARS = 300

CREDENTIALS = "credentials"
RATE_LIMITED = "rate-limited"
PROVIDER_UNAVAILABLE = "provider-unavailable"
REJECTED = "rejected"
CONFIGURATION = "configuration"
TOO_LARGE = "too-large"
TIMEOUT = "timeout"
CONNECTION = "connection"
BAD_RESPONSE = "bad-response"

_TRANSIENT_4XX = {408, 425, 429}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    None when absent or unreadable (the outbox then uses its own backoff); never negative, since a
    date in the past means "now".
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        seconds = float(value)  # not RFC-conforming, but some gateways send "1.5"
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" zone: RFC 5322 says UTC with unknown local time
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def quote_body(body: bytes | str | None) -> str:
    """A provider's answer shortened to one line for an error message."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    if len(text) > BODY_QUOTE_CHARS:
        text = text[: BODY_QUOTE_CHARS - 1] + "…"
    return text


def error_for_status(
    status: int,
    *,
    provider: str,
    key: str,
    detail: str = "",
    retry_after: str | None = None,
    now: datetime | None = None,
    rejected_code: str = REJECTED,
) -> SendError:
    """The error for a non-2xx HTTP status: transient for 408/425/429/5xx, permanent otherwise.

    `rejected_code` lets an adapter name what a 400 means for its provider (e.g. "invalid-address"
    when the provider's error fields say so).
    """
    what = f"{key}: {provider} answered HTTP {status}" + (f": {detail}" if detail else "")
    if status in _TRANSIENT_4XX or 500 <= status <= 599:
        code = RATE_LIMITED if status == 429 else PROVIDER_UNAVAILABLE
        delay = parse_retry_after(retry_after, now=now)
        return TransientSendError(what, retry_after=delay, code=code)
    if status in (401, 403):
        return PermanentSendError(what + " (check the API credentials)", code=CREDENTIALS)
    if status in (404, 405):
        return PermanentSendError(what + " (check the provider URL)", code=CONFIGURATION)
    if status == 413:
        return PermanentSendError(what, code=TOO_LARGE)
    return PermanentSendError(what, code=rejected_code)


def error_for_transport(exc: BaseException, *, provider: str, key: str) -> TransientSendError:
    """Timeouts and connection failures: the provider may be back in a minute."""
    timed_out = isinstance(exc, TimeoutError) or "timed out" in str(exc).lower()
    code = TIMEOUT if timed_out else CONNECTION
    reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
    return TransientSendError(f"{key}: cannot reach {provider}: {reason}", code=code)
