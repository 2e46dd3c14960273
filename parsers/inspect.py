"""What a file holds, for an operator: `creditflow parse FILE...` (a folder: its UBL documents as one batch).

Identifies the format with every parser (a file claimed by two is an error, as in intake), parses it,
and summarises the result as plain data (counts, totals, references, warnings, errors) that the CLI
prints as text or JSON. Amounts are rendered from integers as decimal strings, never through float.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from creditflow.parsers.base import InvoiceBatch
from creditflow.parsers.camt053 import Camt053Parser
from creditflow.parsers.coda import CodaParser
from creditflow.parsers.errors import NOT_THIS_FORMAT, FileRejected, ParseError
from creditflow.parsers.statements import StatementBatch
from creditflow.parsers.ubl import UblParser

MAX_LISTED = 20


def _decimal(value: int | None, scale: int) -> str | None:
    if value is None:
        return None
    sign, value = ("-" if value < 0 else ""), abs(int(value))
    unit = 10**scale
    return f"{sign}{value // unit}.{value % unit:0{scale}d}"


def parsers_for(csv_parser=None) -> list:
    parsers = [CodaParser(), Camt053Parser(), UblParser()]
    return parsers + ([csv_parser] if csv_parser is not None else [])


def identify(name: str, data: bytes, csv_parser=None):
    head = data[:4096]
    found = [p for p in parsers_for(csv_parser) if p.identify(name, head)]
    if len(found) != 1:
        what = "no parser" if not found else "more than one parser (" + ", ".join(p.name for p in found) + ")"
        hint = "" if csv_parser is not None else "; CSV billing files need --creditor for the column mapping"
        raise FileRejected(name, f"{what} recognises this file{hint}", code=NOT_THIS_FORMAT)
    return found[0]


def inspect_file(name: str, data: bytes, csv_parser=None) -> dict[str, Any]:
    summary: dict[str, Any] = {"file": name, "size": len(data)}
    try:
        parser = identify(name, data, csv_parser)
        summary["format"] = parser.name
        result = parser.parse(data, source=name)
    except ParseError as exc:
        summary.setdefault("format", None)
        summary["error"] = {"code": exc.code, "location": exc.location, "field": exc.field, "message": exc.message}
        return summary
    return _summarised(summary, result)


def inspect_ubl_documents(name: str, documents: list[tuple[str, bytes]]) -> dict[str, Any]:
    """A folder of UBL documents as the one batch intake would make of it (`UblParser.parse_many`):
    each document's problems name it, and the others go on."""
    summary: dict[str, Any] = {"file": name, "size": sum(len(data) for _, data in documents),
                               "format": UblParser.name}
    if not documents:
        summary["error"] = {"code": NOT_THIS_FORMAT, "location": None, "field": None,
                            "message": "the folder holds no .xml document"}
        return summary
    return _summarised(summary, UblParser().parse_many(documents, source=name))


def _summarised(summary: dict[str, Any], result: StatementBatch | InvoiceBatch) -> dict[str, Any]:
    if isinstance(result, StatementBatch):
        summary.update(_statements(result))
    elif isinstance(result, InvoiceBatch):
        summary.update(_invoices(result))
    summary["warnings"] = [
        {"location": w.location, "code": w.code, "message": w.message} for w in result.warnings
    ]
    return summary


def _statements(batch: StatementBatch) -> dict[str, Any]:
    m = batch.movements
    bookings = m.filter(pl.col("is_booking"))
    refs = m.filter(pl.col("structured_reference").is_not_null())
    statements = [
        {
            "account": s["account_iban"] or s["account_number"],
            "currency": s["currency"],
            "sequence": s["sequence_number"],
            "old_balance": _decimal(s["old_balance_milli"], 3),
            "new_balance": _decimal(s["new_balance_milli"], 3),
            "date": s["new_balance_date"].isoformat() if s["new_balance_date"] else None,
            "movements": s["movement_count"],
            "credits": _decimal(s["credit_milli"], 3),
            "debits": _decimal(s["debit_milli"], 3),
        }
        for s in batch.statements.iter_rows(named=True)
    ]
    credit = bookings.filter(pl.col("amount_milli") > 0)["amount_milli"].sum()
    debit = -bookings.filter(pl.col("amount_milli") < 0)["amount_milli"].sum()
    return {
        "statements": statements,
        "counts": {"statements": batch.statements.height, "bookings": bookings.height,
                   "details": m.height - bookings.height, "information": batch.information.height},
        "totals": {"credit": _decimal(credit, 3), "debit": _decimal(debit, 3)},
        "references": {"count": refs.height, **_reference_checks(refs),
                       "first": refs["structured_reference"].head(MAX_LISTED).to_list()},
        "errors": [],
    }


