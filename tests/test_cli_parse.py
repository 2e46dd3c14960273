"""`creditflow parse`: an operator's look into a file, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from creditflow.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CSV = REPO / "sample_files" / "demo-utility" / "billing-2026-11.csv"
UBL = REPO / "tests" / "fixtures" / "ubl" / "invoice-be-ogm.xml"
CAMT = REPO / "tests" / "fixtures" / "camt053" / "statement-v08.xml"


def run(capsys, monkeypatch, *argv):
    monkeypatch.setenv("CREDITFLOW_PROFILES_DIR", str(REPO / "sample_files" / "creditors"))
    code = main(["parse", *map(str, argv)])
    return code, capsys.readouterr().out


def test_csv_summary_names_every_bad_row(capsys, monkeypatch):
    code, out = run(capsys, monkeypatch, SAMPLE_CSV, "--creditor", "demo-utility", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["format"] == "csv"
    assert summary["counts"] == {"rows": 50, "accepted": 44, "rejected": 6, "credit_notes": 0}
    assert sorted(e["row"] for e in summary["errors"]) == [9, 17, 24, 32, 40, 46]
    assert set(summary["totals"]) == {"EUR"} and "." in summary["totals"]["EUR"]


def test_several_formats_in_one_call(capsys, monkeypatch):
    code, out = run(capsys, monkeypatch, UBL, CAMT, "--json")
    ubl, camt = json.loads(out)
    assert (ubl["format"], camt["format"]) == ("ubl", "camt053")
    assert ubl["counts"]["accepted"] == 1 and ubl["references"]["count"] == 1
    assert camt["counts"]["statements"] == 1 and camt["counts"]["bookings"] >= 1
    assert camt["totals"]["credit"].count(".") == 1


def test_unreadable_file_is_reported_and_exit_code_says_so(capsys, monkeypatch, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a statement")
    code, out = run(capsys, monkeypatch, junk)
    assert code == 1
    assert "REJECTED [not_this_format]" in out and "--creditor" in out
