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

Our own bank areas (Settings.bank_areas, default `<dropzone>/_bank`) receive statement files for any
creditor's account, e.g. a bank's nightly CODA delivery under a multi-account mandate.
`ingest_bank_file` reads the account from the file's header (CODA record 1, CAMT Stmt/Acct/Id),
finds the creditor whose profile IBAN it is, claims the file under that creditor (the claim needs
one: source_files.creditor_id, UNIQUE(creditor_id, sha256)) and parks it in the bank area's own
statements/ folder: the bank's files never enter a creditor's area, which the creditor can read.
The parked event names the area, so take/finish read and move the file where it is. A file that is
not a statement, or whose accounts belong to no creditor, is moved to the bank area's errors/ with a
report; nothing is claimed for it (there is no creditor to claim it under).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree
from sqlalchemy import select

from creditflow.config.settings import BRUSSELS
from creditflow.ledger import events, files
from creditflow.ledger.models import Event, FileState, SourceFile
from creditflow.parsers.camt053 import FORMAT as CAMT053, Camt053Parser
from creditflow.parsers.coda import FORMAT as CODA, CodaParser
from creditflow.parsers.errors import RowError
from creditflow.pipeline.error_report import error_report_csv
from creditflow.pipeline.runtime import Runtime
from creditflow.stores.base import ARCHIVE, ERRORS, INBOX, AlreadyClaimed, StoreError, safe_name

STATEMENTS = "statements"
STATEMENT_FORMATS = frozenset({CODA, CAMT053})
PARKED_EVENT = "statement.parked"
NOT_A_STATEMENT = "not_a_statement"
UNKNOWN_ACCOUNT = "unknown_account"


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
    area: str | None = None  # the bank area ("_bank") it was parked in; None: the creditor's area

    @property
    def where(self) -> str:
        """The area holding the file: a bank area name or the creditor id (Runtime.area_store)."""
        return self.area or self.creditor_id


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


def park_statement(rt: Runtime, creditor_id: str, name: str, file_id: int, *,
                   area: str | None = None) -> str | None:
    """Move a claimed statement from inbox/ to statements/ of its area (the creditor's, or the bank
    area `area`); None when another worker moved it.

    The parked event is recorded before the move: a crash between the two leaves the file in the
    inbox, where the next intake run parks it again (one event per file) and `take_statement` can
    still find it. The other order would leave a parked file nobody looks for.

    Raises FileExistsError when statements/ already holds this file id (a second upload of the
    same bytes under the same name after it was parked): the caller treats it as a duplicate.
    """
    store = rt.area_store(area or creditor_id)
    target = parked_name(file_id, name)
    if store.exists(STATEMENTS, target):
        raise FileExistsError(store.describe(STATEMENTS, target))
    with rt.sessions.begin() as session:
        if _parked_detail(session, file_id) is None:
            extra = {"area": area} if area else {}
            events.record_event(session, kind=PARKED_EVENT, entity="file", entity_id=file_id,
                                creditor_id=creditor_id, name=name, stored_name=target,
                                location=store.describe(STATEMENTS, target), **extra)
    from creditflow.pipeline.intake import _move_or_none  # intake imports this module

    return _move_or_none(store, INBOX, name, STATEMENTS, target)


def _parked_detail(session, file_id: int) -> dict | None:
    return session.scalars(
        select(Event.detail).where(Event.entity == "file", Event.entity_id == str(file_id),
                                   Event.kind == PARKED_EVENT).order_by(Event.id).limit(1)
    ).first()


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
        areas = set(rt.bank_area_names())
        for source, detail in session.execute(query):
            if source.creditor_id not in rt.profiles:
                continue  # a creditor removed from the profiles: its area is not ours to read now
            area = detail.get("area")
            if area is not None and area not in areas:
                continue  # a bank area removed from the settings: not ours to read now
            found.setdefault(source.id, PendingStatement(
                source.id, source.creditor_id, source.name, source.format,
                detail.get("stored_name") or parked_name(source.id, source.name), source.received_at,
                area,
            ))
    return list(found.values())


