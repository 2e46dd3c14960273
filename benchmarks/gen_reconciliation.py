"""Open invoices and a bank statement that pays them in every way Belgian payers do, with the truth.

Why generated: real statements are private, and precision/recall can only be measured when we know
which invoice each movement was meant for. The mix follows what creditors receive: mostly the exact
OGM/RF in the structured field, then OGMs typed into free text (`+++…+++`, `***…***`, spaces, bare
digits), RF references typed in groups, invoice numbers in text (one or several per payment),
end-to-end ids we issued, partial and over-payments, two payments for one invoice, payments with only
a known account and an amount (one invoice or the oldest few), bank globalisations with details,
returns of earlier credits, data errors (two open invoices sharing one OGM), noise (random amounts,
invalid or unknown OGMs, numbers that look like invoice numbers but are not) and payers whose name
resembles a debtor's without any reference (a suggestion at best, never an automatic match).

Everything is vectorised (numpy + polars) so 1,000,000 invoices take seconds.

    python benchmarks/gen_reconciliation.py [invoices=10000] [seed=7]   # prints the category mix
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from creditflow.parsers.statements import MOVEMENT_SCHEMA

CREDITORS = ("acme", "bruxelco", "gentdata", "luikstaal")
NUMBER_FORMATS = {  # creditor -> (prefix, digits); luikstaal issues RF references, the others OGMs
    "acme": ("F2024-", 6),
    "bruxelco": ("INV", 7),
    "gentdata": ("GD/24/", 6),
    "luikstaal": ("LS-", 6),
}
NUMBER_PATTERNS = {
    "acme": r"F20\d{2}-\d{6}",
    "bruxelco": r"INV\d{7}",
    "gentdata": r"GD/\d{2}/\d{6}",
    "luikstaal": r"LS-\d{6}",
}
FIRST = ["Jan", "Marie", "Pieter", "Sofie", "Luc", "Anne", "Hélène", "Jürgen", "François", "Eline",
         "Koen", "Nathalie", "Bart", "Inès", "Wim", "Chloé", "Tom", "Lotte", "Noël", "Griet"]
LAST = ["Peeters", "Janssens", "Maes", "Dubois", "Lefèvre", "Müller", "Van den Broeck", "Claes",
        "Goossens", "Wouters", "De Smet", "Lambert", "Mertens", "Willems", "Dupont", "Çelik",
        "Vermeulen", "Leclercq", "D'Hondt", "Renard", "Jacobs", "Martens", "Hermans", "Desmet"]
WORDS = ["betaling", "paiement", "facture", "factuur", "merci", "bedankt", "huur", "voorschot",
         "solde", "rest", "maand", "dossier", "abonnement", "levering", "commande", "bestelling"]

# category -> share of the movements
MIX = {
    "exact_reference": 0.52,
    "reconstructed_102": 0.02,
    "partial": 0.03,
    "over": 0.02,
    "several_payments": 0.03,  # two movements per invoice
    "typed_reference": 0.08,
    "end_to_end": 0.03,
    "number_in_text": 0.06,
    "grouped_numbers": 0.02,
    "iban_amount": 0.04,
    "iban_prefix": 0.01,
    "shared_reference": 0.004,
    "noise": 0.06,
    "lookalike": 0.04,
}
EXPECTED_STAGE = {
    "exact_reference": 1, "reconstructed_102": 1, "partial": 1, "over": 1, "several_payments": 1,
    "typed_reference": 2, "end_to_end": 3, "number_in_text": 4, "grouped_numbers": 4,
    "repeat_payment": 1, "iban_amount": 5, "iban_prefix": 5, "shared_reference": 0, "noise": 0, "lookalike": 6,
    "globalisation_detail": 1, "globalisation_booking": 0, "reversal": 0,
}

TRUTH_SCHEMA = {
    "movement_key": pl.String,
    "category": pl.String,
    "expected_stage": pl.Int8,  # 0: must not be booked automatically
    "expect_auto": pl.Boolean,
    "truth_invoice_ids": pl.List(pl.Int64),  # the invoice(s) meant; for stage 6 the one to suggest
    "original_movement_key": pl.String,  # reversals: the credit they take back
}


@dataclass
class Dataset:
    invoices: pl.DataFrame
    movements: pl.DataFrame
    truth: pl.DataFrame
    number_patterns: dict[str, str]


def generate(n_invoices: int = 10_000, seed: int = 7, n_movements: int | None = None) -> Dataset:
    rng = np.random.default_rng(seed)
    invoices = _invoices(n_invoices, rng)
    n_mov = n_invoices if n_movements is None else n_movements
    counts = {cat: max(2, int(round(share * n_mov))) for cat, share in MIX.items()}

    # Debtors are reserved per kind so one category's payments never disturb another's truth:
    # stage-5/6 debtors receive exactly one payment, grouped debtors one grouped payment.
    debtors = invoices.group_by("debtor_key").agg(n=pl.len()).sort("debtor_key")
    # Small debtors first (random among equals), so reserving debtors does not eat the invoice pool.
    debtors = debtors.with_columns(r=pl.Series(rng.permutation(debtors.height))).sort(["n", "r"])
    debtor_order = debtors["debtor_key"].to_list()
    multi_order = debtors.filter(pl.col("n") >= 2)["debtor_key"].to_list()
    take_group = multi_order[: counts["grouped_numbers"]]
    take_prefix = multi_order[counts["grouped_numbers"]: counts["grouped_numbers"] + counts["iban_prefix"]]
    reserved = set(take_group) | set(take_prefix)
    rest = [d for d in debtor_order if d not in reserved]
    take_iban = rest[: counts["iban_amount"]]
    take_look = rest[counts["iban_amount"]: counts["iban_amount"] + counts["lookalike"]]
    reserved |= set(take_iban) | set(take_look)
    free_invoices = invoices.filter(~pl.col("debtor_key").is_in(list(reserved)))
    pool = free_invoices.sample(fraction=1.0, shuffle=True, seed=seed)

    parts: list[pl.DataFrame] = []
    cursor = 0

    def take(n: int) -> pl.DataFrame:
        nonlocal cursor
        chunk = pool.slice(cursor, n)
        cursor += n
        return chunk

    # Two open invoices sharing one reference (a data error): first the pairs, so their refs change.
    shared = take(2 * counts["shared_reference"])
    first, second = shared.slice(0, counts["shared_reference"]), shared.slice(counts["shared_reference"])
    second = second.with_columns(structured_reference=first["structured_reference"])
    invoices = invoices.update(second.select("invoice_id", "structured_reference"), on="invoice_id")
    pairs = pl.DataFrame({
        "a": first["invoice_id"], "b": second["invoice_id"],
        "ref": first["structured_reference"], "open_a": first["open_cents"], "open_b": second["open_cents"],
        "debtor_name": first["debtor_name"], "debtor_iban": first["debtor_iban"], "creditor_id": first["creditor_id"],
    })
    cover = pl.Series(rng.random(pairs.height) < 0.5)  # half pay both exactly (bookable), half one
    parts.append(_movements(
        pairs, "shared_reference",
        amount=pl.when(cover).then(pl.col("open_a") + pl.col("open_b")).otherwise(pl.col("open_a")),
        ref=pl.col("ref"),
        truth=pl.when(cover).then(pl.concat_list("a", "b")).otherwise(pl.concat_list("a")),
        expect_auto=cover, stage=pl.when(cover).then(1).otherwise(0),
    ))

    parts.append(_movements(take(counts["reconstructed_102"]), "reconstructed_102",
                            ref=pl.col("structured_reference"), ctype=pl.lit("102")))
    partial = take(counts["partial"])
    share = pl.Series(rng.uniform(0.2, 0.9, partial.height))
    parts.append(_movements(partial, "partial", ref=pl.col("structured_reference"),
                            amount=(pl.col("open_cents") * share).cast(pl.Int64).clip(lower_bound=1)))
    over = take(counts["over"])
    extra = pl.Series(rng.integers(1, 5_000, over.height))
    parts.append(_movements(over, "over", ref=pl.col("structured_reference"), amount=pl.col("open_cents") + extra))
    several = take(counts["several_payments"] // 2)
    half = (pl.col("open_cents") // 2).clip(lower_bound=1)
    parts.append(_movements(several, "several_payments", ref=pl.col("structured_reference"), amount=half))
    parts.append(_movements(several, "several_payments", ref=pl.col("structured_reference"),
                            amount=pl.col("open_cents") - half, suffix="b"))

    typed = take(counts["typed_reference"])
    parts.append(_movements(typed, "typed_reference", text=_typed_reference(typed, rng)))
    e2e = take(counts["end_to_end"])
    use_number = pl.Series(rng.random(e2e.height) < 0.5)
    parts.append(_movements(e2e, "end_to_end", text=pl.lit("online betaling"),
                            e2e=pl.when(use_number).then(pl.col("invoice_number"))
                            .otherwise(pl.col("structured_reference"))))
    numbered = take(counts["number_in_text"])
    lead = _pick(rng, ["Factuur ", "facture n° ", "Invoice ", "betaling ", "paiement fact. ", ""], numbered.height)
    tail = _pick(rng, ["", " bedankt", " merci", " + rest volgt", " (maart)"], numbered.height)
    partly = pl.Series(rng.random(numbered.height) < 0.2)
    parts.append(_movements(
        numbered, "number_in_text", text=pl.concat_str(lead, pl.col("invoice_number"), tail),
        amount=pl.when(partly).then(pl.col("open_cents") // 3 + 1).otherwise(pl.col("open_cents")),
    ))

    grouped = (
        invoices.filter(pl.col("debtor_key").is_in(take_group)).sort("age_rank")
        .group_by("debtor_key", maintain_order=True).head(3)
        .group_by("debtor_key", maintain_order=True).agg(
            ids=pl.col("invoice_id"), numbers=pl.col("invoice_number").str.join(", "),
            amount=pl.col("open_cents").sum(), debtor_name=pl.col("debtor_name").first(),
            debtor_iban=pl.col("debtor_iban").first(), creditor_id=pl.col("creditor_id").first(),
        )
    )
    parts.append(_movements(grouped, "grouped_numbers", text=pl.concat_str(pl.lit("Facturen "), pl.col("numbers")),
                            amount=pl.col("amount"), truth=pl.col("ids")))

    iban_inv = (
        invoices.filter(pl.col("debtor_key").is_in(take_iban) & pl.col("debtor_iban").is_not_null())
        .sample(fraction=1.0, shuffle=True, seed=seed).unique("debtor_key", keep="first")
    )
    parts.append(_movements(iban_inv, "iban_amount", text=_pick(rng, WORDS, iban_inv.height),
                            expect_auto=_iban_unique(invoices, iban_inv)))
    prefix = (
        invoices.filter(pl.col("debtor_key").is_in(take_prefix) & pl.col("debtor_iban").is_not_null())
        .sort("age_rank").group_by("debtor_key", maintain_order=True).head(2)
        .group_by("debtor_key", maintain_order=True).agg(
            ids=pl.col("invoice_id"), amount=pl.col("open_cents").sum(),
            debtor_name=pl.col("debtor_name").first(), debtor_iban=pl.col("debtor_iban").first(),
            creditor_id=pl.col("creditor_id").first(),
        )
    )
    parts.append(_movements(prefix, "iban_prefix", text=pl.lit("betaling openstaande facturen"),
                            amount=pl.col("amount"), truth=pl.col("ids"),
                            expect_auto=_prefix_unique(invoices, prefix)))

    look = (
        invoices.filter(pl.col("debtor_key").is_in(take_look))
        .sample(fraction=1.0, shuffle=True, seed=seed).unique("debtor_key", keep="first")
    )
    parts.append(_movements(look, "lookalike", text=_pick(rng, WORDS, look.height),
                            name=_name_variant(look, rng), account=pl.lit(None, pl.String),
                            expect_auto=pl.lit(False), stage=pl.lit(6)))

    # The bulk: the exact reference. When the fresh invoices run out (as many movements as
    # invoices), the rest pay an already-paid invoice again: several payments for one invoice.
    planned = sum(p.height for p in parts) + counts["noise"]
    wanted = max(0, n_mov - planned)
    fresh = take(min(wanted, pool.height - cursor))
    parts.append(_movements(fresh, "exact_reference", ref=pl.col("structured_reference")))
    if wanted > fresh.height and fresh.height:
        again = fresh.sample(n=wanted - fresh.height, with_replacement=True, seed=seed)
        parts.append(_movements(again, "repeat_payment", ref=pl.col("structured_reference"), suffix="r"))
    parts.append(_noise(counts["noise"], rng, n_invoices))

    movements = pl.concat(parts, how="vertical_relaxed")
    movements = movements.sample(fraction=1.0, shuffle=True, seed=seed + 1)
    movements = movements.with_columns(
        movement_key=pl.format("S{}:{}", pl.col("tag"), pl.int_range(pl.len()).cast(pl.String).str.zfill(8)),
        sequence=pl.int_range(pl.len(), dtype=pl.Int64) + 1,
    )
    movements = _globalise(movements, rng)
    movements, reversal_truth = _reversals(movements, rng)
    truth = pl.concat([
        movements.filter(pl.col("category") != "reversal").select(
            "movement_key", "category", pl.col("expected_stage").cast(pl.Int8), "expect_auto",
            "truth_invoice_ids", original_movement_key=pl.lit(None, pl.String),
        ),
        reversal_truth,
    ], how="vertical_relaxed").cast(TRUTH_SCHEMA)
    return Dataset(
        invoices=invoices.drop("age_rank"),
        movements=movements.select(MOVEMENT_SCHEMA.keys()).cast(MOVEMENT_SCHEMA),
        truth=truth,
        number_patterns=dict(NUMBER_PATTERNS),
    )


# -- invoices -------------------------------------------------------------------------------------


def _invoices(n: int, rng: np.random.Generator) -> pl.DataFrame:
    n_debtors = max(4, n // 3)
    debtor_of = np.sort(rng.integers(0, n_debtors, n))  # invoices of one debtor get adjacent ids
    creditor_of_debtor = rng.integers(0, len(CREDITORS), n_debtors)
    first = rng.integers(0, len(FIRST), n_debtors)
    last = rng.integers(0, len(LAST), n_debtors)
    company = rng.random(n_debtors) < 0.3
    debtor_names = [
        f"{LAST[b]} {'BV' if i % 2 else 'SRL'}" if c else f"{FIRST[a]} {LAST[b]}"
        for i, (a, b, c) in enumerate(zip(first, last, company))
    ]
    has_iban = rng.random(n_debtors) < 0.85
    ibans = _be_ibans(rng.choice(10**10, n_debtors, replace=False) + 10**10 * 0, rng)
    debtor_iban = np.where(has_iban, ibans, None)
    ids = np.arange(1, n + 1, dtype=np.int64)
    bases = (ids * 7_919_113 + 1_000_003) % 10**10  # distinct for ids < 10**10 (7919113 is coprime)
    creditor = np.array(CREDITORS)[creditor_of_debtor[debtor_of]]
    due = date(2024, 1, 1).toordinal() + rng.integers(0, 360, n)
    frame = pl.DataFrame({
        "invoice_id": ids,
        "creditor_id": creditor,
        "debtor_idx": debtor_of,
        "base": bases,
        "open_cents": rng.integers(1_000, 300_000, n),
        "due_ord": due,
    })
    per_creditor_seq = pl.int_range(pl.len()).over("creditor_id") + 1
    frame = frame.with_columns(seq=per_creditor_seq)
    prefix = pl.col("creditor_id").replace_strict({c: NUMBER_FORMATS[c][0] for c in CREDITORS})
    width = pl.col("creditor_id").replace_strict({c: NUMBER_FORMATS[c][1] for c in CREDITORS})
    number = pl.concat_str(prefix, pl.col("seq").cast(pl.String).str.zfill(6))
    number = pl.when(width == 7).then(pl.concat_str(prefix, pl.col("seq").cast(pl.String).str.zfill(7))).otherwise(number)
    ogm = _ogm(pl.col("base"))
    rf = _rf(pl.concat_str(pl.lit("LS"), pl.col("seq").cast(pl.String).str.zfill(6)))
    debtor_tbl = pl.DataFrame({
        "debtor_idx": np.arange(n_debtors),
        "debtor_name": debtor_names,
        "debtor_iban": pl.Series(debtor_iban, dtype=pl.String),
    })
    frame = frame.join(debtor_tbl, on="debtor_idx", how="left").with_columns(
        invoice_number=number,
        structured_reference=pl.when(pl.col("creditor_id") == "luikstaal").then(rf).otherwise(ogm),
        due_date=pl.col("due_ord").map_batches(_ordinals_to_dates, return_dtype=pl.Date),
        customer_number=pl.concat_str(pl.lit("C"), pl.col("debtor_idx").cast(pl.String).str.zfill(7)),
    ).with_columns(
        issue_date=pl.col("due_date") - pl.duration(days=30),
        amount_cents=pl.col("open_cents"),
        debtor_key=pl.concat_str("creditor_id", pl.lit("|c:"), "customer_number"),
    )
    frame = frame.sort(["due_date", "issue_date", "invoice_id"]).with_columns(
        age_rank=pl.int_range(pl.len(), dtype=pl.Int64)
    ).sort("invoice_id")
    return frame.select(
        "invoice_id", "creditor_id", "invoice_number", "structured_reference", "amount_cents", "open_cents",
        "due_date", "issue_date", "debtor_name", "debtor_iban", "customer_number", "debtor_key", "age_rank",
    )


def _ordinals_to_dates(s: pl.Series) -> pl.Series:
    epoch = date(1970, 1, 1).toordinal()
    return (s - epoch).cast(pl.Int32).cast(pl.Date)


def _ogm(base: pl.Expr) -> pl.Expr:
    check = base % 97
    check = pl.when(check == 0).then(97).otherwise(check)
    return pl.concat_str(base.cast(pl.String).str.zfill(10), check.cast(pl.String).str.zfill(2))


def _rf(body: pl.Expr) -> pl.Expr:
    """ISO 11649 for bodies 'LS' + 6 digits: L=21, S=28, so the number is 2128dddddd + RF00 (271500)."""
    numeric = pl.concat_str(pl.lit("2128"), body.str.slice(2), pl.lit("271500")).cast(pl.Int64)
    check = 98 - numeric % 97
    return pl.concat_str(pl.lit("RF"), check.cast(pl.String).str.zfill(2), body)


def _be_ibans(bases: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Valid Belgian IBANs: 10-digit BBAN base + mod-97 check, then the IBAN check digits."""
    bases = bases % 10**10
    check = bases % 97
    check = np.where(check == 0, 97, check)
    bban = bases * 100 + check  # 12 digits
    iban_check = 98 - (bban * 1_000_000 + 111_400) % 97  # "BE" = 1114, then "00"
    return np.array([f"BE{c:02d}{b:012d}" for c, b in zip(iban_check, bban)], dtype=object)


