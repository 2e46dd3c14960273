"""Typed parse errors.

Two kinds, as a creditor or an operator needs them:

* `RowError` (a value, not an exception): one bad row or document in an otherwise readable file.
  The rest of the batch goes on; rejected rows go back to the creditor in the error report.
* `FileRejected` (an exception): the file as a whole cannot be read (empty, undecodable, a required
  column missing, not this format). One clear reason; the file is kept and moved to the error area.

Both name the file, the place in it (row, line or XPath), the field, a stable code and a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass


class ParseError(ValueError):
    """Root of everything a parser raises on bad input. Nothing else may escape a parser."""

    code = "parse_error"

    def __init__(self, source: str, message: str, *, code: str | None = None,
                 location: str | None = None, field: str | None = None):
        self.source = source
        self.message = message
        self.location = location
        self.field = field
        if code is not None:
            self.code = code
        where = f"{source}" + (f", {location}" if location else "") + (f", {field}" if field else "")
        super().__init__(f"{where}: {message} [{self.code}]")


class FileRejected(ParseError):
    """The whole file is unusable; `code` says why (see the codes below)."""

    code = "file_rejected"


# Whole-file codes
EMPTY_FILE = "empty_file"
UNDECODABLE = "undecodable"
MISSING_COLUMN = "missing_column"
NOT_THIS_FORMAT = "not_this_format"
MALFORMED = "malformed"
UNSUPPORTED_VERSION = "unsupported_version"


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with one row (CSV) or document (UBL) of a file."""

    source: str
    row: int
    invoice_number: str | None
    field: str
    code: str
    message: str

    def as_report_row(self) -> dict[str, object]:
        return {
            "row": self.row,
            "invoice_number": self.invoice_number or "",
            "field": self.field,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ParseWarning:
    """Something odd that does not stop the file (a wrong trailer, a bad check digit)."""

    source: str
    location: str
    code: str
    message: str
