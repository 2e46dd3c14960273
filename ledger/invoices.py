"""Invoices in the ledger: bulk insert from the canonical DataFrame, references, the render queue.

Bulk paths go below the ORM on purpose: COPY on PostgreSQL and the driver's executemany on SQLite
store 100k invoices in seconds, where ORM objects or SQLAlchemy's parameter processing per row take
minutes (benchmarks/bench_ledger_insert.py). Generated references are derived from the invoice id so
that they are unique by construction and reproducible; the rare clash with a reference a creditor
supplied itself is detected and stepped around.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import polars as pl
from sqlalchemy import any_, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from creditflow.ledger.models import Invoice, InvoiceState, ReferenceKind, utcnow
from creditflow.ogm_rf import OGM_BASE_MAX, ogm_from_base, rf_from_base
from creditflow.parsers.schema import INVOICE_COLUMNS

_LOOKUP_CHUNK = 50_000
# The id-derived OGM base for attempt k is id + k * _ALTERNATIVE_STEP: far from every id in use.
_ALTERNATIVE_STEP = 1_000_000_000
_MAX_ALTERNATIVES = 9

T = TypeVar("T")

invoices_table = Invoice.__table__


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _values_in(session: Session, column, values: Iterable[T], *where) -> set[T]:
    """The subset of `values` present in `column`: one statement with one parameter per chunk
    (an array on PostgreSQL, a JSON list on SQLite) instead of thousands of IN placeholders."""
    wanted = sorted({v for v in values if v is not None})
    found: set[T] = set()
    postgres = session.get_bind().dialect.name == "postgresql"
    for chunk in _chunks(wanted, _LOOKUP_CHUNK):
        if postgres:
            array = bindparam("values", list(chunk), type_=postgresql.ARRAY(column.type))
            condition = column == any_(array)
        else:
            listed = func.json_each(json.dumps(list(chunk))).table_valued("value")
            condition = column.in_(select(listed.c.value))
        found.update(session.scalars(select(column).where(condition, *where)))
    return found


def existing_invoice_numbers(session: Session, creditor_id: str, numbers: Iterable[str]) -> set[str]:
    """Which of these invoice numbers this creditor already has in the ledger."""
    return _values_in(session, Invoice.invoice_number, numbers, Invoice.creditor_id == creditor_id)


def existing_references(session: Session, refs: Iterable[str]) -> set[str]:
    """Which of these structured references (any creditor) are taken: they are unique ledger-wide."""
    return _values_in(session, Invoice.structured_reference, refs)


def insert_invoices(session: Session, *, creditor_id: str, source_file_id: int | None,
                    invoices: pl.DataFrame, generate_references: str | None = None) -> list[int]:
    """Store accepted invoices (INVOICE_SCHEMA rows) as open; returns their ids in row order.

    With `generate_references="ogm"|"rf"`, rows without a structured reference get the one
    `assign_references` would give them, written by the same INSERT: one pass over the table
    instead of an INSERT plus an UPDATE of every row.

    A duplicate invoice number or reference raises IntegrityError: callers filter with
    `existing_invoice_numbers` / `existing_references` first, the constraint is the last guard.
    """
    missing = [c for c in INVOICE_COLUMNS if c not in invoices.columns]
    if missing:
        raise ValueError(f"invoices frame lacks column(s) {', '.join(missing)} of INVOICE_SCHEMA")
    if invoices.is_empty():
        return []
    reference = pl.col("structured_reference")
    frame = invoices.select(INVOICE_COLUMNS).with_columns(
        pl.col("document_type").fill_null("invoice"),
        pl.col("currency").fill_null("EUR"),
        creditor_id=pl.lit(creditor_id, pl.String),
        source_file_id=pl.lit(source_file_id, pl.Int64),
        open_cents=pl.col("amount_cents"),
        state=pl.lit(InvoiceState.OPEN.value),
        reference_kind=pl.when(reference.is_null()).then(None)
        .when(reference.str.slice(0, 2).str.to_uppercase() == "RF").then(pl.lit(ReferenceKind.RF.value))
        .otherwise(pl.lit(ReferenceKind.OGM.value)),
        reference_generated=pl.lit(False),
    )
    kind = ReferenceKind(generate_references).value if generate_references else None
    if session.get_bind().dialect.name == "postgresql":
        return _copy_postgresql(session, frame, utcnow(), kind)
    return _insert_sqlite(session, frame, utcnow(), kind)


def _with_generated_references(session: Session, frame: pl.DataFrame, ids: Sequence[int],
                               kind: str | None) -> tuple[pl.DataFrame, dict[int, str]]:
    """The frame with generated references filled in where the creditor sent none."""
    if kind is None:
        return frame, {}
    supplied = frame["structured_reference"]
    needing = [i for i, reference in zip(ids, supplied) if reference is None]
    generated = _pick_references(session, needing, kind, also_taken=set(supplied.drop_nulls()))
    column = pl.Series("generated", [generated.get(i) for i in ids], dtype=pl.String)
    is_generated = column.is_not_null()
    return frame.with_columns(
        structured_reference=pl.coalesce(pl.col("structured_reference"), column),
        reference_kind=pl.when(is_generated).then(pl.lit(kind)).otherwise(pl.col("reference_kind")),
        reference_generated=is_generated,
    ), generated


@contextmanager
def _driver_cursor(session: Session, statement: str) -> Iterator[Any]:
    """A cursor of the session's own connection (same transaction), for COPY and executemany.

    Driver errors come out as SQLAlchemy's (IntegrityError ...), as from any other ledger call.
    """
    connection = session.connection()
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except connection.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, connection.dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()


def _copy_postgresql(session: Session, frame: pl.DataFrame, created_at, kind: str | None) -> list[int]:
    """COPY, with ids drawn from the table's sequence first so they come back in row order."""
    ids = sorted(session.execute(
        text("SELECT nextval(pg_get_serial_sequence('invoices', 'id')) FROM generate_series(1, :n)"),
        {"n": frame.height},
    ).scalars())
    frame, _ = _with_generated_references(session, frame, ids, kind)
    columns = ", ".join(["id", *frame.columns, "created_at"])
    statement = f"COPY invoices ({columns}) FROM STDIN"
    with _driver_cursor(session, statement) as cursor, cursor.copy(statement) as copy:
        for invoice_id, row in zip(ids, frame.iter_rows()):
            copy.write_row((invoice_id, *row, created_at))
    return ids


