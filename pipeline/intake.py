"""Intake: a dropped billing file becomes stored invoices, an error report and an archived original.

The order of the steps is what makes a crash harmless:

1. claim the file in the ledger by (creditor, sha256), committed before any work: a second drop of
   the same bytes, or a second worker, finds the claim;
2. parse and validate; write the error report (an atomic, repeatable write);
3. one transaction stores the accepted invoices, their references and the file's outcome;
4. move the original, untouched, to archive/ (or errors/ when rejected as a whole).

A crash before 3 leaves a claim without an outcome: the next run parses the file again. A crash
between 3 and 4 leaves a finished file still in the inbox: the next run only completes the move.

Two workers polling the same inbox: the claim (UNIQUE creditor + sha256) lets one insert the row; a
second worker that finds an unfinished claim may be a re-run after a crash or a racer, so step 3
starts by taking the claim's row lock (`files.lock_unfinished_claim`): whoever gets it
finishes the file, the other sees it finished and steps back ("skipped"). The error report is written
inside that transaction, so a loser never overwrites the winner's report. The store's atomic move
(AlreadyClaimed) settles the last race, on the archive move.

Uploads still in progress are not taken (`scan_inbox`): names ending .part/.tmp or starting with a
dot, and, for the scheduled poller (`settle=True`), files whose size and modification time have not
been seen unchanged over two polls, unless already older than the store's `settle_seconds`. Each
observation is one `inbox.seen` event (recorded when a file is new or changed, not at every poll),
so the rule works across processes and restarts without a table of its own.

Bank statements (CODA, CAMT.053) dropped in an inbox are recognised here and handed to
`pipeline.statements_intake`, which claims them the same way and parks them in statements/. Our own
bank areas (Settings.bank_areas) are scanned with the creditors' inboxes; their candidates carry the
area name ("_bank") as creditor_id, and `ingest_file` hands them to `ingest_bank_file`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl
from sqlalchemy import select

from creditflow.channels.spool import write_atomically
from creditflow.config.ids import is_bank_area
from creditflow.config.settings import BRUSSELS
from creditflow.ledger import events, files, invoices
from creditflow.ledger.models import Event, FileState
from creditflow.parsers.base import InvoiceBatch
from creditflow.parsers.errors import FileRejected, RowError
from creditflow.pipeline.error_report import error_report_csv
from creditflow.pipeline.formats import choose_parser
from creditflow.pipeline.runtime import Runtime
from creditflow.stores.base import (
    ARCHIVE, ERRORS, INBOX, AlreadyClaimed, StoreError, UnsafeName, is_upload_in_progress, safe_name,
)

log = logging.getLogger(__name__)

DUPLICATE_IN_LEDGER = "duplicate_in_ledger"
UNSUPPORTED_CURRENCY = "unsupported_currency"
COLLECTED_CURRENCY = "EUR"
DUPLICATE_REFERENCE = "duplicate_reference"
SEEN_EVENT = "inbox.seen"
TAKEN_ELSEWHERE = "taken by another worker"


@dataclass
class FileOutcome:
    creditor_id: str
    name: str
    state: str  # processed | rejected | duplicate | completed (an earlier run's move finished)
    #           | statement (parked in statements/) | skipped (another worker has it)
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


@dataclass(frozen=True)
class Refused:
    creditor_id: str
    name: str
    reason: str


@dataclass
class InboxScan:
    ready: list[Candidate] = field(default_factory=list)
    waiting: list[Candidate] = field(default_factory=list)  # uploads in progress or not settled yet
    refused: list[Refused] = field(default_factory=list)  # names that are not plain file names


def scan_inbox(rt: Runtime, *, settle: bool = True, now: datetime | None = None) -> InboxScan:
    """Every creditor's inbox, sorted into files to take now, files to leave alone, names refused.

    With `settle`, a file is ready once its (size, modification time) was seen unchanged by an
    earlier poll, or when it is already older than the store's `settle_seconds`. Without it (a
    manual run: the operator says "take what is there"), only the upload-name convention applies.
    """
    now = now or datetime.now(UTC)
    scan = InboxScan()
    for creditor_id in sorted(rt.profiles):
        _scan_area(rt, scan, creditor_id, rt.store_for(creditor_id),
                   rt.store_config(creditor_id).settle_seconds, settle=settle, now=now)
    # Our own bank areas: their Candidate.creditor_id is the area name ("_bank"), which
    # `ingest_file` hands to statements_intake.ingest_bank_file (no creditor id starts with "_").
    for area in rt.bank_area_names():
        _scan_area(rt, scan, area, rt.bank_store(area), rt.bank_store_config(area).settle_seconds,
                   settle=settle, now=now)
    return scan


def _scan_area(rt: Runtime, scan: InboxScan, area: str, store, settle_seconds: float, *,
               settle: bool, now: datetime) -> None:
    settle_after = timedelta(seconds=settle_seconds)
    for entry in store.list(INBOX):
        try:
            name = safe_name(entry.name)
        except UnsafeName as exc:
            scan.refused.append(Refused(area, entry.name, str(exc)))
            _record_refused(rt, area, entry.name, str(exc))
            continue
        candidate = Candidate(area, name, entry.size)
        if is_upload_in_progress(name):
            scan.waiting.append(candidate)
        elif not settle or now - entry.modified >= settle_after or _settled(rt, area, entry):
            scan.ready.append(candidate)
        else:
            scan.waiting.append(candidate)


def _event_creditor(area: str) -> str | None:
    """Events of a bank area belong to no creditor (the area name is in the event's key)."""
    return None if is_bank_area(area) else area


def pending_files(rt: Runtime, *, settle: bool = False) -> list[Candidate]:
    """Billing files waiting in each creditor's inbox, oldest first; uploads in progress skipped."""
    return scan_inbox(rt, settle=settle).ready


def _seen_key(creditor_id: str, name: str) -> str:
    key = f"{creditor_id}/{name}"
    if len(key) <= 100:
        return key
    return f"{creditor_id}/#{hashlib.sha256(name.encode()).hexdigest()[:40]}"  # fits events.entity_id


def _settled(rt: Runtime, creditor_id: str, entry) -> bool:
    """Was this very (size, mtime) seen by an earlier poll? If not, remember it for the next one."""
    key = _seen_key(creditor_id, entry.name)
    observed = {"size": entry.size, "modified": entry.modified.astimezone(UTC).isoformat()}
    with rt.sessions.begin() as session:
        last = session.scalars(
            select(Event).where(Event.entity == "inbox", Event.entity_id == key, Event.kind == SEEN_EVENT)
            .order_by(Event.id.desc()).limit(1)
        ).first()
        if last is not None and last.detail.get("size") == observed["size"] \
                and last.detail.get("modified") == observed["modified"]:
            return True
        events.record_event(session, kind=SEEN_EVENT, entity="inbox", entity_id=key,
                            creditor_id=_event_creditor(creditor_id), name=entry.name, **observed)
    return False


def _record_refused(rt: Runtime, creditor_id: str, name: str, reason: str) -> None:
    """One event per refused name (not one per poll): the operator sees it once in the trail."""
    key = _seen_key(creditor_id, name.encode("unicode_escape").decode("ascii"))
    with rt.sessions.begin() as session:
        known = session.scalars(
            select(Event.id).where(Event.entity == "inbox", Event.entity_id == key,
                                   Event.kind == "file.refused").limit(1)
        ).first()
        if known is None:
            events.record_event(session, kind="file.refused", entity="inbox", entity_id=key,
                                creditor_id=_event_creditor(creditor_id), name=repr(name), reason=reason)
    log.warning("%s: refused inbox entry %r: %s", creditor_id, name, reason)


def archive_name(file_id: int, name: str) -> str:
    return f"{file_id:06d}-{name}"


def ingest_file(rt: Runtime, creditor_id: str, name: str) -> FileOutcome:
    if is_bank_area(creditor_id):  # one of our bank areas (scan_inbox): statements only
        from creditflow.pipeline.statements_intake import ingest_bank_file

        return ingest_bank_file(rt, creditor_id, name)
    profile = rt.profiles[creditor_id]
    store = rt.store_for(creditor_id)
    name = safe_name(name)
    try:
        data = store.read(INBOX, name)
    except StoreError:
        if not store.exists(INBOX, name):  # listed a moment ago: another worker moved it
            return FileOutcome(creditor_id, name, "skipped", reason=TAKEN_ELSEWHERE)
        raise
    from creditflow.pipeline import statements_intake as statements  # it imports this module

    sha256 = hashlib.sha256(data).hexdigest()
    kind = statements.statement_format(name, data[:4096])

    with rt.sessions.begin() as session:
        claimed = files.claim_file(
            session, creditor_id=creditor_id, store=store.kind, path=store.describe(INBOX, name),
            name=name, size=len(data), sha256=sha256, format=kind,
        )
        if claimed is not None:
            file_id = claimed.id
            events.record_event(session, kind="file.claimed", entity="file", entity_id=file_id,
                                creditor_id=creditor_id, name=name, sha256=sha256, size=len(data))
        else:
            earlier = files.find_file(session, creditor_id, sha256)
            file_id, earlier_state, earlier_format = earlier.id, earlier.state, earlier.format
            earlier_name, earlier_received = earlier.name, earlier.received_at
    if claimed is None and earlier_format in statements.STATEMENT_FORMATS:
        kind = earlier_format
    if kind in statements.STATEMENT_FORMATS:
        # new, or claimed by a run that stopped before parking it: park it now
        if claimed is not None or (earlier_state == FileState.CLAIMED and earlier_name == name):
            try:
                parked = statements.park_statement(rt, creditor_id, name, file_id)
            except FileExistsError:
                parked = ""
            if parked is None:
                return FileOutcome(creditor_id, name, "skipped", file_id, reason=TAKEN_ELSEWHERE)
            if parked:
                return FileOutcome(creditor_id, name, "statement", file_id, archived_to=parked,
                                   reason=f"{kind} bank statement, kept for reconciliation")
        # the same statement again: reported as a duplicate
        received = claimed.received_at if claimed is not None else earlier_received
        return _settle_earlier(rt, creditor_id, name, file_id, "processed", "", received)
    if claimed is None and earlier_state != "claimed":
        return _settle_earlier(rt, creditor_id, name, file_id, earlier_state, earlier_name, earlier_received)

    try:
        parser = choose_parser(profile, name, data[:4096])
        batch: InvoiceBatch = parser.parse(data, source=name)
    except FileRejected as exc:
        return _reject_file(rt, creditor_id, name, file_id, exc, delimiter=_report_delimiter(profile))

    archived = store.describe(ARCHIVE, archive_name(file_id, name))
    with rt.sessions.begin() as session:
        if not files.lock_unfinished_claim(session, file_id):
            return FileOutcome(creditor_id, name, "skipped", file_id, reason=TAKEN_ELSEWHERE)
        collectable, policy_errors = _collectable(name, batch.invoices)
        accepted, ledger_errors = _drop_ledger_duplicates(session, creditor_id, name, collectable)
        errors = [*batch.errors, *policy_errors, *ledger_errors]
        rows_total = batch.rows_read or (accepted.height + len({e.row for e in errors}))
        rejected_rows = len({e.row for e in errors})
        ids = invoices.insert_invoices(session, creditor_id=creditor_id, source_file_id=file_id,
                                       invoices=accepted, generate_references=profile.reference_kind)
        if profile.send_own_pdf:
            _keep_creditor_pdfs(rt, creditor_id, batch, accepted, ids)
        report_path = None
        if errors:
            # written while holding the claim, so a racing worker can never overwrite it
            report_path = store.write(ERRORS, f"{file_id:06d}-{name}.errors.csv",
                                      error_report_csv(errors, delimiter=_report_delimiter(profile)))
        files.finish_file(
            session, file_id, state="processed", rows_total=rows_total, rows_accepted=len(ids),
            rows_rejected=rejected_rows, archive_path=archived, error_report_path=report_path,
        )
        events.record_event(session, kind="file.processed", entity="file", entity_id=file_id,
                            creditor_id=creditor_id, accepted=len(ids), rejected=rejected_rows,
                            error_report=report_path)
    archived = _move_or_none(store, INBOX, name, ARCHIVE, archive_name(file_id, name)) or archived
    return FileOutcome(creditor_id, name, "processed", file_id, rows_total, len(ids), rejected_rows,
                       error_report=report_path, archived_to=archived, invoice_ids=ids)


def _keep_creditor_pdfs(rt: Runtime, creditor_id: str, batch: InvoiceBatch, accepted: pl.DataFrame,
                        ids: list[int]) -> None:
    """The first PDF each accepted UBL invoice embeds, kept under its invoice id for the render step
    (which sends it instead of ours). Written before the ledger commit: should that fail, the files
    name ids nobody holds, and a later run renders our own PDF; nothing else depends on them."""
    attachments = batch.extra.get("attachments")
    if attachments is None or attachments.is_empty():
        return
    invoice_of_row = dict(zip(accepted["source_row"].to_list(), ids))
    kept: set[int] = set()
    for row in attachments.iter_rows(named=True):
        invoice_id = invoice_of_row.get(row["source_row"])
        if invoice_id is None or invoice_id in kept or not row["content"].startswith(b"%PDF-"):
            continue
        path = rt.creditor_pdf_path(creditor_id, invoice_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, row["content"], overwrite=True)
        kept.add(invoice_id)


def _moved_by_a_racer(store, name: str) -> bool:
    """Does the inbox file go away within the store's claim grace?

    A worker that won the claim moves the file to archive/ after the ledger commit. On S3 that move
    is a copy and then a delete, so for a moment the file is in the archive AND still in the inbox,
    which looks exactly like the creditor dropping it again; a racing poller must then not move it
    to errors/ with a "duplicate" report. A file that stays is a real second drop.
    """
    if not store.claim_grace:  # moves are renames: gone already, or `_move_or_none` will say so
        return False
    deadline = time.monotonic() + store.claim_grace
    while store.exists(INBOX, name):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _move_or_none(store, folder: str, name: str, to_folder: str, to_name: str) -> str | None:
    """Move; None when a racing worker moved the file first (the store says so, or it is gone)."""
    try:
        return store.move(folder, name, to_folder, to_name)
    except AlreadyClaimed:
        return None
    except (StoreError, FileNotFoundError):
        if not store.exists(folder, name):
            return None
        raise


def _report_delimiter(profile) -> str:
    return profile.csv.delimiter if profile.csv.delimiter not in ("auto",) else ";"


def _collectable(source: str, frame: pl.DataFrame):
    """Only euro invoices can be paid by SEPA transfer and EPC QR code; others go back to the creditor.

    The parsers read foreign-currency documents faithfully (a UBL invoice in SEK parses with a
    warning); refusing to collect them is intake's policy, not a parse error.
    """
    foreign = frame.filter(pl.col("currency") != COLLECTED_CURRENCY)
    errors = [
        RowError(source, row["source_row"], row["invoice_number"], "currency", UNSUPPORTED_CURRENCY,
                 f"{row['currency']} invoices cannot be collected: SEPA payments are in {COLLECTED_CURRENCY}")
        for row in foreign.select("source_row", "invoice_number", "currency").iter_rows(named=True)
    ]
    return frame.filter(pl.col("currency") == COLLECTED_CURRENCY), errors


def _drop_ledger_duplicates(session, creditor_id: str, source: str, frame: pl.DataFrame):
    """Rows whose invoice number or structured reference the ledger already holds are rejected."""
    if frame.is_empty():
        return frame, []
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
    kept = store.describe(ERRORS, archive_name(file_id, name))
    with rt.sessions.begin() as session:
        if not files.lock_unfinished_claim(session, file_id):
            return FileOutcome(creditor_id, name, "skipped", file_id, reason=TAKEN_ELSEWHERE)
        report_path = store.write(ERRORS, f"{file_id:06d}-{name}.errors.csv", report)
        files.finish_file(session, file_id, state="rejected", rows_total=0, rows_accepted=0, rows_rejected=0,
                          reason=f"{exc.code}: {exc.message}", archive_path=kept, error_report_path=report_path)
        events.record_event(session, kind="file.rejected", entity="file", entity_id=file_id,
                            creditor_id=creditor_id, code=exc.code, reason=exc.message)
    kept = _move_or_none(store, INBOX, name, ERRORS, archive_name(file_id, name)) or kept
    return FileOutcome(creditor_id, name, "rejected", file_id, reason=f"{exc.code}: {exc.message}",
                       error_report=report_path, archived_to=kept)


def _settle_earlier(rt: Runtime, creditor_id: str, name: str, file_id: int, state: str,
                    earlier_name: str, received) -> FileOutcome:
    """The ledger already knows these bytes: finish an interrupted move, or refuse a second drop."""
    store = rt.store_for(creditor_id)
    folder = ARCHIVE if state == "processed" else ERRORS
    target = archive_name(file_id, name)
    if name == earlier_name and not store.exists(folder, target):
        moved = _move_or_none(store, INBOX, name, folder, target)
        if moved is None:
            return FileOutcome(creditor_id, name, "skipped", file_id, reason=TAKEN_ELSEWHERE)
        return FileOutcome(creditor_id, name, "completed", file_id, archived_to=moved,
                           reason="an earlier run stored this file but had not archived it yet")
    if name == earlier_name and _moved_by_a_racer(store, name):
        return FileOutcome(creditor_id, name, "skipped", file_id, reason=TAKEN_ELSEWHERE)
    when = received.astimezone(BRUSSELS).strftime("%Y-%m-%d %H:%M") if received else "earlier"
    reason = f"identical to file #{file_id} received {when}: not processed again"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    # move first: of two workers seeing the same second drop, only the mover writes the report
    kept = _move_or_none(store, INBOX, name, ERRORS, f"duplicate-{stamp}-{name}")
    if kept is None:
        return FileOutcome(creditor_id, name, "skipped", file_id, reason=TAKEN_ELSEWHERE)
    report = error_report_csv([RowError(name, 0, None, "(file)", "duplicate_file", reason)])
    report_path = store.write(ERRORS, f"duplicate-{stamp}-{name}.errors.csv", report)
    with rt.sessions.begin() as session:
        events.record_event(session, kind="file.duplicate", entity="file", entity_id=file_id,
                            creditor_id=creditor_id, name=name, kept=kept)
    return FileOutcome(creditor_id, name, "duplicate", file_id, reason=reason, error_report=report_path,
                       archived_to=kept)