def _iban_unique(invoices: pl.DataFrame, chosen: pl.DataFrame) -> pl.Series:
    """True where the payment amount fits exactly one option of its debtor (one balance or the
    oldest-first running total of 2+): what stage 5 can book without guessing."""
    return _options(invoices, chosen.select("debtor_key", amount="open_cents"))


def _prefix_unique(invoices: pl.DataFrame, chosen: pl.DataFrame) -> pl.Series:
    return _options(invoices, chosen.select("debtor_key", "amount"))


def _options(invoices: pl.DataFrame, wanted: pl.DataFrame) -> pl.Series:
    inv = invoices.join(wanted.select("debtor_key").unique(), on="debtor_key", how="semi").sort("age_rank")
    inv = inv.with_columns(running=pl.col("open_cents").cum_sum().over("debtor_key"),
                           pos=pl.int_range(pl.len()).over("debtor_key"))
    w = wanted.with_row_index("row")
    singles = w.join(inv, left_on=["debtor_key", "amount"], right_on=["debtor_key", "open_cents"]).group_by("row").len()
    prefixes = w.join(inv.filter(pl.col("pos") >= 1), left_on=["debtor_key", "amount"],
                      right_on=["debtor_key", "running"]).group_by("row").len()
    n = w.join(singles.rename({"len": "s"}), on="row", how="left").join(
        prefixes.rename({"len": "p"}), on="row", how="left").sort("row")
    return (n["s"].fill_null(0) + n["p"].fill_null(0)) == 1