def take_statement(rt: Runtime, pending: PendingStatement) -> TakenStatement:
    """The statement's bytes, checked against the checksum claimed at intake.

    A file still in the inbox (intake recorded the park, then stopped before the move) is parked
    now, once its bytes are the claimed ones.
    """
    store = rt.area_store(pending.where)
    with rt.sessions() as session:
        expected = session.get(SourceFile, pending.file_id).sha256
    if not store.exists(STATEMENTS, pending.stored_name) and store.exists(INBOX, pending.name):
        if hashlib.sha256(store.read(INBOX, pending.name)).hexdigest() == expected:
            try:
                store.move(INBOX, pending.name, STATEMENTS, pending.stored_name)
            except AlreadyClaimed:
                pass  # an intake run parked it meanwhile
    data = store.read(STATEMENTS, pending.stored_name)
    if hashlib.sha256(data).hexdigest() != expected:
        raise StatementChanged(f"{pending.where}/{STATEMENTS}/{pending.stored_name} changed "
                               f"since it was received (file #{pending.file_id})")
    return TakenStatement(pending.file_id, pending.creditor_id, pending.name, pending.format, data)


def finish_statement(rt: Runtime, file_id: int, *, ok: bool = True, reason: str | None = None,
                     report_path: str | None = None) -> str | None:
    """Record the outcome and move the statement to archive/ (ok) or errors/ (not ok).

    Returns where the file now is, or None when another worker finished it first.
    """
    with rt.sessions() as session:
        source = session.get(SourceFile, file_id)
        if source is None or source.format not in STATEMENT_FORMATS:
            raise LookupError(f"no statement file with id {file_id}")
        creditor_id, name = source.creditor_id, source.name
        parked = _parked_detail(session, file_id) or {}
    store = rt.area_store(parked.get("area") or creditor_id)
    stored = parked.get("stored_name") or parked_name(file_id, name)
    folder = ARCHIVE if ok else ERRORS
    with rt.sessions.begin() as session:
        if not files.lock_unfinished_claim(session, file_id):
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


# -- our bank areas ---------------------------------------------------------------------------------


def statement_accounts(kind: str, data: bytes) -> list[str]:
    """The accounts a statement file is about, compact and upper-case, in file order, without repeats.

    Read from the headers only, not the movements: CODA record 1 (its account zone by structure
    code: 2 = Belgian IBAN, 3 = foreign IBAN, 0/1 and CODA v1 = a plain account number), CAMT.053
    Stmt/Acct/Id (IBAN, else Othr/Id). Streamed, so a large file costs no tree in memory; an
    unreadable tail keeps the accounts found before it (the parser reports the damage later).
    """
    found = _coda_accounts(data) if kind == CODA else _camt_accounts(data)
    return list(dict.fromkeys(a for a in found if a))


def _compact(raw: str) -> str:
    return "".join(raw.split()).upper()


def _coda_accounts(data: bytes) -> list[str]:
    accounts, v1 = [], False
    for raw in data.splitlines():
        line = raw.decode("latin-1")
        if line.startswith("0"):
            v1 = len(line) >= 128 and line[127] == "1"
        elif line.startswith("1") and len(line) >= 42:
            structure, zone = line[1], line[5:42]
            if v1 or structure == "0":
                accounts.append(_compact(zone[0:12]))
            else:
                accounts.append(_compact(zone[0:31] if structure == "2" else zone[0:34]))
    return accounts


def _camt_accounts(data: bytes) -> list[str]:
    accounts = []
    events_ = etree.iterparse(io.BytesIO(data), events=("end",), resolve_entities=False,
                              no_network=True, huge_tree=False, load_dtd=False)
    try:
        for _, element in events_:
            if not isinstance(element.tag, str):
                continue
            local = etree.QName(element).localname
            if local == "Acct":
                parent = element.getparent()
                if parent is not None and etree.QName(parent).localname in ("Stmt", "Rpt", "Ntfctn"):
                    account = (element.findtext("{*}Id/{*}IBAN")
                               or element.findtext("{*}Id/{*}Othr/{*}Id") or "")
                    accounts.append(_compact(account))
            elif local == "Ntry":
                element.clear()  # the movements are the parser's business; keep memory flat
    except etree.XMLSyntaxError:
        pass
    return accounts