def _insert_sqlite(session: Session, frame: pl.DataFrame, created_at, kind: str | None) -> list[int]:
    """One plain INSERT, then the rest as one executemany with the ids that must follow it.

    SQLite gives a new row max(rowid) + 1, and the first INSERT takes the database's write lock
    until commit, so every id after the first one is free and stays ours.
    """
    dialect = session.get_bind().dialect
    created = invoices_table.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)(created_at)
    frame = frame.with_columns(
        pl.col("issue_date", "due_date").dt.to_string("%Y-%m-%d"),  # SQLAlchemy's SQLite DATE text
        created_at=pl.lit(created, pl.String),
    )
    columns = ", ".join(frame.columns)
    marks = ", ".join("?" * len(frame.columns))
    statement = f"INSERT INTO invoices ({columns}) VALUES ({marks})"
    with _driver_cursor(session, statement) as cursor:
        cursor.execute(statement, frame.row(0))
        first_id = cursor.lastrowid
    ids = list(range(first_id, first_id + frame.height))
    frame, generated = _with_generated_references(session, frame, ids, kind)
    if first_id in generated:
        _store_references(session, {first_id: generated[first_id]}, kind)
    statement = f"INSERT INTO invoices (id, {columns}) VALUES (?, {marks})"
    with _driver_cursor(session, statement) as cursor:
        cursor.executemany(
            statement, [(first_id + offset, *row) for offset, row in enumerate(frame.rows()[1:], start=1)]
        )
    return ids


def generated_reference(invoice_id: int, kind: str, attempt: int = 0) -> str:
    """The reference an invoice gets when its creditor sent none: a function of its id only."""
    base = invoice_id + attempt * _ALTERNATIVE_STEP
    if kind == ReferenceKind.OGM:
        base %= OGM_BASE_MAX + 1  # an OGM holds the last ten digits
        return ogm_from_base(base or 1)  # base 0 skipped, as always: 000000000097 is zeros but the check
    if kind == ReferenceKind.RF:
        return rf_from_base(str(base))
    raise ValueError(f"unknown reference kind {kind!r}: expected 'ogm' or 'rf'")


def assign_references(session: Session, invoice_ids: Sequence[int], kind: str = "ogm") -> dict[int, str]:
    """Give every invoice without a structured reference a generated one; returns the new ones."""
    kind = ReferenceKind(kind).value
    ids = sorted(set(invoice_ids))
    if not ids:
        return {}
    missing = sorted(_values_in(session, invoices_table.c.id, ids,
                                invoices_table.c.structured_reference.is_(None)))
    if not missing:
        return {}
    assigned = _pick_references(session, missing, kind)
    _store_references(session, assigned, kind)
    return assigned


