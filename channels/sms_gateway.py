"""SMS through a JSON-over-HTTP gateway; the request shape is pluggable, CM.com's is the default.

The adapter does what every gateway needs (E.164 numbers, part counting before paying for a text
that would be cut, a stable per-message reference, error mapping) and leaves the JSON layout and the
reading of the answer to a small "shape" object, so Proximus Enco or SMSBOX can be added as another
shape without another adapter.

The reference sent to the gateway comes back in its delivery reports. CM.com allows 1-32
alphanumerics or dashes, so a longer key is replaced by a hash of it: still deterministic (a retry
carries the same reference) and still traceable (SendResult.detail holds it).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditflow.channels import http_errors
from creditflow.channels.base import (
    Channel,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)
from creditflow.channels.registry import register
from creditflow.channels.sms_text import check_segments, e164, international_00
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Message

CM_URL = "https://gw.messaging.cm.com/v1.0/message"
_CM_REFERENCE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_ALPHA_SENDER = re.compile(r"^[A-Za-z0-9 ]{1,11}$")
_DIGIT_SENDER = re.compile(r"^\+?[0-9]{1,16}$")


class SmsSettings(BaseSettings):
    """`CREDITFLOW_SMS_*`; the token is required."""

    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_SMS_", extra="ignore")

    token: SecretStr = Field(description="CM.com product token (or the gateway's API key).")
    url: str = CM_URL
    sender: str = Field("Creditflow", description="At most 11 alphanumerics or 16 digits.")
    max_segments: int = Field(2, ge=1, le=8)
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("sender")
    @classmethod
    def _sender_fits(cls, value: str) -> str:
        return checked_sender(value)


def checked_sender(sender: str) -> str:
    """Operators drop texts whose sender ID is longer than 11 characters (16 if all digits)."""
    if not (_ALPHA_SENDER.match(sender) or _DIGIT_SENDER.match(sender)):
        raise ValueError(f"SMS sender {sender!r} must be 1-11 letters/digits or up to 16 digits")
    return sender


def gateway_reference(key: str) -> str:
    """The key itself if CM.com accepts it as a reference, else a stable 32-character digest."""
    if _CM_REFERENCE.match(key):
        return key
    return "cf-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:29]


@dataclass(frozen=True, slots=True)
class SmsRequest:
    to_e164: str
    text: str
    reference: str
    sender: str
    max_segments: int


class RequestShape(Protocol):
    """How one gateway wants the request, and how to read its answer."""

    def build(self, request: SmsRequest, token: str) -> tuple[dict[str, str], dict[str, Any]]: ...

    def outcome(self, response: httpx.Response, request: SmsRequest, key: str) -> str:
        """The provider's id for the message, or a SendError."""
        ...


