"""Bank statements, movements and allocations in the ledger: import once, book once, derive states.

Every write is keyed (statement_key, movement_key, (movement_key, invoice_id, kind)) and inserted
with ON CONFLICT DO NOTHING, so a night that runs twice, or crashes halfway and runs again, books
each payment exactly once. Invoice states are recomputed from *all* allocations of the touched
invoices rather than adjusted by deltas: a recomputation cannot drift, and running it twice gives
the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time

import polars as pl
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from creditflow.config.settings import BRUSSELS
from creditflow.ledger.db import dialect_insert
from creditflow.ledger.models import (
    Allocation,
    BankMovement,
    BankStatement,
    Invoice,
    InvoiceState,
    utcnow,
)

_CHUNK = 1_000

STATEMENT_COLUMNS = (
    "statement_key", "format", "account_iban", "account_number", "currency", "sequence_number",
    "statement_id", "creation_date", "old_balance_date", "old_balance_milli", "new_balance_date",
    "new_balance_milli", "movement_count", "credit_milli", "debit_milli",
)
MOVEMENT_COLUMNS = (
    "movement_key", "statement_key", "format", "account_iban", "sequence", "detail_number",
    "parent_key", "is_booking", "has_details", "booking_date", "value_date", "amount_milli",
    "currency", "is_reversal", "transaction_code", "communication_type", "structured_reference",
    "reference_valid", "communication", "counterparty_name", "counterparty_account",
    "counterparty_bic", "end_to_end_id", "bank_reference", "customer_reference", "return_reason",
    "source_line",
)
_TYPES = {int: pl.Int64, str: pl.String, bool: pl.Boolean, date: pl.Date}
STORED_MOVEMENT_SCHEMA: dict[str, pl.DataType] = {
    c: _TYPES[BankMovement.__table__.c[c].type.python_type] for c in MOVEMENT_COLUMNS
}
"""The movement columns as stored; equal to parsers.statements.MOVEMENT_SCHEMA (the ledger may not
import the parsers; tests/test_reconcile_pipeline.py checks the two agree)."""
_NOT_NULL_FALSE = ("is_booking", "has_details", "is_reversal")

OPEN_INVOICE_SCHEMA: dict[str, pl.DataType] = {
    "invoice_id": pl.Int64,
    "creditor_id": pl.String,
    "invoice_number": pl.String,
    "structured_reference": pl.String,
    "amount_cents": pl.Int64,
    "open_cents": pl.Int64,
    "issue_date": pl.Date,
    "due_date": pl.Date,
    "debtor_name": pl.String,
    "debtor_iban": pl.String,
    "customer_number": pl.String,
    "state": pl.String,
}
"""What `match_movements` wants of the ledger's invoices (plus the total and the state)."""


@dataclass
class ImportOutcome:
    new_statements: list[str] = field(default_factory=list)
    skipped_statements: list[str] = field(default_factory=list)
    new_movements: list[str] = field(default_factory=list)
    skipped_movements: list[str] = field(default_factory=list)


def _chunks(rows: Sequence, size: int = _CHUNK):
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def previous_statement(session: Session, account_number: str, *, before: BankStatement | dict
                       ) -> BankStatement | None:
    """The latest statement of this account that precedes `before` (by new balance date, then
    sequence number), for the continuity check. `before` may be a row or a statement dict."""
    get = before.get if isinstance(before, dict) else lambda k: getattr(before, k)
    day, seq, key = get("new_balance_date"), get("sequence_number"), get("statement_key")
    query = select(BankStatement).where(BankStatement.account_number == account_number,
                                        BankStatement.statement_key != key)
    if day is not None:
        earlier = BankStatement.new_balance_date < day
        if seq is not None:
            earlier = or_(earlier, and_(BankStatement.new_balance_date == day,
                                        BankStatement.sequence_number < seq))
        query = query.where(earlier)
    query = query.order_by(BankStatement.new_balance_date.desc(), BankStatement.sequence_number.desc())
    return session.scalars(query.limit(1)).first()