# -- movements ------------------------------------------------------------------------------------


def _movements(
    src: pl.DataFrame, category: str, *, ref: pl.Expr | None = None, ctype: pl.Expr | None = None,
    amount: pl.Expr | None = None, text: pl.Expr | pl.Series | None = None, e2e: pl.Expr | None = None,
    name: pl.Expr | pl.Series | None = None, account: pl.Expr | None = None, truth: pl.Expr | None = None,
    expect_auto: pl.Expr | pl.Series | None = None, stage: pl.Expr | None = None, suffix: str = "a",
) -> pl.DataFrame:
    """Movements for one category, one per row of `src` (invoice-shaped unless overridden)."""
    is_rf = pl.col("ref_out").str.starts_with("RF")
    out = src.with_columns(
        ref_out=ref if ref is not None else pl.lit(None, pl.String),
        amount_out=amount if amount is not None else pl.col("open_cents"),
        text_out=text if text is not None else pl.lit(None, pl.String),
        e2e_out=e2e if e2e is not None else pl.lit(None, pl.String),
        name_out=name if name is not None else pl.col("debtor_name"),
        account_out=account if account is not None else pl.col("debtor_iban"),
        truth_out=truth if truth is not None else pl.concat_list(pl.col("invoice_id")),
        auto_out=expect_auto if expect_auto is not None else pl.lit(True),
        stage_out=stage if stage is not None else pl.lit(EXPECTED_STAGE[category]),
    )
    return out.select(
        tag=pl.lit(suffix),
        category=pl.lit(category),
        expected_stage=pl.col("stage_out").cast(pl.Int8),
        expect_auto=pl.col("auto_out").cast(pl.Boolean),
        truth_invoice_ids=pl.col("truth_out").cast(pl.List(pl.Int64)),
        statement_key=pl.lit("S2024-12"),
        format=pl.lit("camt053"),
        account_iban=pl.lit("BE71096123456769"),
        detail_number=pl.lit(0, pl.Int64),
        parent_key=pl.lit(None, pl.String),
        is_booking=pl.lit(True),
        has_details=pl.lit(False),
        booking_date=pl.lit(date(2024, 12, 16)),
        value_date=pl.lit(date(2024, 12, 16)),
        amount_milli=pl.col("amount_out").cast(pl.Int64) * 10,
        currency=pl.lit("EUR"),
        is_reversal=pl.lit(False),
        transaction_code=pl.lit("PMNT/RCDT/ESCT"),
        communication_type=pl.when(pl.col("ref_out").is_null()).then(None)
        .otherwise(ctype if ctype is not None else pl.when(is_rf).then(pl.lit("ISO")).otherwise(pl.lit("BBA"))),
        structured_reference="ref_out",
        reference_valid=pl.when(pl.col("ref_out").is_not_null()).then(True),
        communication=pl.coalesce("text_out", pl.when(pl.col("ref_out").is_not_null()).then(pl.col("ref_out"))),
        counterparty_name="name_out",
        counterparty_account="account_out",
        counterparty_bic=pl.lit("GEBABEBB"),
        end_to_end_id=pl.coalesce("e2e_out", pl.lit("NOTPROVIDED")),
        bank_reference=pl.lit(None, pl.String),
        customer_reference=pl.lit(None, pl.String),
        return_reason=pl.lit(None, pl.String),
        source_line=pl.lit(None, pl.Int64),
    )


