"""CODA 2.x record layouts and the decoders for structured communications.

Kept apart from the parser so the field grid (1-based, inclusive, as the Febelfin spec and
/work/shared/docs/bank-statements.md write it) can be read and checked against the spec in one place,
and so the decoders, which are plain functions on strings, can be tested without building a file.

The decoders run on *unique* (type, content) pairs only: the parser slices fields with polars and
calls Python here for the rare types, never once per record.
"""

from __future__ import annotations

from dataclasses import dataclass

from stdnum import iso11649
from stdnum.be import ogm_vcs

RECORD_LENGTH = 128

# Field grid: (first column, last column), 1-based inclusive, as in the spec.
HEADER = {
    "creation_date": (6, 11),
    "bank_id": (12, 14),
    "application_code": (15, 16),
    "duplicate": (17, 17),
    "file_reference": (25, 34),
    "addressee": (35, 60),
    "bic": (61, 71),
    "company_id": (72, 82),
    "separate_application": (84, 88),
    "version": (128, 128),
}
OLD_BALANCE = {
    "structure": (2, 2),
    "paper_sequence": (3, 5),
    "account_zone": (6, 42),
    "sign": (43, 43),
    "amount": (44, 58),
    "date": (59, 64),
    "holder_name": (65, 90),
    "description": (91, 125),
    "coda_sequence": (126, 128),
}
NEW_BALANCE = {
    "paper_sequence": (2, 4),
    "account_zone": (5, 41),
    "sign": (42, 42),
    "amount": (43, 57),
    "date": (58, 63),
    "link": (128, 128),
}
TRAILER = {
    "count": (17, 22),
    "debit": (23, 37),
    "credit": (38, 52),
    "multiple_file": (128, 128),
}
MOVEMENT_1 = {  # record 2.1
    "sequence": (3, 6),
    "detail": (7, 10),
    "bank_reference": (11, 31),
    "sign": (32, 32),
    "amount": (33, 47),
    "value_date": (48, 53),
    "transaction_code": (54, 61),
    "operation": (57, 58),
    "family": (55, 56),
    "comm_flag": (62, 62),
    "communication": (63, 115),  # 53
    "booking_date": (116, 121),
    "globalisation": (125, 125),
}
MOVEMENT_2 = {  # record 2.2
    "sequence": (3, 6),
    "detail": (7, 10),
    "communication": (11, 63),  # 53
    "customer_reference": (64, 98),
    "bic": (99, 109),
    "r_type": (113, 113),
    "reason": (114, 117),
}
MOVEMENT_3 = {  # record 2.3, version 2
    "sequence": (3, 6),
    "detail": (7, 10),
    "account_zone": (11, 47),
    "name": (48, 82),
    "communication": (83, 125),  # 43
}
MOVEMENT_3_V1 = {  # record 2.3, version 1: BBAN, short name, then an address (not communication)
    "account": (11, 22),
    "name": (48, 73),
    "address": (74, 125),
}
INFO_1 = {  # record 3.1
    "sequence": (3, 6),
    "detail": (7, 10),
    "bank_reference": (11, 31),
    "transaction_code": (32, 39),
    "comm_flag": (40, 40),
    "communication": (41, 113),  # 73
    "link": (128, 128),
}
INFO_2 = {"communication": (11, 115), "link": (128, 128)}  # 105
INFO_3 = {"communication": (11, 100), "link": (128, 128)}  # 90
FREE = {"sequence": (3, 6), "detail": (7, 10), "text": (33, 112)}  # record 4

ZONE_2 = (53, 53, 43)
"""Widths of the 2.1 / 2.2 / 2.3 communication zones, joined into one 149-character zone."""
ZONE_3 = (73, 105, 90)
"""Widths of the 3.1 / 3.2 / 3.3 communication zones, joined into one 268-character zone."""

TRAILER_COUNTED = ("1", "21", "22", "23", "31", "32", "33", "8")
"""Records the trailer count covers (0, 4 and 9 are excluded by the spec)."""

MOVEMENT_COMM_TYPES = {
    "100": "ISO 11649 creditor reference",
    "101": "Structured communication",
    "102": "Structured communication reconstituted by the bank",
    "103": "Number",
    "104": "Equivalent in EUR",
    "105": "Original amount of the transaction",
    "106": "Method of calculation",
    "107": "Direct debit (DOM80)",
    "108": "Closing",
    "111": "POS credit - globalisation",
    "112": "ATM payment",
    "113": "ATM/POS debit",
    "114": "POS credit - individual transaction",
    "115": "Terminal cash deposit",
    "121": "Commercial bills",
    "122": "Bills - calculation of interest",
    "123": "Fees and commissions",
    "124": "Number of the credit card",
    "125": "Credit",
    "126": "Term investments",
    "127": "SEPA direct debit",
}
INFO_COMM_TYPES = {
    "001": "Data concerning the counterparty",
    "002": "Communication of the bank",
    "003": "RBP data",
    "004": "Counterparty's banker",
    "005": "Data concerning the correspondent",
    "006": "Information pertaining to sale or purchase of securities / detail amount",
    "007": "Cash detail",
    "008": "Identification of the ultimate creditor",
    "009": "Identification of the ultimate debtor",
    "010": "Information pertaining to sale or purchase of securities",
    "011": "Information pertaining to coupons",
}


@dataclass(frozen=True, slots=True)
class Decoded:
    """A structured communication made readable; `reference` is a compact OGM or RF when it holds one."""

    text: str
    reference: str | None = None
    reference_valid: bool | None = None


def squeeze(text: str) -> str:
    """Collapse runs of blanks for *display* texts only (names and references keep their spacing)."""
    return " ".join(text.split())


