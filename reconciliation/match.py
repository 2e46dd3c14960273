"""The matching cascade: bank credits -> open invoices, strongest evidence first.

Each stage sees only the movements no earlier stage resolved, so a payment is explained by the best
evidence it carries, and every stage is a handful of joins and regex extractions over the whole frame
(no Python loop over rows). Stages 1-5 book automatically; stage 6 only suggests.

The one rule that keeps automatic matching safe: a stage never chooses between candidates. When the
evidence of one movement points at several open invoices, the movement is booked only if its amount
pays all of them exactly (one payment for several invoices); otherwise it goes to the unmatched frame
with the candidates as a suggestion, and no later, weaker stage may overrule that. Several payments
for one invoice are fine: `allocate` caps them at the open balance and keeps the surplus as unapplied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from creditflow.reconciliation.normalise import (
    credit_movements,
    iban_key,
    name_tokens,
    ogm_candidates,
    prepare_invoices,
    reference_key,
    rf_candidates,
    text_key,
)

STAGE_NAMES: dict[int, str] = {
    1: "structured_reference",
    2: "reference_in_text",
    3: "end_to_end_id",
    4: "invoice_number_in_text",
    5: "iban_and_amount",
    6: "name_and_amount",
}
AUTO_STAGES = (1, 2, 3, 4, 5)

DEFAULT_NUMBER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9/_.-]{2,}"
"""Tokens tried as invoice numbers for a creditor without its own pattern (compared whole, >= 4 chars)."""

SUGGESTION_MIN_SCORE = 0.5
"""Stage 6 proposes an invoice only when at least half of the name tokens agree."""

MATCH_SCHEMA: dict[str, pl.DataType] = {
    "movement_key": pl.String,
    "invoice_id": pl.Int64,
    "stage": pl.Int8,
    "stage_name": pl.String,
    "confidence": pl.Float64,
    "reason": pl.String,
    "amount_cents": pl.Int64,  # money this movement directs to this invoice, before capping at open
    "auto": pl.Boolean,
    "paid_on": pl.Date,  # value date (booking date when absent): the invoice's paid date
}

UNMATCHED_SCHEMA: dict[str, pl.DataType] = {
    "movement_key": pl.String,
    "amount_cents": pl.Int64,
    "paid_on": pl.Date,
    "counterparty_name": pl.String,
    "communication": pl.String,
    "status": pl.String,  # "ambiguous" | "no_match"
    "reason": pl.String,
    "suggestion_invoice_ids": pl.List(pl.Int64),
    "suggestion_stage": pl.Int8,
    "suggestion_confidence": pl.Float64,
    "suggestion_reason": pl.String,
}

UNDO_SCHEMA: dict[str, pl.DataType] = {
    "movement_key": pl.String,  # the reversal / return debit
    "original_movement_key": pl.String,  # the credit it takes back, null when not found or unsure
    "amount_cents": pl.Int64,  # positive: how much money went back
    "return_reason": pl.String,
    "reason": pl.String,
}


@dataclass(frozen=True)
class MatchResult:
    """`matches`: automatic matches and stage-6 suggestions (auto False); `unmatched`: every credit
    not booked, with the best suggestion; `undo`: reversals the caller must undo allocations for."""

    matches: pl.DataFrame
    unmatched: pl.DataFrame
    undo: pl.DataFrame

    def auto(self) -> pl.DataFrame:
        return self.matches.filter(pl.col("auto"))


def match_movements(
    movements: pl.DataFrame,
    invoices: pl.DataFrame,
    *,
    number_patterns: Mapping[str, str] | None = None,
    known_ibans: pl.DataFrame | None = None,
    booked_movement_keys: pl.Series | list[str] | None = None,
    history: pl.DataFrame | None = None,
) -> MatchResult:
    """Run the cascade.

    movements: MOVEMENT_SCHEMA frame; an optional `creditor_id` column restricts each movement to
        that creditor's invoices (null: any creditor).
    invoices: open invoices (invoice_id, creditor_id, invoice_number, structured_reference,
        open_cents, due_date, issue_date, debtor_name, debtor_iban, customer_number; optional
        debtor_key). `open_cents` is the balance still open now.
    number_patterns: creditor_id -> regex of its invoice numbers (stage 4).
    known_ibans: extra (iban, debtor_key) pairs, e.g. accounts seen on earlier payments (stage 5).
    booked_movement_keys: movements already allocated earlier; they are left alone (idempotence).
    history: earlier movements, searched for the original credit of a reversal.
    """
    inv = prepare_invoices(invoices)
    credits = credit_movements(movements)
    pool = credits
    if booked_movement_keys is not None:
        booked = pl.Series("movement_key", booked_movement_keys, dtype=pl.String)
        pool = pool.filter(~pl.col("movement_key").is_in(booked.implode()))

    autos: list[pl.DataFrame] = []
    ambiguous: list[pl.DataFrame] = []
    spent = _Spent(autos)
    for stage in AUTO_STAGES:
        if pool.is_empty():
            break
        if stage == 5:
            auto, amb = _stage_iban_amount(pool, inv, spent, known_ibans)
        else:
            cands = _CANDIDATES[stage](pool, inv, number_patterns or {})
            auto, amb = _resolve(stage, cands, spent)
        if not auto.is_empty():
            autos.append(auto)
        if not amb.is_empty():
            ambiguous.append(amb)
        done = pl.concat([auto.select("movement_key"), amb.select("movement_key")]).unique()
        pool = pool.join(done, on="movement_key", how="anti")

    suggestions = _stage_name_amount(pool, inv, spent)
    matches = pl.concat(
        [_empty(MATCH_SCHEMA), *(a.select(MATCH_SCHEMA.keys()) for a in autos), suggestions],
        how="vertical_relaxed",
    ).cast(MATCH_SCHEMA)
    unmatched = _unmatched(credits, pool, ambiguous, suggestions)
    undo = reversals(movements, history)
    return MatchResult(matches=matches, unmatched=unmatched, undo=undo)


class _Spent:
    """Money the automatic matches so far direct to each invoice. Only the few frames that compare
    amounts (ambiguous candidates, stages 5 and 6) need the balance left, so it is joined onto those
    instead of rewriting the million-row invoice frame after every stage."""

    def __init__(self, autos: list[pl.DataFrame]):
        self._autos = autos  # the caller's list: it grows as stages book
        self._table: pl.DataFrame | None = None
        self._counted = 0

    def remaining(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` (with invoice_id, open_cents) plus `remaining` = open_cents - money spent."""
        if not self._autos:
            return frame.with_columns(remaining=pl.col("open_cents"))
        if self._counted != len(self._autos):
            new = [a.select("invoice_id", spent="amount_cents") for a in self._autos[self._counted:]]
            parts = ([self._table] if self._table is not None else []) + new
            self._table = pl.concat(parts).group_by("invoice_id").agg(pl.col("spent").sum())
            self._counted = len(self._autos)
        return frame.join(self._table, on="invoice_id", how="left", maintain_order="left").with_columns(
            remaining=pl.col("open_cents") - pl.col("spent").fill_null(0)
        ).drop("spent")


