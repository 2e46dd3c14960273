"""The error report a creditor gets back: one CSV line per problem, in the creditor's own dialect.

Creditors open these in a spreadsheet, so the file is UTF-8 with a BOM (Excel then shows accents
right), uses the creditor's delimiter (Belgian Excel expects `;`), and no cell can become a formula
(`creditflow.renderers.spreadsheet`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from creditflow.parsers.errors import RowError
from creditflow.parsers.schema import ROW_ERROR_COLUMNS
from creditflow.renderers.spreadsheet import spreadsheet_safe


def error_report_csv(errors: Iterable[RowError], *, delimiter: str = ";") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(ROW_ERROR_COLUMNS)
    for error in sorted(errors, key=lambda e: (e.row, e.field, e.code)):
        row = error.as_report_row()
        writer.writerow([row["row"], *(spreadsheet_safe(row[c]) for c in ROW_ERROR_COLUMNS[1:])])
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")
