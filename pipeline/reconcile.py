"""The nightly reconciliation without Prefect: statements in, payments on invoices, reports out.

Steps, each safe to repeat:

1. parse each statement file (CODA or CAMT.053, by `identify`);
2. import every statement and movement once (by stable key; what was seen before is skipped and
   reported), checking continuity per account against the previous statement in the ledger;
3. match the movements no night has concluded on yet against the ledger's invoices with the
   creditor's invoice-number pattern; reversals find the credit they take back;
4. book allocations (ON CONFLICT DO NOTHING), undo what reversals returned, recompute the states of
   the touched invoices from all their allocations;
5. build and deliver the reports per creditor (pipeline/finance_reports.py, built by reconciliation/reports.py).

Re-running the night on the same statements imports nothing, books nothing and delivers a report
with the same idempotency key (not sent again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl
from sqlalchemy import select

from creditflow.config.settings import BRUSSELS
from creditflow.ledger import payments
from creditflow.ledger.models import BankMovement
from creditflow.parsers.camt053 import Camt053Parser
from creditflow.parsers.coda import CodaParser
from creditflow.parsers.errors import ParseError
from creditflow.parsers.statements import MOVEMENT_SCHEMA, StatementBatch
from creditflow.pipeline.runtime import Runtime
from creditflow.reconciliation import STAGE_NAMES, MatchResult, allocate_matches, invoice_states, match_movements

UNMATCHED_STATUSES = ("ambiguous", "no_match")



# -- 1. parse ---------------------------------------------------------------------------------------


@dataclass
class ParsedFile:
    name: str
    sha256: str
    batch: StatementBatch | None
    error: str | None = None


def parse_statement_file(name: str, data: bytes) -> ParsedFile:
    """CODA or CAMT.053, whichever identifies the file; an unreadable file is kept with its error."""
    sha = hashlib.sha256(data).hexdigest()
    head = data[:4096]
    parsers = [p for p in (CodaParser(), Camt053Parser()) if p.identify(name, head)]
    if len(parsers) != 1:
        why = "not a CODA or CAMT.053 statement" if not parsers else "claimed by both CODA and CAMT parsers"
        return ParsedFile(name, sha, None, why)
    try:
        return ParsedFile(name, sha, parsers[0].parse(data, source=name))
    except ParseError as exc:
        return ParsedFile(name, sha, None, str(exc))


# -- 2. import --------------------------------------------------------------------------------------


@dataclass
class StatementImport:
    file: str
    statement_key: str
    account: str
    creditor_id: str | None
    sequence_number: str | None
    new_balance_date: date | None
    imported: bool  # False: seen before, skipped
    new_movements: int
    skipped_movements: int
    issues: list[str] = field(default_factory=list)  # continuity problems (gaps, balance breaks)


@dataclass
class ImportReport:
    statements: list[StatementImport] = field(default_factory=list)
    file_errors: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    parse_warnings: list[str] = field(default_factory=list)
    movement_keys: list[str] = field(default_factory=list)  # every movement of the night's statements
    new_movement_keys: list[str] = field(default_factory=list)

    @property
    def statement_keys(self) -> list[str]:
        return [s.statement_key for s in self.statements]

    @property
    def issues(self) -> list[str]:
        return [f"{s.file} {s.statement_key}: {issue}" for s in self.statements for issue in s.issues]


def creditor_by_account(rt: Runtime) -> dict[str, str]:
    """Compact IBAN -> creditor id: a statement of a creditor's own account is that creditor's."""
    return {p.iban.replace(" ", "").upper(): p.id for p in rt.profiles.values()}


def continuity_issues(previous, statement: Mapping) -> list[str]:
    """What breaks the chain from `previous` (ledger row or None) to `statement` (dict).

    CODA numbers its statements per account 001, 002, ... (restarting in a new year); CAMT sequence
    numbers are not reliably consecutive across banks, so only CODA gets the gap check. Both get the
    balance check: the old balance must be the previous statement's new balance.
    """
    if previous is None:
        return []
    issues = []
    seq, prev_seq = statement.get("sequence_number"), previous.sequence_number
    if statement.get("format") == "coda" and seq and prev_seq and seq.isdigit() and prev_seq.isdigit():
        expected = int(prev_seq) + 1
        new_year = (statement.get("new_balance_date") and previous.new_balance_date
                    and statement["new_balance_date"].year != previous.new_balance_date.year)
        if int(seq) != expected and not (new_year and int(seq) in (0, 1)):
            issues.append(f"sequence gap: statement {seq} follows {prev_seq} (expected {expected:03d})")
    old, prev_new = statement.get("old_balance_milli"), previous.new_balance_milli
    if old is not None and prev_new is not None and old != prev_new:
        issues.append(
            f"balance discontinuity: old balance {_milli(old)} differs from the new balance "
            f"{_milli(prev_new)} of statement {previous.sequence_number} ({previous.statement_key})"
        )
    return issues


def _milli(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 1000}.{abs(value) % 1000:03d}"


def import_statements(rt: Runtime, files: Iterable[ParsedFile]) -> ImportReport:
    """Import every statement of the parsed files, oldest first per account, in one transaction."""
    report = ImportReport()
    accounts = creditor_by_account(rt)
    pending: list[tuple[ParsedFile, dict]] = []
    for parsed in files:
        if parsed.batch is None:
            report.file_errors.append((parsed.name, parsed.error or "unreadable"))
            continue
        report.parse_warnings += [f"{parsed.name}: {w}" for w in parsed.batch.warnings]
        pending += [(parsed, row) for row in parsed.batch.statements.to_dicts()]
    pending.sort(key=lambda p: (p[1]["account_number"] or "", p[1]["new_balance_date"] or date.min,
                                p[1]["sequence_number"] or ""))
    with rt.sessions.begin() as session:
        for parsed, row in pending:
            key = row["statement_key"]
            creditor = accounts.get((row["account_iban"] or "").upper())
            account = row["account_number"] or row["account_iban"] or "?"
            already = session.scalar(select(payments.BankStatement.id).where(
                payments.BankStatement.statement_key == key))
            issues = []
            if already is None:
                issues = continuity_issues(payments.previous_statement(session, account, before=row), row)
            outcome = payments.import_statement(
                session, row, parsed.batch.movements, creditor_id=creditor, source_name=parsed.name)
            keys = parsed.batch.movements.filter(pl.col("statement_key") == key)["movement_key"].to_list()
            report.movement_keys += keys
            report.new_movement_keys += outcome.new_movements
            report.statements.append(StatementImport(
                file=parsed.name, statement_key=key, account=account, creditor_id=creditor,
                sequence_number=row["sequence_number"], new_balance_date=row["new_balance_date"],
                imported=bool(outcome.new_statements), new_movements=len(outcome.new_movements),
                skipped_movements=len(outcome.skipped_movements), issues=issues,
            ))
            if issues:
                from creditflow.ledger.events import record_event

                record_event(session, kind="statement.continuity", entity="statement", entity_id=key[:100],
                             creditor_id=creditor, issues=issues, file=parsed.name)
    return report


# -- 3. match ---------------------------------------------------------------------------------------


def search_pattern(pattern: str) -> str:
    """A profile's invoice-number pattern is written to validate a whole number (^...$); to find
    numbers inside a communication the anchors become word boundaries."""
    core = pattern.removeprefix("^").removesuffix("$")
    return rf"\b(?:{core})\b"


def number_patterns(profiles: Mapping) -> dict[str, str]:
    return {cid: search_pattern(p.invoice_number_pattern) for cid, p in profiles.items()
            if p.invoice_number_pattern}


@dataclass
class NightMatch:
    movements: pl.DataFrame  # the pool: MOVEMENT_SCHEMA + creditor_id
    result: MatchResult
    allocations: pl.DataFrame  # ALLOCATION_SCHEMA rows not booked yet
    invoices: pl.DataFrame


def match_pool(movements: pl.DataFrame, invoices: pl.DataFrame, patterns: Mapping[str, str], *,
               booked: Iterable[str] = (), history: pl.DataFrame | None = None) -> NightMatch:
    """Pure: the cascade and the allocations for a pool of movements (used by the night and the
    dry run alike, so the preview shows exactly what the night would book)."""
    booked = list(booked)
    result = match_movements(movements, invoices, number_patterns=patterns,
                             booked_movement_keys=booked, history=history)
    existing = pl.DataFrame({"movement_key": booked}, schema={"movement_key": pl.String})
    allocations = allocate_matches(result.matches, invoices, existing=existing)
    return NightMatch(movements, result, allocations, invoices)


def match_night(rt: Runtime, report: ImportReport) -> NightMatch:
    """Every movement no night has concluded on yet (tonight's new ones, and any an interrupted
    night imported but did not book) against the ledger's invoices, settled ones included so that
    a second payment becomes unapplied cash.

    A movement is matched once: lines left ambiguous or unmatched stay so, with their suggestion,
    for finance to settle. Matching them again automatically on a later night would make the outcome
    depend on what else was paid in between, and re-running a night would then change the ledger.
    """
    with rt.sessions() as session:
        pool = payments.movements_frame(session, unmatched_yet=True)
        booked = payments.booked_movement_keys(session, pool["movement_key"].to_list())
        invoices = payments.open_invoices_frame(session, include_settled=True)
        history = _reversal_history(session, pool)
    movements = pool.select(*MOVEMENT_SCHEMA, "creditor_id")
    return match_pool(movements, invoices, number_patterns(rt.profiles), booked=booked, history=history)


def _reversal_history(session, pool: pl.DataFrame) -> pl.DataFrame | None:
    """Earlier credits that a reversal in the pool may take back (same end-to-end id or reference)."""
    backs = pool.filter((pl.col("amount_milli") < 0)
                        & (pl.col("is_reversal") | pl.col("return_reason").is_not_null()))
    if backs.is_empty():
        return None
    e2e = backs["end_to_end_id"].drop_nulls().to_list()
    refs = backs["structured_reference"].drop_nulls().to_list()
    keys = set(session.scalars(select(BankMovement.movement_key).where(
        BankMovement.amount_milli > 0,
        BankMovement.end_to_end_id.in_(e2e) | BankMovement.structured_reference.in_(refs))))
    if not keys:
        return None
    return payments.movements_frame(session, keys=keys).select(*MOVEMENT_SCHEMA)


# -- 4. book ----------------------------------------------------------------------------------------


@dataclass
class BookOutcome:
    allocations_booked: int = 0
    matched: int = 0
    unmatched: int = 0
    undone: int = 0
    unresolved_reversals: list[str] = field(default_factory=list)
    invoices_updated: int = 0


def match_rows(night: NightMatch) -> list[dict]:
    """Per movement of the pool: what matching concluded, as stored on the movement row."""
    result = night.result
    auto = result.auto().group_by("movement_key", maintain_order=True).agg(
        match_stage=pl.col("stage").first().cast(pl.Int64),
        match_confidence=pl.col("confidence").min(),
        match_reason=pl.col("reason").str.join("; "),
    ).with_columns(match_status=pl.lit("matched"), suggested_invoice_ids=pl.lit(None, pl.List(pl.Int64)))
    unmatched = result.unmatched.select(
        "movement_key", match_status="status",
        match_stage=pl.col("suggestion_stage").cast(pl.Int64),
        match_confidence="suggestion_confidence",
        match_reason=pl.when(pl.col("suggestion_reason").is_not_null() & (pl.col("status") == "no_match"))
        .then(pl.concat_str(pl.col("reason"), pl.lit("; best suggestion: "), pl.col("suggestion_reason")))
        .otherwise(pl.col("reason")),
        suggested_invoice_ids="suggestion_invoice_ids",
    )
    mov = night.movements
    others = mov.join(pl.concat([auto.select("movement_key"), unmatched.select("movement_key")]),
                      on="movement_key", how="anti").select(
        "movement_key",
        match_status=pl.when(pl.col("has_details")).then(pl.lit("globalised"))
        .when((pl.col("amount_milli") < 0) & (pl.col("is_reversal") | pl.col("return_reason").is_not_null()))
        .then(pl.lit("reversal"))
        .when(pl.col("amount_milli") <= 0).then(pl.lit("debit"))
        .when(pl.col("is_reversal")).then(pl.lit("reversal"))
        .otherwise(pl.lit(None, pl.String)),
    )
    undo = result.undo.select("movement_key", "reason")
    others = others.join(undo, on="movement_key", how="left").rename({"reason": "match_reason"})
    rows = auto.to_dicts() + unmatched.to_dicts() + others.filter(pl.col("match_status").is_not_null()).to_dicts()
    return rows


def book_night(rt: Runtime, night: NightMatch) -> BookOutcome:
    """Write the night's matches, allocations, undos and invoice states in one transaction."""
    outcome = BookOutcome()
    rows = match_rows(night)
    stages = {r["movement_key"]: r["match_stage"] for r in rows if r["match_status"] == "matched"}
    outcome.matched = len(stages)
    outcome.unmatched = sum(1 for r in rows if r["match_status"] in UNMATCHED_STATUSES)
    touched: set[int] = set(night.allocations["invoice_id"].drop_nulls().to_list())
    with rt.sessions.begin() as session:
        outcome.allocations_booked = payments.book_allocations(session, night.allocations, stages=stages)
        payments.record_match_results(session, rows)
        for undo in night.result.undo.iter_rows(named=True):
            if undo["original_movement_key"] is None:
                outcome.unresolved_reversals.append(undo["movement_key"])
                continue
            paid_on = night.movements.filter(pl.col("movement_key") == undo["movement_key"]).select(
                pl.coalesce("value_date", "booking_date")).item(0, 0) if not night.movements.is_empty() else None
            ids = payments.undo_movement(session, reversal_key=undo["movement_key"],
                                         original_key=undo["original_movement_key"],
                                         amount_cents=undo["amount_cents"], paid_on=paid_on)
            outcome.undone += bool(ids)
            touched.update(ids)
        if touched:
            states = invoice_states(*payments.state_inputs(session, touched))
            outcome.invoices_updated = payments.apply_states(session, states)
    return outcome