# -- candidates per stage ---------------------------------------------------------------------------
# Each returns one row per (movement, invoice) with the evidence, a confidence and the facts the
# resolution needs, carried through the stage's own join so no further join on a million rows is due.

_POOL_FACTS = ["movement_key", "mov_creditor", "cents", "paid_on"]
_INV_FACTS = ["invoice_id", "inv_creditor", "invoice_number", "open_cents", "age_rank"]
_CANDIDATE_COLS = ["movement_key", "invoice_id", "evidence", "confidence", "cents", "paid_on",
                   "invoice_number", "open_cents", "age_rank"]


def _creditor_ok() -> pl.Expr:
    return pl.col("mov_creditor").is_null() | (pl.col("mov_creditor") == pl.col("inv_creditor"))


def _show_reference(ref: pl.Expr) -> pl.Expr:
    """+++123/4567/89012+++ for an OGM, the compact form for anything else."""
    return (
        pl.when(ref.str.contains(r"^[0-9]{12}$"))
        .then(pl.concat_str(pl.lit("+++"), ref.str.slice(0, 3), pl.lit("/"), ref.str.slice(3, 4),
                            pl.lit("/"), ref.str.slice(7, 5), pl.lit("+++")))
        .otherwise(ref)
    )


def _stage1(pool: pl.DataFrame, inv: pl.DataFrame, _patterns) -> pl.DataFrame:
    keyed = pool.filter(pl.col("ref_key").is_not_null()).select(*_POOL_FACTS, "ref_key", "communication_type")
    joined = keyed.join(inv.select("ref_key", *_INV_FACTS).drop_nulls("ref_key"), on="ref_key")
    joined = joined.filter(_creditor_ok())
    reconstructed = pl.col("communication_type") == "102"
    return joined.with_columns(
        evidence=pl.concat_str(
            pl.lit("structured reference "), _show_reference(pl.col("ref_key")),
            pl.lit(" ("), pl.col("communication_type").fill_null("structured"), pl.lit(")"),
        ),
        confidence=pl.when(reconstructed.fill_null(False)).then(0.98).otherwise(1.0),
    ).select(_CANDIDATE_COLS)


