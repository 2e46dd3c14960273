"""The EPC069-12 ("SEPA credit transfer QR") payload, built and validated here rather than by segno.

segno's helper accepts a bad IBAN checksum, silently rounds a third decimal and lets a line feed in a
name shift every later line (invoices-qr-channels.md 3.3). A payment app reads such a code as a
*different* transfer, so every element is checked first and a typed `EpcError` names the element.
The result is the exact bytes that go into the symbol: version 002, charset 1 (UTF-8), LF between
elements, no trailing separator, at most 331 bytes (the byte capacity of QR version 13-M).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Literal

from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError

from creditflow.config.profiles import SEPA_COUNTRIES
from creditflow.renderers.references import ReferenceError, format_ogm, normalise_reference

MAX_PAYLOAD_BYTES = 331
MIN_CENTS = 1
MAX_CENTS = 99_999_999_999  # 999 999 999.99
_PURPOSE = re.compile(r"^[A-Z0-9]{4}$")

QrReferenceLine = Literal["structured", "unstructured"]


class EpcError(ValueError):
    """One EPC element is unusable; `field` names it, `code` is stable for reports and tests."""

    def __init__(self, field: str, code: str, reason: str):
        self.field = field
        self.code = code
        self.reason = reason
        super().__init__(f"EPC QR {field}: {reason} [{code}]")


def build_epc_payload(
    *,
    name: str,
    iban: str,
    amount: Decimal | int,
    bic: str | None = None,
    structured: str | None = None,
    unstructured: str | None = None,
    purpose: str | None = None,
    info: str | None = None,
) -> bytes:
    """Validate every element and return the UTF-8 payload bytes.

    `amount` is integer cents or a Decimal in euros with at most 2 decimals (never a float: a float
    cannot say 0.10 exactly). `structured` must be an RF reference or an OGM (stored compact);
    exactly one of `structured` / `unstructured` is required, because a transfer without remittance
    information cannot be matched to its invoice.
    """
    name = _text("name", name, 1, 70)
    iban_compact = _iban(iban)
    bic_compact = _bic(bic)
    amount_text = format_epc_amount(amount)
    purpose_text = _purpose(purpose)
    structured_text, unstructured_text = _remittance(structured, unstructured)
    info_text = _text("info", info, 0, 70) if info is not None else ""

    elements = [
        "BCD",
        "002",
        "1",  # UTF-8
        "SCT",
        bic_compact,
        name,
        iban_compact,
        amount_text,
        purpose_text,
        structured_text,
        unstructured_text,
        info_text,
    ]
    while elements and elements[-1] == "":  # nothing may follow the last populated element
        elements.pop()
    payload = "\n".join(elements).encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EpcError(
            "payload", "too_long", f"{len(payload)} bytes; at most {MAX_PAYLOAD_BYTES} fit QR version 13-M"
        )
    return payload


def remittance_for(
    reference: str, reference_kind: str, qr_reference_line: QrReferenceLine
) -> Mapping[str, str]:
    """Where a reference goes in the code (docs/adr/0003-ogm-in-epc-qr.md).

    RF references always go in the structured element (line 10), which EPC069-12 describes for ISO
    11649. An OGM goes there as 12 digits ("structured", the default, as Odoo and letspeppol do) or
    into the free-text element (line 11) as `+++…+++` ("unstructured").
    """
    try:
        kind, compact = normalise_reference(reference)
    except ReferenceError as exc:
        raise EpcError("structured", exc.code, exc.reason) from None
    if kind != reference_kind:
        raise EpcError("structured", "kind_mismatch", f"reference is an {kind}, not an {reference_kind}")
    if kind == "ogm" and qr_reference_line == "unstructured":
        return {"unstructured": format_ogm(compact)}
    if qr_reference_line not in ("structured", "unstructured"):
        raise EpcError("qr_reference_line", "invalid", f"unknown placement {qr_reference_line!r}")
    return {"structured": compact}


def format_epc_amount(amount: Decimal | int) -> str:
    """Integer cents or a Decimal in euros -> 'EUR12.3' / 'EUR20' / 'EUR0.05' (no float anywhere)."""
    cents = amount_to_cents(amount)
    if not MIN_CENTS <= cents <= MAX_CENTS:
        raise EpcError("amount", "out_of_range", "amount must be 0.01..999999999.99")
    euros, rest = divmod(cents, 100)
    if rest == 0:
        return f"EUR{euros}"
    if rest % 10 == 0:
        return f"EUR{euros}.{rest // 10}"
    return f"EUR{euros}.{rest:02d}"


def amount_to_cents(amount: Decimal | int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)):
        raise EpcError("amount", "invalid_type", "amount must be integer cents or a Decimal, never a float")
    if isinstance(amount, int):
        return amount
    try:
        if not amount.is_finite():
            raise EpcError("amount", "invalid_value", "amount is not a finite number")
        cents = amount * 100
        if cents != cents.to_integral_value():
            raise EpcError("amount", "too_many_decimals", "amount has more than 2 decimals")
        return int(cents)
    except InvalidOperation:
        raise EpcError("amount", "invalid_value", "amount is not a number") from None


def _text(field: str, value: str | None, min_len: int, max_len: int) -> str:
    if value is None:
        raise EpcError(field, "missing", "is required")
    if not isinstance(value, str):
        raise EpcError(field, "invalid_type", "must be text")
    if "\r" in value or "\n" in value:
        raise EpcError(field, "line_break", "must not contain CR or LF (it would shift every later element)")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise EpcError(field, "control_character", "must not contain control characters")
    value = value.strip()
    if not min_len <= len(value) <= max_len:
        raise EpcError(field, "length", f"must be {min_len}..{max_len} characters, is {len(value)}")
    return value


def _iban(value: str) -> str:
    _text("iban", value, 1, 64)
    try:
        compact = stdnum_iban.validate(value, check_country=False)
    except ValidationError as exc:
        raise EpcError("iban", "invalid", f"{value!r} is not a valid IBAN ({exc})") from None
    if compact[:2] not in SEPA_COUNTRIES:
        raise EpcError("iban", "not_sepa", f"IBAN country {compact[:2]} is not in the SEPA zone")
    return compact


def _bic(value: str | None) -> str:
    if value is None or value == "":
        return ""
    _text("bic", value, 1, 20)
    try:
        return stdnum_bic.validate(value)
    except ValidationError as exc:
        raise EpcError("bic", "invalid", f"{value!r} is not a valid BIC ({exc})") from None


def _purpose(value: str | None) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _PURPOSE.match(value):
        raise EpcError("purpose", "invalid", "must be a 4-character ISO 20022 purpose code")
    return value


def _remittance(structured: str | None, unstructured: str | None) -> tuple[str, str]:
    has_structured = structured not in (None, "")
    has_unstructured = unstructured not in (None, "")
    if has_structured == has_unstructured:
        raise EpcError(
            "remittance", "exactly_one", "give exactly one of a structured reference or unstructured text"
        )
    if has_structured:
        text = _text("structured", structured, 1, 35)
        try:
            kind, compact = normalise_reference(text)
        except ReferenceError as exc:
            raise EpcError("structured", exc.code, exc.reason) from None
        return compact, ""
    return "", _text("unstructured", unstructured, 1, 140)