def import_statement(session: Session, statement: dict, movements: pl.DataFrame, *,
                     creditor_id: str | None = None, source_name: str | None = None,
                     source_file_id: int | None = None) -> ImportOutcome:
    """Store one statement (a STATEMENT_SCHEMA row as dict) and its movements (MOVEMENT_SCHEMA).

    Idempotent by key: a statement or movement already in the ledger is skipped and listed as such
    in the outcome, so the caller can report it. Movements of a skipped statement are still tried
    one by one (a re-sent statement may carry a movement the first copy lacked).
    """
    outcome = ImportOutcome()
    insert = dialect_insert(session)
    values = {c: statement.get(c) for c in STATEMENT_COLUMNS}
    values["account_number"] = values["account_number"] or values["account_iban"] or "?"
    values["movement_count"] = values["movement_count"] or 0
    values["credit_milli"] = values["credit_milli"] or 0
    values["debit_milli"] = values["debit_milli"] or 0
    stmt = (
        insert(BankStatement)
        .values(**values, creditor_id=creditor_id, source_name=source_name,
                source_file_id=source_file_id, imported_at=utcnow())
        .on_conflict_do_nothing(index_elements=[BankStatement.statement_key])
        .returning(BankStatement.statement_key)
    )
    key = statement["statement_key"]
    if session.execute(stmt).scalar_one_or_none() is None:
        outcome.skipped_statements.append(key)
    else:
        outcome.new_statements.append(key)
    rows = movements.filter(pl.col("statement_key") == key).select(MOVEMENT_COLUMNS).to_dicts()
    now = utcnow()
    for row in rows:
        for name in _NOT_NULL_FALSE:
            row[name] = bool(row[name])
        row["detail_number"] = row["detail_number"] or 0
        row["creditor_id"] = creditor_id
        row["imported_at"] = now
    for part in _chunks(rows):
        stmt = (
            insert(BankMovement).values(part)
            .on_conflict_do_nothing(index_elements=[BankMovement.movement_key])
            .returning(BankMovement.movement_key)
        )
        added = set(session.scalars(stmt))
        for row in part:
            (outcome.new_movements if row["movement_key"] in added else outcome.skipped_movements).append(
                row["movement_key"]
            )
    session.flush()
    return outcome


def open_invoices_frame(session: Session, creditor_id: str | None = None, *,
                        include_settled: bool = False) -> pl.DataFrame:
    """Invoices in the shape `match_movements` wants (OPEN_INVOICE_SCHEMA).

    Open and partially paid invoices by default. `include_settled` adds paid and overpaid ones with
    their zero balance, so that a second payment of an already paid invoice is recognised (and held
    as unapplied cash) instead of being reported as unknown. Credit notes and cancelled invoices
    are never payment targets.
    """
    states = [InvoiceState.OPEN.value, InvoiceState.PARTIALLY_PAID.value]
    if include_settled:
        states += [InvoiceState.PAID.value, InvoiceState.OVERPAID.value]
    cols = [Invoice.id.label("invoice_id"), *(getattr(Invoice, c) for c in list(OPEN_INVOICE_SCHEMA)[1:])]
    query = select(*cols).where(Invoice.state.in_(states), Invoice.document_type == "invoice")
    if creditor_id is not None:
        query = query.where(Invoice.creditor_id == creditor_id)
    rows = session.execute(query.order_by(Invoice.id)).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=OPEN_INVOICE_SCHEMA, orient="row")