def milli_text(digits: str, decimals: int = 3) -> str:
    """'000000000008000' -> '8.000' without float; non-digits come back as written."""
    digits = digits.strip()
    if not digits.isdigit():
        return digits
    value = int(digits)
    scale = 10**decimals
    return f"{value // scale}.{value % scale:0{decimals}d}" if decimals else str(value)


def ogm_display(digits: str) -> str:
    """'000003505158' -> '+++000/0035/05158+++', the form payers and invoices print."""
    return f"+++{digits[0:3]}/{digits[3:7]}/{digits[7:12]}+++"


def date_text(ddmmyy: str) -> str:
    if len(ddmmyy) == 6 and ddmmyy.isdigit() and ddmmyy != "000000":
        return f"20{ddmmyy[4:6]}-{ddmmyy[2:4]}-{ddmmyy[0:2]}" if int(ddmmyy[4:6]) < 70 else (
            f"19{ddmmyy[4:6]}-{ddmmyy[2:4]}-{ddmmyy[0:2]}"
        )
    return ddmmyy.strip()


def _generic(table: dict[str, str], comm_type: str, content: str) -> Decoded:
    label = table.get(comm_type, f"Structured communication type {comm_type}")
    body = squeeze(content)
    return Decoded(f"{label}: {body}" if body else label)


def _embedded_ogm(digits: str) -> tuple[str | None, bool | None]:
    if digits.isdigit() and len(digits) == 12 and digits.strip("0"):
        return digits, ogm_vcs.is_valid(digits)
    return None, None


def decode_movement(comm_type: str, content: str) -> Decoded:
    """Readable text for a movement's structured communication (2.1+2.2+2.3 zone after the type).

    101/102 are decoded vectorised by the parser; they are handled here too so this function is the
    single reference for every type (tests compare both paths).
    """
    c = content
    if comm_type in ("101", "102"):
        digits = c[0:12]
        if digits.isdigit():
            return Decoded(ogm_display(digits), digits, ogm_vcs.is_valid(digits))
        return Decoded(squeeze(c), c[0:12].strip() or None, False)
    if comm_type == "100":
        ref = "".join(c[0:25].split()).upper()
        return Decoded(ref, ref or None, iso11649.is_valid(ref) if ref else None)
    if comm_type == "103":
        return Decoded(f"Number: {c[0:12].strip()}")
    if comm_type == "105":
        gross_account, gross_original, rate = c[0:15], c[15:30], c[30:42]
        currency, ogm, country, eur = c[42:45].strip(), c[45:57], c[57:59].strip(), c[59:74]
        rate_text = milli_text(rate, 8)
        parts = [
            f"Original amount {currency} {milli_text(gross_original)}",
            f"gross in account currency {milli_text(gross_account)}",
            f"rate {rate_text}",
        ]
        if country:
            parts.append(f"country {country}")
        if eur.strip().strip("0"):
            parts.append(f"EUR equivalent {milli_text(eur)}")
        ref, valid = _embedded_ogm(ogm)
        if ref:
            parts.append(ogm_display(ref))
        return Decoded("; ".join(parts), ref, valid)
    if comm_type == "106":
        equivalent, base, percent = c[0:15], c[15:30], c[30:42]
        minimum, in_transaction_ccy = c[42:43], c[43:58]
        text = (
            f"Calculation: {milli_text(percent, 8)} % of {milli_text(base)} = {milli_text(equivalent)}"
            f"{' (minimum applied)' if minimum == '1' else ''}"
        )
        if in_transaction_ccy.strip().strip("0"):
            text += f"; in transaction currency {milli_text(in_transaction_ccy)}"
        return Decoded(text)
    if comm_type == "127":
        settlement, dd_type, scheme, paid = c[0:6], c[6:7], c[7:8], c[8:9]
        creditor_id, mandate = c[9:44].strip(), c[44:79].strip()
        free = c[79:141].strip()
        r_type, reason = c[141:142].strip(), c[142:146].strip()
        parts = [f"SEPA direct debit {'B2B' if scheme == '1' else 'CORE'}"]
        if creditor_id:
            parts.append(f"creditor {creditor_id}")
        if mandate:
            parts.append(f"mandate {mandate}")
        parts.append(f"settlement {date_text(settlement)}")
        if paid not in ("0", " ", "") or r_type not in ("", "0"):
            parts.append(f"refused {r_type} {reason}".strip())
        if free:
            parts.append(free)
        _ = dd_type
        return Decoded("; ".join(parts))
    return _generic(MOVEMENT_COMM_TYPES, comm_type, content)


def decode_information(comm_type: str, content: str) -> Decoded:
    """Readable text for an information record's structured communication (3.1+3.2+3.3 zone).

    001 (counterparty name, street, locality, id) is decoded vectorised by the parser; this is the
    reference implementation for it and the only one for the rarer types.
    """
    c = content
    if comm_type == "001":
        parts = [c[0:70].strip(), c[70:105].strip(), c[105:140].strip(), c[140:175].strip()]
        return Decoded(", ".join(p for p in parts if p))
    if comm_type == "006":
        description, currency, amount, sign, category = (
            c[0:30].strip(), c[30:33].strip(), c[33:48], c[48:49], c[49:52]
        )
        signed = ("-" if sign == "1" else "") + milli_text(amount)
        return Decoded(f"{description}: {currency} {signed} (category {category.strip()})".strip())
    if comm_type in ("008", "009"):
        label = INFO_COMM_TYPES[comm_type]
        name, ident = c[0:70].strip(), c[70:105].strip()
        return Decoded(f"{label}: {name}" + (f" ({ident})" if ident else ""))
    return _generic(INFO_COMM_TYPES, comm_type, content)