def _stage2(pool: pl.DataFrame, inv: pl.DataFrame, _patterns) -> pl.DataFrame:
    texts = pool.filter(pl.col("communication").is_not_null()).select("movement_key", "communication")
    refs = inv.select("ref_key").drop_nulls()
    rfs = refs.filter(pl.col("ref_key").str.starts_with("RF"))["ref_key"]
    found = pl.concat([ogm_candidates(texts), rf_candidates(texts, rfs)], how="vertical_relaxed")
    joined = (
        found.join(pool.select(_POOL_FACTS), on="movement_key")
        .join(inv.select("ref_key", *_INV_FACTS).drop_nulls("ref_key"), left_on="cand", right_on="ref_key")
        .filter(_creditor_ok())
    )
    return joined.with_columns(
        evidence=pl.concat_str(pl.lit("reference "), _show_reference(pl.col("cand")),
                               pl.lit(" typed in the communication")),
        confidence=pl.lit(0.95),
    ).select(_CANDIDATE_COLS)


def _stage3(pool: pl.DataFrame, inv: pl.DataFrame, _patterns) -> pl.DataFrame:
    keyed = pool.select(*_POOL_FACTS, e2e_key=text_key(pl.col("end_to_end_id"))).drop_nulls("e2e_key")
    as_number = keyed.join(
        inv.select("number_key", *_INV_FACTS).drop_nulls("number_key"),
        left_on="e2e_key", right_on="number_key",
    ).with_columns(what=pl.lit("invoice number"))
    as_reference = keyed.with_columns(rk=reference_key(pl.col("e2e_key"))).join(
        inv.select("ref_key", *_INV_FACTS).drop_nulls("ref_key"),
        left_on="rk", right_on="ref_key",
    ).drop("rk").with_columns(what=pl.lit("payment reference"))
    joined = pl.concat([as_number, as_reference]).filter(_creditor_ok())
    return joined.with_columns(
        evidence=pl.concat_str(pl.lit("end-to-end id "), pl.col("e2e_key"), pl.lit(" is the "),
                               pl.col("what")),
        confidence=pl.lit(0.95),
    ).select(_CANDIDATE_COLS).unique(["movement_key", "invoice_id"], keep="first", maintain_order=True)


