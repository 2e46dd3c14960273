"""Cells we hand to a spreadsheet (error reports, finance reports) must never become formulas.

A payer can type `=HYPERLINK(...)` into a bank communication and a creditor can put anything in a
billing row; Excel and LibreOffice run a cell that starts with `=`, `+`, `-` or `@` (or a tab/CR
before one). Such text gets a leading `'`, which spreadsheets show as plain text.
"""

from __future__ import annotations

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
