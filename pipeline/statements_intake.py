"""Bank statements (CODA, CAMT.053) that arrive through a creditor's drop zone.

Creditors often forward their bank's statement files to the same inbox as their billing files. They
must not be read as billing files, and they must be collected exactly once, like billing files: the
intake claims them in the ledger (source_files, format coda/camt053, state claimed) and moves them to
the area's `statements/` folder. The reconciliation flow then asks for what is waiting, reads it and
reports back, which archives the original:

    for pending in pending_statements(rt):
        taken = take_statement(rt, pending)            # bytes + ledger file id, checksum verified
        ... parse taken.data, reconcile ...
        finish_statement(rt, taken.file_id, ok=True)   # or ok=False, reason="..." -> errors/

The ledger row stays "claimed" until finish_statement, so a reconciliation run that dies midway
finds the same statement again on its next run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from creditflow.ledger import events, files
from creditflow.ledger.models import Event, FileState, SourceFile
from creditflow.parsers.camt053 import FORMAT as CAMT053, Camt053Parser
from creditflow.parsers.coda import FORMAT as CODA, CodaParser
from creditflow.pipeline.runtime import Runtime
from creditflow.stores.base import ARCHIVE, ERRORS, INBOX, AlreadyClaimed, StoreError

STATEMENTS = "statements"
STATEMENT_FORMATS = frozenset({CODA, CAMT053})
PARKED_EVENT = "statement.parked"


class StatementChanged(StoreError):
    """The parked statement's bytes differ from what was claimed: someone edited it in the area."""


@dataclass(frozen=True)
class PendingStatement:
    file_id: int
    creditor_id: str
    name: str  # as received
    format: str  # "coda" | "camt053"
    stored_name: str  # its name in statements/
    received_at: datetime


@dataclass(frozen=True)
class TakenStatement:
    file_id: int | None  # None: a file given by path, not taken from a drop zone
    creditor_id: str | None
    name: str
    format: str | None
    data: bytes


def statement_format(name: str, head: bytes) -> str | None:
    """"coda" or "camt053" when a statement parser recognises the file's first bytes, else None."""
    if CodaParser().identify(name, head):
        return CODA
    if Camt053Parser().identify(name, head):
        return CAMT053
    return None


def parked_name(file_id: int, name: str) -> str:
    return f"{file_id:06d}-{name}"


def park_statement(rt: Runtime, creditor_id: str, name: str, file_id: int) -> str | None:
    """Move a claimed statement from inbox/ to statements/; None when another worker moved it.

    Raises FileExistsError when statements/ already holds this file id (a second upload of the
    same bytes under the same name after it was parked): the caller treats it as a duplicate.
    """
    store = rt.store_for(creditor_id)
    target = parked_name(file_id, name)
    if store.exists(STATEMENTS, target):
        raise FileExistsError(store.describe(STATEMENTS, target))
    try:
        moved = store.move(INBOX, name, STATEMENTS, target)
    except AlreadyClaimed:
        return None
    except StoreError:
        if not store.exists(INBOX, name):
            return None
        raise
    with rt.sessions.begin() as session:
        events.record_event(session, kind=PARKED_EVENT, entity="file", entity_id=file_id,
                            creditor_id=creditor_id, name=name, stored_name=target, location=moved)
    return moved


def pending_statements(rt: Runtime, creditor_id: str | None = None) -> list[PendingStatement]:
    """Statements parked in statements/ and not finished yet, oldest first."""
    query = (
        select(SourceFile, Event.detail)
        .join(Event, (Event.entity == "file") & (Event.kind == PARKED_EVENT)
              & (Event.entity_id == SourceFile.id.cast(Event.entity_id.type)))
        .where(SourceFile.format.in_(sorted(STATEMENT_FORMATS)),
               SourceFile.state == FileState.CLAIMED.value)
        .order_by(SourceFile.id)
    )
    if creditor_id is not None:
        query = query.where(SourceFile.creditor_id == creditor_id)
    found: dict[int, PendingStatement] = {}
    with rt.sessions() as session:
        for source, detail in session.execute(query):
            if source.creditor_id not in rt.profiles:
                continue  # a creditor removed from the profiles: its area is not ours to read now
            found.setdefault(source.id, PendingStatement(
                source.id, source.creditor_id, source.name, source.format,
                detail.get("stored_name") or parked_name(source.id, source.name), source.received_at,
            ))
    return list(found.values())


def take_statement(rt: Runtime, pending: PendingStatement) -> TakenStatement:
    """The statement's bytes, checked against the checksum claimed at intake."""
    data = rt.store_for(pending.creditor_id).read(STATEMENTS, pending.stored_name)
    with rt.sessions() as session:
        expected = session.get(SourceFile, pending.file_id).sha256
    if hashlib.sha256(data).hexdigest() != expected:
        raise StatementChanged(f"{pending.creditor_id}/{STATEMENTS}/{pending.stored_name} changed "
                               f"since it was received (file #{pending.file_id})")
    return TakenStatement(pending.file_id, pending.creditor_id, pending.name, pending.format, data)


def finish_statement(rt: Runtime, file_id: int, *, ok: bool = True, reason: str | None = None,
                     report_path: str | None = None) -> str | None:
    """Record the outcome and move the statement to archive/ (ok) or errors/ (not ok).

    Returns where the file now is, or None when another worker finished it first.
    """
    from creditflow.pipeline.intake import _take_unfinished  # intake imports this module

    with rt.sessions() as session:
        source = session.get(SourceFile, file_id)
        if source is None or source.format not in STATEMENT_FORMATS:
            raise LookupError(f"no statement file with id {file_id}")
        creditor_id, name = source.creditor_id, source.name
    store = rt.store_for(creditor_id)
    stored = parked_name(file_id, name)
    folder = ARCHIVE if ok else ERRORS
    with rt.sessions.begin() as session:
        if not _take_unfinished(session, file_id):
            return None
        files.finish_file(session, file_id, state="processed" if ok else "rejected", reason=reason,
                          archive_path=store.describe(folder, stored), error_report_path=report_path)
        events.record_event(session, kind="statement.finished", entity="file", entity_id=file_id,
                            creditor_id=creditor_id, ok=ok, reason=reason)
    try:
        return store.move(STATEMENTS, stored, folder, stored)
    except AlreadyClaimed:
        return None


def collect_statements(rt: Runtime) -> list[TakenStatement]:
    """Every parked statement, read and checked; one that changed since intake is finished as an error."""
    taken = []
    for pending in pending_statements(rt):
        try:
            taken.append(take_statement(rt, pending))
        except StatementChanged as exc:
            finish_statement(rt, pending.file_id, ok=False, reason=str(exc))
    return taken


def finish_night(rt: Runtime, taken: list[TakenStatement], file_errors: list[tuple[str, str]]) -> list[str]:
    """After the night's import: archive what was read, move what could not be read to errors/."""
    failed = dict(file_errors)
    moved = []
    for statement in taken:
        reason = failed.get(statement.name)
        where = finish_statement(rt, statement.file_id, ok=reason is None, reason=reason)
        if where:
            moved.append(where)
    return moved