# -- 5. the whole night -----------------------------------------------------------------------------


@dataclass
class NightSummary:
    imported: ImportReport
    booked: BookOutcome
    reports: list = field(default_factory=list)  # pipeline.finance_reports.DeliveredReport
    stage_counts: dict[str, int] = field(default_factory=dict)

    def markdown(self) -> str:
        imp, b = self.imported, self.booked
        new = sum(s.imported for s in imp.statements)
        lines = [
            "# Nightly reconciliation", "",
            "| figure | value |", "|---|---|",
            f"| statements imported | {new} |",
            f"| statements seen before (skipped) | {len(imp.statements) - new} |",
            f"| movements imported | {len(imp.new_movement_keys)} |",
            f"| movements seen before (skipped) | {sum(s.skipped_movements for s in imp.statements)} |",
            f"| payments matched | {b.matched} |",
            f"| lines left unmatched | {b.unmatched} |",
            f"| allocations booked | {b.allocations_booked} |",
            f"| reversals undone | {b.undone} |",
            f"| invoices updated | {b.invoices_updated} |",
        ]
        for stage, n in sorted(self.stage_counts.items()):
            lines.append(f"| matched at stage {stage} | {n} |")
        if imp.issues or imp.file_errors or b.unresolved_reversals:
            lines += ["", "## To look at", ""]
            lines += [f"- {issue}" for issue in imp.issues]
            lines += [f"- {name}: {why}" for name, why in imp.file_errors]
            lines += [f"- reversal {k}: original credit not found" for k in b.unresolved_reversals]
        if self.reports:
            lines += ["", "## Reports", ""]
            lines += [f"- {r.creditor_id}: {len(r.paths)} file(s){', e-mailed' if r.emailed else ''}"
                      for r in self.reports]
        return "\n".join(lines) + "\n"


