"""Message texts (email subject/text/HTML, SMS, postal letter) in the debtor's language.

Templates live in renderers/templates/<language>/ so a translator edits words, not Python.
StrictUndefined turns a misspelt variable into an error in the test suite instead of an empty gap
in 10,000 emails; autoescape is on for .html only (a debtor named "<b>" must not become markup,
while the plain-text parts must not show "&amp;").

An SMS has to carry the payment link, the amount and the OGM in one 160-character GSM-7 segment
where possible: the text is first folded to the GSM-7 alphabet (accents it lacks are dropped, not
sent as UCS-2, which would cut a segment to 70 characters), then the longest of three wordings that
fits is chosen.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from creditflow.renderers.document import DocumentError, InvoiceDocument, safe_name
from creditflow.renderers.labels import format_amount, format_date, format_iban, labels_for
from creditflow.renderers.messages import Attachment, Message, PostalAddress

TEMPLATES_DIR = Path(__file__).parent / "templates"
SMS_SEGMENT = 160
SMS_CREDITOR_CHARS = 24
_SMS_VARIANTS = ("sms.txt", "sms_medium.txt", "sms_short.txt")

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # each costs an escape character: 2 units
_GSM7_FALLBACK = {
    "\u00a0": " ", "\u202f": " ", "’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-",
    "…": "...", "«": '"', "»": '"', "ç": "c", "ë": "e", "ï": "i", "ê": "e", "â": "a", "ô": "o",
    "û": "u", "î": "i", "á": "a", "ó": "o", "ú": "u", "í": "i", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D",
    "œ": "oe", "Œ": "OE",
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def render_text(template: str, doc: InvoiceDocument, **extra: object) -> str:
    context = _context(doc)
    context.update(extra)
    return environment().get_template(f"{doc.language}/{template}").render(context)


def build_email(
    doc: InvoiceDocument, *, idempotency_key: str, to_email: str, pdf_bytes: bytes, sender_email: str
) -> Message:
    subject = " ".join(render_text("email_subject.txt", doc).split())
    return _message(
        doc,
        idempotency_key=idempotency_key,
        channel="email",
        sender_email=sender_email,
        subject=subject,
        text=_tidy(render_text("email_body.txt", doc)),
        html=render_text("email_body.html", doc),
        to_email=to_email,
        attachments=(_pdf_attachment(doc, pdf_bytes),),
    )


def build_sms(doc: InvoiceDocument, *, idempotency_key: str, to_phone: str, sender_email: str) -> Message:
    text = sms_text(doc)
    units = gsm7_length(text)
    return _message(
        doc,
        idempotency_key=idempotency_key,
        channel="sms",
        sender_email=sender_email,
        text=text,
        to_phone=to_phone,
        metadata={"sms_encoding": "gsm7", "sms_units": str(units), "sms_segments": str(sms_segments(units))},
    )


def build_post(doc: InvoiceDocument, *, idempotency_key: str, pdf_bytes: bytes, sender_email: str) -> Message:
    missing = [f for f in ("debtor_street", "debtor_postcode", "debtor_city") if not getattr(doc, f)]
    if missing:
        raise DocumentError(doc.invoice_number, missing[0], "required for a postal letter")
    address = PostalAddress(
        name=doc.debtor_name,
        street=doc.debtor_street,
        postcode=doc.debtor_postcode,
        city=doc.debtor_city,
        country=doc.debtor_country,
    )
    return _message(
        doc,
        idempotency_key=idempotency_key,
        channel="post",
        sender_email=sender_email,
        subject=" ".join(render_text("email_subject.txt", doc).split()),
        text=_tidy(render_text("email_body.txt", doc)),
        to_address=address,
        attachments=(_pdf_attachment(doc, pdf_bytes),),
    )


def sms_text(doc: InvoiceDocument) -> str:
    """The longest wording that fits one GSM-7 segment; the shortest one if none does."""
    creditor = to_gsm7(doc.creditor_name)[:SMS_CREDITOR_CHARS].rstrip()
    text = ""
    for variant in _SMS_VARIANTS:
        text = to_gsm7(" ".join(render_text(variant, doc, creditor=creditor).split()))
        if gsm7_length(text) <= SMS_SEGMENT:
            break
    return text


def to_gsm7(text: str) -> str:
    """Fold text into the GSM 03.38 alphabet: keep what it has, drop accents it lacks, else '?'."""
    out = []
    for ch in text:
        if ch in GSM7_BASIC or ch in GSM7_EXTENDED:
            out.append(ch)
        elif ch in _GSM7_FALLBACK:
            out.append(_GSM7_FALLBACK[ch])
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            out.append(base if base and all(c in GSM7_BASIC for c in base) else "?")
    return "".join(out)


def gsm7_length(text: str) -> int:
    """Septets the text takes in GSM-7; ValueError if it holds a character GSM-7 cannot carry."""
    units = 0
    for ch in text:
        if ch in GSM7_BASIC:
            units += 1
        elif ch in GSM7_EXTENDED:
            units += 2
        else:
            raise ValueError(f"{ch!r} is not in the GSM-7 alphabet")
    return units


def sms_segments(units: int) -> int:
    """One segment holds 160 septets; concatenated segments 153 each (the UDH takes 7)."""
    return 1 if units <= SMS_SEGMENT else -(-units // 153)


def _context(doc: InvoiceDocument) -> dict[str, object]:
    labels = labels_for(doc.language)
    is_credit_note = doc.document_type == "credit_note"
    contact = [doc.creditor_email]
    if doc.creditor_phone:
        contact.append(doc.creditor_phone)
    if doc.creditor_website:
        contact.append(doc.creditor_website)
    return {
        "creditor": doc.creditor_name,
        "creditor_contact": " · ".join(contact),
        "debtor": doc.debtor_name,
        "number": doc.invoice_number,
        "title": labels["credit_note"] if is_credit_note else labels["invoice"],
        "is_credit_note": is_credit_note,
        "payable": doc.is_payable,
        "amount": format_amount(doc.amount_cents, doc.currency, doc.language),
        "issue_date": format_date(doc.issue_date, doc.language),
        "due_date": format_date(doc.due_date, doc.language),
        "due_short": format_date(doc.due_date, doc.language),
        "iban": format_iban(doc.creditor_iban),
        "bic": doc.creditor_bic,
        "reference": doc.formatted_reference,
        "reference_label": labels[f"reference_{doc.reference_kind}"],
        "reference_phrase": labels[f"reference_phrase_{doc.reference_kind}"],
        "link": doc.payment_link or "",
        "description": doc.description or "",
    }


def _message(doc: InvoiceDocument, **fields: object) -> Message:
    values: dict[str, object] = dict(
        creditor_id=doc.creditor_id,
        invoice_number=doc.invoice_number,
        language=doc.language,
        sender_name=doc.creditor_name,
        to_name=doc.debtor_name,
        amount_cents=doc.amount_cents,
        currency=doc.currency,
        reference=doc.reference,
        payment_link=doc.payment_link,
    )
    values.update(fields)
    return Message(**values)


def _pdf_attachment(doc: InvoiceDocument, pdf_bytes: bytes) -> Attachment:
    return Attachment(filename=f"{safe_name(doc.invoice_number)}.pdf", content_type="application/pdf", data=pdf_bytes)


def _tidy(text: str) -> str:
    """Collapse the blank lines left by template conditionals to at most one."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"


