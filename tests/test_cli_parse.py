"""`creditflow parse`: an operator's look into a file, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from creditflow.cli import main
from statement_builders import camt_file, coda_file, credit  # tests/ is on sys.path (conftest)

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


QRR = "210000000003139471430009017"  # Swiss QR reference: no check rule of ours applies


def test_statement_references_are_counted_valid_invalid_and_unchecked(capsys, monkeypatch, tmp_path):
    path = tmp_path / "camt.xml"
    path.write_bytes(camt_file([
        {"amount": "10.00", "ref": "R1", "ogm": "090933755493"},
        {"amount": "20.00", "ref": "R2", "ogm": "090933755494"},  # bad check digits
        {"amount": "30.00", "ref": "R3", "reference": QRR, "issuer": "QRR"},
        {"amount": "40.00", "ref": "R4", "reference": QRR},  # no issuer at all
    ], seq=7, old="100.00", new="200.00"))
    code, out = run(capsys, monkeypatch, path, "--json")
    refs = json.loads(out)["references"]
    assert code == 0
    assert (refs["count"], refs["valid"], refs["invalid"], refs["unchecked"]) == (4, 1, 1, 2)
    assert refs["first"] == ["090933755493", "090933755494", QRR, QRR]
    code, out = run(capsys, monkeypatch, path)
    assert "references: 4 (1 valid, 1 with bad check digits, 2 unchecked): " in out


def test_unchecked_references_are_not_called_bad(capsys, monkeypatch, tmp_path):
    path = tmp_path / "camt.xml"
    path.write_bytes(camt_file([{"amount": "30.00", "ref": "R3", "reference": QRR, "issuer": "QRR"}],
                               seq=8, old="0.00", new="30.00"))
    code, out = run(capsys, monkeypatch, path)
    assert code == 0
    assert "references: 1 (0 valid, 1 unchecked): " in out and "bad check digits" not in out


def test_coda_of_an_unsupported_version_is_rejected_naming_line_field_and_version(capsys, monkeypatch, tmp_path):
    path = tmp_path / "v5.cod"
    path.write_bytes(coda_file(3, [credit(1, 12_100)], version="5"))  # header column 128
    code, out = run(capsys, monkeypatch, path)
    assert code == 1
    assert ("REJECTED [unsupported_version] line 1, version code: "
            "CODA version 5 is not supported; versions 1 and 2 are") in out
    code, out = run(capsys, monkeypatch, path, "--json")
    summary = json.loads(out)
    assert code == 1 and summary["format"] == "coda"
    assert summary["error"]["code"] == "unsupported_version"
    assert (summary["error"]["location"], summary["error"]["field"]) == ("line 1", "version code")


def test_a_folder_of_ubl_documents_is_one_batch_naming_each_bad_one(capsys, monkeypatch, tmp_path):
    folder = tmp_path / "peppol"
    folder.mkdir()
    (folder / "a.xml").write_bytes(UBL.read_bytes())
    (folder / "b.xml").write_bytes(UBL.read_bytes().replace(b"CF-2026-0042", b"CF-2026-0043")
                                   .replace(b"+++090/9337/55493+++", b"Factuur 43"))
    (folder / "c.xml").write_bytes(b"<Invoice")  # not well-formed
    (folder / "notes.txt").write_text("not a document")
    code, out = run(capsys, monkeypatch, folder, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["format"] == "ubl"
    assert summary["counts"] == {"rows": 3, "accepted": 2, "rejected": 1, "credit_notes": 0}
    [error] = summary["errors"]
    assert error["row"] == 3 and error["code"] == "malformed" and "c.xml" in error["message"]


def test_a_folder_without_xml_documents_is_an_error(capsys, monkeypatch, tmp_path):
    code, out = run(capsys, monkeypatch, tmp_path, "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == "not_this_format"
