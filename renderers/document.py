"""One invoice as the renderers see it: everything a PDF, an email, an SMS or a letter needs.

Frozen and made of plain values (str, int, date) so it pickles cheaply into render workers and so a
PDF is a pure function of it (same document -> same bytes). Built from a creditor profile plus one
canonical invoice row (parsers/schema.py INVOICE_SCHEMA + "structured_reference"/"reference_kind");
validation happens here, once, so the PDF and the messages cannot disagree about a reference.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from creditflow.config.profiles import CreditorProfile
from creditflow.config.settings import BRUSSELS
from creditflow.renderers.epc import build_epc_payload, remittance_for
from creditflow.renderers.labels import LANGUAGES
from creditflow.renderers.references import ReferenceError, format_reference, normalise_reference


class DocumentError(ValueError):
    """An invoice row that cannot be rendered; names the field."""

    def __init__(self, invoice_number: str | None, field: str, reason: str):
        self.invoice_number = invoice_number
        self.field = field
        self.reason = reason
        super().__init__(f"invoice {invoice_number or '?'}: {field}: {reason}")


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    document_id: str  # unique: the ledger's invoice id ("invoice_id" or "id") when given, else a hash
    creditor_id: str
    creditor_name: str
    creditor_address_lines: tuple[str, ...]
    creditor_country: str
    creditor_vat: str
    creditor_iban: str
    creditor_bic: str
    creditor_email: str
    creditor_phone: str | None
    creditor_website: str | None
    debtor_name: str
    debtor_street: str | None
    debtor_postcode: str | None
    debtor_city: str | None
    debtor_country: str
    language: str
    invoice_number: str
    document_type: str  # invoice | credit_note
    issue_date: date
    due_date: date
    amount_cents: int
    currency: str
    description: str | None
    customer_number: str | None
    reference: str  # compact: 12-digit OGM or RF
    reference_kind: str  # ogm | rf
    payment_link: str | None
    qr_reference_line: str  # structured | unstructured
    debtor_email: str | None = None
    debtor_phone: str | None = None

    @property
    def is_payable(self) -> bool:
        """Only a positive EUR amount can be paid by SEPA transfer (and so gets a QR code)."""
        return self.amount_cents > 0 and self.currency == "EUR"

    @property
    def formatted_reference(self) -> str:
        return format_reference(self.reference, self.reference_kind)

    @property
    def debtor_address_lines(self) -> tuple[str, ...]:
        lines = [self.debtor_name]
        if self.debtor_street:
            lines.append(self.debtor_street)
        place = " ".join(p for p in (self.debtor_postcode, self.debtor_city) if p)
        if place:
            lines.append(place)
        if self.debtor_country and self.debtor_country != self.creditor_country:
            lines.append(self.debtor_country)
        return tuple(lines)

    def epc_payload(self) -> bytes:
        """The EPC QR payload of this invoice (EpcError if it is not payable)."""
        return build_epc_payload(
            name=self.creditor_name,
            iban=self.creditor_iban,
            bic=self.creditor_bic,
            amount=self.amount_cents,
            **remittance_for(self.reference, self.reference_kind, self.qr_reference_line),
        )

    @classmethod
    def from_parts(
        cls, profile: CreditorProfile, invoice: Mapping[str, Any], payment_link: str | None
    ) -> "InvoiceDocument":
        number = _required_text(invoice, "invoice_number", None)
        raw_reference = invoice.get("structured_reference")
        if not raw_reference:
            raise DocumentError(number, "structured_reference", "missing (generate one before rendering)")
        try:
            kind, reference = normalise_reference(str(raw_reference))
        except ReferenceError as exc:
            raise DocumentError(number, "structured_reference", exc.reason) from None
        declared_kind = invoice.get("reference_kind") or kind
        if declared_kind != kind:
            raise DocumentError(number, "reference_kind", f"says {declared_kind} but the reference is an {kind}")
        amount = invoice.get("amount_cents")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise DocumentError(number, "amount_cents", "must be integer cents")
        language = invoice.get("debtor_language") or profile.language
        if language not in LANGUAGES:
            language = profile.language
        invoice_id = invoice.get("invoice_id", invoice.get("id"))  # the ledger's id, under either name
        document_id = str(invoice_id) if invoice_id not in (None, "") else _derived_id(profile.id, number, reference)
        return cls(
            document_id=document_id,
            creditor_id=profile.id,
            creditor_name=profile.legal_name,
            creditor_address_lines=tuple(profile.address.lines()),
            creditor_country=profile.address.country,
            creditor_vat=profile.vat,
            creditor_iban=profile.iban,
            creditor_bic=profile.bic,
            creditor_email=profile.email_from,
            creditor_phone=profile.phone,
            creditor_website=profile.website,
            debtor_name=_required_text(invoice, "debtor_name", number),
            debtor_street=_optional_text(invoice, "debtor_street"),
            debtor_postcode=_optional_text(invoice, "debtor_postcode"),
            debtor_city=_optional_text(invoice, "debtor_city"),
            debtor_country=(_optional_text(invoice, "debtor_country") or profile.address.country).upper(),
            language=language,
            invoice_number=number,
            document_type=invoice.get("document_type") or "invoice",
            issue_date=_date(invoice, "issue_date", number),
            due_date=_date(invoice, "due_date", number),
            amount_cents=amount,
            currency=(invoice.get("currency") or "EUR").upper(),
            description=_optional_text(invoice, "description"),
            customer_number=_optional_text(invoice, "customer_number"),
            reference=reference,
            reference_kind=kind,
            payment_link=payment_link or None,
            qr_reference_line=profile.qr_reference_line,
            debtor_email=_optional_text(invoice, "debtor_email"),
            debtor_phone=_optional_text(invoice, "debtor_phone"),
        )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, max_len: int = 80) -> str:
    """A file-name part from untrusted text: no separators, no leading dots, never empty."""
    cleaned = _UNSAFE.sub("_", text).strip("._-")[:max_len]
    return cleaned or "document"


def _derived_id(creditor_id: str, number: str, reference: str) -> str:
    """Stable when the caller has no ledger id: a re-run writes the same file instead of a second."""
    digest = hashlib.sha256(f"{creditor_id}\x1f{number}\x1f{reference}".encode()).hexdigest()
    return digest[:16]


def _required_text(invoice: Mapping[str, Any], field: str, number: str | None) -> str:
    value = invoice.get(field)
    if value is None or not str(value).strip():
        raise DocumentError(number, field, "is required")
    return str(value).strip()


def _optional_text(invoice: Mapping[str, Any], field: str) -> str | None:
    value = invoice.get(field)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _date(invoice: Mapping[str, Any], field: str, number: str) -> date:
    value = invoice.get(field)
    if isinstance(value, datetime):
        return value.astimezone(BRUSSELS).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise DocumentError(number, field, "must be a date")
