"""Intake: a dropped billing file becomes stored invoices, an error report and an archived original.

The order of the steps is what makes a crash harmless:

1. claim the file in the ledger by (creditor, sha256), committed before any work: a second drop of
   the same bytes, or a second worker, finds the claim;
2. parse and validate; write the error report (an atomic, repeatable write);
3. one transaction stores the accepted invoices, their references and the file's outcome;
4. move the original, untouched, to archive/ (or errors/ when rejected as a whole).

A crash before 3 leaves a claim without an outcome: the next run parses the file again. A crash
between 3 and 4 leaves a finished file still in the inbox: the next run only completes the move.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from dataclasses import dataclass, field

import polars as pl

from creditflow.config.settings import BRUSSELS
from creditflow.ledger import events, files, invoices
from creditflow.parsers.base import InvoiceBatch
from creditflow.parsers.errors import FileRejected, RowError
from creditflow.pipeline.error_report import error_report_csv
from creditflow.pipeline.formats import choose_parser
from creditflow.pipeline.runtime import Runtime
from creditflow.stores.base import ARCHIVE, ERRORS, INBOX, is_upload_in_progress, safe_name

DUPLICATE_IN_LEDGER = "duplicate_in_ledger"
DUPLICATE_REFERENCE = "duplicate_reference"


@dataclass
class FileOutcome:
    creditor_id: str
    name: str
    state: str  # processed | rejected | duplicate | completed (an earlier run's move finished)
    file_id: int | None = None
    rows_total: int = 0
    accepted: int = 0
    rejected: int = 0
    reason: str | None = None
    error_report: str | None = None
    archived_to: str | None = None
    invoice_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    creditor_id: str
    name: str
    size: int


def pending_files(rt: Runtime) -> list[Candidate]:
    """Billing files waiting in each creditor's inbox, oldest first; uploads in progress skipped."""
    found = []
    for creditor_id in sorted(rt.profiles):
        for entry in rt.store_for(creditor_id).list(INBOX):
            if is_upload_in_progress(entry.name):
                continue
            found.append(Candidate(creditor_id, safe_name(entry.name), entry.size))
    return found


def archive_name(file_id: int, name: str) -> str:
    return f"{file_id:06d}-{name}"


def ingest_file(rt: Runtime, creditor_id: str, name: str) -> FileOutcome:
    profile = rt.profiles[creditor_id]
    store = rt.store_for(creditor_id)
    name = safe_name(name)
    data = store.read(INBOX, name)
    sha256 = hashlib.sha256(data).hexdigest()

    with rt.sessions.begin() as session:
        claimed = files.claim_file(
            session, creditor_id=creditor_id, store=store.kind, path=store.describe(INBOX, name),
            name=name, size=len(data), sha256=sha256,
        )
        if claimed is not None:
            file_id = claimed.id
            events.record_event(session, kind="file.claimed", entity="file", entity_id=file_id,
                                creditor_id=creditor_id, name=name, sha256=sha256, size=len(data))
        else:
            earlier = files.find_file(session, creditor_id, sha256)
            file_id, earlier_state = earlier.id, earlier.state
            earlier_name, earlier_received = earlier.name, earlier.received_at
    if claimed is None and earlier_state != "claimed":
        return _settle_earlier(rt, creditor_id, name, file_id, earlier_state, earlier_name, earlier_received)

    try:
        parser = choose_parser(profile, name, data[:4096])
        batch: InvoiceBatch = parser.parse(data, source=name)
    except FileRejected as exc:
        return _reject_file(rt, creditor_id, name, file_id, exc, delimiter=_report_delimiter(profile))

    accepted, ledger_errors = _drop_ledger_duplicates(rt, creditor_id, name, batch.invoices)
    errors = [*batch.errors, *ledger_errors]
    rows_total = batch.rows_read or (accepted.height + len({e.row for e in errors}))
    rejected_rows = len({e.row for e in errors})
    report_path = None
    if errors:
        report_name = f"{file_id:06d}-{name}.errors.csv"
        report_path = store.write(ERRORS, report_name, error_report_csv(errors, delimiter=_report_delimiter(profile)))
    archived = store.describe(ARCHIVE, archive_name(file_id, name))

    with rt.sessions.begin() as session:
        ids = invoices.insert_invoices(session, creditor_id=creditor_id, source_file_id=file_id,
                                       invoices=accepted, generate_references=profile.reference_kind)
        files.finish_file(
            session, file_id, state="processed", rows_total=rows_total, rows_accepted=len(ids),
            rows_rejected=rejected_rows, archive_path=archived, error_report_path=report_path,
        )
        events.record_event(session, kind="file.processed", entity="file", entity_id=file_id,
                            creditor_id=creditor_id, accepted=len(ids), rejected=rejected_rows,
                            error_report=report_path)
    archived = store.move(INBOX, name, ARCHIVE, archive_name(file_id, name))
    return FileOutcome(creditor_id, name, "processed", file_id, rows_total, len(ids), rejected_rows,
                       error_report=report_path, archived_to=archived, invoice_ids=ids)