# -- reminders (docs/collections.md) ---------------------------------------------------------------

REMINDER_TEMPLATES = {"reminder-1": "reminder1"}
"""Delivery purpose -> template prefix under templates/<language>/."""
SMS_REMINDER_UNITS = 2 * 153
"""A reminder SMS may take two concatenated segments: the legally required facts (open balance,
new deadline, that it is free, the reference) do not fit in 160 characters with a payment link."""


@dataclass(frozen=True, slots=True)
class ReminderFacts:
    """What a reminder says beyond the invoice itself: decided by collections, not by the PDF."""

    purpose: str  # a key of REMINDER_TEMPLATES
    open_cents: int  # the open balance, after partial payments: never the invoice total
    deadline: date  # the new payment deadline (>= 14 days, Book XIX)
    sent_on: date  # the letter's date (Brussels)


def enterprise_number(vat: str) -> str:
    """A Belgian VAT number as the enterprise number people read: BE0403170701 -> 0403.170.701."""
    compact = "".join(vat.split()).upper()
    if compact.startswith("BE") and len(compact) == 12 and compact[2:].isdigit():
        digits = compact[2:]
        return f"{digits[:4]}.{digits[4:7]}.{digits[7:]}"
    return compact


def render_reminder_text(template: str, doc: InvoiceDocument, facts: ReminderFacts, **extra: object) -> str:
    prefix = REMINDER_TEMPLATES.get(facts.purpose)
    if prefix is None:
        raise ValueError(f"no reminder templates for purpose {facts.purpose!r}")
    paid = doc.amount_cents - facts.open_cents
    return render_text(
        f"{prefix}_{template}", doc,
        open_amount=format_amount(facts.open_cents, doc.currency, doc.language),
        paid_amount=format_amount(paid, doc.currency, doc.language),
        partly_paid=0 < paid < doc.amount_cents,
        deadline=format_date(facts.deadline, doc.language),
        letter_date=format_date(facts.sent_on, doc.language),
        enterprise_number=enterprise_number(doc.creditor_vat),
        **extra,
    )


