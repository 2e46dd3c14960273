"""One RFC 5322 builder for every e-mail we hand over as MIME (SMTP and the local .eml outbox).

The same Message and clock give the same bytes (the MIME boundaries derive from the key too), so
what a person reads in the local outbox is what the SMTP server receives. The Message-ID comes from
the idempotency key alone: a resend after a crash carries the same Message-ID, so mail systems and
people can tell a repeat from a new message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from creditflow.channels.base import PermanentSendError
from creditflow.renderers.messages import Attachment, Message


@dataclass(frozen=True, slots=True)
class BuiltEmail:
    data: bytes  # CRLF line ends, ASCII only (policy.SMTP, no SMTPUTF8 needed)
    message_id: str
    sender: str  # bare addr-spec, for the SMTP envelope
    recipient: str


def message_id_for(key: str, domain: str) -> str:
    """RFC 5322 Message-ID derived from the idempotency key alone (plus the sender's domain)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    domain = domain.strip().lower() or "creditflow.invalid"
    return f"<creditflow.{digest}@{domain}>"


def build_email(message: Message, *, now: datetime) -> BuiltEmail:
    """The wire bytes of `message`; anything the mail format refuses is a PermanentSendError."""
    if not message.to_email:
        raise PermanentSendError(
            f"{message.idempotency_key}: no e-mail address for this debtor", code="no-recipient"
        )
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the e-mail Date must be timezone-aware")
    try:
        sender = Address(display_name=message.sender_name, addr_spec=message.sender_email)
        recipient = Address(display_name=message.to_name or "", addr_spec=message.to_email)
        message_id = message_id_for(message.idempotency_key, sender.domain)
        mail = EmailMessage(policy=policy.SMTP)
        mail["From"] = sender
        mail["To"] = recipient
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(now)
        mail["Message-ID"] = message_id
        mail["X-Creditflow-Key"] = message.idempotency_key
        mail.set_content(message.text)
        if message.html is not None:
            mail.add_alternative(message.html, subtype="html")
        for attachment in message.attachments:
            maintype, subtype = content_type_parts(attachment)
            mail.add_attachment(
                attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
            )
        if message.language:
            # After the body: set_content() and the multipart conversions drop Content-* headers.
            mail["Content-Language"] = message.language
        _fix_boundaries(mail, message.idempotency_key)
        data = mail.as_bytes(policy=policy.SMTP)
        return BuiltEmail(data, message_id, sender.addr_spec, recipient.addr_spec)
    except (ValueError, TypeError, IndexError, MessageError) as exc:
        # An invalid address, a line break in a header, a non-ASCII local part (HeaderDefect is a
        # ValueError, HeaderParseError a MessageError).
        raise PermanentSendError(
            f"{message.idempotency_key}: cannot build the e-mail: {exc}", code="invalid-message"
        ) from None


def _fix_boundaries(mail: EmailMessage, key: str) -> None:
    """Boundaries from the key instead of random ones, so the same message gives the same bytes.

    `=_` cannot occur in base64 and is escaped in quoted-printable; a text part sent as 7bit could
    still contain the string, so the rare collision falls back to the library's random boundary.
    """
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    leaves = [part.get_payload() for part in mail.walk() if not part.is_multipart()]
    for number, part in enumerate(p for p in mail.walk() if p.is_multipart()):
        boundary = f"=_creditflow.{digest}.{number}"
        if not any(isinstance(leaf, str) and boundary in leaf for leaf in leaves):
            part.set_boundary(boundary)


def content_type_parts(attachment: Attachment) -> tuple[str, str]:
    """(maintype, subtype) of an attachment; application/octet-stream when it names none."""
    maintype, _, subtype = attachment.content_type.partition("/")
    if not maintype.strip() or not subtype.strip():
        return "application", "octet-stream"
    return maintype.strip().lower(), subtype.split(";")[0].strip().lower()