def movements_frame(session: Session, *, keys: Iterable[str] | None = None,
                    statuses: Iterable[str] | None = None, unmatched_yet: bool = False) -> pl.DataFrame:
    """Stored movements back in MOVEMENT_SCHEMA (+ creditor_id, match columns), for matching and
    reports. Filter by movement keys and/or match statuses; `unmatched_yet`: only movements no run
    has concluded on (imported, then the night stopped before booking)."""
    extra = {"creditor_id": pl.String, "match_status": pl.String, "match_stage": pl.Int64,
             "match_confidence": pl.Float64, "match_reason": pl.String,
             "suggested_invoice_ids": pl.List(pl.Int64)}
    schema = {**STORED_MOVEMENT_SCHEMA, **extra}
    query = select(*(getattr(BankMovement, c) for c in schema))
    conditions = []
    if statuses is not None:
        conditions.append(BankMovement.match_status.in_(list(statuses)))
    if unmatched_yet:
        conditions.append(BankMovement.match_status.is_(None))
    frames = []
    if keys is not None:
        keys = list(keys)
        for part in _chunks(keys):
            rows = session.execute(query.where(BankMovement.movement_key.in_(part), *conditions)).all()
            frames.append(pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row"))
    else:
        rows = session.execute(query.where(*conditions)).all()
        frames.append(pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row"))
    return pl.concat([pl.DataFrame(schema=schema), *frames]).sort("movement_key")


def record_match_results(session: Session, rows: Iterable[dict]) -> int:
    """Write what matching concluded per movement (status, stage, confidence, reason, suggestion).

    Rows: dicts with movement_key, match_status and optionally match_stage, match_confidence,
    match_reason, suggested_invoice_ids. A movement already `matched` keeps its match: a later run
    that sees it again must not overwrite the booked outcome with "no_match".
    """
    now = utcnow()
    count = 0
    for row in rows:
        result = session.execute(
            update(BankMovement)
            .where(BankMovement.movement_key == row["movement_key"],
                   or_(BankMovement.match_status.is_(None), BankMovement.match_status != "matched"))
            .values(match_status=row["match_status"], match_stage=row.get("match_stage"),
                    match_confidence=row.get("match_confidence"), match_reason=row.get("match_reason"),
                    suggested_invoice_ids=row.get("suggested_invoice_ids"), matched_at=now)
        )
        count += result.rowcount or 0
    return count


def booked_movement_keys(session: Session, keys: Iterable[str] | None = None) -> set[str]:
    """Movements that already have allocation rows (invoice or unapplied)."""
    query = select(Allocation.movement_key).where(Allocation.kind != "undo").distinct()
    if keys is None:
        return set(session.scalars(query))
    found: set[str] = set()
    keys = list(keys)
    for part in _chunks(keys):
        found.update(session.scalars(query.where(Allocation.movement_key.in_(part))))
    return found


def book_allocations(session: Session, allocations: pl.DataFrame, *, creditor_of: dict[int, str] | None = None,
                     stages: dict[str, int] | None = None) -> int:
    """Insert ALLOCATION_SCHEMA rows (plus optional `undoes_movement_key`); returns how many were new.

    A row whose (movement_key, invoice_id, kind) is booked already is skipped, so booking the same
    allocations twice changes nothing.
    """
    if allocations.is_empty():
        return 0
    if creditor_of is None:
        ids = allocations["invoice_id"].drop_nulls().unique().to_list()
        creditor_of = {}
        for part in _chunks(ids):
            creditor_of.update(session.execute(
                select(Invoice.id, Invoice.creditor_id).where(Invoice.id.in_(part))).all())
    stages = stages or {}
    now = utcnow()
    rows = []
    for row in allocations.to_dicts():
        rows.append({
            "movement_key": row["movement_key"], "invoice_id": row["invoice_id"],
            "creditor_id": creditor_of.get(row["invoice_id"]), "debtor_key": row.get("debtor_key"),
            "kind": row["kind"], "amount_cents": int(row["amount_cents"]), "paid_on": row.get("paid_on"),
            "stage": stages.get(row["movement_key"]), "undoes_movement_key": row.get("undoes_movement_key"),
            "booked_at": now,
        })
    insert = dialect_insert(session)
    added = 0
    for part in _chunks(rows):
        stmt = insert(Allocation).values(part).on_conflict_do_nothing(
            index_elements=[Allocation.movement_key, Allocation.invoice_id, Allocation.kind]
        ).returning(Allocation.id)
        added += len(session.scalars(stmt).all())
    session.flush()
    return added


def undo_movement(session: Session, *, reversal_key: str, original_key: str, amount_cents: int,
                  paid_on: date | None) -> list[int]:
    """Take back the allocations of `original_key` that a reversal of `amount_cents` returned.

    Invoice allocations are undone newest-invoice first up to the amount (an `undo` row, negative,
    per invoice); unapplied cash of the original is marked reversed only when the whole payment went
    back. Returns the touched invoice ids; a second call finds the undo rows booked and adds nothing.
    """
    originals = session.scalars(
        select(Allocation).where(Allocation.movement_key == original_key, Allocation.kind != "undo",
                                 Allocation.reversed_by.is_(None))
        .order_by(Allocation.invoice_id.desc())
    ).all()
    already = session.scalar(select(func.count()).select_from(Allocation).where(
        Allocation.movement_key == reversal_key, Allocation.kind == "undo"))
    if already or not originals:
        return []
    total = sum(a.amount_cents for a in originals)
    left = amount_cents
    undo_rows = []
    for alloc in originals:
        if alloc.kind != "invoice" or left <= 0:
            continue
        taken = min(left, alloc.amount_cents)
        left -= taken
        undo_rows.append({"movement_key": reversal_key, "invoice_id": alloc.invoice_id,
                          "debtor_key": alloc.debtor_key, "kind": "undo", "amount_cents": -taken,
                          "paid_on": paid_on, "undoes_movement_key": original_key})
        if taken == alloc.amount_cents:
            alloc.reversed_by = reversal_key
    if amount_cents >= total:
        for alloc in originals:
            alloc.reversed_by = reversal_key
    if undo_rows:
        book_allocations(session, pl.DataFrame(undo_rows, schema={
            "movement_key": pl.String, "invoice_id": pl.Int64, "debtor_key": pl.String, "kind": pl.String,
            "amount_cents": pl.Int64, "paid_on": pl.Date, "undoes_movement_key": pl.String}))
    session.flush()
    return sorted({a.invoice_id for a in originals if a.invoice_id is not None})


def allocations_frame(session: Session, *, invoice_ids: Iterable[int] | None = None,
                      movement_keys: Iterable[str] | None = None,
                      creditor_id: str | None = None) -> pl.DataFrame:
    """Stored allocations as a frame (reports, state recomputation)."""
    schema = {"movement_key": pl.String, "invoice_id": pl.Int64, "creditor_id": pl.String,
              "debtor_key": pl.String, "kind": pl.String, "amount_cents": pl.Int64, "paid_on": pl.Date,
              "stage": pl.Int64, "undoes_movement_key": pl.String, "reversed_by": pl.String}
    query = select(*(getattr(Allocation, c) for c in schema))
    if creditor_id is not None:
        query = query.where(Allocation.creditor_id == creditor_id)
    frames = []
    if invoice_ids is not None or movement_keys is not None:
        for column, values in ((Allocation.invoice_id, invoice_ids), (Allocation.movement_key, movement_keys)):
            values = list(values or [])
            for part in _chunks(values):
                rows = session.execute(query.where(column.in_(part))).all()
                frames.append(pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row"))
    else:
        rows = session.execute(query).all()
        frames.append(pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row"))
    return pl.concat([pl.DataFrame(schema=schema), *frames]).unique(maintain_order=True)


def state_inputs(session: Session, invoice_ids: Iterable[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two frames `reconciliation.invoice_states` needs to recompute these invoices from
    scratch: (invoice_id, amount_cents, open_cents = the full total) and every allocation that
    still counts.

    Undo rows count as negative invoice money; unapplied cash already reversed no longer makes an
    invoice overpaid.
    """
    ids = sorted({int(i) for i in invoice_ids if i is not None})
    totals = []
    for part in _chunks(ids):
        totals += session.execute(select(Invoice.id, Invoice.amount_cents).where(Invoice.id.in_(part))).all()
    inv = pl.DataFrame(totals, schema={"invoice_id": pl.Int64, "amount_cents": pl.Int64}, orient="row")
    inv = inv.with_columns(open_cents=pl.col("amount_cents"))
    allocs = allocations_frame(session, invoice_ids=ids).filter(
        (pl.col("kind") != "unapplied") | pl.col("reversed_by").is_null()
    )
    effective = allocs.select(
        "movement_key", "invoice_id", "debtor_key",
        kind=pl.when(pl.col("kind") == "undo").then(pl.lit("invoice")).otherwise(pl.col("kind")),
        amount_cents="amount_cents", paid_on="paid_on",
    )
    return inv, effective


def apply_states(session: Session, states: pl.DataFrame) -> int:
    """Write `reconciliation.invoice_states` output (invoice_id, open_cents, state, paid_date) to the
    invoices; returns how many rows changed. A cancelled invoice is left alone.

    The paid date is stored as midnight Brussels of the payment's business day (a bank statement
    knows the day, not the hour).
    """
    changed = 0
    for row in states.iter_rows(named=True):
        paid_at = None
        if row["paid_date"] is not None:
            paid_at = datetime.combine(row["paid_date"], time(0), tzinfo=BRUSSELS)
        result = session.execute(
            update(Invoice)
            .where(Invoice.id == row["invoice_id"], Invoice.state != InvoiceState.CANCELLED.value)
            .values(open_cents=row["open_cents"], state=row["state"], paid_at=paid_at)
        )
        changed += result.rowcount or 0
    session.flush()
    return changed