def _stage4(pool: pl.DataFrame, inv: pl.DataFrame, patterns: Mapping[str, str]) -> pl.DataFrame:
    texts = pool.filter(pl.col("communication").is_not_null()).select(*_POOL_FACTS, "communication")
    numbers = inv.select("number_key", *_INV_FACTS).drop_nulls("number_key")
    found: list[pl.DataFrame] = []
    for creditor, pattern in patterns.items():
        scope = texts.filter(pl.col("mov_creditor").is_null() | (pl.col("mov_creditor") == creditor))
        hits = _numbers_in(scope, pattern).join(
            numbers.filter(pl.col("inv_creditor") == creditor), on="number_key"
        )
        found.append(hits)
    # Creditors without a pattern: whole tokens of 4+ characters compared with their numbers.
    others = numbers.filter(~pl.col("inv_creditor").is_in(list(patterns)) | pl.col("inv_creditor").is_null())
    if not others.is_empty():
        tokens = _numbers_in(texts, DEFAULT_NUMBER_PATTERN).with_columns(
            number_key=pl.col("number_key").str.strip_chars_end("./_-")
        ).filter(pl.col("number_key").str.len_chars() >= 4)
        found.append(tokens.join(others, on="number_key").filter(_creditor_ok()))
    if not found:
        return _empty_candidates()
    joined = pl.concat(found, how="vertical_relaxed")
    return joined.with_columns(
        evidence=pl.concat_str(pl.lit("invoice number "), pl.col("number_key"),
                               pl.lit(" named in the communication")),
        confidence=pl.lit(0.9),
    ).select(_CANDIDATE_COLS).unique(["movement_key", "invoice_id"], keep="first", maintain_order=True)


def _numbers_in(texts: pl.DataFrame, pattern: str) -> pl.DataFrame:
    cols = [c for c in _POOL_FACTS if c in texts.columns]
    return (
        texts.select(*cols, number_key=pl.col("communication").str.extract_all(pattern))
        .explode("number_key")
        .drop_nulls("number_key")
        .with_columns(number_key=text_key(pl.col("number_key")))
        .drop_nulls("number_key")
        .unique()
    )


_CANDIDATES = {1: _stage1, 2: _stage2, 3: _stage3, 4: _stage4}


def _empty_candidates() -> pl.DataFrame:
    return pl.DataFrame(schema={"movement_key": pl.String, "invoice_id": pl.Int64, "evidence": pl.String,
                                "confidence": pl.Float64, "cents": pl.Int64, "paid_on": pl.Date,
                                "invoice_number": pl.String, "open_cents": pl.Int64, "age_rank": pl.Int64})


# -- resolution: one candidate, or several that the amount pays exactly; else ambiguous -------------