class CmBusinessMessaging:
    """CM.com Business Messaging JSON API; the token goes in the X-CM-PRODUCTTOKEN header (not
    the body) so a body that ends up in a log or an error report holds no secret."""

    # CM's errorCode / messageErrorCode values (developers.cm.com, "Responses & Errors").
    _CREDENTIALS = {101, 103}
    _ACCOUNT = {102}  # insufficient balance: an operator tops up, then the retry goes through
    _MALFORMED = {202, 203}
    _MESSAGE_CODES = {
        300: ("configuration", "invalid sender (From)"),
        301: ("invalid-phone", "invalid To"),
        302: ("invalid-phone", "invalid phone number"),
        303: ("rejected", "invalid body"),
        304: ("rejected", "invalid field"),
        401: ("rejected", "spam filtered"),
        402: ("rejected", "blacklisted"),
        403: ("rejected", "rejected"),
    }

    def build(self, request: SmsRequest, token: str) -> tuple[dict[str, str], dict[str, Any]]:
        msg = {
            "from": request.sender,
            "to": [{"number": international_00(request.to_e164)}],
            "body": {"type": "auto", "content": request.text},
            "reference": request.reference,
            "allowedChannels": ["SMS"],
            "minimumNumberOfMessageParts": 1,
            "maximumNumberOfMessageParts": request.max_segments,
        }
        return {"X-CM-PRODUCTTOKEN": token}, {"messages": {"msg": [msg]}}

    def outcome(self, response: httpx.Response, request: SmsRequest, key: str) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if response.is_success:
                raise TransientSendError(
                    f"{key}: CM.com answered HTTP {response.status_code} without JSON",
                    code=http_errors.BAD_RESPONSE,
                )
            raise self._by_status(response, key, http_errors.quote_body(response.content))
        code = body.get("errorCode")
        details = http_errors.quote_body(str(body.get("details") or ""))
        if response.is_success and code == 0:
            return request.reference  # CM returns no message id; reports carry our reference
        if code in self._CREDENTIALS:
            raise PermanentSendError(
                f"{key}: CM.com refused the product token ({code}: {details})",
                code=http_errors.CREDENTIALS,
            )
        if code in self._ACCOUNT:
            raise TransientSendError(
                f"{key}: CM.com account cannot send ({code}: {details})", code="provider-account"
            )
        if code == 201:
            for item in body.get("messages") or []:
                message_code = item.get("messageErrorCode") if isinstance(item, dict) else None
                if message_code in self._MESSAGE_CODES:
                    error_code, what = self._MESSAGE_CODES[message_code]
                    extra = http_errors.quote_body(str(item.get("messageDetails") or ""))
                    raise PermanentSendError(
                        f"{key}: CM.com refused the message: {what} ({message_code}: {extra})",
                        code=error_code,
                    )
        if code in self._MALFORMED or code == 201:
            raise PermanentSendError(
                f"{key}: CM.com refused the request ({code}: {details})", code=http_errors.REJECTED
            )
        raise self._by_status(response, key, f"{code}: {details}")

    @staticmethod
    def _by_status(response: httpx.Response, key: str, detail: str) -> SendError:
        status = response.status_code if not response.is_success else 502
        return http_errors.error_for_status(
            status, provider="CM.com", key=key, detail=detail,
            retry_after=response.headers.get("Retry-After"),
        )


class SmsGateway:
    name = "sms-http"

    def __init__(
        self,
        token: SecretStr | str,
        *,
        url: str = CM_URL,
        sender: str = "Creditflow",
        max_segments: int = 2,
        timeout_seconds: float = 10.0,
        shape: RequestShape | None = None,
        provider: str = "CM.com",
    ):
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        if not self._token.get_secret_value():
            raise ValueError("an SMS gateway token is required")
        if max_segments < 1:
            raise ValueError("max_segments must be at least 1")
        self.url = url
        self.sender = checked_sender(sender)
        self.max_segments = max_segments
        self.provider = provider
        self._shape = shape or CmBusinessMessaging()
        # One pooled client: keep-alive saves a TCP (and TLS) handshake per text.
        self._http = httpx.Client(
            timeout=timeout_seconds,
            headers={"Accept": "application/json", "User-Agent": "creditflow-sms/1"},
        )

    @classmethod
    def from_settings(cls, settings: SmsSettings) -> SmsGateway:
        return cls(
            settings.token,
            url=settings.url,
            sender=settings.sender,
            max_segments=settings.max_segments,
            timeout_seconds=settings.timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"SmsGateway(url={self.url!r}, provider={self.provider!r})"

    def send(self, message: Message) -> SendResult:
        key = message.idempotency_key
        to = e164(message.to_phone, key)
        count = check_segments(message.text, self.max_segments, key)
        request = SmsRequest(to, message.text, gateway_reference(key), self.sender,
                             self.max_segments)
        headers, payload = self._shape.build(request, self._token.get_secret_value())
        try:
            response = self._http.post(self.url, json=payload, headers=headers)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise PermanentSendError(
                f"{key}: bad SMS gateway URL {self.url!r}: {exc}", code="configuration"
            ) from None
        except httpx.TransportError as exc:
            raise http_errors.error_for_transport(exc, provider=self.provider, key=key) from None
        provider_id = self._shape.outcome(response, request, key)
        detail = json.dumps({
            "reference": request.reference,
            "segments": count.segments,
            "encoding": count.encoding,
        })
        return SendResult(provider_id, detail=detail)

    def close(self) -> None:
        self._http.close()


@register("sms-http")
def _sms_channel(settings: Settings) -> Channel:
    return SmsGateway.from_settings(SmsSettings())
