"""The nightly reconciliation on both ledgers: statements built here against the sample invoices."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from datetime import date
import os
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from sqlalchemy import func, select

from creditflow.config import Settings
from creditflow.ledger import payments
from creditflow.ledger.models import Allocation, BankMovement, BankStatement, Event, Invoice
from creditflow.parsers.statements import MOVEMENT_SCHEMA
from creditflow.pipeline import intake
from creditflow.pipeline import reconcile
from creditflow.pipeline.runtime import open_runtime
from creditflow.pipeline import reconcile_cli as rcli

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_files" / "demo-utility" / "billing-2026-11.csv"
CREDITOR = "demo-utility"
SHARED = Path(os.environ.get("CREDITFLOW_SHARED_SAMPLES",
                        Path(__file__).resolve().parents[2] / "shared" / "samples"))  # read in place, never copied

from statement_builders import ACCOUNT, camt_file, coda_file, credit  # noqa: E402


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def settings(tmp_path, ledger_url) -> Settings:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (REPO / "sample_files" / "creditors" / "demo-utility.yaml").read_text(encoding="utf-8")
    (profiles / "demo-utility.yaml").write_text(text + "finance_email: finance@demo-nutsbedrijf.example\n",
                                                encoding="utf-8")
    return Settings(home=tmp_path / "var", database_url=ledger_url, profiles_dir=profiles,
                    link_secret="test-secret-of-32-bytes-or-so-----")


@pytest.fixture
def rt(settings):
    inbox = settings.resolved_dropzone_dir / CREDITOR / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLE, inbox / SAMPLE.name)
    runtime = open_runtime(settings)
    for c in intake.pending_files(runtime):
        intake.ingest_file(runtime, c.creditor_id, c.name)
    yield runtime
    runtime.close()


def invoices(rt) -> dict[str, Invoice]:
    with rt.sessions() as s:
        return {i.invoice_number: i for i in s.scalars(select(Invoice).order_by(Invoice.id))}


def night(rt, inv: dict[str, Invoice]):
    """Statement 1 (CODA): exact OGM, OGM typed in text, partial, over, grouped by two invoice numbers,
    ambiguous numbers, noise, a debit. Returns (bytes, expectations)."""
    a, b, c, d, e, f, g = (inv[n] for n in list(inv)[:7])
    body = [
        credit(1, a.amount_cents, ogm=a.structured_reference, name="PAYER A"),
        credit(2, b.amount_cents, text=f"betaling {b.structured_reference[:3]}/{b.structured_reference[3:7]}/"
               f"{b.structured_reference[7:]}",
               name="PAYER B"),
        credit(3, c.amount_cents - 1000, ogm=c.structured_reference, name="PAYER C"),  # partial
        credit(4, d.amount_cents + 500, ogm=d.structured_reference, name="PAYER D"),  # over
        credit(5, e.amount_cents + f.amount_cents, text=f"facturen {e.invoice_number} en {f.invoice_number}"),
        credit(6, 1234, text=f"{e.invoice_number} {g.invoice_number}"),  # two numbers, amount fits neither
        credit(7, 999_99, text="gift voor het goede doel", name="ONBEKEND"),
        credit(8, -20_000, text="huur"),
    ]
    return coda_file(1, body), dict(a=a, b=b, c=c, d=d, e=e, f=f, g=g)


def counts(rt):
    with rt.sessions() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (BankStatement, BankMovement, Allocation))


# ---------------------------------------------------------------- tests


def test_stored_movement_schema_equals_the_parsers_schema():
    assert payments.STORED_MOVEMENT_SCHEMA == MOVEMENT_SCHEMA


def test_night_books_what_is_certain_and_leaves_the_rest_with_a_suggestion(rt):
    inv = invoices(rt)
    data, x = night(rt, inv)
    summary = reconcile.run_reconciliation(rt, [("day1.cod", data)], as_of=date(2026, 11, 21))
    assert summary.imported.file_errors == []
    after = invoices(rt)
    get = lambda k: after[x[k].invoice_number]  # noqa: E731
    assert get("a").state == "paid" and get("a").open_cents == 0
    assert get("a").paid_at.date() in (date(2026, 11, 19), date(2026, 11, 20))
    assert get("b").state == "paid"
    assert get("c").state == "partially_paid" and get("c").open_cents == 1000
    assert get("d").state == "overpaid" and get("d").open_cents == 0
    assert get("e").state == "paid" and get("f").state == "paid"
    assert get("g").state == "open"
    with rt.sessions() as s:
        rows = {m.sequence: m for m in s.scalars(select(BankMovement))}
        unapplied = s.scalars(select(Allocation).where(Allocation.kind == "unapplied")).all()
    assert [(u.invoice_id, u.amount_cents) for u in unapplied] == [(x["d"].id, 500)]
    assert rows[6].match_status == "ambiguous" and rows[6].suggested_invoice_ids
    assert rows[7].match_status == "no_match"
    assert rows[8].match_status == "debit"
    assert {rows[i].match_stage for i in (1, 2, 5)} == {1, 2, 4}
    # report: totals tie out with the statement's credits
    (report,) = summary.reports
    fig = report.figures
    statement_credits = sum(int(r[32:47]) for r in data.decode("cp1252").splitlines()
                            if r[:2] == "21" and r[31] == "0") // 10
    assert fig["credits_cents"] == statement_credits == fig["matched_cents"] + fig["unmatched_cents"]
    assert fig["matched_count"] == 5
    unmatched_csv = next(Path(p) for p in report.paths if p.endswith("-unmatched.csv"))
    lines = list(csv.DictReader(io.StringIO(unmatched_csv.read_bytes().decode("utf-8-sig")), delimiter=";"))
    suggested = [row["Beste voorstel"] for row in lines if row["Beste voorstel"]]
    assert any(x["e"].invoice_number in text or x["f"].invoice_number in text for text in suggested), suggested


def test_rerun_changes_nothing_and_reports_skips(rt):
    data, _ = night(rt, invoices(rt))
    first = reconcile.run_reconciliation(rt, [("day1.cod", data)], as_of=date(2026, 11, 21))
    before_counts, before_inv = counts(rt), {k: (v.state, v.open_cents) for k, v in invoices(rt).items()}
    second = reconcile.run_reconciliation(rt, [("day1-again.cod", data)], as_of=date(2026, 11, 21))
    assert counts(rt) == before_counts
    assert {k: (v.state, v.open_cents) for k, v in invoices(rt).items()} == before_inv
    assert second.booked.allocations_booked == 0
    assert [s.imported for s in second.imported.statements] == [False]
    assert second.imported.statements[0].skipped_movements == 8 and not second.imported.new_movement_keys
    assert "seen before (skipped) | 1" in second.markdown()
    assert first.reports[0].emailed and second.reports[0].already_sent and not second.reports[0].emailed
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.kind == "report.sent")) == 1
    mails = list((rt.settings.resolved_outbox_dir / "email").glob("*.eml"))
    assert len([m for m in mails if "report" in m.name]) <= 1


def test_sequence_gap_and_balance_break_are_reported(rt):
    inv = list(invoices(rt).values())
    one = coda_file(1, [credit(1, 100, text="x")], old=0)
    three = coda_file(3, [credit(1, 200, text="y")], old=5_000, day=date(2026, 11, 22))
    summary = reconcile.run_reconciliation(rt, [("s1.cod", one), ("s3.cod", three)], as_of=date(2026, 11, 23))
    issues = summary.imported.issues
    assert any("sequence gap: statement 003 follows 001" in i for i in issues)
    assert any("balance discontinuity" in i for i in issues)
    assert "To look at" in summary.markdown()
    assert inv  # the sample ledger is there


def test_camt_statement_and_reversal_undoes_the_payment(rt):
    inv = list(invoices(rt).values())
    h = inv[10]
    euros = f"{h.amount_cents // 100}.{h.amount_cents % 100:02d}"
    camt = camt_file([{"amount": euros, "ogm": h.structured_reference, "ref": "E2E-H", "name": "PAYER H"}],
                     seq=7, old="0.00", new=euros)
    reconcile.run_reconciliation(rt, [("camt.xml", camt)], as_of=date(2026, 11, 23))
    assert invoices(rt)[h.invoice_number].state == "paid"
    back = coda_file(2, [credit(1, -h.amount_cents, ogm=h.structured_reference, reversal=True,
                                day=date(2026, 11, 24))], day=date(2026, 11, 24))
    summary = reconcile.run_reconciliation(rt, [("back.cod", back)], as_of=date(2026, 11, 25))
    assert summary.booked.undone == 1
    after = invoices(rt)[h.invoice_number]
    assert after.state == "open" and after.open_cents == h.amount_cents and after.paid_at is None
    again = reconcile.run_reconciliation(rt, [("back.cod", back)], as_of=date(2026, 11, 25))
    assert again.booked.undone == 0 and invoices(rt)[h.invoice_number].open_cents == h.amount_cents


def test_reports_written_in_language_and_formulas_escaped(rt):
    inv = list(invoices(rt).values())
    data = coda_file(1, [credit(1, 4242, text="=HYPERLINK(\"http://evil\")", name="@attacker"),
                         credit(2, inv[0].amount_cents, ogm=inv[0].structured_reference, name="+32 PAYER")])
    summary = reconcile.run_reconciliation(rt, [("day.cod", data)], as_of=date(2026, 11, 21))
    paths = [Path(p) for p in summary.reports[0].paths]
    names = {p.name for p in paths}
    assert {"reconciliation-2026-11-21-unmatched.csv", "reconciliation-2026-11-21.xlsx",
            "reconciliation-2026-11-21-summary.pdf", "payment-feed-2026-11-21.csv"} <= names
    folder = paths[0].parent
    assert folder.name == "reports"
    assert (folder / "reconciliation-2026-11-21-summary.pdf").read_bytes().startswith(b"%PDF")
    text = (folder / "reconciliation-2026-11-21-unmatched.csv").read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][0] == "Datum"  # Dutch: the creditor's language
    assert rows[1][3].startswith("'=HYPERLINK") and rows[1][1] == "'@attacker"
    book = openpyxl.load_workbook(folder / "reconciliation-2026-11-21.xlsx")
    assert "Niet-afgeletterde banklijnen" in book.sheetnames
    cells = [c.value for row in book["Niet-afgeletterde banklijnen"].iter_rows() for c in row]
    assert "'@attacker" in cells and not any(isinstance(v, str) and v.startswith("=") for v in cells)
    matched = [c.value for row in book["Afgeletterde betalingen"].iter_rows() for c in row]
    assert "'+32 PAYER" in matched
    feed = (folder / "payment-feed-2026-11-21.csv").read_bytes().decode("utf-8-sig")
    feed_rows = list(csv.DictReader(io.StringIO(feed), delimiter=";"))
    assert feed_rows == [{"invoice_number": inv[0].invoice_number,
                          "amount_paid": f"{inv[0].amount_cents // 100}.{inv[0].amount_cents % 100:02d}",
                          "paid_date": "2026-11-20", "state": "paid"}]


def test_dry_run_books_nothing_and_prints_json(rt, capsys, monkeypatch, tmp_path):
    data, x = night(rt, invoices(rt))
    statement = tmp_path / "day1.cod"
    statement.write_bytes(data)
    monkeypatch.setenv("CREDITFLOW_HOME", str(rt.settings.home))
    before = counts(rt)
    code = rcli.main_dry_run([str(statement)], settings=rt.settings, as_json=True)
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert counts(rt) == before  # nothing imported, nothing booked
    totals = out["totals"]
    assert totals["credits_cents"] == totals["matched_cents"] + totals["unmatched_cents"]
    by_key = {}
    for row in out["movements"]:
        by_key.setdefault(row["movement_key"].rsplit(":", 3)[1], []).append(row)
    assert by_key["0001"][0]["invoice_number"] == x["a"].invoice_number and by_key["0001"][0]["stage"] == 1
    assert by_key["0006"][0]["status"] == "ambiguous"
    # text output, against an open-invoice CSV instead of the ledger
    csv_path = tmp_path / "open.csv"
    a = x["a"]
    csv_path.write_text("invoice_number;amount_cents;structured_reference;due_date\n"
                        f"{a.invoice_number};{a.amount_cents};{a.structured_reference};2026-12-03\n")
    code = rcli.main_dry_run([str(statement)], settings=rt.settings, invoices_csv=str(csv_path))
    text = capsys.readouterr().out
    assert code == 0 and a.invoice_number in text and "structured_reference" in text and "no_match" in text


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared samples absent")
def test_shared_samples_dry_run_totals_equal_the_movements():
    files = sorted([*(SHARED / "coda").glob("*"), *(SHARED / "camt053").glob("*.xml")])
    assert files
    for path in files:
        result = reconcile.preview([(path.name, path.read_bytes())], pl.DataFrame(
            schema=payments.OPEN_INVOICE_SCHEMA), {})
        totals = result["totals"]
        assert totals["credits_cents"] == totals["matched_cents"] + totals["unmatched_cents"], path.name
        parsed = reconcile.parse_statement_file(path.name, path.read_bytes())
        if parsed.batch is not None:
            from creditflow.reconciliation.normalise import credit_movements

            expected = int(credit_movements(parsed.batch.movements)["cents"].sum())
            assert totals["credits_cents"] == expected, path.name
