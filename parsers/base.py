"""The parser contract, after beangulp's importers: `identify` + `parse`.

`identify(name, head)` answers cheaply from the file name and its first bytes whether this parser
reads the file; more than one parser saying yes is an error (a CODA file must never be taken by the
CSV parser). `parse(data, source=...)` returns canonical DataFrames plus typed errors and warnings, and
raises nothing but `ParseError` subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import polars as pl

from creditflow.parsers.errors import ParseWarning, RowError


@dataclass
class InvoiceBatch:
    """What an invoice parser (CSV, UBL) returns for one file."""

    invoices: pl.DataFrame  # INVOICE_SCHEMA
    errors: list[RowError] = field(default_factory=list)
    warnings: list[ParseWarning] = field(default_factory=list)
    rows_read: int = 0
    extra: dict[str, pl.DataFrame] = field(default_factory=dict)  # e.g. UBL lines, VAT breakdown


@runtime_checkable
class Parser(Protocol):
    name: str

    def identify(self, name: str, head: bytes) -> bool: ...

    def parse(self, data: bytes, *, source: str): ...