def _resolve(stage: int, cands: pl.DataFrame, spent: _Spent):
    """Split a stage's candidates into automatic matches and ambiguous movements.

    Nearly every movement has one candidate: those take the fast path with no window function.
    Only the few movements with several candidates are grouped and compared with balances.
    """
    if cands.is_empty():
        return _empty(MATCH_SCHEMA), _empty_ambiguous()
    several = cands["movement_key"].is_duplicated()
    singles = cands.filter(~several).with_columns(n=pl.lit(1, pl.Int64), remaining=pl.col("cents"))
    multi = spent.remaining(cands.filter(several))
    per_mov = pl.col("movement_key")
    # With several candidates, invoices already settled earlier in this run are no longer in play.
    any_open = (pl.col("remaining") > 0).any().over(per_mov)
    multi = multi.filter(~any_open | (pl.col("remaining") > 0)).with_columns(
        n=pl.len().over(per_mov).cast(pl.Int64),
        total=pl.col("remaining").sum().over(per_mov),
    )
    exact_group = (pl.col("n") == 1) | (pl.col("cents") == pl.col("total"))
    grouped = multi.filter(exact_group).drop("total").sort(["movement_key", "age_rank"])
    rows = pl.concat([singles, grouped], how="diagonal_relaxed")
    amb = multi.filter(~exact_group)

    single = pl.col("n") == 1
    reason = pl.concat_str(pl.col("evidence"), pl.lit(": invoice "), pl.col("invoice_number").fill_null("?"))
    group_note = pl.concat_str(pl.lit(" (one of "), pl.col("n").cast(pl.String),
                               pl.lit(" open invoices it pays exactly, oldest first)"))
    auto = rows.select(
        "movement_key",
        "invoice_id",
        stage=pl.lit(stage, pl.Int8),
        stage_name=pl.lit(STAGE_NAMES[stage]),
        confidence=pl.when(single).then(pl.col("confidence")).otherwise(pl.col("confidence") - 0.05),
        reason=pl.when(single).then(reason).otherwise(pl.concat_str(reason, group_note)),
        amount_cents=pl.when(single).then(pl.col("cents")).otherwise(pl.col("remaining")),
        auto=pl.lit(True),
        paid_on="paid_on",
    )
    if amb.is_empty():
        return auto, _empty_ambiguous()
    amb = amb.group_by("movement_key", maintain_order=True).agg(
        suggestion_invoice_ids=pl.col("invoice_id").sort_by("age_rank"),
        reason=pl.concat_str(
            pl.lit(f"ambiguous at stage {stage} ({STAGE_NAMES[stage]}): "),
            pl.col("evidence").first(),
            pl.lit(" fits "), pl.len().cast(pl.String),
            pl.lit(" open invoices ("), pl.col("invoice_number").fill_null("?").sort_by("age_rank").str.join(", "),
            pl.lit(") whose open balances total "), pl.col("total").first().cast(pl.String),
            pl.lit(" cents, not the paid "), pl.col("cents").first().cast(pl.String),
            pl.lit(" cents; not guessing"),
        ),
        suggestion_confidence=pl.col("confidence").first() * 0.5,
    ).with_columns(suggestion_stage=pl.lit(stage, pl.Int8))
    return auto, amb


