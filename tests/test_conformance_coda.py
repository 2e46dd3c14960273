"""Every real CODA sample in the shared samples folder (../shared/samples/coda beside the checkout), read in place (never copied), with what each
must give: statement and booking/detail counts, totals, structured references, and the warnings the
known-bad files must raise. Plus a fuzz test: mutated sample bytes give a batch or a ParseError."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditflow.parsers.coda import CodaParser
from creditflow.parsers.errors import FileRejected, ParseError
from creditflow.parsers.statements import StatementBatch

SAMPLES = Path(os.environ.get("CREDITFLOW_SHARED_SAMPLES",
                        Path(__file__).resolve().parents[2] / "shared" / "samples")) / "coda"  # read in place, never copied
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared CODA samples not available")
PARSER = CodaParser()
TRAILER = {"trailer_count", "trailer_debit", "trailer_credit"}


def load(name: str) -> StatementBatch:
    return PARSER.parse((SAMPLES / name).read_bytes(), source=name)


def codes(batch: StatementBatch) -> set[str]:
    return {w.code for w in batch.warnings}


def bookings(batch: StatementBatch) -> pl.DataFrame:
    return batch.movements.filter(pl.col("is_booking"))


def details(batch: StatementBatch) -> pl.DataFrame:
    return batch.movements.filter(~pl.col("is_booking"))


def refs(batch: StatementBatch) -> dict[str, bool]:
    found = batch.movements.filter(pl.col("structured_reference").is_not_null())
    return dict(zip(found["structured_reference"], found["reference_valid"]))


# (file, statements, bookings, details, credit, debit, {ref: valid}, warnings that must appear,
#  warnings that must not)
EXPECTED = [
    ("coda_standard_coda.cod", 1, 2, 0, 700_860, 0, {"100000834941": True, "100000835749": True},
     {"trailer_count", "trailer_credit", "balance_continuity"}, {"trailer_debit", "bad_check_digits"}),
    ("oca_l10n-belgium_Ontvangen_CODA.2012-01-11-18.59.15.txt", 1, 5, 4, 3_108_190, 1_393_080,
     {"240283842818": True}, set(), TRAILER),
    ("php-coda-parser_sample1.cod", 1, 4, 0, 80_000, 0,
     {"000003505158": False, "000003515846": False, "000003154982": False, "000002133131": False},
     {"bad_check_digits"}, TRAILER | {"balance_continuity"}),
    ("php-coda-parser_sample2.cod", 1, 1, 2, 0, 9_680, {}, set(), TRAILER),
    ("php-coda-parser_sample7.cod", 1, 1, 3, 0, 75_000,
     {"000003515846": False, "000003154982": False, "000002133131": False},
     {"trailer_count", "trailer_debit", "trailer_credit", "balance_continuity"}, set()),
    ("php-coda-parser_sample8.cod", 1, 2, 0, 0, 644_890, {}, set(), TRAILER | {"balance_continuity"}),
    ("php-coda-parser_sample9.cod", 1, 1, 0, 5_000, 0, {"000003505158": False},
     {"trailer_count", "trailer_credit", "balance_continuity", "bad_check_digits"}, {"trailer_debit"}),
    ("php-coda-parser_sample10.cod", 1, 1, 2, 1_000_000, 0, {}, {"field_grid_shift"},
     TRAILER | {"balance_continuity"}),
    ("php-coda-parser_sample11.cod", 1, 1, 0, 1_000_000, 0, {}, set(), TRAILER | {"balance_continuity"}),
    ("pycoda_Coda_foreign_account.txt", 1, 2, 0, 0, 44_400, {}, set(), TRAILER | {"balance_continuity"}),
    ("pycoda_Coda_v2_3_faulty_globalisation.txt", 1, 11, 0, 239_590, 8_769_870, {}, set(),
     TRAILER | {"balance_continuity"}),
    ("pycoda_Coda_v2_3_single_statement.txt", 1, 17, 15, 64_703_010, 64_703_010, {}, set(),
     TRAILER | {"balance_continuity"}),
    ("pycoda_Coda_v2_3_multi_statements.txt", 2, 28, 15, 64_703_010 + 239_590, 64_703_010 + 8_769_870, {}, set(),
     TRAILER | {"balance_continuity"}),
    ("triptyk_sample2_replacement-chars.cod", 1, 1, 2, 0, 9_680, {}, set(), TRAILER | {"line_length"}),
    ("tryton_account_statement_coda_CODA.txt", 1, 1, 0, 100_000, 0, {}, set(),
     TRAILER | {"balance_continuity", "bad_iban"}),
    ("febelfin-coda_CODA-empty.txt", 1, 0, 0, 0, 0, {}, {"application_code"}, TRAILER | {"missing_new_balance"}),
    ("coda_standard_invalid.cod", 1, 2, 0, 700_860, 0, {"100000834941": True, "100000835749": True},
     {"record_outside_statement", "truncated_last_line", "line_length", "blank_line", "trailer_count"}, set()),
]


def test_every_sample_is_covered():
    assert {row[0] for row in EXPECTED} == {p.name for p in SAMPLES.iterdir() if p.is_file() and p.suffix != ".md"}


@pytest.mark.parametrize(
    ("name", "n_statements", "n_bookings", "n_details", "credit", "debit", "structured", "must", "must_not"),
    EXPECTED,
    ids=[row[0] for row in EXPECTED],
)
def test_sample(name, n_statements, n_bookings, n_details, credit, debit, structured, must, must_not):
    assert PARSER.identify(name, (SAMPLES / name).read_bytes()[:512])
    batch = load(name)
    assert batch.statements.height == n_statements
    assert bookings(batch).height == n_bookings and details(batch).height == n_details
    assert batch.statements["credit_milli"].sum() == credit and batch.statements["debit_milli"].sum() == debit
    assert bookings(batch)["amount_milli"].sum() == credit - debit
    assert refs(batch) == structured
    assert must <= codes(batch), codes(batch)
    assert not (must_not & codes(batch)), codes(batch)
    assert batch.movements["movement_key"].n_unique() == batch.movements.height
    assert batch.movements["amount_milli"].null_count() == 0
    for w in batch.warnings:
        assert w.source == name and (w.location == "file" or w.location.startswith("line "))


def test_bad_check_digits_are_flagged_per_movement_in_sample1():
    batch = load("php-coda-parser_sample1.cod")
    flagged = [w for w in batch.warnings if w.code == "bad_check_digits"]
    assert [w.location for w in flagged] == ["line 3", "line 8", "line 13", "line 18"]
    assert batch.movements["communication"][0] == "+++000/0035/05158+++"


def test_trailers_of_sample7_sample9_and_coda_standard_are_reported_with_their_lines():
    for name, line in (("php-coda-parser_sample7.cod", 22), ("php-coda-parser_sample9.cod", 9),
                       ("coda_standard_coda.cod", 14)):
        located = {(w.code, w.location) for w in load(name).warnings}
        assert ("trailer_count", f"line {line}") in located


def test_sample10_short_3_2_line_is_realigned_and_its_sepa_details_decoded():
    batch = load("php-coda-parser_sample10.cod")
    shift = [w for w in batch.warnings if w.code == "field_grid_shift"]
    assert [w.location for w in shift] == ["line 14"]
    info = batch.information["communication"].to_list()
    assert "KLANT2 MET NAAM2, OETGANGERSTRAAT 26, 1215        ANTWERPEN" in info
    booking, *dets = batch.movements.to_dicts()
    assert booking["has_details"] and all(d["parent_key"] == booking["movement_key"] for d in dets)
    assert [d["communication_type"] for d in dets] == ["127", "127"]
    assert "mandate SEPA-000000001" in dets[0]["communication"]
    assert [d["counterparty_name"] for d in dets] == ["KLANT1 MET NAAM1", "KLANT2 MET NAAM2"]


def test_globalisation_without_details_is_a_normal_movement():
    for name in ("php-coda-parser_sample11.cod", "pycoda_Coda_v2_3_faulty_globalisation.txt"):
        batch = load(name)
        assert not batch.movements["has_details"].any()
        assert batch.movements["is_booking"].all()


def test_empty_file_without_record_8_keeps_the_old_balance():
    s = load("febelfin-coda_CODA-empty.txt").statements.row(0, named=True)
    assert s["new_balance_milli"] == s["old_balance_milli"] == 0
    assert s["new_balance_date"] == s["old_balance_date"]


def test_foreign_account_and_free_communication():
    batch = load("pycoda_Coda_foreign_account.txt")
    s = batch.statements.row(0, named=True)
    assert s["account_iban"] == "FR1234567890240924002304825" and s["currency"] == "EUR"
    four = batch.information.filter(pl.col("record") == "4")
    assert four["communication"].to_list() == ["CLOSING AVAILABLE BALANCE C 180202 EUR 443346,3"]
    assert batch.information.filter(pl.col("record") == "3")["communication"].to_list() == ["CONTRAT NO 123456789379"]


def test_replacement_characters_file_matches_its_clean_twin():
    clean, junk = load("php-coda-parser_sample2.cod"), load("triptyk_sample2_replacement-chars.cod")
    assert clean.movements.drop("movement_key", "parent_key").equals(junk.movements.drop("movement_key", "parent_key"))
    (text,) = junk.information["communication"].to_list()
    assert "R\ufffdf\ufffdrence" in text and "Marnix 24" in text
    assert clean.statements["new_balance_milli"][0] == 23_154_685  # a third decimal survives


def test_multi_statement_file_keeps_each_statement_apart():
    batch = load("pycoda_Coda_v2_3_multi_statements.txt")
    per = batch.movements.group_by("statement_key", maintain_order=True).len()["len"].to_list()
    assert per == [32, 11]
    single = load("pycoda_Coda_v2_3_single_statement.txt")
    assert batch.movements.head(32).equals(single.movements)


def test_invalid_file_is_flagged_not_crashed():
    batch = load("coda_standard_invalid.cod")
    outside = [w for w in batch.warnings if w.code == "record_outside_statement"]
    assert [w.location for w in outside] == ["line 18"]


# ---------------------------------------------------------------- fuzz on real bytes

SAMPLE_BYTES = sorted((p.name, p.read_bytes()) for p in SAMPLES.iterdir()) if SAMPLES.is_dir() else [("none", b"")]


@st.composite
def mutated(draw) -> bytes:
    _, data = draw(st.sampled_from(SAMPLE_BYTES))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "newline"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 200))]
        elif op == "truncate":
            del data[at:]
        else:
            data[at:at] = b"\n"
    return bytes(data)


@settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_samples_give_a_batch_or_a_parse_error(data):
    try:
        batch = PARSER.parse(data, source="fuzz.cod")
    except FileRejected as exc:
        assert exc.code and exc.source == "fuzz.cod"
        assert not exc.message.startswith("could not read"), exc.message  # an internal error, not bad input
        return
    except ParseError:
        return
    assert isinstance(batch, StatementBatch)
    assert batch.movements["movement_key"].n_unique() == batch.movements.height