def ingest_bank_file(rt: Runtime, area: str, name: str):
    """Take one file from bank area `area`'s inbox: a statement for a creditor's account is claimed
    under that creditor and parked in the area's statements/; anything else goes to its errors/.

    Returns an intake.FileOutcome whose creditor_id is the owning creditor (the area name when
    there is none): "statement", "duplicate", "rejected" or "skipped" (another worker has it).
    """
    from creditflow.pipeline import intake  # intake imports this module
    from creditflow.pipeline.reconcile import creditor_by_account

    store = rt.bank_store(area)
    name = safe_name(name)
    try:
        data = store.read(INBOX, name)
    except (StoreError, FileNotFoundError):
        if not store.exists(INBOX, name):  # listed a moment ago: another worker moved it
            return intake.FileOutcome(area, name, "skipped", reason=intake.TAKEN_ELSEWHERE)
        raise
    kind = statement_format(name, data[:4096])
    if kind is None:
        return _refuse(rt, area, name, area, NOT_A_STATEMENT,
                       f"bank area {area} takes only bank statement files (CODA, CAMT.053); "
                       "this file is neither. Billing files go to the creditor's own inbox")
    accounts = statement_accounts(kind, data)
    owners = creditor_by_account(rt)
    creditors = list(dict.fromkeys(owners[a] for a in accounts if a in owners))
    if not creditors:
        listed = ", ".join(accounts) if accounts else "none found in the file's headers"
        return _refuse(rt, area, name, area, UNKNOWN_ACCOUNT,
                       f"{kind} statement for account(s) {listed}: no creditor profile has this IBAN; "
                       "add the profile (or correct its iban) and drop the file again")
    # A file covering several creditors' accounts is claimed under the first; reconciliation
    # still assigns each statement in it to its own account's creditor.
    creditor_id = creditors[0]
    sha256 = hashlib.sha256(data).hexdigest()
    inbox_path = store.describe(INBOX, name)
    with rt.sessions.begin() as session:
        claimed = files.claim_file(session, creditor_id=creditor_id, store=store.kind, path=inbox_path,
                                   name=name, size=len(data), sha256=sha256, format=kind)
        if claimed is not None:
            file_id, received = claimed.id, claimed.received_at
            events.record_event(session, kind="file.claimed", entity="file", entity_id=file_id,
                                creditor_id=creditor_id, name=name, sha256=sha256, size=len(data),
                                area=area, accounts=accounts, creditors=creditors)
            resume = True
        else:
            earlier = files.find_file(session, creditor_id, sha256)
            file_id, received = earlier.id, earlier.received_at
            # the same drop, claimed by a run that stopped before parking it: park it now
            resume = earlier.state == FileState.CLAIMED.value and earlier.path == inbox_path
    if resume:
        try:
            parked = park_statement(rt, creditor_id, name, file_id, area=area)
        except FileExistsError:
            parked = ""
        if parked is None:
            return intake.FileOutcome(creditor_id, name, "skipped", file_id, reason=intake.TAKEN_ELSEWHERE)
        if parked:
            return intake.FileOutcome(creditor_id, name, "statement", file_id, archived_to=parked,
                                      reason=f"{kind} bank statement from bank area {area}, "
                                      "kept for reconciliation")
    when = received.astimezone(BRUSSELS).strftime("%Y-%m-%d %H:%M") if received else "earlier"
    return _refuse(rt, area, name, creditor_id, "duplicate_file",
                   f"identical to file #{file_id} received {when}: not processed again",
                   file_id=file_id, state="duplicate", prefix="duplicate-")


def _refuse(rt: Runtime, area: str, name: str, owner: str, code: str, reason: str, *,
            file_id: int | None = None, state: str = "rejected", prefix: str = ""):
    """Move the file to the bank area's errors/ with a report beside it.

    Move first: of two workers refusing the same file, only the one that moved it writes the report.
    """
    from creditflow.pipeline import intake

    store = rt.bank_store(area)
    kept_name = f"{prefix}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{name}"
    kept = intake._move_or_none(store, INBOX, name, ERRORS, kept_name)
    if kept is None:
        return intake.FileOutcome(owner, name, "skipped", file_id, reason=intake.TAKEN_ELSEWHERE)
    report = error_report_csv([RowError(name, 0, None, "(file)", code, reason)])
    report_path = store.write(ERRORS, f"{kept_name}.errors.csv", report)
    with rt.sessions.begin() as session:
        events.record_event(session, kind="file.duplicate" if state == "duplicate" else "file.refused",
                            entity="file" if file_id else "inbox",
                            entity_id=file_id or intake._seen_key(area, name),
                            creditor_id=intake._event_creditor(owner),
                            area=area, name=name, code=code, reason=reason, kept=kept)
    return intake.FileOutcome(owner, name, state, file_id, reason=f"{code}: {reason}",
                              error_report=report_path, archived_to=kept)