def _reference_checks(refs: pl.DataFrame) -> dict[str, int]:
    """How many references passed and failed their check digits, and how many were not checked.

    A null `reference_valid` means no check rule is known for that kind (e.g. a Swiss QRR/ISR
    reference in CAMT): counting it as invalid would send the operator hunting for bad digits
    that are not there."""
    valid = refs["reference_valid"]
    return {"valid": int(valid.sum()), "invalid": int((~valid).sum()), "unchecked": valid.null_count()}


def _invoices(batch: InvoiceBatch) -> dict[str, Any]:
    inv = batch.invoices
    by_currency = {
        row["currency"]: _decimal(row["amount_cents"], 2)
        for row in inv.group_by("currency").agg(pl.col("amount_cents").sum()).sort("currency").iter_rows(named=True)
    }
    refs = inv["structured_reference"].drop_nulls()
    return {
        "counts": {"rows": batch.rows_read or inv.height + len({e.row for e in batch.errors}),
                   "accepted": inv.height, "rejected": len({e.row for e in batch.errors}),
                   "credit_notes": inv.filter(pl.col("document_type") == "credit_note").height},
        "totals": by_currency,
        "references": {"count": refs.len(), "first": refs.head(MAX_LISTED).to_list()},
        "errors": [
            {"row": e.row, "invoice_number": e.invoice_number, "field": e.field, "code": e.code, "message": e.message}
            for e in batch.errors
        ],
    }


def render_text(summary: dict[str, Any]) -> str:
    lines = [f"{summary['file']}: {summary.get('format') or 'unreadable'} ({summary['size']} bytes)"]
    if "error" in summary:
        e = summary["error"]
        where = ", ".join(x for x in (e.get("location"), e.get("field")) if x)
        lines.append(f"  REJECTED [{e['code']}] {where + ': ' if where else ''}{e['message']}")
        return "\n".join(lines)
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
    lines.append(f"  counts: {counts}")
    totals = summary["totals"]
    lines.append("  totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    for s in summary.get("statements", []):
        lines.append(f"  statement {s['account']} #{s['sequence']} {s['date']}: {s['old_balance']} -> "
                     f"{s['new_balance']} {s['currency']}, {s['movements']} movements, "
                     f"+{s['credits']} -{s['debits']}")
    refs = summary["references"]
    if refs["count"]:
        shown = ", ".join(refs["first"][:5]) + (" …" if refs["count"] > 5 else "")
        lines.append(f"  references: {refs['count']}{_checks_text(refs)}: {shown}")
    for w in summary["warnings"]:
        lines.append(f"  warning [{w['code']}] {w['location']}: {w['message']}")
    for e in summary["errors"]:
        lines.append(f"  error row {e['row']} [{e['code']}] {e['field']}: {e['message']}")
    return "\n".join(lines)


def _checks_text(refs: dict[str, Any]) -> str:
    """The text's breakdown of statement references, e.g. ' (2 valid, 1 unchecked)'; '' for invoices."""
    if "valid" not in refs:
        return ""
    parts = [f"{refs['valid']} valid"]
    if refs["invalid"]:
        parts.append(f"{refs['invalid']} with bad check digits")
    if refs["unchecked"]:
        parts.append(f"{refs['unchecked']} unchecked")
    return " (" + ", ".join(parts) + ")"
