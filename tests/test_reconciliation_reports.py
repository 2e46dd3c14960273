"""Finance report figures against frames built by hand, whose answers are worked out in the comments.

The frames have the shapes `creditflow.pipeline.finance_reports.gather` produces (movements as
stored plus the match columns, allocations as stored, the creditor's invoices, first sending per
invoice), so every figure here is the figure finance gets. Pure: no database, runs in a second.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from creditflow.parsers.statements import MOVEMENT_SCHEMA
from creditflow.reconciliation.reports import (
    AGING_BUCKETS,
    LABELS,
    SECTIONS,
    build_report,
    report_files,
    to_csv,
    to_pdf,
    to_xlsx,
)

BRUSSELS = ZoneInfo("Europe/Brussels")
UTC = ZoneInfo("UTC")
AS_OF = date(2024, 5, 31)  # a Friday

MOVES_SCHEMA = {**MOVEMENT_SCHEMA, "creditor_id": pl.String, "match_status": pl.String, "match_stage": pl.Int64,
                "match_confidence": pl.Float64, "match_reason": pl.String,
                "suggested_invoice_ids": pl.List(pl.Int64)}
ALLOCS_SCHEMA = {"movement_key": pl.String, "invoice_id": pl.Int64, "creditor_id": pl.String,
                 "debtor_key": pl.String, "kind": pl.String, "amount_cents": pl.Int64, "paid_on": pl.Date,
                 "stage": pl.Int64, "undoes_movement_key": pl.String, "reversed_by": pl.String}
INVOICES_SCHEMA = {"invoice_id": pl.Int64, "invoice_number": pl.String, "debtor_name": pl.String,
                   "amount_cents": pl.Int64, "open_cents": pl.Int64, "state": pl.String, "issue_date": pl.Date,
                   "due_date": pl.Date, "paid_at": pl.Datetime("us", "UTC")}
SENT_SCHEMA = {"invoice_id": pl.Int64, "sent_at": pl.Datetime("us", "UTC")}


# -- frame builders ---------------------------------------------------------------------------------


def move(key: str, cents: int, status: str | None, stage: int | None = None, *, day: date = AS_OF,
         has_details: bool = False, is_reversal: bool = False, parent: str | None = None,
         communication: str | None = None, counterparty: str = "Payer NV", reason: str | None = None,
         confidence: float | None = None, suggested: list[int] | None = None) -> dict:
    row = dict.fromkeys(MOVES_SCHEMA)
    row.update(movement_key=key, statement_key="S1", format="coda", account_iban="BE68539007547034",
               sequence=1, detail_number=1 if parent else 0, parent_key=parent, is_booking=parent is None,
               has_details=has_details, booking_date=day, value_date=day, amount_milli=cents * 10,
               currency="EUR", is_reversal=is_reversal, communication=communication,
               counterparty_name=counterparty, creditor_id="acme", match_status=status, match_stage=stage,
               match_confidence=confidence, match_reason=reason, suggested_invoice_ids=suggested)
    return row


def alloc(movement_key: str, invoice_id: int | None, cents: int, kind: str = "invoice", stage: int | None = 1,
          *, paid_on: date = AS_OF, reversed_by: str | None = None) -> dict:
    return {"movement_key": movement_key, "invoice_id": invoice_id, "creditor_id": "acme", "debtor_key": "D1",
            "kind": kind, "amount_cents": cents, "paid_on": paid_on, "stage": stage,
            "undoes_movement_key": None, "reversed_by": reversed_by}


def invoice(invoice_id: int, amount: int, open_: int | None = None, state: str = "open", *,
            issue: date = date(2024, 5, 1), due: date = date(2024, 6, 30), paid_on: date | None = None,
            debtor: str = "Klant BV") -> dict:
    paid_at = datetime.combine(paid_on, time(0), tzinfo=BRUSSELS) if paid_on else None  # as apply_states
    return {"invoice_id": invoice_id, "invoice_number": f"F-{invoice_id:03d}", "debtor_name": debtor,
            "amount_cents": amount, "open_cents": amount if open_ is None else open_, "state": state,
            "issue_date": issue, "due_date": due, "paid_at": paid_at}


def frames(moves=(), allocs=(), invoices=(), sent=()) -> dict[str, pl.DataFrame]:
    return {
        "movements": pl.DataFrame(list(moves), schema=MOVES_SCHEMA, orient="row"),
        "allocations": pl.DataFrame(list(allocs), schema=ALLOCS_SCHEMA, orient="row"),
        "invoices": pl.DataFrame(list(invoices), schema=INVOICES_SCHEMA, orient="row"),
        "sent": pl.DataFrame([(i, at.astimezone(UTC)) for i, at in sent], schema=SENT_SCHEMA, orient="row"),
    }


def report(fr, language: str = "en"):
    return build_report("acme", language, AS_OF, ["S1"], fr)


def figure_rows(rep) -> dict[str, str]:
    return dict(rep.sections["figures"][1])


# -- aging ------------------------------------------------------------------------------------------


# (days past due at AS_OF, open cents, bucket): the open amounts are distinct powers of two, so every
# bucket's sum says exactly which invoices went into it.
AGING_CASES = [
    (-5, 1, "not_due"), (0, 2, "not_due"),  # due today is not late yet
    (1, 4, "1_30"), (30, 8, "1_30"),
    (31, 16, "31_60"), (60, 32, "31_60"),
    (61, 64, "61_90"), (90, 128, "61_90"),
    (91, 256, "over_90"), (400, 512, "over_90"),
]


def aging_frames():
    invs = [invoice(i, 10_000, open_, "open" if i % 2 else "partially_paid", due=AS_OF - timedelta(days=late))
            for i, (late, open_, _) in enumerate(AGING_CASES, start=1)]
    long_ago = AS_OF - timedelta(days=200)
    invs += [  # closed or nothing left open: never aged, however late
        invoice(50, 5000, 0, "paid", due=long_ago, paid_on=AS_OF),
        invoice(51, 5000, 0, "overpaid", due=long_ago, paid_on=AS_OF),
        invoice(52, 5000, 0, "open", due=long_ago),
    ]
    return frames(invoices=invs)


def test_aging_buckets_at_every_boundary():
    rep = report(aging_frames())
    expected = dict.fromkeys(AGING_BUCKETS, 0)
    for _, open_, bucket in AGING_CASES:
        expected[bucket] += open_
    assert rep.aging_cents == expected == {"not_due": 3, "1_30": 12, "31_60": 48, "61_90": 192, "over_90": 768}


def test_aging_section_rows_count_and_amount_per_bucket():
    header, rows = report(aging_frames(), "nl").sections["aging"]
    assert header == ["Periode", "Facturen", "Open"]
    assert rows == [["Niet vervallen", 2, "0.03"], ["1-30 dagen", 2, "0.12"], ["31-60 dagen", 2, "0.48"],
                    ["61-90 dagen", 2, "1.92"], ["Meer dan 90 dagen", 2, "7.68"]]


def test_aging_of_nothing_open_is_zero_everywhere():
    rep = report(frames(invoices=[invoice(1, 100, 0, "paid", paid_on=AS_OF)]))
    assert rep.aging_cents == dict.fromkeys(AGING_BUCKETS, 0)
    assert [r[1:] for r in rep.sections["aging"][1]] == [[0, "0.00"]] * 5


# -- DSO and collection rate ------------------------------------------------------------------------


def test_dso_is_open_over_billed_in_last_90_days_times_90():
    invs = [
        invoice(1, 100_000, 100_000, "open", issue=AS_OF - timedelta(days=89)),  # first day of the window
        invoice(2, 50_000, 50_000, "open", issue=AS_OF - timedelta(days=90)),  # just outside: open, not billed
        invoice(3, 30_000, 0, "paid", issue=AS_OF, paid_on=AS_OF),  # billed, nothing open
        invoice(4, 20_000, 5_000, "partially_paid", issue=AS_OF - timedelta(days=10)),
        invoice(5, 7_000, 0, "overpaid", issue=AS_OF - timedelta(days=3), paid_on=AS_OF),
    ]
    rep = report(frames(invoices=invs))
    # open 100000 + 50000 + 5000 = 155000; billed 100000 + 30000 + 20000 + 7000 = 157000
    # 155000 * 90 / 157000 = 88.853... -> 88.9
    assert rep.figures["dso_days"] == Decimal("88.9")
    assert figure_rows(rep)["DSO (days)"] == "88.9"


def test_dso_without_billing_in_window_is_blank_not_a_division_error():
    rep = report(frames(invoices=[invoice(1, 1000, issue=AS_OF - timedelta(days=120))]))
    assert rep.figures["dso_days"] is None
    assert figure_rows(rep)["DSO (days)"] == ""


def test_collection_rate_is_paid_share_of_amount_due_by_as_of():
    invs = [
        invoice(1, 10_000, 0, "paid", due=AS_OF, paid_on=AS_OF),  # due today counts as due
        invoice(2, 30_000, 10_000, "partially_paid", due=AS_OF - timedelta(days=40)),
        invoice(3, 50_000, 50_000, "open", due=AS_OF + timedelta(days=1)),  # not due yet: left out
        invoice(4, 60_000, 0, "paid", due=AS_OF + timedelta(days=1), paid_on=AS_OF),  # idem, though paid
    ]
    rep = report(frames(invoices=invs))
    # due: 10000 + 30000 = 40000, of which 10000 still open -> 30000 / 40000
    assert rep.figures["collection_rate"] == Decimal("0.75")
    assert figure_rows(rep)["Collection rate"] == "75.0%"


def test_collection_rate_with_nothing_due_is_blank():
    rep = report(frames(invoices=[invoice(1, 1000, due=AS_OF + timedelta(days=1))]))
    assert rep.figures["collection_rate"] is None
    assert figure_rows(rep)["Collection rate"] == ""


# -- speed of payment after sending ------------------------------------------------------------------


def at(y, m, d, hh, mm=0, tz=UTC):
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def speed_frames(extra_sent=()):
    invs = [
        invoice(1, 100, 0, "paid", paid_on=date(2024, 5, 28)),  # sent Mon 12:00, paid Tue: 1 day
        invoice(2, 100, 0, "paid", paid_on=date(2024, 5, 29)),  # sent Mon 22:30 UTC = Tue 00:30 Brussels, paid Wed: 1
        invoice(3, 100, 0, "paid", paid_on=date(2024, 5, 27)),  # sent Fri, paid Mon: 3 calendar days
        invoice(4, 100, 0, "paid", paid_on=date(2024, 5, 20)),  # sent 10 May, paid 20 May: 10 days
        invoice(5, 100, 0, "overpaid", paid_on=date(2024, 5, 21)),  # sent 10 May, paid 21 May: 11 days
        invoice(6, 100, 100, "open"),  # sent, not paid: counts as sent
        invoice(7, 100, 0, "paid", paid_on=date(2024, 5, 28)),  # paid, never sent: not counted at all
        invoice(8, 100, 60, "partially_paid"),  # partly paid is not paid
    ]
    sent = [(1, at(2024, 5, 27, 12)), (2, at(2024, 5, 27, 22, 30)), (3, at(2024, 5, 24, 15)),
            (4, at(2024, 5, 10, 9)), (5, at(2024, 5, 10, 9)), (6, at(2024, 5, 30, 9)), (8, at(2024, 5, 1, 9)),
            *extra_sent]
    return frames(invoices=invs, sent=sent)


def test_paid_within_24h_and_10_days_count_brussels_calendar_days_among_sent_invoices():
    rep = report(speed_frames())
    # Denominator: the 7 invoices sent (1-6, 8). Within 24 h (paid on the sending day or the next):
    # 1 and 2 (2 only because its sending day is Tuesday in Brussels; in UTC dates it would be 2 days).
    # Within 10 days: 1, 2, 3 (the weekend counts: a Friday sending paid on Monday is 3 days) and 4.
    assert rep.figures["paid_within_24h"] == Decimal(2) / Decimal(7)
    assert rep.figures["paid_within_10d"] == Decimal(4) / Decimal(7)
    rows = figure_rows(rep)
    assert rows["Paid within 24 h of sending"] == "28.6%"
    assert rows["Paid within 10 days of sending"] == "57.1%"


def test_paid_date_is_the_brussels_date_of_paid_at():
    # apply_states stores paid_at as midnight Brussels, i.e. the evening before in UTC: the delay must
    # come from the Brussels dates, or invoice 1 (sent Mon 12:00, paid Tue) would look paid on Monday.
    fr = speed_frames()
    paid_at_utc = fr["invoices"].filter(pl.col("invoice_id") == 1)["paid_at"][0]
    assert paid_at_utc.date() == date(2024, 5, 27)
    assert report(fr).figures["paid_within_24h"] == Decimal(2) / Decimal(7)


def test_sendings_of_documents_outside_the_report_do_not_count():
    # gather() takes the first sending of every delivery of the creditor, credit notes and cancelled
    # invoices included; those are not in the invoice frame and can never be paid.
    rep = report(speed_frames(extra_sent=[(900, at(2024, 5, 2, 9)), (901, at(2024, 5, 3, 9))]))
    assert rep.figures["paid_within_24h"] == Decimal(2) / Decimal(7)
    assert rep.figures["paid_within_10d"] == Decimal(4) / Decimal(7)


def test_speed_without_sendings_is_blank():
    rep = report(frames(invoices=[invoice(1, 100, 0, "paid", paid_on=AS_OF)]))
    assert rep.figures["paid_within_24h"] is None and rep.figures["paid_within_10d"] is None
    assert figure_rows(rep)["Paid within 24 h of sending"] == ""


# -- one night, every section -----------------------------------------------------------------------


def night_frames():
    """One statement of 31 May 2024 with every kind of credit; amounts in cents:

    M1 12100 stage 1 pays F-001 in full           M5 9900 ambiguous between F-006 and F-007
    M2  5000 stage 2 pays part of F-002 (20000)   M6 1234 no match, a formula in its communication
    M3 12500 stage 4 overpays F-003 (10000)       M7 globalised booking 5000 = M7a 2000 (stage 1, F-008)
    M4  7000 stage 5 pays F-004 3000 + F-005 4000                       + M7b 3000 (no match)
    M8 a debit, M9 a positive reversal: neither is a credit.
    """
    day = date(2024, 5, 30)
    moves = [
        move("M1", 12100, "matched", 1, confidence=1.0, reason="OGM +++090/9337/55493+++ of F-001"),
        move("M2", 5000, "matched", 2, confidence=0.98, reason="OGM typed in text"),
        move("M3", 12500, "matched", 4, confidence=0.9, reason="invoice number F-003 in text"),
        move("M4", 7000, "matched", 5, confidence=0.85, reason="IBAN and amount of F-004 + F-005"),
        move("M5", 9900, "ambiguous", 5, communication="factuur mei", suggested=[6, 7],
             reason="ambiguous at stage 5 (iban_and_amount): fits 2 open invoices"),
        move("M6", 1234, "no_match", None, communication='=HYPERLINK("http://evil.example","x")',
             counterparty="@attacker", reason="no rule matched"),
        move("M7", 5000, "globalised", has_details=True),
        move("M7a", 2000, "matched", 1, parent="M7", confidence=1.0, reason="OGM of F-008"),
        move("M7b", 3000, "no_match", parent="M7", communication="-1+1", counterparty="+32 470 00 00 00",
             reason="no rule matched"),
        move("M8", -5000, "debit"),
        move("M9", 1000, "reversal", is_reversal=True),
    ]
    allocs = [
        alloc("M1", 1, 12100, stage=1), alloc("M2", 2, 5000, stage=2),
        alloc("M3", 3, 10000, stage=4), alloc("M3", 3, 2500, "unapplied", stage=4),
        alloc("M4", 4, 3000, stage=5), alloc("M4", 5, 4000, stage=5),
        alloc("M7a", 8, 2000, stage=1),
    ]
    invs = [
        invoice(1, 12100, 0, "paid", paid_on=day), invoice(2, 20000, 15000, "partially_paid"),
        invoice(3, 10000, 0, "overpaid", paid_on=day), invoice(4, 3000, 0, "paid", paid_on=day),
        invoice(5, 4000, 0, "paid", paid_on=day), invoice(6, 9900), invoice(7, 9900),
        invoice(8, 2000, 0, "paid", paid_on=day),
    ]
    return frames(moves, allocs, invs)


CREDITS = 12100 + 5000 + 12500 + 7000 + 9900 + 1234 + 2000 + 3000
MATCHED = 12100 + 5000 + 12500 + 7000 + 2000
UNMATCHED = 9900 + 1234 + 3000


def cents(text: str) -> int:
    return int(Decimal(text) * 100)


def test_section_totals_tie_out_with_the_statement_credits():
    rep = report(night_frames())
    assert (rep.figures["credits_cents"], rep.figures["matched_cents"], rep.figures["unmatched_cents"]) == (
        CREDITS, MATCHED, UNMATCHED) == (52734, 38600, 14134)
    matched_rows = rep.sections["matched"][1]
    unmatched_rows = rep.sections["unmatched"][1]
    applied = sum(cents(r[4]) for r in matched_rows)  # invoice and unapplied money of the matched credits
    movement_amounts = {}
    for r in matched_rows:
        movement_amounts.setdefault((r[0], r[8]), cents(r[2]))
    assert applied == sum(movement_amounts.values()) == MATCHED
    assert sum(cents(r[2]) for r in unmatched_rows) == UNMATCHED
    assert applied + sum(cents(r[2]) for r in unmatched_rows) == CREDITS
    rows = figure_rows(rep)
    assert (rows["Credits on the statements"], rows["Matched"], rows["Unmatched"]) == ("527.34", "386.00", "141.34")


def test_matched_section_rows():
    rep = report(night_frames())
    header, rows = rep.sections["matched"]
    assert header == ["Date", "Counterparty", "Amount", "Invoice", "Applied", "Kind", "Stage", "Confidence",
                      "Reason"]
    d = AS_OF
    expected = [
        [d, "Payer NV", "121.00", "F-001", "121.00", "invoice", "structured_reference", 1.0,
         "OGM +++090/9337/55493+++ of F-001"],
        [d, "Payer NV", "50.00", "F-002", "50.00", "invoice", "reference_in_text", 0.98, "OGM typed in text"],
        [d, "Payer NV", "125.00", "F-003", "100.00", "invoice", "invoice_number_in_text", 0.9,
         "invoice number F-003 in text"],
        [d, "Payer NV", "125.00", "F-003", "25.00", "unapplied", "invoice_number_in_text", 0.9,
         "invoice number F-003 in text"],
        [d, "Payer NV", "70.00", "F-004", "30.00", "invoice", "iban_and_amount", 0.85,
         "IBAN and amount of F-004 + F-005"],
        [d, "Payer NV", "70.00", "F-005", "40.00", "invoice", "iban_and_amount", 0.85,
         "IBAN and amount of F-004 + F-005"],
        [d, "Payer NV", "20.00", "F-008", "20.00", "invoice", "structured_reference", 1.0, "OGM of F-008"],
    ]
    assert sorted(rows, key=str) == sorted(expected, key=str)


def test_undo_rows_and_non_credits_stay_out_of_the_matched_section():
    fr = night_frames()
    fr["allocations"] = pl.concat([fr["allocations"], pl.DataFrame(
        [alloc("M8", 1, -12100, "undo"), alloc("M9", 1, 1000)], schema=ALLOCS_SCHEMA, orient="row")])
    rep = report(fr)
    assert len(rep.sections["matched"][1]) == 7
    assert rep.figures["credits_cents"] == CREDITS


def test_partial_and_over_section_rows():
    header, rows = report(night_frames()).sections["partial_over"]
    assert header == ["Invoice", "Debtor", "Invoice total", "Paid", "Open", "Unapplied", "State"]
    assert rows == [["F-002", "Klant BV", "200.00", "50.00", "150.00", "0.00", "partially_paid"],
                    ["F-003", "Klant BV", "100.00", "100.00", "0.00", "25.00", "overpaid"]]


def test_partial_section_ignores_unapplied_money_reversed_since():
    fr = night_frames()
    fr["allocations"] = fr["allocations"].with_columns(
        reversed_by=pl.when(pl.col("kind") == "unapplied").then(pl.lit("M8")).otherwise(pl.col("reversed_by")))
    rows = report(fr).sections["partial_over"][1]
    assert rows[1][5] == "0.00"


def test_unmatched_section_rows_with_best_suggestion():
    header, rows = report(night_frames()).sections["unmatched"]
    assert header == ["Date", "Counterparty", "Amount", "Communication", "Status", "Best suggestion", "Reason"]
    assert rows == [
        [AS_OF, "Payer NV", "99.00", "factuur mei", "ambiguous", "F-006, F-007",
         "ambiguous at stage 5 (iban_and_amount): fits 2 open invoices"],
        [AS_OF, "@attacker", "12.34", '=HYPERLINK("http://evil.example","x")', "no_match", "", "no rule matched"],
        [AS_OF, "+32 470 00 00 00", "30.00", "-1+1", "no_match", "", "no rule matched"],
    ]


def test_unmatched_section_without_suggestion_column_still_builds():
    # gather() reads movements through ledger.payments.movements_frame, which has no
    # suggested_invoice_ids column today: the report must still build (with an empty suggestion).
    fr = night_frames()
    fr["movements"] = fr["movements"].drop("suggested_invoice_ids")
    rows = report(fr).sections["unmatched"][1]
    assert [r[5] for r in rows] == ["", "", ""]


def test_auto_match_rate_overall_and_per_stage():
    rep = report(night_frames())
    # 8 credits (M1-M6, M7a, M7b; not the globalised booking, the debit or the reversal), 5 matched:
    # stage 1: M1, M7a; stage 2: M2; stage 4: M3; stage 5: M4. M5 carries stage 5 as a suggestion only.
    assert (rep.figures["credit_count"], rep.figures["matched_count"]) == (8, 5)
    assert rep.figures["auto_rate"] == Decimal(5) / 8
    assert rep.figures["stage_rates"] == {
        "structured_reference": Decimal(2) / 8, "reference_in_text": Decimal(1) / 8, "end_to_end_id": Decimal(0),
        "invoice_number_in_text": Decimal(1) / 8, "iban_and_amount": Decimal(1) / 8,
        "name_and_amount": Decimal(0)}
    rows = figure_rows(rep)
    assert rows["Auto-match rate"] == "62.5%"
    assert {k: v for k, v in rows.items() if k.startswith("Auto-match rate: ")} == {
        "Auto-match rate: Stage 1 (structured_reference)": "25.0%",
        "Auto-match rate: Stage 2 (reference_in_text)": "12.5%",
        "Auto-match rate: Stage 3 (end_to_end_id)": "0.0%",
        "Auto-match rate: Stage 4 (invoice_number_in_text)": "12.5%",
        "Auto-match rate: Stage 5 (iban_and_amount)": "12.5%",
        "Auto-match rate: Stage 6 (name_and_amount)": "0.0%",
    }


def test_rates_without_credits_are_blank():
    rep = report(frames(invoices=[invoice(1, 100)]))
    assert rep.figures["auto_rate"] is None and rep.figures["stage_rates"] == {}
    assert figure_rows(rep)["Auto-match rate"] == ""
    assert rep.figures["credits_cents"] == rep.figures["matched_cents"] == rep.figures["unmatched_cents"] == 0


def test_payment_feed_rows():
    header, rows = report(night_frames()).feed
    assert header == ["invoice_number", "amount_paid", "paid_date", "state"]
    paid_on = date(2024, 5, 30)
    assert rows == [["F-001", "121.00", paid_on, "paid"], ["F-002", "50.00", "", "partially_paid"],
                    ["F-003", "100.00", paid_on, "overpaid"], ["F-004", "30.00", paid_on, "paid"],
                    ["F-005", "40.00", paid_on, "paid"], ["F-008", "20.00", paid_on, "paid"]]


def test_report_key_depends_on_creditor_day_and_statements_not_their_order():
    fr = night_frames()
    one = build_report("acme", "en", AS_OF, ["S1", "S2"], fr)
    assert one.key == build_report("acme", "en", AS_OF, ["S2", "S1"], fr).key
    assert one.key.startswith("report:acme:2024-05-31:")
    assert one.key != build_report("acme", "en", AS_OF, ["S1"], fr).key
    assert one.key != build_report("acme", "en", AS_OF + timedelta(days=1), ["S1", "S2"], fr).key


# -- language ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "matched_header", "aging_labels", "dso_label"), [
    ("nl", ["Datum", "Tegenpartij", "Bedrag", "Factuur", "Toegewezen", "Soort", "Stap", "Zekerheid", "Reden"],
     ["Niet vervallen", "1-30 dagen", "31-60 dagen", "61-90 dagen", "Meer dan 90 dagen"], "DSO (dagen)"),
    ("fr", ["Date", "Contrepartie", "Montant", "Facture", "Imputé", "Type", "Étape", "Confiance", "Motif"],
     ["Non échu", "1-30 jours", "31-60 jours", "61-90 jours", "Plus de 90 jours"], "DSO (jours)"),
    ("de", ["Datum", "Gegenpartei", "Betrag", "Rechnung", "Zugeordnet", "Art", "Stufe", "Sicherheit", "Grund"],
     ["Nicht fällig", "1-30 Tage", "31-60 Tage", "61-90 Tage", "Über 90 Tage"], "DSO (Tage)"),
    ("en", ["Date", "Counterparty", "Amount", "Invoice", "Applied", "Kind", "Stage", "Confidence", "Reason"],
     ["Not due", "1-30 days", "31-60 days", "61-90 days", "Over 90 days"], "DSO (days)"),
])
def test_labels_in_the_creditors_language(language, matched_header, aging_labels, dso_label):
    rep = report(night_frames(), language)
    assert rep.sections["matched"][0] == matched_header
    assert [r[0] for r in rep.sections["aging"][1]] == aging_labels
    assert rep.sections["figures"][1][4][0] == dso_label
    labels = LABELS[language]
    for name in SECTIONS:  # every header of every section comes from the language's table
        assert all(h in labels.values() for h in rep.sections[name][0]), name
    assert rep.feed[0] == ["invoice_number", "amount_paid", "paid_date", "state"]  # machine columns


def test_every_language_has_every_label():
    assert all(LABELS[lang].keys() == LABELS["en"].keys() for lang in ("nl", "fr", "de"))


def test_unknown_language_falls_back_to_english():
    assert report(night_frames(), "xx").sections["aging"][0] == ["Bucket", "Invoices", "Open"]


# -- CSV and XLSX -----------------------------------------------------------------------------------


DANGEROUS = {"@attacker": "'@attacker", '=HYPERLINK("http://evil.example","x")':
             '\'=HYPERLINK("http://evil.example","x")', "-1+1": "'-1+1", "+32 470 00 00 00": "'+32 470 00 00 00"}


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline=""), delimiter=";"))


def test_csv_escapes_formulas_and_keeps_the_rest():
    rep = report(night_frames())
    table = read_csv(to_csv(*rep.sections["unmatched"]))
    assert table[0] == rep.sections["unmatched"][0]
    assert table[1:] == [
        ["2024-05-31", "Payer NV", "99.00", "factuur mei", "ambiguous", "F-006, F-007",
         "ambiguous at stage 5 (iban_and_amount): fits 2 open invoices"],
        ["2024-05-31", "'@attacker", "12.34", '\'=HYPERLINK("http://evil.example","x")', "no_match", "",
         "no rule matched"],
        ["2024-05-31", "'+32 470 00 00 00", "30.00", "'-1+1", "no_match", "", "no rule matched"],
    ]
    assert to_csv(*rep.sections["unmatched"]).count(b"\r\n") == 4


def test_csv_escapes_a_formula_in_a_header_and_numbers_stay_plain():
    table = read_csv(to_csv(["=1+1", "Amount"], [[None, 0.985], [date(2024, 1, 2), 7]]))
    assert table == [["'=1+1", "Amount"], ["", "0.98"], ["2024-01-02", "7"]]


def test_report_files_names_and_the_feed_csv():
    files = report_files(report(night_frames(), "fr"), "Acme SA")
    assert sorted(files) == sorted([*(f"reconciliation-2024-05-31-{s}.csv" for s in SECTIONS),
                                    "reconciliation-2024-05-31.xlsx", "reconciliation-2024-05-31-summary.pdf",
                                    "payment-feed-2024-05-31.csv"])
    feed = read_csv(files["payment-feed-2024-05-31.csv"])
    assert feed[0] == ["invoice_number", "amount_paid", "paid_date", "state"]
    assert feed[1] == ["F-001", "121.00", "2024-05-30", "paid"]
    assert feed[2] == ["F-002", "50.00", "", "partially_paid"]
    aging = read_csv(files["reconciliation-2024-05-31-aging.csv"])
    assert aging[0] == ["Tranche", "Factures", "Ouvert"]


def test_xlsx_one_sheet_per_section_in_language_with_formulas_escaped():
    openpyxl = pytest.importorskip("openpyxl")
    rep = report(night_frames(), "de")
    book = openpyxl.load_workbook(io.BytesIO(to_xlsx(rep)))
    assert book.sheetnames == ["Zugeordnete Zahlungen", "Teil- und Überzahlungen", "Nicht zugeordnete Bankzeilen",
                               "Altersstruktur offener Rechnung", "Kennzahlen"]  # 31 characters at most
    cells = [c for sheet in book.worksheets for row in sheet.iter_rows() for c in row if c.value is not None]
    assert cells and all(c.data_type == "s" for c in cells)  # strings only: nothing can become a formula
    values = {c.value for c in cells}
    for raw, escaped in DANGEROUS.items():
        assert escaped in values and raw not in values
    unmatched = book["Nicht zugeordnete Bankzeilen"]
    assert [c.value for c in unmatched[1]] == rep.sections["unmatched"][0]
    assert [c.value for c in unmatched[3]] == ["2024-05-31", "'@attacker", "12.34",
                                               '\'=HYPERLINK("http://evil.example","x")', "no_match", "",
                                               "no rule matched"]
    matched = book["Zugeordnete Zahlungen"]
    assert matched.max_row == 1 + 7
    aging = book["Altersstruktur offener Rechnung"]
    assert [[c.value for c in r] for r in aging.iter_rows(min_row=2)] == [
        [label, str(n), amount] for label, n, amount in rep.sections["aging"][1]]


# -- PDF --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "title", "over_90"), [
    ("nl", "Afletteringsrapport", "Meer dan 90 dagen"), ("fr", "Rapport de lettrage", "Plus de 90 jours"),
    ("de", "Abstimmungsbericht", "Über 90 Tage"), ("en", "Reconciliation report", "Over 90 days"),
])
def test_pdf_is_one_page_in_language_with_the_aging_figures(language, title, over_90):
    pymupdf = pytest.importorskip("pymupdf")
    fr = aging_frames()
    night = night_frames()
    fr["movements"], fr["allocations"] = night["movements"], night["allocations"]
    rep = report(fr, language)
    data = to_pdf(rep, "Acme NV")
    assert data.startswith(b"%PDF-")
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        assert doc.page_count == 1
        assert doc.metadata["title"] == f"{title} acme 2024-05-31"
        text = doc[0].get_text()
    lines = [line.strip() for line in text.splitlines()]
    assert f"{title}: Acme NV" in lines
    assert LABELS[language]["aging"] in lines
    assert over_90 in lines
    for bucket, amount in zip(AGING_BUCKETS, ("0.03", "0.12", "0.48", "1.92", "7.68"), strict=True):
        assert money_in(text, amount), (bucket, amount)
    assert "527.34" in text and "62.5%" in text  # credits and auto-match rate from the figures


def money_in(text: str, amount: str) -> bool:
    return amount in text.split()