def _stage_iban_amount(pool: pl.DataFrame, inv: pl.DataFrame, spent: _Spent, known_ibans: pl.DataFrame | None):
    """Stage 5: the payer's account belongs to a debtor and the amount equals one of that debtor's
    open balances, or the oldest-first running total of several. One fitting option books; two or
    more (equal balances, several debtors on one account) or one invoice claimed by two payments of
    this stage is ambiguous."""
    payers = pool.select(*_POOL_FACTS, iban_key=iban_key(pl.col("counterparty_account"))).drop_nulls("iban_key")
    seen = payers.select("iban_key").unique()
    accounts = inv.select("iban_key", "debtor_key").join(seen, on="iban_key", how="semi")
    if known_ibans is not None and not known_ibans.is_empty():
        extra = known_ibans.select(iban_key(pl.col("iban")).alias("iban_key"), pl.col("debtor_key").cast(pl.String))
        accounts = pl.concat([accounts, extra.join(seen, on="iban_key", how="semi")])
    accounts = accounts.drop_nulls().unique()
    payer_debtors = payers.join(accounts, on="iban_key")
    if payer_debtors.is_empty():
        return _empty(MATCH_SCHEMA), _empty_ambiguous()
    debtors_inv = inv.join(payer_debtors.select("debtor_key").unique(), on="debtor_key", how="semi")
    open_inv = (
        spent.remaining(debtors_inv)
        .filter(pl.col("remaining") > 0)
        .sort("age_rank")
        .with_columns(
            running=pl.col("remaining").cum_sum().over("debtor_key"),
            position=pl.int_range(pl.len()).over("debtor_key") + 1,
        )
    )
    base = ["movement_key", "cents", "paid_on", "iban_key", "debtor_key", "mov_creditor"]
    singles = payer_debtors.select(base).join(
        open_inv, left_on=["debtor_key", "cents"], right_on=["debtor_key", "remaining"]
    ).filter(_creditor_ok()).select(*base, "invoice_id", option=pl.col("invoice_id").cast(pl.String))
    prefixes = payer_debtors.select(base).join(
        open_inv.filter(pl.col("position") >= 2), left_on=["debtor_key", "cents"],
        right_on=["debtor_key", "running"],
    ).filter(_creditor_ok()).select(*base, "position", option=pl.concat_str(
        pl.col("debtor_key"), pl.lit("#"), pl.col("position").cast(pl.String)))
    options = pl.concat([singles.select("movement_key", "option"), prefixes.select("movement_key", "option")])
    counts = options.group_by("movement_key").agg(n_options=pl.col("option").n_unique())
    one = counts.filter(pl.col("n_options") == 1).select("movement_key")
    many = counts.filter(pl.col("n_options") > 1).select("movement_key")

    take_single = singles.join(one, on="movement_key", how="semi").join(
        open_inv.select("invoice_id", "invoice_number", "remaining", "age_rank"), on="invoice_id"
    ).with_columns(k=pl.lit(1, pl.Int64))
    chosen_prefix = prefixes.join(one, on="movement_key", how="semi")
    take_prefix = chosen_prefix.join(
        open_inv.select("debtor_key", "invoice_id", "invoice_number", "remaining", "age_rank", "position",
                        pl.col("position").alias("p")),
        on="debtor_key",
    ).filter(pl.col("p") <= pl.col("position")).select(
        *base, "invoice_id", "invoice_number", "remaining", "age_rank", k=pl.col("position").cast(pl.Int64)
    )
    chosen = pl.concat([take_single.select(take_prefix.columns), take_prefix])
    # One invoice claimed by two payments of this stage: which one is it? Not ours to guess.
    claimed = chosen.group_by("invoice_id").agg(n=pl.col("movement_key").n_unique())
    contested = chosen.join(claimed.filter(pl.col("n") > 1), on="invoice_id", how="semi").select("movement_key").unique()
    chosen = chosen.join(contested, on="movement_key", how="anti")

    single = pl.col("k") == 1
    auto = chosen.sort(["movement_key", "age_rank"]).select(
        "movement_key",
        "invoice_id",
        stage=pl.lit(5, pl.Int8),
        stage_name=pl.lit(STAGE_NAMES[5]),
        confidence=pl.when(single).then(0.85).otherwise(0.8),
        reason=pl.concat_str(
            pl.lit("account "), pl.col("iban_key"), pl.lit(" is known for the debtor; "),
            pl.when(single)
            .then(pl.lit("amount equals the open balance of invoice "))
            .otherwise(pl.concat_str(pl.lit("amount equals the oldest "), pl.col("k").cast(pl.String),
                                     pl.lit(" open invoices together: invoice "))),
            pl.col("invoice_number").fill_null("?"),
        ),
        amount_cents=pl.when(single).then(pl.col("cents")).otherwise(pl.col("remaining")),
        auto=pl.lit(True),
        paid_on="paid_on",
    )
    amb_keys = pl.concat([many, contested]).unique()
    amb_rows = pl.concat([
        singles.select("movement_key", "invoice_id"),
        prefixes.join(open_inv.select("debtor_key", "invoice_id", p="position"), on="debtor_key")
        .filter(pl.col("p") <= pl.col("position")).select("movement_key", "invoice_id"),
    ]).join(amb_keys, on="movement_key", how="semi").unique().join(
        open_inv.select("invoice_id", "invoice_number", "age_rank"), on="invoice_id"
    )
    amb = amb_rows.group_by("movement_key", maintain_order=True).agg(
        suggestion_invoice_ids=pl.col("invoice_id").sort_by("age_rank"),
        reason=pl.concat_str(
            pl.lit("ambiguous at stage 5 (iban_and_amount): the account and amount fit more than one "
                   "choice or another payment claims the same invoice ("),
            pl.col("invoice_number").fill_null("?").sort_by("age_rank").str.join(", "),
            pl.lit("); not guessing"),
        ),
        suggestion_confidence=pl.lit(0.4),
    ).with_columns(suggestion_stage=pl.lit(5, pl.Int8))
    return auto, amb


