"""Allocation rows and invoice states: partial, over, grouped, several payments, idempotence."""

from __future__ import annotations

from datetime import date

import polars as pl
from stdnum.be import ogm_vcs

from creditflow.parsers.statements import MOVEMENT_SCHEMA
from creditflow.reconciliation import (
    ALLOCATION_SCHEMA,
    STATE_SCHEMA,
    allocate_matches,
    invoice_states,
    match_movements,
)

PATTERNS = {"acme": r"F20\d{2}-\d{4}"}
INVOICE_SCHEMA = {
    "invoice_id": pl.Int64, "creditor_id": pl.String, "invoice_number": pl.String,
    "structured_reference": pl.String, "open_cents": pl.Int64, "amount_cents": pl.Int64,
    "due_date": pl.Date, "issue_date": pl.Date, "debtor_name": pl.String, "debtor_iban": pl.String,
    "customer_number": pl.String,
}


def ogm(base: int) -> str:
    digits = f"{base:010d}"
    return digits + ogm_vcs.calc_check_digits(digits)


def mov(key: str, cents: int, ref_of: int | None = None, on: date = date(2024, 12, 16), **fields) -> dict:
    row = {name: None for name in MOVEMENT_SCHEMA}
    row.update(
        movement_key=key, statement_key="S1", format="coda", sequence=1, detail_number=0,
        is_booking=True, has_details=False, booking_date=on, value_date=on, amount_milli=cents * 10,
        currency="EUR", is_reversal=False,
        structured_reference=ogm(ref_of) if ref_of is not None else None,
        communication_type="101" if ref_of is not None else None,
    )
    row.update(fields)
    return row


def invoices(*specs: tuple[int, int], due: dict[int, date] | None = None) -> pl.DataFrame:
    """(invoice_id, open_cents) pairs of one debtor; invoice i is due on `due[i]` or in i-th month."""
    due = due or {}
    rows = [{
        "invoice_id": i, "creditor_id": "acme", "invoice_number": f"F2024-{i:04d}",
        "structured_reference": ogm(i), "open_cents": cents, "amount_cents": cents,
        "due_date": due.get(i, date(2024, min(i, 12), 1)), "issue_date": date(2024, 1, 1),
        "debtor_name": "Jan Peeters", "debtor_iban": None, "customer_number": "C1",
    } for i, cents in specs]
    return pl.DataFrame(rows, schema=INVOICE_SCHEMA)


def settle(movs: list[dict], invs: pl.DataFrame, existing: pl.DataFrame | None = None):
    frame = pl.DataFrame(movs, schema=MOVEMENT_SCHEMA)
    booked = existing["movement_key"] if existing is not None else None
    result = match_movements(frame, invs, number_patterns=PATTERNS, booked_movement_keys=booked)
    allocations = allocate_matches(result.matches, invs, existing=existing)
    return result, allocations, invoice_states(invs, allocations)


def rows(allocations: pl.DataFrame) -> list[tuple]:
    return sorted(allocations.select("movement_key", "invoice_id", "kind", "amount_cents").iter_rows())


def state_of(states: pl.DataFrame, invoice_id: int) -> dict:
    return states.filter(pl.col("invoice_id") == invoice_id).row(0, named=True)


def test_exact_payment_pays_the_invoice_on_the_value_date():
    _, allocations, states = settle([mov("m1", 5_000, 1, on=date(2024, 12, 3))], invoices((1, 5_000)))
    assert dict(allocations.schema) == ALLOCATION_SCHEMA and dict(states.schema) == STATE_SCHEMA
    assert rows(allocations) == [("m1", 1, "invoice", 5_000)]
    st = state_of(states, 1)
    assert (st["state"], st["open_cents"], st["paid_date"]) == ("paid", 0, date(2024, 12, 3))


def test_partial_payment_leaves_the_open_balance():
    _, allocations, states = settle([mov("m1", 2_000, 1)], invoices((1, 5_000)))
    assert rows(allocations) == [("m1", 1, "invoice", 2_000)]
    st = state_of(states, 1)
    assert (st["state"], st["open_cents"], st["paid_date"]) == ("partially_paid", 3_000, None)