def _pick(rng: np.random.Generator, options: list[str], n: int) -> pl.Series:
    return pl.Series(np.array(options, dtype=object)[rng.integers(0, len(options), n)], dtype=pl.String)


def _typed_reference(src: pl.DataFrame, rng: np.random.Generator) -> pl.Expr:
    """An OGM or RF typed by a person: the separators and wrappers payers really use."""
    ref = pl.col("structured_reference")
    a, b, c = ref.str.slice(0, 3), ref.str.slice(3, 4), ref.str.slice(7, 5)
    shapes = [
        pl.concat_str(pl.lit("+++"), a, pl.lit("/"), b, pl.lit("/"), c, pl.lit("+++")),
        pl.concat_str(pl.lit("***"), a, pl.lit("/"), b, pl.lit("/"), c, pl.lit("***")),
        pl.concat_str(a, pl.lit("/"), b, pl.lit("/"), c),
        pl.concat_str(a, pl.lit(" "), b, pl.lit(" "), c),
        ref,
        pl.concat_str(pl.lit("+++ "), a, pl.lit(" / "), b, pl.lit(" / "), c, pl.lit(" +++")),
        pl.concat_str(a, pl.lit("."), b, pl.lit("."), c),
    ]
    choice = pl.Series(rng.integers(0, len(shapes), src.height))
    ogm_text = pl.when(choice == 0).then(shapes[0])
    for i, shape in enumerate(shapes[1:], start=1):
        ogm_text = ogm_text.when(choice == i).then(shape)
    ogm_text = ogm_text.otherwise(ref)
    grouped_rf = pl.concat_str(*(ref.str.slice(i, 4) for i in range(0, 28, 4)), separator=" ").str.strip_chars()
    rf_text = pl.when(choice % 2 == 0).then(grouped_rf).otherwise(ref.str.to_lowercase())
    lead = _pick(rng, ["", "Betaling ", "Paiement ", "mededeling: ", "REF ", "fact "], src.height)
    tail = _pick(rng, ["", " bedankt", " merci", " 16/12"], src.height)
    body = pl.when(ref.str.starts_with("RF")).then(rf_text).otherwise(ogm_text)
    return pl.concat_str(lead, body, tail)