def business_date(now: datetime | None = None) -> date:
    return (now or datetime.now(BRUSSELS)).astimezone(BRUSSELS).date()


def run_reconciliation(rt: Runtime, statements: list[tuple[str, bytes]], *, as_of: date | None = None,
                       deliver: bool = True) -> NightSummary:
    """The night, start to end: parse, import, match, book, report per creditor."""
    from creditflow.pipeline.finance_reports import deliver_report

    parsed = [parse_statement_file(name, data) for name, data in statements]
    imported = import_statements(rt, parsed)
    night = match_night(rt, imported)
    booked = book_night(rt, night)
    summary = NightSummary(imported, booked, stage_counts=stage_counts(night))
    if deliver:
        for creditor_id in report_creditors(rt, imported):
            summary.reports.append(deliver_report(rt, creditor_id, imported, as_of=as_of or business_date()))
    return summary


def stage_counts(night: NightMatch) -> dict[str, int]:
    auto = night.result.auto().unique("movement_key")
    counts = auto.group_by("stage").len()
    return {STAGE_NAMES[int(s)]: int(n) for s, n in counts.iter_rows()}


def report_creditors(rt: Runtime, imported: ImportReport) -> list[str]:
    """Creditors owning a statement account of the night, plus those whose invoices it paid."""
    found = {s.creditor_id for s in imported.statements if s.creditor_id}
    if imported.movement_keys:
        with rt.sessions() as session:
            allocs = payments.allocations_frame(session, movement_keys=imported.movement_keys)
        found.update(c for c in allocs["creditor_id"].drop_nulls().unique().to_list())
    return sorted(c for c in found if c in rt.profiles)