def test_overpayment_keeps_the_surplus_as_unapplied_on_the_debtor():
    _, allocations, states = settle([mov("m1", 5_750, 1)], invoices((1, 5_000)))
    assert rows(allocations) == [("m1", 1, "invoice", 5_000), ("m1", 1, "unapplied", 750)]
    assert allocations["debtor_key"].unique().to_list() == ["acme|c:C1"]
    st = state_of(states, 1)
    assert (st["state"], st["open_cents"], st["unapplied_cents"]) == ("overpaid", 0, 750)
    assert allocations["amount_cents"].sum() == 5_750  # no cent lost


def test_one_payment_for_several_invoices():
    invs = invoices((1, 1_000), (2, 2_000), (3, 4_000))
    movs = [mov("m1", 3_000, communication="F2024-0001 F2024-0002")]
    _, allocations, states = settle(movs, invs)
    assert rows(allocations) == [("m1", 1, "invoice", 1_000), ("m1", 2, "invoice", 2_000)]
    assert [state_of(states, i)["state"] for i in (1, 2, 3)] == ["paid", "paid", "open"]


def test_several_payments_for_one_invoice_are_applied_in_date_order():
    movs = [
        mov("z-first", 3_000, 1, on=date(2024, 12, 2)),
        mov("a-second", 3_000, 1, on=date(2024, 12, 9)),
        mov("b-third", 1_000, 1, on=date(2024, 12, 10)),
    ]
    _, allocations, states = settle(movs, invoices((1, 5_000)))
    assert rows(allocations) == [
        ("a-second", 1, "invoice", 2_000), ("a-second", 1, "unapplied", 1_000),
        ("b-third", 1, "unapplied", 1_000), ("z-first", 1, "invoice", 3_000),
    ]
    st = state_of(states, 1)
    assert (st["state"], st["paid_date"], st["unapplied_cents"]) == ("overpaid", date(2024, 12, 10), 2_000)


def test_suggestions_are_never_allocated():
    invs = invoices((1, 1_234))
    movs = [mov("m1", 1_234, counterparty_name="PEETERS JAN")]
    result, allocations, states = settle(movs, invs)
    assert result.matches["auto"].to_list() == [False]
    assert allocations.is_empty() and state_of(states, 1)["state"] == "open"


def test_rerun_with_booked_allocations_produces_no_new_rows():
    invs = invoices((1, 5_000), (2, 1_000), (3, 700))
    movs = [mov("m1", 2_000, 1), mov("m2", 1_500, 2), mov("m3", 700, communication="F2024-0003")]
    _, first, states = settle(movs, invs)
    assert first.height == 4  # partial, paid + unapplied, paid
    # The ledger books the rows; the open balances it then reports are the new ones.
    after = invs.drop("open_cents").join(states.select("invoice_id", "open_cents"), on="invoice_id")
    result, again, _ = settle(movs, after, existing=first)
    assert again.is_empty() and result.auto().is_empty() and result.unmatched.is_empty()
    # Even handed the old matches, allocate skips movements that are already booked.
    stale = match_movements(pl.DataFrame(movs, schema=MOVEMENT_SCHEMA), invs, number_patterns=PATTERNS)
    assert allocate_matches(stale.matches, after, existing=first).is_empty()


def test_states_without_an_invoice_total_take_the_open_balance_as_total():
    invs = invoices((1, 5_000), (2, 5_000)).drop("amount_cents")
    allocations = pl.DataFrame(
        {"movement_key": ["m1"], "invoice_id": [1], "debtor_key": ["d"], "kind": ["invoice"],
         "amount_cents": [100], "paid_on": [date(2024, 12, 1)]}, schema=ALLOCATION_SCHEMA,
    )
    states = invoice_states(invs, allocations).sort("invoice_id")
    assert states["state"].to_list() == ["partially_paid", "open"]
    assert states["open_cents"].to_list() == [4_900, 5_000]
