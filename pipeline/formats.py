"""Which parser reads a dropped billing file.

Strict like beangulp's identify: every known parser is asked, and a file that two parsers claim is an
error rather than a guess. When no parser claims a file, its extension still says what the creditor
meant to send, so that parser reads it and explains what is wrong ("column Bedrag is missing" helps a
creditor more than "unknown format").
"""

from __future__ import annotations

from creditflow.config import CreditorProfile
from creditflow.parsers.csv_invoices import CsvInvoiceParser
from creditflow.parsers.errors import EMPTY_FILE, NOT_THIS_FORMAT, FileRejected
from creditflow.parsers.ubl import UblParser

_BY_EXTENSION = {".csv": "csv", ".txt": "csv", ".xml": "ubl", ".zip": "ubl"}


def invoice_parsers(profile: CreditorProfile) -> list:
    return [CsvInvoiceParser(profile.csv), UblParser()]


def choose_parser(profile: CreditorProfile, name: str, head: bytes):
    if not head.strip(b" \t\r\n\x00\xef\xbb\xbf"):
        raise FileRejected(name, "the file is empty", code=EMPTY_FILE)
    parsers = invoice_parsers(profile)
    candidates = [p for p in parsers if p.identify(name, head)]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        both = ", ".join(p.name for p in candidates)
        raise FileRejected(name, f"ambiguous format: read by more than one parser ({both})",
                           code=NOT_THIS_FORMAT)
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    meant = _BY_EXTENSION.get(suffix)
    for parser in parsers:
        if parser.name == meant:
            return parser
    known = ", ".join(p.name for p in parsers)
    raise FileRejected(name, f"not a billing file we can read (formats: {known})", code=NOT_THIS_FORMAT)