# -- the dry run ------------------------------------------------------------------------------------


def open_invoices_from_csv(data: bytes) -> pl.DataFrame:
    """An open-invoice CSV in the canonical columns (parsers/schema.py names; `open_cents` optional,
    `invoice_id` optional: row number) as the frame `match_movements` wants."""
    import io

    text = data.decode("utf-8-sig")
    delimiter = ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
    frame = pl.read_csv(io.StringIO(text), separator=delimiter, infer_schema=False)
    if "invoice_id" not in frame.columns:
        frame = frame.with_row_index("invoice_id", offset=1)
    cols = frame.columns
    if "amount_cents" not in cols:
        raise ValueError("the open-invoice CSV needs an amount_cents column (integer cents)")
    out = frame.with_columns(
        pl.col("invoice_id").cast(pl.Int64),
        pl.col("amount_cents").cast(pl.Int64),
        (pl.col("open_cents") if "open_cents" in cols else pl.col("amount_cents")).cast(pl.Int64).alias("open_cents"),
        *(pl.col(c).str.to_date() for c in ("issue_date", "due_date") if c in cols),
    )
    for col, dtype in payments.OPEN_INVOICE_SCHEMA.items():
        if col not in out.columns:
            out = out.with_columns(pl.lit(None, dtype).alias(col))
    return out