def _stage_name_amount(pool: pl.DataFrame, inv: pl.DataFrame, spent: _Spent) -> pl.DataFrame:
    """Stage 6, a suggestion only: same amount as an open balance and a similar payer name."""
    payers = pool.filter(pl.col("counterparty_name").is_not_null()).select(
        "movement_key", "cents", "paid_on", "counterparty_name", "mov_creditor"
    )
    if payers.is_empty():
        return _empty(MATCH_SCHEMA)
    payers = payers.with_columns(tok_m=name_tokens(pl.col("counterparty_name")).list.unique())
    # Narrow by the balance open before this run first (cheap), then by what is left of it now.
    # A suggestion for a balance first cut by a partial payment in this same run is not offered.
    amounts = payers.select(remaining=pl.col("cents")).unique()
    candidates = inv.join(amounts, left_on="open_cents", right_on="remaining", how="semi")
    candidates = spent.remaining(candidates).join(amounts, on="remaining", how="semi")
    names = candidates.select(pl.col("debtor_name").unique()).with_columns(
        tok_i=name_tokens(pl.col("debtor_name")).list.unique()
    )
    candidates = candidates.join(names, on="debtor_name", how="left")
    pairs = payers.join(candidates, left_on="cents", right_on="remaining").filter(_creditor_ok())
    common = pl.col("tok_m").list.set_intersection("tok_i").list.len()
    union = pl.col("tok_m").list.set_union("tok_i").list.len()
    scored = pairs.with_columns(score=pl.when(union > 0).then(common / union).otherwise(0.0)).filter(
        pl.col("score") >= SUGGESTION_MIN_SCORE
    )
    best = scored.sort(["score", "age_rank"], descending=[True, False]).unique("movement_key", keep="first")
    return best.select(
        "movement_key",
        "invoice_id",
        stage=pl.lit(6, pl.Int8),
        stage_name=pl.lit(STAGE_NAMES[6]),
        confidence=(pl.col("score") * 0.6).round(3),
        reason=pl.concat_str(
            pl.lit("suggestion only: amount equals the open balance of invoice "),
            pl.col("invoice_number").fill_null("?"),
            pl.lit(" and payer name "), pl.col("counterparty_name").str.strip_chars(),
            pl.lit(" resembles debtor "), pl.col("debtor_name"),
            pl.lit(" (name score "), pl.col("score").round(2).cast(pl.String), pl.lit(")"),
        ),
        amount_cents="cents",
        auto=pl.lit(False),
        paid_on="paid_on",
    ).sort("movement_key")


def _unmatched(
    credits: pl.DataFrame, pool: pl.DataFrame, ambiguous: list[pl.DataFrame], suggestions: pl.DataFrame
) -> pl.DataFrame:
    """Every credit not booked: the ambiguous ones with their candidates, the rest with the stage-6
    suggestion when there is one."""
    info = ["movement_key", "cents", "paid_on", "counterparty_name", "communication"]
    amb = pl.concat([_empty_ambiguous(), *ambiguous], how="diagonal_relaxed")
    amb = amb.join(credits.select(info), on="movement_key", how="left").with_columns(
        status=pl.lit("ambiguous"), suggestion_reason=pl.col("reason")
    )
    sugg = suggestions.select(
        "movement_key",
        suggestion_invoice_ids=pl.concat_list(pl.col("invoice_id")),
        suggestion_stage=pl.col("stage"),
        suggestion_confidence=pl.col("confidence"),
        suggestion_reason=pl.col("reason"),
    )
    rest = pool.select(info).join(sugg, on="movement_key", how="left").with_columns(
        status=pl.lit("no_match"),
        reason=pl.lit("no reference, end-to-end id, invoice number or known account fits an open invoice"),
    )
    out = pl.concat([rest, amb], how="diagonal_relaxed").rename({"cents": "amount_cents"})
    return out.select(UNMATCHED_SCHEMA.keys()).cast(UNMATCHED_SCHEMA).sort("movement_key")


def _empty(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


def _empty_ambiguous() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "movement_key": pl.String, "suggestion_invoice_ids": pl.List(pl.Int64), "reason": pl.String,
        "suggestion_confidence": pl.Float64, "suggestion_stage": pl.Int8,
    })


