"""The matching cascade on small hand-built frames: each stage, the ambiguity rule, reversals."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from stdnum.be import ogm_vcs
from stdnum.iso7064 import mod_97_10

from creditflow.parsers.statements import MOVEMENT_SCHEMA
from creditflow.reconciliation import MATCH_SCHEMA, UNMATCHED_SCHEMA, match_movements

PATTERNS = {"acme": r"F20\d{2}-\d{4}", "bruxelco": r"INV\d{5}"}


def ogm(base: int) -> str:
    digits = f"{base:010d}"
    return digits + ogm_vcs.calc_check_digits(digits)


def rf(body: str) -> str:
    return "RF" + mod_97_10.calc_check_digits(body + "RF") + body


def mov(key: str, cents: int, **fields) -> dict:
    row = {name: None for name in MOVEMENT_SCHEMA}
    row.update(
        movement_key=key, statement_key="S1", format="camt053", sequence=1, detail_number=0,
        is_booking=True, has_details=False, booking_date=date(2024, 12, 16),
        value_date=date(2024, 12, 16), amount_milli=cents * 10, currency="EUR", is_reversal=False,
    )
    row.update(fields)
    return row


def movements(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=MOVEMENT_SCHEMA)


INVOICE_SCHEMA = {
    "invoice_id": pl.Int64, "creditor_id": pl.String, "invoice_number": pl.String,
    "structured_reference": pl.String, "open_cents": pl.Int64, "amount_cents": pl.Int64,
    "due_date": pl.Date, "issue_date": pl.Date, "debtor_name": pl.String, "debtor_iban": pl.String,
    "customer_number": pl.String,
}


def inv(invoice_id: int, number: str, open_cents: int, *, ref: str | None = None, creditor: str = "acme",
        debtor: str = "Jan Peeters", iban: str | None = None, customer: str | None = "C1",
        due: date = date(2024, 11, 1)) -> dict:
    return {
        "invoice_id": invoice_id, "creditor_id": creditor, "invoice_number": number,
        "structured_reference": ref if ref is not None else ogm(invoice_id), "open_cents": open_cents,
        "amount_cents": open_cents, "due_date": due, "issue_date": date(2024, 10, 1),
        "debtor_name": debtor, "debtor_iban": iban, "customer_number": customer,
    }


def invoices(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=INVOICE_SCHEMA)


def run(movs: pl.DataFrame, invs: pl.DataFrame, **kw):
    return match_movements(movs, invs, number_patterns=kw.pop("number_patterns", PATTERNS), **kw)


def booked(result) -> list[tuple[str, int, int, int]]:
    """(movement, invoice, stage, amount) of the automatic matches, sorted."""
    return sorted(result.auto().select("movement_key", "invoice_id", "stage", "amount_cents").iter_rows())


# -- output shape -----------------------------------------------------------------------------------


def test_outputs_have_the_documented_schemas_even_when_empty():
    result = run(movements(), invoices())
    assert dict(result.matches.schema) == MATCH_SCHEMA
    assert dict(result.unmatched.schema) == UNMATCHED_SCHEMA
    assert result.matches.is_empty() and result.unmatched.is_empty() and result.undo.is_empty()


# -- stage 1 ---------------------------------------------------------------------------------------


def test_stage1_structured_ogm_books_the_whole_amount_with_a_readable_reason():
    invs = invoices(inv(1, "F2024-0001", 12_100), inv(2, "F2024-0002", 5_000))
    movs = movements(mov("m1", 12_100, communication_type="101", structured_reference=ogm(1),
                         reference_valid=True))
    result = run(movs, invs)
    assert booked(result) == [("m1", 1, 1, 12_100)]
    row = result.auto().row(0, named=True)
    assert row["stage_name"] == "structured_reference" and row["confidence"] == 1.0
    assert "F2024-0001" in row["reason"] and "+++000/0000/00101+++" in row["reason"]
    assert result.unmatched.is_empty()


def test_stage1_reconstructed_102_books_with_slightly_lower_confidence():
    invs = invoices(inv(1, "F2024-0001", 100))
    movs = movements(mov("m1", 100, communication_type="102", structured_reference=ogm(1)))
    row = run(movs, invs).auto().row(0, named=True)
    assert row["stage"] == 1 and 0.9 < row["confidence"] < 1.0


def test_stage1_rf_reference():
    ref = rf("LS000123")
    invs = invoices(inv(7, "LS-000123", 2_500, ref=ref, creditor="luikstaal"))
    movs = movements(mov("m1", 2_500, communication_type="ISO", structured_reference=ref.lower()))
    assert booked(run(movs, invs)) == [("m1", 7, 1, 2_500)]


def test_only_credits_are_matched_and_globalisation_details_not_their_booking():
    invs = invoices(inv(1, "F2024-0001", 100), inv(2, "F2024-0002", 200), inv(3, "F2024-0003", 300))
    movs = movements(
        mov("debit", -100, structured_reference=ogm(1)),
        mov("rev", 100, structured_reference=ogm(1), is_reversal=True),
        mov("glob", 500, has_details=True, structured_reference=ogm(2)),
        mov("glob:1", 200, detail_number=1, parent_key="glob", is_booking=False, structured_reference=ogm(2)),
        mov("glob:2", 300, detail_number=2, parent_key="glob", is_booking=False, structured_reference=ogm(3)),
    )
    result = run(movs, invs)
    assert booked(result) == [("glob:1", 2, 1, 200), ("glob:2", 3, 1, 300)]
    assert set(result.unmatched["movement_key"]) == set()


def test_several_stage1_payments_for_one_invoice_are_all_booked():
    invs = invoices(inv(1, "F2024-0001", 1_000))
    movs = movements(mov("a", 600, structured_reference=ogm(1)), mov("b", 600, structured_reference=ogm(1)))
    assert booked(run(movs, invs)) == [("a", 1, 1, 600), ("b", 1, 1, 600)]


def test_movement_creditor_restricts_candidates():
    invs = invoices(inv(1, "F2024-0001", 100, creditor="acme"))
    movs = movements(mov("m1", 100, structured_reference=ogm(1))).with_columns(creditor_id=pl.lit("bruxelco"))
    result = run(movs, invs)
    assert result.auto().is_empty()
    assert result.unmatched["status"].to_list() == ["no_match"]


# -- stage 2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", [
    "+++{a}/{b}/{c}+++", "***{a}/{b}/{c}***", "{a}/{b}/{c}", "{a} {b} {c}", "{a}{b}{c}",
    "Betaling +++ {a} / {b} / {c} +++ bedankt", "mededeling: {a}.{b}.{c}", "ref:{a}-{b}-{c}",
])
def test_stage2_ogm_typed_in_free_text(typed):
    ref = ogm(909337554)
    text = typed.format(a=ref[:3], b=ref[3:7], c=ref[7:])
    invs = invoices(inv(1, "F2024-0001", 4_200, ref=ref))
    result = run(movements(mov("m1", 4_200, communication=text)), invs)
    assert booked(result) == [("m1", 1, 2, 4_200)]
    assert "typed in the communication" in result.auto()["reason"][0]


@pytest.mark.parametrize("text", [
    "{bad}",  # wrong check digits
    "1{ref}",  # 13 digits: part of a longer number
    "{ref}7",
    "kaart 4871 {ref} 2211",  # well-formed but...
])
def test_stage2_rejects_wrong_check_digits_and_longer_digit_runs(text):
    ref = ogm(909337554)
    bad = ref[:10] + f"{(int(ref[10:]) % 97) + 1:02d}"
    invs = invoices(inv(1, "F2024-0001", 4_200, ref=ref), inv(2, "F2024-0002", 1, ref=bad))
    result = run(movements(mov("m1", 4_200, communication=text.format(ref=ref, bad=bad))), invs)
    if text.startswith("kaart"):  # ...a valid OGM standing alone between other numbers does count
        assert booked(result) == [("m1", 1, 2, 4_200)]
    else:
        assert result.auto().is_empty()


def test_stage2_valid_ogm_of_no_open_invoice_stays_unmatched():
    invs = invoices(inv(1, "F2024-0001", 4_200))
    result = run(movements(mov("m1", 4_200, communication=f"+++{ogm(55)}+++")), invs)
    assert result.auto().is_empty() and result.unmatched["status"].to_list() == ["no_match"]


def test_stage2_rf_typed_in_groups_followed_by_words():
    ref = rf("LS000123")
    grouped = " ".join(ref[i:i + 4] for i in range(0, len(ref), 4))
    invs = invoices(inv(7, "LS-000123", 2_500, ref=ref, creditor="luikstaal"))
    result = run(movements(mov("m1", 2_500, communication=f"Ref {grouped.lower()} dank u")), invs)
    assert booked(result) == [("m1", 7, 2, 2_500)]


# -- stage 3 ---------------------------------------------------------------------------------------


def test_stage3_end_to_end_id_is_our_invoice_number_or_reference():
    invs = invoices(inv(1, "F2024-0001", 100), inv(2, "F2024-0002", 200))
    movs = movements(
        mov("m1", 100, end_to_end_id="f2024-0001"),
        mov("m2", 200, end_to_end_id=f"+++{ogm(2)[:3]}/{ogm(2)[3:7]}/{ogm(2)[7:]}+++"),
        mov("m3", 300, end_to_end_id="NOTPROVIDED"),
    )
    result = run(movs, invs, number_patterns={})
    assert booked(result) == [("m1", 1, 3, 100), ("m2", 2, 3, 200)]
    assert result.unmatched["movement_key"].to_list() == ["m3"]


# -- stage 4 ---------------------------------------------------------------------------------------


def test_stage4_invoice_number_in_text_books_even_a_partial_payment():
    invs = invoices(inv(1, "F2024-0001", 10_000), inv(2, "INV00042", 500, creditor="bruxelco"))
    movs = movements(mov("m1", 4_000, communication="Factuur F2024-0001 eerste schijf"),
                     mov("m2", 500, communication="paiement INV00042 merci"))
    assert booked(run(movs, invs)) == [("m1", 1, 4, 4_000), ("m2", 2, 4, 500)]


def test_stage4_several_numbers_book_when_the_amount_pays_them_all_oldest_first():
    invs = invoices(
        inv(1, "F2024-0001", 1_000, due=date(2024, 10, 1)),
        inv(2, "F2024-0002", 2_500, due=date(2024, 9, 1)),
    )
    result = run(movements(mov("m1", 3_500, communication="Facturen F2024-0001 en F2024-0002")), invs)
    auto = result.auto()
    assert auto["invoice_id"].to_list() == [2, 1]  # oldest (due first) first
    assert auto["amount_cents"].to_list() == [2_500, 1_000]
    assert all("pays exactly" in r for r in auto["reason"])


def test_stage4_several_numbers_that_do_not_add_up_are_ambiguous_not_guessed():
    invs = invoices(inv(1, "F2024-0001", 1_000), inv(2, "F2024-0002", 2_500))
    result = run(movements(mov("m1", 1_000, communication="F2024-0001 F2024-0002")), invs)
    assert result.auto().is_empty()
    row = result.unmatched.row(0, named=True)
    assert row["status"] == "ambiguous" and sorted(row["suggestion_invoice_ids"]) == [1, 2]
    assert "not guessing" in row["reason"]


def test_stage4_without_a_pattern_whole_tokens_are_compared():
    invs = invoices(inv(1, "2024/0815", 700, creditor="nopattern"))
    movs = movements(mov("m1", 700, communication="betaling factuur 2024/0815."),
                     mov("m2", 700, communication="betaling 12024/08150"))
    assert booked(run(movs, invs)) == [("m1", 1, 4, 700)]


# -- stage 5 ---------------------------------------------------------------------------------------

IBAN = "BE68539007547034"


def test_stage5_known_account_and_amount_of_one_open_invoice():
    invs = invoices(inv(1, "F2024-0001", 1_000, iban=IBAN), inv(2, "F2024-0002", 2_000, iban=IBAN))
    result = run(movements(mov("m1", 2_000, counterparty_account="be68 5390 0754 7034")), invs)
    assert booked(result) == [("m1", 2, 5, 2_000)]
    assert IBAN in result.auto()["reason"][0]


def test_stage5_amount_of_the_oldest_invoices_together():
    invs = invoices(
        inv(1, "F2024-0001", 1_000, iban=IBAN, due=date(2024, 9, 1)),
        inv(2, "F2024-0002", 2_000, iban=IBAN, due=date(2024, 10, 1)),
        inv(3, "F2024-0003", 4_000, iban=IBAN, due=date(2024, 11, 1)),
    )
    result = run(movements(mov("m1", 3_000, counterparty_account=IBAN)), invs)
    assert booked(result) == [("m1", 1, 5, 1_000), ("m1", 2, 5, 2_000)]


def test_stage5_equal_balances_or_two_payments_for_one_invoice_are_ambiguous():
    invs = invoices(
        inv(1, "F2024-0001", 1_000, iban=IBAN), inv(2, "F2024-0002", 1_000, iban=IBAN),
        inv(3, "F2024-0003", 7_000, iban="BE71096123456769", customer="C2"),
    )
    movs = movements(
        mov("m1", 1_000, counterparty_account=IBAN),
        mov("m2", 7_000, counterparty_account="BE71096123456769"),
        mov("m3", 7_000, counterparty_account="BE71096123456769"),
    )
    result = run(movs, invs)
    assert result.auto().is_empty()
    assert result.unmatched.filter(pl.col("status") == "ambiguous")["movement_key"].to_list() == ["m1", "m2", "m3"]


def test_stage5_accounts_known_from_earlier_payments():
    invs = invoices(inv(1, "F2024-0001", 1_000, iban=None, customer="C9"))
    known = pl.DataFrame({"iban": [IBAN], "debtor_key": ["acme|c:C9"]})
    movs = movements(mov("m1", 1_000, counterparty_account=IBAN))
    assert run(movs, invs).auto().is_empty()
    assert booked(run(movs, invs, known_ibans=known)) == [("m1", 1, 5, 1_000)]


def test_stage5_unknown_account_does_not_match_on_amount_alone():
    invs = invoices(inv(1, "F2024-0001", 1_000, iban=IBAN))
    result = run(movements(mov("m1", 1_000, counterparty_account="BE71096123456769")), invs)
    assert result.auto().is_empty()


# -- stage 6 ---------------------------------------------------------------------------------------


def test_stage6_name_and_amount_is_only_a_suggestion():
    invs = invoices(inv(1, "F2024-0001", 1_234, debtor="Hélène Lefèvre"), inv(2, "F2024-0002", 1_234, debtor="Tom Maes"))
    result = run(movements(mov("m1", 1_234, counterparty_name="LEFEVRE, HELENE", communication="merci")), invs)
    assert result.auto().is_empty()
    suggestion = result.matches.row(0, named=True)
    assert suggestion["auto"] is False and suggestion["stage"] == 6 and suggestion["invoice_id"] == 1
    row = result.unmatched.row(0, named=True)
    assert row["status"] == "no_match" and row["suggestion_invoice_ids"] == [1] and row["suggestion_stage"] == 6


def test_stage6_no_suggestion_when_the_names_differ():
    invs = invoices(inv(1, "F2024-0001", 1_234, debtor="Hélène Lefèvre"))
    result = run(movements(mov("m1", 1_234, counterparty_name="Garage Centraal BV")), invs)
    assert result.matches.is_empty()
    assert result.unmatched["suggestion_invoice_ids"].to_list() == [None]


# -- ambiguity and the cascade ----------------------------------------------------------------------


def test_reference_shared_by_two_open_invoices_is_never_guessed_even_if_stage5_fits():
    shared = ogm(1)
    invs = invoices(inv(1, "F2024-0001", 1_000, ref=shared, iban=IBAN), inv(2, "F2024-0002", 3_000, ref=shared, iban=IBAN))
    movs = movements(mov("m1", 1_000, structured_reference=shared, counterparty_account=IBAN))
    result = run(movs, invs)
    assert result.auto().is_empty()
    row = result.unmatched.row(0, named=True)
    assert row["status"] == "ambiguous" and row["suggestion_stage"] == 1
    assert sorted(row["suggestion_invoice_ids"]) == [1, 2]


def test_reference_shared_by_two_invoices_books_when_the_amount_pays_both():
    shared = ogm(1)
    invs = invoices(inv(1, "F2024-0001", 1_000, ref=shared), inv(2, "F2024-0002", 3_000, ref=shared))
    result = run(movements(mov("m1", 4_000, structured_reference=shared)), invs)
    assert booked(result) == [("m1", 1, 1, 1_000), ("m1", 2, 1, 3_000)]


def test_stronger_evidence_wins_over_a_number_in_the_text():
    invs = invoices(inv(1, "F2024-0001", 100), inv(2, "F2024-0002", 100))
    movs = movements(mov("m1", 100, structured_reference=ogm(1), communication="F2024-0002"))
    assert booked(run(movs, invs)) == [("m1", 1, 1, 100)]


def test_already_booked_movements_are_left_alone():
    invs = invoices(inv(1, "F2024-0001", 100))
    movs = movements(mov("m1", 100, structured_reference=ogm(1)), mov("m2", 100, structured_reference=ogm(1)))
    result = run(movs, invs, booked_movement_keys=["m1"])
    assert booked(result) == [("m2", 1, 1, 100)]
    assert result.unmatched.is_empty()


# -- reversals --------------------------------------------------------------------------------------


def test_reversal_undo_rows_point_at_the_original_credit():
    movs = movements(
        mov("orig", 1_000, structured_reference=ogm(1), end_to_end_id="E2E-1"),
        mov("back", -1_000, is_reversal=True, end_to_end_id="E2E-1", return_reason="MD06",
            booking_date=date(2024, 12, 18)),
        mov("ret", -500, return_reason="AC04", structured_reference=ogm(2)),
        mov("plain", -700),  # an ordinary debit: no undo row
    )
    history = movements(mov("old", 500, structured_reference=ogm(2), booking_date=date(2024, 11, 2)))
    undo = run(movs, invoices(), history=history).undo.sort("movement_key")
    assert undo.select("movement_key", "original_movement_key", "amount_cents").rows() == [
        ("back", "orig", 1_000), ("ret", "old", 500),
    ]
    assert undo["return_reason"].to_list() == ["MD06", "AC04"]


def test_reversal_with_two_possible_originals_is_left_for_a_human():
    movs = movements(
        mov("a", 500, structured_reference=ogm(2)), mov("b", 500, structured_reference=ogm(2)),
        mov("back", -500, is_reversal=True, structured_reference=ogm(2)),
        mov("lost", -800, is_reversal=True, end_to_end_id="E2E-unknown"),
    )
    undo = run(movs, invoices()).undo.sort("movement_key")
    assert undo["original_movement_key"].to_list() == [None, None]
    assert "2 earlier credits" in undo["reason"][0] and "unknown" in undo["reason"][1]