def preview(statements: list[tuple[str, bytes]], invoices: pl.DataFrame, patterns: Mapping[str, str],
            *, creditor_by_iban: Mapping[str, str] | None = None) -> dict:
    """Match statements against invoices, book nothing; one row per credit and reversal, plus totals.

    `totals.credits_cents` equals `matched_cents + unmatched_cents`: every credit of the statements
    is on one side or the other.
    """
    parsed = [parse_statement_file(name, data) for name, data in statements]
    batches = [p.batch for p in parsed if p.batch is not None]
    movements = pl.concat([pl.DataFrame(schema=MOVEMENT_SCHEMA), *(b.movements for b in batches)])
    owners = creditor_by_iban or {}
    movements = movements.with_columns(
        creditor_id=pl.col("account_iban").replace_strict(dict(owners), default=None, return_dtype=pl.String)
    )
    night = match_pool(movements, invoices, patterns)
    numbers = dict(zip(invoices["invoice_id"].to_list(), invoices["invoice_number"].to_list(), strict=True))
    rows = []
    matches = night.result.matches
    applied = night.allocations
    for m in matches.filter(pl.col("auto")).iter_rows(named=True):
        booked = applied.filter((pl.col("movement_key") == m["movement_key"]) & (pl.col("invoice_id") == m["invoice_id"]))
        rows.append({
            "movement_key": m["movement_key"], "status": "matched", "stage": m["stage"],
            "stage_name": m["stage_name"], "confidence": m["confidence"], "reason": m["reason"],
            "invoice_number": numbers.get(m["invoice_id"]), "amount_cents": m["amount_cents"],
            "applied_cents": int(booked.filter(pl.col("kind") == "invoice")["amount_cents"].sum()),
            "unapplied_cents": int(booked.filter(pl.col("kind") == "unapplied")["amount_cents"].sum()),
            "paid_on": m["paid_on"].isoformat() if m["paid_on"] else None,
        })
    for u in night.result.unmatched.iter_rows(named=True):
        ids = u["suggestion_invoice_ids"] or []
        rows.append({
            "movement_key": u["movement_key"], "status": u["status"], "stage": u["suggestion_stage"],
            "stage_name": STAGE_NAMES.get(u["suggestion_stage"]) if u["suggestion_stage"] else None,
            "confidence": u["suggestion_confidence"], "reason": u["suggestion_reason"] or u["reason"],
            "invoice_number": ", ".join(str(numbers.get(i)) for i in ids) or None,
            "amount_cents": u["amount_cents"], "applied_cents": 0, "unapplied_cents": 0,
            "paid_on": u["paid_on"].isoformat() if u["paid_on"] else None,
        })
    for r in night.result.undo.iter_rows(named=True):
        rows.append({"movement_key": r["movement_key"], "status": "reversal", "stage": None, "stage_name": None,
                     "confidence": None, "reason": r["reason"], "invoice_number": None,
                     "amount_cents": -r["amount_cents"], "applied_cents": 0, "unapplied_cents": 0,
                     "paid_on": None})
    matched_cents = int(_credit_cents(movements).join(
        matches.filter(pl.col("auto")).select("movement_key").unique(), on="movement_key")["cents"].sum())
    return {
        "files": [{"name": p.name, "error": p.error,
                   "statements": 0 if p.batch is None else p.batch.statements.height,
                   "movements": 0 if p.batch is None else p.batch.movements.height} for p in parsed],
        "movements": sorted(rows, key=lambda r: (r["movement_key"], r["invoice_number"] or "")),
        "totals": {
            "credits_cents": int(_credit_cents(movements)["cents"].sum()),
            "matched_cents": matched_cents,
            "unmatched_cents": int(night.result.unmatched["amount_cents"].sum()),
            "matched": int(matches.filter(pl.col("auto"))["movement_key"].n_unique()),
            "unmatched": night.result.unmatched.height,
            "reversals": night.result.undo.height,
            "statement_credit_cents": sum(int(b.statements["credit_milli"].sum() or 0) for b in batches) // 10,
        },
    }


def _credit_cents(movements: pl.DataFrame) -> pl.DataFrame:
    """The credits that can pay an invoice, in cents (reconciliation.normalise.credit_movements)."""
    from creditflow.reconciliation.normalise import credit_movements

    return credit_movements(movements).select("movement_key", "cents")