# -- reversals ------------------------------------------------------------------------------------


def reversals(movements: pl.DataFrame, history: pl.DataFrame | None = None) -> pl.DataFrame:
    """Debits that take a credit back (reversal, return, reject), with the credit they undo.

    The original is the one earlier credit with the same end-to-end id (amount not above it), or
    else with the same structured reference and amount. Several candidates: original left null,
    because undoing the wrong allocation is worse than asking.
    """
    backs = movements.filter(
        (pl.col("amount_milli") < 0)
        & (pl.col("is_reversal").fill_null(False) | pl.col("return_reason").is_not_null())
        & ~pl.col("has_details").fill_null(False)
    ).select(
        "movement_key",
        cents=(-pl.col("amount_milli")).floordiv(10),
        on=pl.coalesce("booking_date", "value_date"),
        e2e=text_key(pl.col("end_to_end_id")),
        ref=reference_key(pl.col("structured_reference")),
        return_reason="return_reason",
    )
    if backs.is_empty():
        return _empty(UNDO_SCHEMA)
    pool = movements if history is None else pl.concat([history, movements], how="diagonal_relaxed")
    # Normalising a million ids is the cost; only credits sharing a raw id or reference with a
    # reversal can be its original (banks repeat the original's ids on the return).
    raw = movements.join(backs.select("movement_key"), on="movement_key", how="semi")
    related = pl.col("end_to_end_id").is_in(raw["end_to_end_id"].drop_nulls().implode()) | pl.col(
        "structured_reference"
    ).is_in(raw["structured_reference"].drop_nulls().implode())
    credits = pool.filter(
        (pl.col("amount_milli") > 0) & ~pl.col("is_reversal").fill_null(False)
        & ~pl.col("has_details").fill_null(False) & related
    ).select(
        original_movement_key="movement_key",
        orig_cents=pl.col("amount_milli").floordiv(10),
        orig_on=pl.coalesce("booking_date", "value_date"),
        e2e=text_key(pl.col("end_to_end_id")),
        ref=reference_key(pl.col("structured_reference")),
    )
    by_e2e = backs.drop_nulls("e2e").join(credits.drop("ref").drop_nulls("e2e"), on="e2e").filter(
        pl.col("cents") <= pl.col("orig_cents")
    ).with_columns(via=pl.lit("end-to-end id"))
    by_ref = backs.drop_nulls("ref").join(credits.drop("e2e").drop_nulls("ref"), on="ref").filter(
        pl.col("cents") == pl.col("orig_cents")
    ).with_columns(via=pl.lit("structured reference and amount"))
    by_ref = by_ref.join(by_e2e.select("movement_key"), on="movement_key", how="anti")
    found = pl.concat([by_e2e.select(by_ref.columns), by_ref], how="diagonal_relaxed").filter(
        pl.col("orig_on").is_null() | pl.col("on").is_null() | (pl.col("orig_on") <= pl.col("on"))
    )
    n = found.group_by("movement_key").agg(
        n=pl.len(), original=pl.col("original_movement_key").first(), via=pl.col("via").first()
    )
    out = backs.join(n, on="movement_key", how="left")
    return out.select(
        "movement_key",
        original_movement_key=pl.when(pl.col("n") == 1).then("original"),
        amount_cents="cents",
        return_reason="return_reason",
        reason=pl.when(pl.col("n") == 1)
        .then(pl.concat_str(pl.lit("reverses movement "), pl.col("original"), pl.lit(" (same "),
                            pl.col("via"), pl.lit("); undo its allocations")))
        .when(pl.col("n") > 1)
        .then(pl.concat_str(pl.lit("reversal fits "), pl.col("n").cast(pl.String),
                            pl.lit(" earlier credits; review by hand")))
        .otherwise(pl.lit("reversal of an unknown credit; review by hand")),
    ).cast(UNDO_SCHEMA)
