"""Creditor billing files in CSV: bytes in, canonical invoice rows plus row errors out.

Each creditor exports from its own tool, so the profile's `CsvMapping` says which of its columns is
which of our fields, the separators and the date format; this module only turns the file into text
columns and hands them to `creditflow.parsers.validate`, which judges the values (the UBL parser
uses the same rules).

Whole-file problems raise `FileRejected` with one reason: `empty_file` (nothing, or only a header),
`undecodable` (bytes that are not the agreed encoding, UTF-16, NUL bytes), `missing_column` (a
required mapped column is not in the header), `malformed` (rows with a different number of fields
than the header, broken quoting, a mapped column twice). Row numbers are the ones the creditor sees
in a spreadsheet: header = row 1, first data row = row 2 (a quoted field spanning lines is one row).

Every column is read as text: letting polars infer types would turn OGMs and postcodes into integers
(dropping leading zeros) and amounts into floats.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import PurePath
from typing import TYPE_CHECKING

import polars as pl

from creditflow.parsers.base import InvoiceBatch
from creditflow.parsers.errors import (
    EMPTY_FILE,
    MALFORMED,
    MISSING_COLUMN,
    UNDECODABLE,
    FileRejected,
    ParseWarning,
)
from creditflow.parsers.validate import REQUIRED_FIELDS, RowRules, validate_rows

if TYPE_CHECKING:  # the mapping is handed in; parsers do not import config at run time
    from creditflow.config.profiles import CsvMapping

DELIMITERS = (";", ",", "\t", "|")
SUFFIXES = (".csv", ".txt")
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252"}


class CsvInvoiceParser:
    """Reads one creditor's CSV billing files as its profile's mapping describes them."""

    name = "csv"

    def __init__(self, mapping: CsvMapping):
        self.mapping = mapping
        self.rules = RowRules(
            decimal_separator=mapping.decimal_separator,
            date_format=mapping.date_format,
            default_currency=mapping.default_currency,
        )
        self._fields_by_header = {
            _header_key(column): field for column, field in mapping.columns.items()
        }
        self._invoice_number_key = _header_key(mapping.column_for("invoice_number") or "")

    # -- identify --------------------------------------------------------------------------------

    def identify(self, name: str, head: bytes) -> bool:
        """A .csv/.txt text file whose first line holds this creditor's invoice-number column.

        Cheap and conservative: XML, CODA (records start with "0000"), UTF-16 and binary files
        are never ours."""
        if PurePath(name).suffix.lower() not in SUFFIXES:
            return False
        if head.startswith(_UTF16_BOMS) or b"\x00" in head:
            return False
        text = _decode_head(head.removeprefix(_UTF8_BOM)).lstrip()
        if not text or text.startswith("<") or text.startswith("0000"):
            return False
        first_line = text.splitlines()[0]
        delimiter = self._delimiter(first_line)
        try:
            header = next(csv.reader([first_line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            return False
        return self._invoice_number_key in {_header_key(cell) for cell in header}

    # -- parse -----------------------------------------------------------------------------------

    def parse(self, data: bytes, *, source: str) -> InvoiceBatch:
        text, body = _decode(data, source, self.mapping.encoding)
        if not text or text.isspace():  # isspace() stops at the first visible character
            raise FileRejected(source, "the file is empty", code=EMPTY_FILE)
        if "\r" in text and "\n" not in text:  # classic Mac line ends
            text = text.replace("\r", "\n")
            body = text.encode("utf-8")
        delimiter = self._delimiter(_first_line(text))
        header = _header(text, delimiter, source)
        positions, warnings = self._mapped_positions(header, source)
        table = _read(text, body, delimiter, len(header), source)
        if table.width != len(header):
            raise FileRejected(
                source, f"the header has {len(header)} columns but the rows were read as "
                f"{table.width}; check the quoting of the header", code=MALFORMED, location="row 1",
            )
        _check_short_rows(table, text, body, delimiter, source)
        rows = table.select(
            (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias("source_row"),
            *[pl.nth(index).alias(field) for field, index in positions.items()],
        )
        rows = _without_blank_rows(rows, list(positions))
        if rows.is_empty():
            raise FileRejected(source, "the file has a header but no invoice rows", code=EMPTY_FILE)
        invoices, errors = validate_rows(rows, source=source, rules=self.rules)
        return InvoiceBatch(
            invoices=invoices, errors=errors, warnings=warnings, rows_read=rows.height
        )

    # -- helpers ---------------------------------------------------------------------------------

    def _delimiter(self, first_line: str) -> str:
        """The mapping's delimiter, or the candidate that finds the most mapped columns."""
        if self.mapping.delimiter != "auto":
            return self.mapping.delimiter

        def score(candidate: str) -> tuple[int, int]:
            try:
                cells = next(csv.reader([first_line], delimiter=candidate))
            except (csv.Error, StopIteration):
                return (0, 0)
            known = sum(_header_key(cell) in self._fields_by_header for cell in cells)
            return (known, len(cells))

        return max(DELIMITERS, key=score)

    def _mapped_positions(
        self, header: list[str], source: str
    ) -> tuple[dict[str, int], list[ParseWarning]]:
        """Our field -> column index; raises when a required column is absent or doubled."""
        positions: dict[str, int] = {}
        for index, cell in enumerate(header):
            field = self._fields_by_header.get(_header_key(cell))
            if field is None:
                continue
            if field in positions:
                raise FileRejected(
                    source, f"column {cell.strip()!r} appears twice in the header",
                    code=MALFORMED, location="row 1", field=field,
                )
            positions[field] = index
        absent = {column: field for column, field in self.mapping.columns.items()
                  if field not in positions}
        required = [column for column, field in absent.items() if field in REQUIRED_FIELDS]
        if required:
            found = ", ".join(repr(cell.strip()) for cell in header) or "(none)"
            raise FileRejected(
                source,
                f"required column(s) {', '.join(map(repr, required))} missing from the header; "
                f"columns found: {found}",
                code=MISSING_COLUMN, location="row 1",
            )
        warnings = [
            ParseWarning(source, "row 1", "missing_optional_column",
                         f"mapped column {column!r} ({field}) is not in the file; left empty")
            for column, field in absent.items()
        ]
        return positions, warnings