def build_reminder(doc: InvoiceDocument, facts: ReminderFacts, *, channel: str, idempotency_key: str,
                   sender_email: str, to_email: str | None = None, to_phone: str | None = None,
                   invoice_pdf: bytes | None = None) -> Message:
    """The reminder for one channel. `amount_cents` of the message is the open balance.

    The invoice PDF goes along with an e-mail only while nothing has been paid: its QR code asks
    for the full amount, which would be wrong after a partial payment.
    """
    fields: dict[str, object] = dict(
        idempotency_key=idempotency_key, channel=channel, sender_email=sender_email,
        amount_cents=facts.open_cents,
        metadata={"purpose": facts.purpose, "payment_deadline": facts.deadline.isoformat()},
    )
    subject = " ".join(render_reminder_text("email_subject.txt", doc, facts).split())
    if channel == "email":
        attach = invoice_pdf is not None and facts.open_cents == doc.amount_cents
        return _message(doc, **fields, subject=subject, to_email=to_email,
                        text=_tidy(render_reminder_text("email_body.txt", doc, facts)),
                        html=render_reminder_text("email_body.html", doc, facts),
                        attachments=(_pdf_attachment(doc, invoice_pdf),) if attach else ())
    if channel == "sms":
        text = reminder_sms_text(doc, facts)
        units = gsm7_length(text)
        fields["metadata"] = {**fields["metadata"], "sms_encoding": "gsm7", "sms_units": str(units),
                              "sms_segments": str(sms_segments(units))}
        return _message(doc, **fields, text=text, to_phone=to_phone)
    if channel == "post":
        missing = [f for f in ("debtor_street", "debtor_postcode", "debtor_city") if not getattr(doc, f)]
        if missing:
            raise DocumentError(doc.invoice_number, missing[0], "required for a postal letter")
        body = _tidy(render_reminder_text("email_body.txt", doc, facts))
        letter = Attachment(filename=f"{safe_name(doc.invoice_number)}-{facts.purpose}.pdf",
                            content_type="application/pdf", data=reminder_letter_pdf(doc, subject, body))
        address = PostalAddress(name=doc.debtor_name, street=doc.debtor_street, postcode=doc.debtor_postcode,
                                city=doc.debtor_city, country=doc.debtor_country)
        return _message(doc, **fields, subject=subject, text=body, to_address=address, attachments=(letter,))
    raise ValueError(f"no reminder text for channel {channel!r}")


def reminder_sms_text(doc: InvoiceDocument, facts: ReminderFacts) -> str:
    """The longest reminder wording that fits two GSM-7 segments; the shortest if none does."""
    creditor = to_gsm7(doc.creditor_name)[:SMS_CREDITOR_CHARS].rstrip()
    text = ""
    for variant in _SMS_VARIANTS:
        text = to_gsm7(" ".join(render_reminder_text(variant, doc, facts, creditor=creditor).split()))
        if gsm7_length(text) <= SMS_REMINDER_UNITS:
            break
    return text


def reminder_letter_pdf(doc: InvoiceDocument, subject: str, body: str) -> bytes:
    """A one-page A4 letter for the window envelope: the invoice's sender block and address window
    (renderers.pdf), then the reminder text. Reproducible bytes, like the invoice PDFs."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfgen.canvas import Canvas

    from creditflow.renderers import pdf

    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1, invariant=1)
    canvas.setTitle(pdf.winansi(subject))
    canvas.setAuthor(pdf.winansi(doc.creditor_name))
    labels = labels_for(doc.language)
    pdf.creditor_block(canvas, doc, labels)
    pdf.debtor_window(canvas, doc)
    y = pdf.from_top(102 * mm)
    canvas.setFont(pdf.BOLD, 12)
    for line in simpleSplit(pdf.winansi(subject), pdf.BOLD, 12, pdf.RIGHT - pdf.LEFT):
        canvas.drawString(pdf.LEFT, y, line)
        y -= 5.5 * mm
    y -= 3 * mm
    canvas.setFont(pdf.FONT, 10)
    bottom = pdf.from_top(280 * mm)
    for paragraph in body.splitlines():
        for line in simpleSplit(pdf.winansi(paragraph), pdf.FONT, 10, pdf.RIGHT - pdf.LEFT) or [""]:
            if y < bottom:
                canvas.showPage()
                canvas.setFont(pdf.FONT, 10)
                y = pdf.from_top(20 * mm)
            canvas.drawString(pdf.LEFT, y, line)
            y -= 4.6 * mm
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
