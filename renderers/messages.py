"""The message a channel sends: rendered once, sent by whichever channel the outbox picks.

Channels import this type and nothing else of the renderers (docs/architecture: channels may import
config and the renderers' message type).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "application/pdf"
    data: bytes


@dataclass(frozen=True, slots=True)
class PostalAddress:
    name: str
    street: str
    postcode: str
    city: str
    country: str = "BE"


@dataclass(frozen=True, slots=True)
class Message:
    """Everything any channel needs; each channel reads the parts it uses.

    `idempotency_key` is the outbox key (creditor, invoice, purpose, channel). Adapters pass it to
    providers that de-duplicate on a key, and the local outbox names its files after it, so a resend
    after a crash is recognised instead of doubled.
    """

    idempotency_key: str
    channel: str  # email | sms | post | payment_request
    creditor_id: str
    invoice_number: str
    language: str
    sender_name: str
    sender_email: str
    subject: str = ""
    text: str = ""
    html: str | None = None
    to_email: str | None = None
    to_phone: str | None = None  # E.164
    to_address: PostalAddress | None = None
    to_name: str | None = None
    amount_cents: int | None = None
    currency: str = "EUR"
    reference: str | None = None  # OGM (12 digits) or RF
    payment_link: str | None = None
    attachments: tuple[Attachment, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