def _name_variant(src: pl.DataFrame, rng: np.random.Generator) -> pl.Expr:
    """How a bank writes the debtor's name: capitals without accents, 'Last, First', extra dots."""
    plain = pl.col("debtor_name").str.normalize("NFKD").str.replace_all(r"\p{M}", "")
    parts = pl.col("debtor_name").str.split(" ")
    reversed_ = pl.concat_str(parts.list.last(), pl.lit(", "), parts.list.slice(0, parts.list.len() - 1).list.join(" "))
    choice = pl.Series(rng.integers(0, 3, src.height))
    return (
        pl.when(choice == 0).then(plain.str.to_uppercase())
        .when(choice == 1).then(reversed_)
        .otherwise(pl.concat_str(pl.lit("M. "), pl.col("debtor_name"), pl.lit(".")))
    )


def _noise(n: int, rng: np.random.Generator, n_invoices: int) -> pl.DataFrame:
    """Credits that belong to no open invoice but look like they might."""
    # Valid OGMs nobody was issued: the bases invoices n+1, n+2... would get (the map is one-to-one).
    ids = n_invoices + 1 + rng.integers(0, 10 * n + 1, n)
    valid_unknown = pl.Series("b", (ids * 7_919_113 + 1_000_003) % 10**10)
    frame = pl.DataFrame({
        "invoice_id": np.zeros(n, dtype=np.int64),
        "b": valid_unknown,
        "open_cents": rng.integers(500, 400_000, n),
        "debtor_name": _pick(rng, [f"{f} {l}" for f in FIRST for l in LAST], n),
        "debtor_iban": _be_ibans(rng.integers(0, 10**10, n), rng),
        "kind": rng.integers(0, 6, n),
        "word": _pick(rng, WORDS, n),
        "digits": pl.Series(rng.integers(10**11, 10**12, n)).cast(pl.String),
        "seq": pl.Series(rng.integers(900_000, 999_999, n)).cast(pl.String),
    })
    unknown_ogm = _ogm(pl.col("b"))
    bad_check = pl.concat_str(pl.col("digits").str.slice(0, 10),
                              ((pl.col("digits").str.slice(0, 10).cast(pl.Int64) % 97 + 1) % 97 + 1)
                              .cast(pl.String).str.zfill(2))
    text = (
        pl.when(pl.col("kind") == 0).then(pl.concat_str(pl.lit("+++"), bad_check, pl.lit("+++")))
        .when(pl.col("kind") == 1).then(pl.concat_str(pl.col("word"), pl.lit(" "), unknown_ogm))
        .when(pl.col("kind") == 2).then(pl.concat_str(pl.lit("Factuur F2023-"), pl.col("seq")))
        .when(pl.col("kind") == 3).then(pl.concat_str(pl.lit("INV"), pl.col("seq"), pl.lit("0 vorig jaar")))
        .when(pl.col("kind") == 4).then(pl.concat_str(pl.lit("kaart 4871 0493 "), pl.col("digits"), pl.lit(" 2211")))
        .otherwise(pl.col("word"))
    )
    out = _movements(frame, "noise", text=text, truth=pl.lit([], pl.List(pl.Int64)),
                     expect_auto=pl.lit(False), stage=pl.lit(0))
    return out


