"""The canonical shapes every parser produces, whatever the file format.

Downstream code (validation, the ledger, rendering, reconciliation) reads only these columns, so a new
billing format or bank format is one new parser and nothing else. Money is integer cents (Int64),
never float; dates are `pl.Date` (Brussels business dates).
"""

from __future__ import annotations

import polars as pl

MAX_INTEGER_DIGITS = 13
"""Digits an amount may have before its decimal separator, in every billing format: 10^13 euros is far
beyond any invoice and far below where Int64 cents overflow."""

INVOICE_SCHEMA: dict[str, pl.DataType] = {
    "source_row": pl.Int64,  # row (CSV, header = row 1) or document number (UBL) in the source file
    "invoice_number": pl.String,
    "document_type": pl.String,  # "invoice" | "credit_note"
    "issue_date": pl.Date,
    "due_date": pl.Date,
    "amount_cents": pl.Int64,  # receivable delta: negative for a credit note
    "currency": pl.String,
    "debtor_name": pl.String,
    "debtor_street": pl.String,
    "debtor_postcode": pl.String,
    "debtor_city": pl.String,
    "debtor_country": pl.String,  # ISO 3166 alpha-2
    "debtor_email": pl.String,
    "debtor_phone": pl.String,  # E.164
    "debtor_language": pl.String,  # nl | fr | en | de, or null for the creditor's default
    "debtor_vat": pl.String,  # compact, with country prefix
    "debtor_iban": pl.String,  # compact
    "customer_number": pl.String,
    "structured_reference": pl.String,  # 12-digit OGM or compact RF, or null: we generate one
    "description": pl.String,
    "preceding_invoice": pl.String,  # the invoice a credit note corrects, when known
}
"""One row per accepted invoice or credit note."""

INVOICE_COLUMNS = tuple(INVOICE_SCHEMA)

MAPPED_FIELDS = (
    "invoice_number",
    "issue_date",
    "due_date",
    "amount",
    "currency",
    "debtor_name",
    "debtor_street",
    "debtor_postcode",
    "debtor_city",
    "debtor_country",
    "debtor_email",
    "debtor_phone",
    "debtor_language",
    "debtor_vat",
    "debtor_iban",
    "customer_number",
    "structured_reference",
    "description",
)
"""The fields a CSV column can be mapped to (`amount` becomes `amount_cents`)."""


def empty_invoices() -> pl.DataFrame:
    return pl.DataFrame(schema=INVOICE_SCHEMA)


ROW_ERROR_COLUMNS = ("row", "invoice_number", "field", "code", "message")
"""Columns of the error report sent back to the creditor, in this order."""