def _pick_references(session: Session, invoice_ids: Sequence[int], kind: str, *,
                     also_taken: Iterable[str] = ()) -> dict[int, str]:
    """Generated references for these invoices, stepping around every one already in use
    (in the ledger, or `also_taken`: supplied in the batch being inserted)."""
    reserved = set(also_taken)
    assigned: dict[int, str] = {}
    pending = list(invoice_ids)
    for attempt in range(_MAX_ALTERNATIVES + 1):
        candidates = {invoice_id: generated_reference(invoice_id, kind, attempt) for invoice_id in pending}
        taken = existing_references(session, candidates.values()) | set(assigned.values()) | reserved
        pending = []
        for invoice_id, reference in candidates.items():
            if reference in taken:
                pending.append(invoice_id)
            else:
                assigned[invoice_id] = reference
                taken.add(reference)
        if not pending:
            break
    else:
        raise RuntimeError(f"no free {kind} reference for invoice(s) {pending[:10]}")
    return assigned


def _store_references(session: Session, assigned: dict[int, str], kind: str) -> None:
    """One UPDATE over arrays on PostgreSQL, one executemany on SQLite: 100k rows in seconds."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE invoices AS i SET structured_reference = v.reference, reference_kind = :kind,"
                " reference_generated = true"
                " FROM unnest(CAST(:ids AS bigint[]), CAST(:refs AS varchar[])) AS v(id, reference)"
                " WHERE i.id = v.id AND i.structured_reference IS NULL"
            ),
            {"ids": list(assigned), "refs": list(assigned.values()), "kind": kind},
        )
        return
    statement = ("UPDATE invoices SET structured_reference = ?, reference_kind = ?, reference_generated = 1"
                 " WHERE id = ? AND structured_reference IS NULL")
    with _driver_cursor(session, statement) as cursor:
        cursor.executemany(
            statement, [(reference, kind, invoice_id) for invoice_id, reference in assigned.items()]
        )


def invoices_to_render(session: Session, *, creditor_id: str | None = None, limit: int = 1000,
                       after_id: int = 0) -> list[Invoice]:
    """Invoices without a PDF yet, oldest first; `after_id` pages past ones that failed to render."""
    query = select(Invoice).where(Invoice.rendered_at.is_(None), Invoice.id > after_id)
    if creditor_id is not None:
        query = query.where(Invoice.creditor_id == creditor_id)
    return list(session.scalars(query.order_by(Invoice.id).limit(limit)))


def mark_rendered(session: Session, rows: Iterable[tuple[int, str, str | None]]) -> int:
    """Record (invoice_id, pdf_path, payment_link) for rendered invoices; returns how many."""
    now = utcnow()
    params = [
        {"b_id": invoice_id, "b_pdf": str(pdf_path), "b_link": link}
        for invoice_id, pdf_path, link in rows
    ]
    if not params:
        return 0
    statement = (
        update(invoices_table)
        .where(invoices_table.c.id == bindparam("b_id"))
        .values(pdf_path=bindparam("b_pdf"), payment_link=bindparam("b_link"), rendered_at=now)
    )
    session.execute(statement, params)
    return len(params)


def get_invoice(session: Session, creditor_id: str, invoice_number: str) -> Invoice | None:
    return session.scalars(
        select(Invoice).where(Invoice.creditor_id == creditor_id,
                              Invoice.invoice_number == invoice_number)
    ).one_or_none()


def find_invoices(session: Session, invoice_number: str, *, creditor_id: str | None = None) -> list[Invoice]:
    """Every invoice with this number (one per creditor at most), for look-ups by people."""
    query = select(Invoice).where(Invoice.invoice_number == invoice_number)
    if creditor_id is not None:
        query = query.where(Invoice.creditor_id == creditor_id)
    return list(session.scalars(query.order_by(Invoice.creditor_id)))


def invoice_counts(session: Session, creditor_id: str | None = None) -> dict[str, int]:
    """Number of invoices per state (every state listed, zero included)."""
    query = select(Invoice.state, func.count()).group_by(Invoice.state)
    if creditor_id is not None:
        query = query.where(Invoice.creditor_id == creditor_id)
    counts = {state.value: 0 for state in InvoiceState}
    counts.update({state: count for state, count in session.execute(query)})
    return counts