def _globalise(movements: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Wrap some exact-reference credits as details of bank globalisations (5 per booking)."""
    exact = movements.filter(pl.col("category") == "exact_reference")
    n_groups = max(1, exact.height // 100)
    details = exact.head(n_groups * 5).with_columns(
        group=pl.int_range(pl.len()) // 5,
        detail_number=(pl.int_range(pl.len()) % 5 + 1).cast(pl.Int64),
    )
    bookings = details.group_by("group", maintain_order=True).agg(
        amount_milli=pl.col("amount_milli").sum(), sequence=pl.col("sequence").first(),
    ).with_columns(movement_key=pl.format("G:{}", pl.col("group").cast(pl.String).str.zfill(6)))
    details = details.join(bookings.select("group", parent_key="movement_key"), on="group").with_columns(
        category=pl.lit("globalisation_detail"), is_booking=pl.lit(False),
    ).drop("group")
    template = movements.head(1)
    booking_rows = bookings.select("movement_key", "amount_milli", "sequence").join(
        template.drop("movement_key", "amount_milli", "sequence"), how="cross"
    ).with_columns(
        category=pl.lit("globalisation_booking"), expected_stage=pl.lit(0, pl.Int8), expect_auto=pl.lit(False),
        truth_invoice_ids=pl.lit([], pl.List(pl.Int64)), has_details=pl.lit(True), is_booking=pl.lit(True),
        detail_number=pl.lit(0, pl.Int64), parent_key=pl.lit(None, pl.String), communication_type=pl.lit(None, pl.String),
        structured_reference=pl.lit(None, pl.String), reference_valid=pl.lit(None, pl.Boolean),
        communication=pl.lit("GLOBALISATIE 5 OVERSCHRIJVINGEN"), counterparty_name=pl.lit(None, pl.String),
        counterparty_account=pl.lit(None, pl.String), end_to_end_id=pl.lit(None, pl.String),
    ).select(movements.columns)
    rest = movements.join(details.select("movement_key"), on="movement_key", how="anti")
    return pl.concat([rest, details.select(movements.columns), booking_rows])


def _reversals(movements: pl.DataFrame, rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Returns of some exact-reference credits: a debit with the original's end-to-end id."""
    exact = movements.filter(pl.col("category") == "exact_reference")
    n = max(1, exact.height // 200)
    originals = exact.tail(n).with_columns(
        end_to_end_id=pl.format("E2E-{}", pl.col("movement_key")),
    )
    movements = movements.update(originals.select("movement_key", "end_to_end_id"), on="movement_key")
    backs = originals.with_columns(
        original_movement_key=pl.col("movement_key"),
        movement_key=pl.format("R:{}", pl.col("movement_key")),
        amount_milli=-pl.col("amount_milli"),
        is_reversal=pl.lit(True),
        return_reason=pl.lit("MD06"),
        booking_date=pl.lit(date(2024, 12, 18)),
        value_date=pl.lit(date(2024, 12, 18)),
        category=pl.lit("reversal"), expected_stage=pl.lit(0, pl.Int8), expect_auto=pl.lit(False),
        truth_invoice_ids=pl.lit([], pl.List(pl.Int64)),
    )
    truth = backs.select("movement_key", "category", "expected_stage", "expect_auto", "truth_invoice_ids",
                         "original_movement_key")
    return pl.concat([movements, backs.select(movements.columns)]), truth


# -- scoring --------------------------------------------------------------------------------------


def score(matches: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Precision per automatic stage and recall per expected stage, against the generated truth.

    A booked row is correct when its (movement, invoice) pair is in the truth. A matchable movement
    counts as recalled when its booked invoices are exactly the true ones.
    """
    # Only movements meant to be booked have correct pairs: booking a look-alike's invoice or one
    # of two invoices sharing a reference counts as wrong even though the invoice is "right".
    pairs = (
        truth.filter(pl.col("expect_auto"))
        .select("movement_key", invoice_id="truth_invoice_ids").explode("invoice_id").drop_nulls()
    )
    auto = matches.filter(pl.col("auto")).join(
        pairs.with_columns(correct=pl.lit(True)), on=["movement_key", "invoice_id"], how="left"
    ).with_columns(pl.col("correct").fill_null(False))
    precision = auto.group_by("stage").agg(
        booked=pl.len(), correct=pl.col("correct").sum(), wrong=(~pl.col("correct")).sum()
    ).with_columns(precision=pl.col("correct") / pl.col("booked"))
    booked_sets = matches.filter(pl.col("auto")).group_by("movement_key").agg(
        got=pl.col("invoice_id").sort()
    )
    expected = truth.filter(pl.col("expect_auto")).join(booked_sets, on="movement_key", how="left").with_columns(
        hit=(pl.col("got") == pl.col("truth_invoice_ids").list.sort()).fill_null(False)
    )
    recall = expected.group_by(stage="expected_stage").agg(
        matchable=pl.len(), recalled=pl.col("hit").sum()
    ).with_columns(recall=pl.col("recalled") / pl.col("matchable"))
    return recall.join(precision, on="stage", how="full", coalesce=True).sort("stage")


def mix(truth: pl.DataFrame) -> pl.DataFrame:
    return truth.group_by("category").agg(n=pl.len(), auto=pl.col("expect_auto").sum()).sort("n", descending=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    data = generate(n, seed)
    with pl.Config(tbl_rows=40):
        print(f"{data.invoices.height} invoices, {data.movements.height} movements")
        print(mix(data.truth))
