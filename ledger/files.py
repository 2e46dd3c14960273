"""Creditors and received files: claim a file once, record how its processing ended.

A claim is a row keyed by UNIQUE(creditor_id, sha256), inserted with ON CONFLICT DO NOTHING: two
workers that see the same drop at once both try, the database lets exactly one win, and the loser
learns it from an empty RETURNING instead of an exception that would poison its transaction.
A worker finishing a claim first takes its row lock (`lock_unfinished_claim`): of two workers holding
the same unfinished claim, exactly one finishes the file.
Callers record the matching audit events (`events.record_event`) in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from creditflow.ledger.db import dialect_insert
from creditflow.ledger.models import Creditor, FileState, InvalidTransition, SourceFile, utcnow

FINAL_FILE_STATES = frozenset({FileState.PROCESSED, FileState.REJECTED, FileState.FAILED})
# A failed file (a crash, a full disk) may be finished again by a retry; the other outcomes stand.
_FINISHABLE_FROM = frozenset({FileState.CLAIMED, FileState.FAILED})
_FINISHABLE_VALUES = sorted(state.value for state in _FINISHABLE_FROM)  # for SQL IN (...)


def upsert_creditor(session: Session, *, id: str, legal_name: str, vat: str, iban: str, bic: str,
                    language: str) -> None:
    """Register a creditor from its profile, or bring its row up to date with the profile."""
    now = utcnow()
    values = dict(legal_name=legal_name, vat=vat, iban=iban, bic=bic, language=language)
    insert = dialect_insert(session)
    statement = insert(Creditor).values(id=id, created_at=now, updated_at=now, **values)
    changed = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[Creditor.id],
        set_={**{k: getattr(changed, k) for k in values}, "updated_at": now},
    )
    session.execute(statement)


def claim_file(session: Session, *, creditor_id: str, store: str, path: str, name: str, size: int,
               sha256: str, format: str | None = None) -> SourceFile | None:
    """Claim a received file; None when these bytes were claimed before (or by a concurrent worker).

    Commit right after claiming, before the work: the committed claim is what stops a second worker.
    """
    insert = dialect_insert(session)
    statement = (
        insert(SourceFile)
        .values(creditor_id=creditor_id, store=store, path=path, name=name, size=size,
                sha256=sha256, format=format, state=FileState.CLAIMED.value, rows_total=0,
                rows_accepted=0, rows_rejected=0, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=[SourceFile.creditor_id, SourceFile.sha256])
        .returning(SourceFile.id)
    )
    file_id = session.execute(statement).scalar_one_or_none()
    if file_id is None:
        return None
    return session.get(SourceFile, file_id)


def find_file(session: Session, creditor_id: str, sha256: str) -> SourceFile | None:
    return session.scalars(
        select(SourceFile).where(SourceFile.creditor_id == creditor_id, SourceFile.sha256 == sha256)
    ).one_or_none()


def lock_unfinished_claim(session: Session, file_id: int) -> bool:
    """Take the claim's row lock if the file can still be finished; False when someone finished it.

    Of two workers holding the same unfinished claim (a re-run after a crash, or a racer), the one
    that gets this lock finishes the file and the other steps back; call it first in the
    transaction that finishes the file. An UPDATE rather than SELECT ... FOR UPDATE: as the first
    statement of the transaction it takes SQLite's write lock (a read-then-write transaction could
    fail on a stale WAL snapshot), and on PostgreSQL it waits for a racer's row lock, then re-checks
    the state after that racer commits.
    """
    result = session.execute(
        update(SourceFile).where(SourceFile.id == file_id, SourceFile.state.in_(_FINISHABLE_VALUES))
        .values(state=SourceFile.state).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def finish_file(session: Session, file_id: int, *, state: str, rows_total: int = 0,
                rows_accepted: int = 0, rows_rejected: int = 0, reason: str | None = None,
                archive_path: str | None = None, error_report_path: str | None = None) -> SourceFile:
    """Record how a claimed file ended: processed, rejected (bad file) or failed (our side)."""
    state = FileState(state)
    if state not in FINAL_FILE_STATES:
        raise InvalidTransition(f"a file can be finished as processed, rejected or failed, not {state}")
    source_file = session.get(SourceFile, file_id, with_for_update=True)
    if source_file is None:
        raise LookupError(f"no source file with id {file_id}")
    if source_file.state not in _FINISHABLE_FROM:
        raise InvalidTransition(
            f"file {file_id} ({source_file.name}) is already {source_file.state}; it cannot become {state}"
        )
    source_file.state = state.value
    source_file.rows_total = rows_total
    source_file.rows_accepted = rows_accepted
    source_file.rows_rejected = rows_rejected
    source_file.reason = reason
    source_file.archive_path = archive_path
    source_file.error_report_path = error_report_path
    source_file.processed_at = utcnow()
    session.flush()
    return source_file


def unfinished_files(session: Session, creditor_id: str | None = None) -> list[SourceFile]:
    """Files claimed but never finished: what a crash left behind, oldest first."""
    query = select(SourceFile).where(SourceFile.state == FileState.CLAIMED.value)
    if creditor_id is not None:
        query = query.where(SourceFile.creditor_id == creditor_id)
    return list(session.scalars(query.order_by(SourceFile.id)))
