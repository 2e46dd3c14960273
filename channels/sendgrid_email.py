"""E-mail through SendGrid's v3 Mail Send API, with the official `sendgrid` client.

One message, one request, one personalization: the idempotency key, creditor and invoice travel as
`custom_args`, which SendGrid hands back in every Event Webhook event (delivered, bounce, ...) so an
event can be tied to its delivery row without a lookup table. SendGrid has no idempotency key of its
own, so a retry after a lost 202 can send twice; the outbox keeps that window small.

python_http_client (under the sendgrid client) logs request headers, including the API key, at
DEBUG; a filter on its logger drops those records so a debug log never holds the key.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import time
import urllib.error
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from creditflow.channels import http_errors
from creditflow.channels.base import Channel, PermanentSendError, SendResult
from creditflow.channels.registry import register
from creditflow.config.settings import Settings
from creditflow.renderers.messages import Message

log = logging.getLogger(__name__)

PROVIDER = "SendGrid"
MAX_MESSAGE_BYTES = 30 * 1024 * 1024  # SendGrid's documented limit for the whole message
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORY_CHARS = 255


class SendGridSettings(BaseSettings):
    """`CREDITFLOW_SENDGRID_*`; only the API key is required."""

    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_SENDGRID_", extra="ignore")

    api_key: SecretStr
    host: str = Field(
        "https://api.sendgrid.com", description="EU subusers: https://api.eu.sendgrid.com"
    )
    timeout_seconds: float = Field(15.0, gt=0)
    sandbox_mode: bool = Field(False, description="SendGrid validates the mail but sends nothing.")
    reply_to: str | None = None
    asm_group_id: int | None = Field(None, description="Unsubscribe group, if one is used.")


class _DropRequestDumps(logging.Filter):
    """Refuses python_http_client's DEBUG dumps of request headers (API key) and payloads (PII)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.msg if isinstance(record.msg, str) else ""
        return not text.startswith(("HEADERS:", "PAYLOAD:"))


_http_client_log = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _DropRequestDumps) for f in _http_client_log.filters):
    _http_client_log.addFilter(_DropRequestDumps())


class SendGridEmail:
    name = "sendgrid"

    def __init__(
        self,
        api_key: SecretStr | str,
        *,
        host: str = "https://api.sendgrid.com",
        timeout_seconds: float = 15.0,
        sandbox_mode: bool = False,
        reply_to: str | None = None,
        asm_group_id: int | None = None,
    ):
        secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not secret:
            raise ValueError("a SendGrid API key is required")
        self._client = SendGridAPIClient(api_key=secret, host=host.rstrip("/"))
        self._client.client.timeout = timeout_seconds  # propagated to every request it builds
        self.host = host
        self.sandbox_mode = sandbox_mode
        self.reply_to = reply_to
        self.asm_group_id = asm_group_id

    @classmethod
    def from_settings(cls, settings: SendGridSettings) -> SendGridEmail:
        return cls(
            settings.api_key,
            host=settings.host,
            timeout_seconds=settings.timeout_seconds,
            sandbox_mode=settings.sandbox_mode,
            reply_to=settings.reply_to,
            asm_group_id=settings.asm_group_id,
        )

    def __repr__(self) -> str:
        return f"SendGridEmail(host={self.host!r})"

    # ----------------------------------------------------------------------------------------------

    def build_body(self, message: Message) -> dict[str, Any]:
        """The v3 mail/send JSON; PermanentSendError for what SendGrid would refuse anyway."""
        key = message.idempotency_key
        to_email = _checked_address(message.to_email, key, "recipient")
        from_email = _checked_address(message.sender_email, key, "sender")
        if not message.subject:
            raise PermanentSendError(f"{key}: the e-mail has no subject", code="invalid-message")
        content = []
        if message.text:
            content.append({"type": "text/plain", "value": message.text})
        if message.html:
            content.append({"type": "text/html", "value": message.html})
        if not content:
            raise PermanentSendError(f"{key}: the e-mail has no text", code="invalid-message")

        recipient: dict[str, str] = {"email": to_email}
        if message.to_name:
            recipient["name"] = message.to_name
        sender: dict[str, str] = {"email": from_email}
        if message.sender_name:
            sender["name"] = message.sender_name
        tracking = {
            "delivery_key": key,
            "creditor": message.creditor_id,
            "invoice": message.invoice_number,
        }
        shared_args = {k: v for k, v in message.metadata.items() if isinstance(v, str)}
        if message.language:
            shared_args.setdefault("language", message.language)
        args_size = len(json.dumps(tracking).encode()) + len(json.dumps(shared_args).encode())
        if args_size > MAX_CUSTOM_ARGS_BYTES:
            raise PermanentSendError(
                f"{key}: custom_args take {args_size} bytes, more than SendGrid's "
                f"{MAX_CUSTOM_ARGS_BYTES}",
                code="invalid-message",
            )

        body: dict[str, Any] = {
            "personalizations": [{"to": [recipient], "custom_args": tracking}],
            "from": sender,
            "subject": message.subject,
            "content": content,
            "categories": _categories(message.creditor_id),
        }
        if shared_args:
            body["custom_args"] = shared_args
        size = sum(len(part["value"].encode()) for part in content)
        if message.attachments:
            body["attachments"] = []
            for attachment in message.attachments:
                encoded = base64.b64encode(attachment.data).decode("ascii")  # no line breaks
                size += len(encoded)
                body["attachments"].append({
                    "content": encoded,
                    "type": attachment.content_type,
                    "filename": attachment.filename,
                    "disposition": "attachment",
                })
        if size > MAX_MESSAGE_BYTES:
            raise PermanentSendError(
                f"{key}: the e-mail is {size} bytes, over SendGrid's 30 MB", code="too-large"
            )
        if self.reply_to:
            body["reply_to"] = {"email": self.reply_to}
        if self.asm_group_id is not None:
            body["asm"] = {"group_id": self.asm_group_id}
        if self.sandbox_mode:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return body

    def send(self, message: Message) -> SendResult:
        key = message.idempotency_key
        body = self.build_body(message)
        try:
            response = self._client.send(body)
        except HTTPError as exc:
            raise _status_error(exc, key) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise http_errors.error_for_transport(exc, provider=PROVIDER, key=key) from None
        except ValueError as exc:  # urllib refusing the configured host ("unknown url type")
            raise PermanentSendError(
                f"{key}: bad SendGrid host {self.host!r}: {exc}", code="configuration"
            ) from None
        # 202 when queued; 200 in sandbox mode, which validates without sending or an id.
        headers = response.headers or {}
        message_id = (headers.get("X-Message-Id") or "").strip()
        return SendResult(message_id or key, detail=f"HTTP {response.status_code}")

    def close(self) -> None:
        """urllib opens one connection per request: nothing to release."""