def _without_blank_rows(rows: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Drop rows with nothing in any mapped column (blank lines, ";;;;" lines a spreadsheet adds).

    A blank row has a blank invoice number, so only those few rows get the full test."""
    number = pl.col("invoice_number")
    candidates = rows.filter(number.is_null() | (number.str.strip_chars().str.len_bytes() == 0))
    if candidates.is_empty():
        return rows
    blank = candidates.filter(pl.all_horizontal(
        [pl.col(f).str.strip_chars().fill_null("").str.len_bytes() == 0 for f in fields]
    ))
    return rows.filter(~pl.col("source_row").is_in(blank["source_row"].implode()))


def _header_key(name: str) -> str:
    """Header cells match the mapping regardless of case and spacing."""
    return " ".join(name.split()).casefold()


def _decode_head(head: bytes) -> str:
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut by the end of the head
            return head[: exc.start].decode("utf-8", errors="replace")
        return head.decode("cp1252", errors="replace")


def _position(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"byte {data[offset]:#04x} at offset {offset} (line {line})"


def _decode(data: bytes, source: str, encoding: str) -> tuple[str, bytes]:
    """The text of the file, and UTF-8 bytes of it for polars (the input itself when possible)."""
    if data.startswith(_UTF16_BOMS):
        raise FileRejected(source, "the file is UTF-16; save it as UTF-8 or Windows-1252 (ANSI)",
                           code=UNDECODABLE, location="offset 0")
    if data.startswith(_UTF8_BOM):
        encoding, data = "utf-8", data[len(_UTF8_BOM):]
    candidates = ("utf-8", "cp1252") if encoding == "auto" else (encoding,)
    failures = []
    for candidate in candidates:
        try:
            text, body = _utf8(data) if candidate == "utf-8" else _cp1252(data)
        except UnicodeDecodeError as exc:
            failures.append((candidate, exc.start))
            continue
        nul = text.find("\x00")
        if nul >= 0:
            line = text.count("\n", 0, nul) + 1
            raise FileRejected(source, f"binary content: NUL character at line {line}",
                               code=UNDECODABLE, location=f"line {line}")
        return text, body
    first_offset = failures[0][1]
    reasons = "; ".join(
        f"not {_ENCODING_NAMES[name]}: {_position(data, offset)}" for name, offset in failures
    )
    line = data.count(b"\n", 0, first_offset) + 1
    raise FileRejected(source, reasons, code=UNDECODABLE, location=f"line {line}")


def _utf8(data: bytes) -> tuple[str, bytes]:
    return data.decode("utf-8"), data


def _cp1252(data: bytes) -> tuple[str, bytes]:
    """Windows-1252 differs from Latin-1 only in bytes 0x80-0x9F, which most files never use:
    decoding as Latin-1 then costs a third less on a million rows. Latin-1 maps those bytes to
    U+0080-U+009F, i.e. UTF-8 C2 80-C2 9F, which is looked for before trusting the shortcut."""
    text = data.decode("latin-1")
    body = text.encode("utf-8")
    if _C1_IN_UTF8.search(body) is None:
        return text, body
    text = data.decode("cp1252")
    return text, text.encode("utf-8")


_C1_IN_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].rstrip("\r")


def _header(text: str, delimiter: str, source: str) -> list[str]:
    try:
        head = io.StringIO(text[: 1 << 20], newline="")  # not the whole file: StringIO copies
        header = next(csv.reader(head, delimiter=delimiter))
    except (csv.Error, StopIteration) as exc:
        raise FileRejected(source, f"the header row cannot be read: {exc}", code=MALFORMED,
                           location="row 1") from None
    return header


def _check_short_rows(
    table: pl.DataFrame, text: str, body: bytes, delimiter: str, source: str
) -> None:
    """polars pads a row with too few fields with nulls, silently. Such a row ends in an empty
    last column, so only rows whose last column is empty are counted (usually few)."""
    suspects = table.select(pl.arg_where(pl.col(table.columns[-1]).is_null())).to_series()
    if suspects.len():
        _check_field_counts(text, body, delimiter, table.width, source, suspects)


def _check_field_counts(
    text: str, body: bytes, delimiter: str, expected: int, source: str,
    rows: pl.Series | None = None,
) -> None:
    """Reject the file at the first row whose field count differs from the header's.

    `rows`: 0-based data-row indices to look at (None = all). Vectorised per line when no quoted
    field spans lines (the usual case: then data row i is line i + 1), else the csv module."""
    try:  # one column per line: NUL never occurs (rejected when decoding)
        lines = pl.read_csv(body, has_header=False, separator="\x00", quote_char=None,
                            new_columns=["line"], infer_schema=False, raise_if_empty=False)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        _check_field_counts_slowly(text, delimiter, expected, source)
        return
    line = pl.col("line").fill_null("")
    quoted = line.str.contains('"', literal=True)
    odd = lines.select(
        pl.arg_where(quoted & (line.str.count_matches('"', literal=True) % 2 == 1)).first()
    ).item()
    if odd is not None:
        _check_field_counts_slowly(text, delimiter, expected, source, odd_quote_line=odd + 1)
        return
    lines = lines.with_row_index("index")
    if rows is not None:
        lines = lines[(rows + 1).filter(rows + 1 < lines.height)]
    lines = lines.filter((pl.col("index") > 0) & (line.str.strip_chars().str.len_bytes() > 0))
    unquoted = pl.when(quoted).then(line.str.replace_all(r'"[^"]*"', "")).otherwise(line)
    fields = unquoted.str.count_matches(delimiter, literal=True) + 1
    wrong = lines.filter(fields != expected).head(1).select("index", fields.alias("fields"))
    if wrong.height:
        _reject_row(source, wrong.item(0, "index") + 1, wrong.item(0, "fields"), expected)


def _check_field_counts_slowly(
    text: str, delimiter: str, expected: int, source: str, odd_quote_line: int | None = None
) -> None:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for row, record in enumerate(reader, start=1):
            blank = not record or (len(record) == 1 and not record[0].strip())
            if row > 1 and not blank and len(record) != expected:
                _reject_row(source, row, len(record), expected)
    except csv.Error as exc:
        where = odd_quote_line or reader.line_num
        hint = f"a quote on line {odd_quote_line} is not closed where expected; " if odd_quote_line else ""
        raise FileRejected(source, f"broken quoting: {hint}the reader failed at line "
                           f"{reader.line_num} ({exc})", code=MALFORMED,
                           location=f"line {where}") from None


def _reject_row(source: str, row: int, fields: int, expected: int) -> None:
    raise FileRejected(
        source, f"row {row} has {fields} fields where the header has {expected}; "
        "check for a missing or extra separator or an unclosed quote",
        code=MALFORMED, location=f"row {row}",
    )


def _read(text: str, body: bytes, delimiter: str, expected: int, source: str) -> pl.DataFrame:
    try:
        return pl.read_csv(
            body, separator=delimiter, has_header=True, infer_schema=False, quote_char='"',
            raise_if_empty=False,
        )
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    _check_field_counts(text, body, delimiter, expected, source)  # names the row when it can
    raise FileRejected(source, f"the CSV structure cannot be read ({reason})", code=MALFORMED)