def _report_delimiter(profile) -> str:
    return profile.csv.delimiter if profile.csv.delimiter not in ("auto",) else ";"


def _drop_ledger_duplicates(rt: Runtime, creditor_id: str, source: str, frame: pl.DataFrame):
    """Rows whose invoice number or structured reference the ledger already holds are rejected."""
    if frame.is_empty():
        return frame, []
    with rt.sessions() as session:
        known_numbers = invoices.existing_invoice_numbers(session, creditor_id, frame["invoice_number"].to_list())
        refs = [r for r in frame["structured_reference"].to_list() if r]
        known_refs = invoices.existing_references(session, refs) if refs else set()
    if not known_numbers and not known_refs:
        return frame, []
    errors = []
    bad_rows = set()
    for row in frame.select("source_row", "invoice_number", "structured_reference").iter_rows(named=True):
        if row["invoice_number"] in known_numbers:
            errors.append(RowError(source, row["source_row"], row["invoice_number"], "invoice_number",
                                   DUPLICATE_IN_LEDGER,
                                   f"invoice {row['invoice_number']} was already received in an earlier file"))
            bad_rows.add(row["source_row"])
        if row["structured_reference"] and row["structured_reference"] in known_refs:
            errors.append(RowError(source, row["source_row"], row["invoice_number"], "structured_reference",
                                   DUPLICATE_REFERENCE,
                                   "this structured reference is already used by another invoice"))
            bad_rows.add(row["source_row"])
    return frame.filter(~pl.col("source_row").is_in(sorted(bad_rows))), errors


def _reject_file(rt: Runtime, creditor_id: str, name: str, file_id: int, exc: FileRejected, *, delimiter: str) -> FileOutcome:
    store = rt.store_for(creditor_id)
    report = error_report_csv(
        [RowError(name, 0, None, exc.field or "(file)", exc.code, exc.message)], delimiter=delimiter
    )
    report_path = store.write(ERRORS, f"{file_id:06d}-{name}.errors.csv", report)
    kept = store.describe(ERRORS, archive_name(file_id, name))
    with rt.sessions.begin() as session:
        files.finish_file(session, file_id, state="rejected", rows_total=0, rows_accepted=0, rows_rejected=0,
                          reason=f"{exc.code}: {exc.message}", archive_path=kept, error_report_path=report_path)
        events.record_event(session, kind="file.rejected", entity="file", entity_id=file_id,
                            creditor_id=creditor_id, code=exc.code, reason=exc.message)
    kept = store.move(INBOX, name, ERRORS, archive_name(file_id, name))
    return FileOutcome(creditor_id, name, "rejected", file_id, reason=f"{exc.code}: {exc.message}",
                       error_report=report_path, archived_to=kept)


def _settle_earlier(rt: Runtime, creditor_id: str, name: str, file_id: int, state: str,
                    earlier_name: str, received) -> FileOutcome:
    """The ledger already knows these bytes: finish an interrupted move, or refuse a second drop."""
    store = rt.store_for(creditor_id)
    folder = ARCHIVE if state == "processed" else ERRORS
    target = archive_name(file_id, name)
    if name == earlier_name and not store.exists(folder, target):
        moved = store.move(INBOX, name, folder, target)
        return FileOutcome(creditor_id, name, "completed", file_id, archived_to=moved,
                           reason="an earlier run stored this file but had not archived it yet")
    when = received.astimezone(BRUSSELS).strftime("%Y-%m-%d %H:%M") if received else "earlier"
    reason = f"identical to file #{file_id} received {when}: not processed again"
    report = error_report_csv([RowError(name, 0, None, "(file)", "duplicate_file", reason)])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    report_path = store.write(ERRORS, f"duplicate-{stamp}-{name}.errors.csv", report)
    kept = store.move(INBOX, name, ERRORS, f"duplicate-{stamp}-{name}")
    with rt.sessions.begin() as session:
        events.record_event(session, kind="file.duplicate", entity="file", entity_id=file_id,
                            creditor_id=creditor_id, name=name, kept=kept)
    return FileOutcome(creditor_id, name, "duplicate", file_id, reason=reason, error_report=report_path,
                       archived_to=kept)