def _checked_address(address: str | None, key: str, role: str) -> str:
    if not address:
        code = "no-recipient" if role == "recipient" else "invalid-message"
        raise PermanentSendError(f"{key}: no {role} e-mail address", code=code)
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError):
        parsed = None
    if parsed is None or not parsed.username or "." not in parsed.domain:
        code = "invalid-address" if role == "recipient" else "invalid-message"
        raise PermanentSendError(f"{key}: {address!r} is not a valid {role} address", code=code)
    return address


def _categories(creditor_id: str) -> list[str]:
    categories = ["invoice"]
    creditor = creditor_id[:MAX_CATEGORY_CHARS]
    if creditor and creditor not in categories:
        categories.append(creditor)
    return categories


def _status_error(exc: HTTPError, key: str) -> Exception:
    status = int(getattr(exc, "status_code", 0) or 0)
    headers = getattr(exc, "headers", None)
    fields, detail = _sendgrid_errors(getattr(exc, "body", b""))
    retry_after = headers.get("Retry-After") if headers is not None else None
    if retry_after is None and status == 429 and headers is not None:
        retry_after = _seconds_until_reset(headers.get("X-RateLimit-Reset"))
    address_fields = [f for f in fields if f and ".to." in f or f == "to"]
    return http_errors.error_for_status(
        status,
        provider=PROVIDER,
        key=key,
        detail=detail,
        retry_after=retry_after,
        rejected_code="invalid-address" if address_fields else http_errors.REJECTED,
    )


def _sendgrid_errors(body: bytes | str | None) -> tuple[list[str | None], str]:
    """(fields, one-line summary) of a `{"errors": [{"message", "field"}]}` body."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        pairs = [(e.get("field"), str(e.get("message", ""))) for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        return [], http_errors.quote_body(body)
    summary = "; ".join(f"{field}: {text}" if field else text for field, text in pairs)
    return [field for field, _ in pairs], http_errors.quote_body(summary)


def _seconds_until_reset(reset: str | None) -> str | None:
    """SendGrid also sends X-RateLimit-Reset (epoch seconds); turn it into delta-seconds."""
    if not reset or not reset.strip().isdigit():
        return None
    return str(max(0, int(reset) - int(time.time())))


@register("sendgrid")
def _sendgrid_channel(settings: Settings) -> Channel:
    return SendGridEmail.from_settings(SendGridSettings())
