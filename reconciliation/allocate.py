"""From matches to money: explicit allocation rows and the invoice states they lead to.

A match says where a movement's money is meant to go; an allocation says how much actually lands on
the invoice. Keeping both apart is what makes partial payments, overpayments and several payments for
one invoice plain arithmetic: payments are applied to an invoice in date order up to its open
balance, and whatever is left over stays visible as an `unapplied` row on the debtor instead of
vanishing (reminders must use the open balance after partial payments and unapplied cash).
"""

from __future__ import annotations

import polars as pl

from creditflow.reconciliation.normalise import prepare_invoices

ALLOCATION_SCHEMA: dict[str, pl.DataType] = {
    "movement_key": pl.String,
    "invoice_id": pl.Int64,  # for `unapplied`: the invoice the surplus came in for
    "debtor_key": pl.String,
    "kind": pl.String,  # "invoice" (reduces the open balance) | "unapplied" (surplus held for the debtor)
    "amount_cents": pl.Int64,
    "paid_on": pl.Date,
}

STATE_SCHEMA: dict[str, pl.DataType] = {
    "invoice_id": pl.Int64,
    "allocated_cents": pl.Int64,
    "unapplied_cents": pl.Int64,
    "open_cents": pl.Int64,
    "state": pl.String,  # "open" | "partially_paid" | "paid" | "overpaid"
    "paid_date": pl.Date,  # the date of the payment that settled it, null while open
}


def allocate_matches(
    matches: pl.DataFrame, invoices: pl.DataFrame, *, existing: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Allocation rows for the automatic matches not booked yet.

    invoices: the same open-invoice frame given to `match` (`open_cents` = balance open now, with
        the allocations already booked deducted).
    existing: allocations already booked (at least `movement_key`); their movements are skipped, so
        re-running on the same statement produces no new rows.
    Order: by payment date, then movement key, then the invoice's age, so a re-run allocates the same
    way and an older invoice is served first.
    """
    auto = matches.filter(pl.col("auto"))
    if existing is not None and not existing.is_empty():
        auto = auto.join(existing.select("movement_key").unique(), on="movement_key", how="anti")
    if auto.is_empty():
        return pl.DataFrame(schema=ALLOCATION_SCHEMA)
    touched = invoices.join(auto.select("invoice_id").unique(), on="invoice_id", how="semi")
    inv = prepare_invoices(touched, with_keys=False).select("invoice_id", "open_cents", "debtor_key", "age_rank")
    rows = auto.select("movement_key", "invoice_id", intended="amount_cents", paid_on="paid_on").join(
        inv, on="invoice_id", how="left"
    )
    room_now = pl.col("open_cents").fill_null(0).clip(lower_bound=0)
    # One payment for an invoice (nearly all): no ordering needed. Several: serve them in date order.
    shared = rows["invoice_id"].is_duplicated()
    alone = rows.filter(~shared).with_columns(applied=pl.min_horizontal(room_now, pl.col("intended")))
    queued = rows.filter(shared).sort(["paid_on", "movement_key", "age_rank"], nulls_last=True)
    before = pl.col("intended").cum_sum().over("invoice_id") - pl.col("intended")
    queued = queued.with_columns(
        applied=pl.min_horizontal((room_now - before).clip(lower_bound=0), pl.col("intended"))
    )
    rows = pl.concat([alone, queued]).with_columns(surplus=pl.col("intended") - pl.col("applied"))
    applied = rows.filter(pl.col("applied") > 0).select(
        "movement_key", "invoice_id", "debtor_key", kind=pl.lit("invoice"),
        amount_cents="applied", paid_on="paid_on",
    )
    surplus = rows.filter(pl.col("surplus") > 0).select(
        "movement_key", "invoice_id", "debtor_key", kind=pl.lit("unapplied"),
        amount_cents="surplus", paid_on="paid_on",
    )
    # No final sort: the order follows the matches (deterministic), and sorting a million string
    # keys would cost more than the allocation itself.
    return pl.concat([applied, surplus]).cast(ALLOCATION_SCHEMA)


def invoice_states(invoices: pl.DataFrame, allocations: pl.DataFrame) -> pl.DataFrame:
    """The new open balance, state and paid date of each invoice after `allocations`.

    `amount_cents` (the invoice total) tells `open` from `partially_paid` when present; without it
    the open balance given is taken as the total. An invoice settled with money to spare is
    `overpaid`: the spare money is the `unapplied` rows that came in for it.
    """
    total = pl.col("amount_cents") if "amount_cents" in invoices.columns else pl.col("open_cents")
    inv = invoices.select(pl.col("invoice_id").cast(pl.Int64), pl.col("open_cents").cast(pl.Int64),
                          total.cast(pl.Int64).alias("total_cents"))
    per_invoice = allocations.group_by("invoice_id").agg(
        allocated_cents=pl.col("amount_cents").filter(pl.col("kind") == "invoice").sum(),
        unapplied_cents=pl.col("amount_cents").filter(pl.col("kind") == "unapplied").sum(),
        last_paid=pl.col("paid_on").max(),
    )
    out = inv.join(per_invoice, on="invoice_id", how="left").with_columns(
        pl.col("allocated_cents").fill_null(0), pl.col("unapplied_cents").fill_null(0)
    )
    new_open = pl.col("open_cents") - pl.col("allocated_cents")
    out = out.with_columns(open_cents=new_open)
    settled = pl.col("open_cents") <= 0
    state = (
        pl.when(settled & (pl.col("unapplied_cents") > 0)).then(pl.lit("overpaid"))
        .when(settled).then(pl.lit("paid"))
        .when(pl.col("open_cents") < pl.col("total_cents")).then(pl.lit("partially_paid"))
        .otherwise(pl.lit("open"))
    )
    return out.select(
        "invoice_id", "allocated_cents", "unapplied_cents", "open_cents",
        state=state,
        paid_date=pl.when(settled).then(pl.col("last_paid")),
    ).cast(STATE_SCHEMA)
