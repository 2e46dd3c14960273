"""Unit tests of the CODA parser on small files built here, record by record, from the spec's grid."""

from __future__ import annotations

import random
from datetime import date

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.be import ogm_vcs

from creditflow.parsers.coda import CodaParser
from creditflow.parsers.coda_records import decode_information, decode_movement
from creditflow.parsers.errors import (
    EMPTY_FILE,
    MALFORMED,
    NOT_THIS_FORMAT,
    UNSUPPORTED_VERSION,
    FileRejected,
    ParseError,
)
from creditflow.parsers.statements import INFORMATION_SCHEMA, MOVEMENT_SCHEMA, STATEMENT_SCHEMA, StatementBatch

PARSER = CodaParser()


# ---------------------------------------------------------------- a tiny CODA writer (1-based columns)


def put(*fields: tuple[int, str]) -> str:
    """A 128-character record with each (first column, text) written in place."""
    chars = [" "] * 128
    for start, text in fields:
        chars[start - 1 : start - 1 + len(text)] = list(text)
    return "".join(chars[:128])


def amount(milli: int) -> str:
    return ("1" if milli < 0 else "0") + f"{abs(milli):015d}"


def header(version: str = "2", app: str = "05", duplicate: str = " ", day: str = "150124") -> str:
    return put((1, "00000"), (6, day), (12, "725"), (15, app), (17, duplicate), (35, "CREDITFLOW TEST NV"),
               (61, "KREDBEBB"), (72, "00123456789"), (84, "00000"), (128, version))


def old_balance(milli: int, account: str = "BE62510007547061", day: str = "140124", seq: str = "007",
                structure: str = "2") -> str:
    zone = f"{account:<12} EUR0BE" if structure == "0" else f"{account:<34}EUR"
    return put((1, "1"), (2, structure), (3, seq), (6, zone), (43, amount(milli)), (59, day),
               (65, "CREDITFLOW TEST NV"), (91, "Zichtrekening"), (126, seq))


def new_balance(milli: int, account: str = "BE62510007547061", day: str = "150124", structure: str = "2") -> str:
    zone = f"{account:<12} EUR0BE" if structure == "0" else f"{account:<34}EUR"
    return put((1, "8"), (2, "007"), (5, zone), (42, amount(milli)), (58, day))


def m21(seq: int, det: int, milli: int, comm: str = "", *, structured: str | None = None, code: str = "00150000",
        value: str = "150124", booked: str = "150124", glob: str = "0", ref: str = "BANKREF") -> str:
    flag, zone = ("1", structured + comm) if structured else ("0", comm)
    return put((1, "21"), (3, f"{seq:04d}"), (7, f"{det:04d}"), (11, ref), (32, amount(milli)), (48, value),
               (54, code), (62, flag), (63, zone[:53]), (116, booked), (122, "007"), (125, glob))


def m22(seq: int, det: int, comm: str = "", *, customer_ref: str = "", bic: str = "", r_type: str = "",
        reason: str = "") -> str:
    return put((1, "22"), (3, f"{seq:04d}"), (7, f"{det:04d}"), (11, comm[:53]), (64, customer_ref), (99, bic),
               (113, r_type), (114, reason))


def m23(seq: int, det: int, account: str = "", name: str = "", comm: str = "") -> str:
    return put((1, "23"), (3, f"{seq:04d}"), (7, f"{det:04d}"), (11, account), (48, name), (83, comm[:43]))


def i31(seq: int, det: int, text: str, *, structured: str | None = None, link: str = "0",
        code: str = "00150000", ref: str = "BANKREF") -> str:
    flag, zone = ("1", structured + text) if structured else ("0", text)
    return put((1, "31"), (3, f"{seq:04d}"), (7, f"{det:04d}"), (11, ref), (32, code), (40, flag),
               (41, zone[:73]), (128, link))


def i32(seq: int, det: int, text: str) -> str:
    return put((1, "32"), (3, f"{seq:04d}"), (7, f"{det:04d}"), (11, text[:105]))


def free4(text: str) -> str:
    return put((1, "4"), (3, "0001"), (7, "0000"), (33, text[:80]))


def trailer(records: list[str], *, count: int | None = None, debit: int | None = None,
            credit: int | None = None) -> str:
    """Correct trailer for `records` unless a value is forced."""
    counted = sum(1 for r in records if r[0] in "1238")
    bookings = [r for r in records if r[:2] == "21" and r[6:10] == "0000"]
    amounts = [(-1 if r[31] == "1" else 1) * int(r[32:47]) for r in bookings]
    debit = sum(-a for a in amounts if a < 0) if debit is None else debit
    credit = sum(a for a in amounts if a > 0) if credit is None else credit
    return put((1, "9"), (17, f"{counted if count is None else count:06d}"), (23, f"{debit:015d}"),
               (38, f"{credit:015d}"), (128, "2"))


def statement(body: list[str], *, old: int = 1_000_000, version: str = "2", new: int | None = None,
              **trailer_overrides) -> list[str]:
    """0, 1, body, 8, 9 with a balance that holds (unless `new` is forced)."""
    bookings = [r for r in body if r[:2] == "21" and r[6:10] == "0000"]
    moved = sum((-1 if r[31] == "1" else 1) * int(r[32:47]) for r in bookings)
    records = [old_balance(old), *body, new_balance(old + moved if new is None else new)]
    return [header(version), *records, trailer(records, **trailer_overrides)]


def coda(*statements: list[str], newline: str = "\n", final: bool = True, encoding: str = "cp1252") -> bytes:
    lines = [line for s in statements for line in s]
    return (newline.join(lines) + (newline if final else "")).encode(encoding)


def ogm(base: int) -> str:
    return f"{base:010d}{(base % 97) or 97:02d}"


def parse(data: bytes) -> StatementBatch:
    return PARSER.parse(data, source="test.cod")


def codes(batch: StatementBatch) -> set[str]:
    return {w.code for w in batch.warnings}


SIMPLE = [
    m21(1, 0, 125_500, structured="101", comm=ogm(1234567890)),
    m22(1, 0, bic="GEBABEBB"),
    m23(1, 0, "BE71096123456769", "JANSSENS BV"),
    m21(2, 0, -20_125, "Huur januari"),
]


# ---------------------------------------------------------------- identify


def test_identify_accepts_headers_with_any_line_ending_and_bom():
    body = coda(statement(SIMPLE))
    assert PARSER.identify("x.cod", body[:300])
    assert PARSER.identify("x.cod", coda(statement(SIMPLE), newline="\r\n")[:300])
    assert PARSER.identify("x.cod", b"\xef\xbb\xbf" + body[:300])
    assert PARSER.identify("x", header().encode())  # a lone header without newline


@pytest.mark.parametrize(
    "head",
    [
        b"invoice_number;amount;due_date\n1;10.00;2024-01-01\n",
        header(version="5", app="99").encode() + b"\n",  # unknown version and not the header layout
        ("0" * 127 + "5").encode() + b"\n",
        header()[:100].encode() + b"\n",
        (header() + " ").encode() + b"\n",
        b"",
    ],
)
def test_identify_rejects_other_files(head):
    assert not PARSER.identify("x.cod", head)


@pytest.mark.parametrize("version", ["5", "3", "0", " "])
def test_identify_claims_a_coda_header_of_a_version_we_do_not_read(version):
    """So that parse can say why, instead of "no parser recognises this file"."""
    assert PARSER.identify("x.cod", coda(statement(SIMPLE, version=version))[:300])


# ---------------------------------------------------------------- whole-file errors


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", EMPTY_FILE),
        (b" \r\n\n \n", EMPTY_FILE),
        (b"\xef\xbb\xbf", EMPTY_FILE),
        (b"invoice;amount\n1;2\n", NOT_THIS_FORMAT),
        (header()[:60].encode() + b"\n", MALFORMED),
        ("\n".join(statement(SIMPLE, version="5")).encode(), UNSUPPORTED_VERSION),
        ("\n".join(statement(SIMPLE) + statement(SIMPLE, version="3")).encode(), UNSUPPORTED_VERSION),
    ],
)
def test_unusable_files_are_rejected_with_a_code(data, code):
    with pytest.raises(FileRejected) as raised:
        parse(data)
    assert raised.value.code == code
    assert raised.value.source == "test.cod"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("short_line", [False, True], ids=["regular", "irregular"])
def test_version_5_is_rejected_naming_line_1_the_field_and_the_version(newline, short_line):
    lines = statement(SIMPLE, version="5")
    if short_line:  # takes the line-by-line reader instead of the byte matrix
        lines[2] = lines[2].rstrip()
    with pytest.raises(FileRejected) as raised:
        parse(coda(lines, newline=newline))
    rejected = raised.value
    assert (rejected.code, rejected.location, rejected.field) == (UNSUPPORTED_VERSION, "line 1", "version code")
    assert rejected.message.startswith("CODA version 5 is not supported; versions 1 and 2 are")
    assert "line 1, version code: CODA version 5" in str(rejected)


def test_unknown_version_in_a_later_statement_names_its_header_line():
    first = statement(SIMPLE)
    with pytest.raises(FileRejected) as raised:
        parse(coda(first, statement(SIMPLE, version="3")))
    assert raised.value.location == f"line {len(first) + 1}"
    assert "CODA version 3 is not supported" in raised.value.message


# ---------------------------------------------------------------- a plain statement


def test_statement_and_movements_are_read_field_by_field():
    batch = parse(coda(statement(SIMPLE)))
    assert batch.format == "coda" and not batch.warnings
    assert batch.statements.schema == pl.Schema(STATEMENT_SCHEMA)
    assert batch.movements.schema == pl.Schema(MOVEMENT_SCHEMA)
    assert batch.information.schema == pl.Schema(INFORMATION_SCHEMA)
    s = batch.statements.row(0, named=True)
    assert s["account_iban"] == "BE62510007547061" and s["currency"] == "EUR"
    assert s["old_balance_milli"] == 1_000_000 and s["new_balance_milli"] == 1_000_000 + 125_500 - 20_125
    assert (s["credit_milli"], s["debit_milli"], s["movement_count"]) == (125_500, 20_125, 2)
    assert s["old_balance_date"] == date(2024, 1, 14) and s["creation_date"] == date(2024, 1, 15)
    assert s["sequence_number"] == "007" and s["holder_name"] == "CREDITFLOW TEST NV"
    assert s["duplicate_flag"] is False
    first, second = batch.movements.to_dicts()
    assert first["amount_milli"] == 125_500 and second["amount_milli"] == -20_125
    assert first["structured_reference"] == ogm(1234567890) and first["reference_valid"] is True
    assert first["communication"] == "+++{}/{}/{}+++".format(ogm(1234567890)[:3], ogm(1234567890)[3:7],
                                                            ogm(1234567890)[7:])
    assert first["communication_type"] == "101" and second["communication_type"] is None
    assert first["counterparty_name"] == "JANSSENS BV" and first["counterparty_account"] == "BE71096123456769"
    assert first["counterparty_bic"] == "GEBABEBB" and first["bank_reference"] == "BANKREF"
    assert first["value_date"] == date(2024, 1, 15) and first["booking_date"] == date(2024, 1, 15)
    assert first["transaction_code"] == "00150000" and first["source_line"] == 3
    assert second["communication"] == "Huur januari" and second["counterparty_name"] is None
    assert all(m["is_booking"] and not m["has_details"] and m["parent_key"] is None for m in (first, second))


def test_line_endings_final_newline_and_trailing_blank_lines_do_not_change_the_result():
    reference = parse(coda(statement(SIMPLE)))
    variants = [
        coda(statement(SIMPLE), newline="\r\n"),
        coda(statement(SIMPLE), final=False),
        coda(statement(SIMPLE), newline="\r\n", final=False),
        coda(statement(SIMPLE)) + b"\n\n   \n",
    ]
    for data in variants:
        batch = parse(data)
        assert batch.movements.equals(reference.movements)
        assert batch.statements.equals(reference.statements)
        assert not batch.warnings


def test_truncated_last_line_and_odd_lengths_warn_and_are_padded():
    lines = statement(SIMPLE)
    lines[-1] = lines[-1][:60]  # trailer cut short
    lines[4] = lines[4] + "XY"  # 2.3 two characters too long
    batch = parse("\n".join(lines).encode())
    warnings = {(w.code, w.location) for w in batch.warnings}
    assert ("truncated_last_line", f"line {len(lines)}") in warnings
    assert ("line_length", "line 5") in warnings
    assert batch.movements.height == 2
    assert batch.movements["counterparty_name"][0] == "JANSSENS BV"


def test_trailer_with_its_trailing_blanks_stripped_is_read_without_a_truncation_warning():
    lines = statement(SIMPLE)
    lines[-1] = lines[-1][:127].rstrip()  # some banks strip blanks and leave column 128 empty
    assert len(lines[-1]) == 52
    for data in (coda(lines), coda(lines, final=False), coda(lines, newline="\r\n")):
        batch = parse(data)
        assert not batch.warnings, batch.warnings
        assert batch.statements["credit_milli"][0] == 125_500


def test_stripped_trailer_whose_totals_are_wrong_warns_about_the_totals_not_truncation():
    lines = statement(SIMPLE, credit=999)
    lines[-1] = lines[-1][:127].rstrip()
    assert codes(parse(coda(lines))) == {"trailer_credit"}


def test_trailer_cut_inside_its_data_still_looks_truncated():
    lines = statement(SIMPLE)
    lines[-1] = lines[-1][:45]  # inside the credit total (columns 38-52)
    batch = parse(coda(lines, final=False))
    assert ("truncated_last_line", f"line {len(lines)}") in {(w.code, w.location) for w in batch.warnings}
    assert "trailer_credit" in codes(batch)


def test_missing_trailer_still_warns():
    lines = statement(SIMPLE)[:-1]
    batch = parse(coda(lines))
    assert codes(batch) == {"missing_trailer"}
    assert batch.movements.height == 2


def test_blank_line_between_records_warns():
    lines = statement(SIMPLE)
    lines.insert(3, "")
    batch = parse("\n".join(lines).encode())
    assert ("blank_line", "line 4") in {(w.code, w.location) for w in batch.warnings}
    assert batch.movements.height == 2


# ---------------------------------------------------------------- encodings


def test_utf8_and_cp1252_files_give_the_same_names_because_slicing_is_on_characters():
    body = [m21(1, 0, 5_000, "Paiement Société"), m22(1, 0, bic="BBRUBEBB"),
            m23(1, 0, "BE71096123456769", "Crèmerie Lefèvre à Liège", "et café")]
    cp = parse(coda(statement(body), encoding="cp1252"))
    utf = parse(coda(statement(body), encoding="utf-8"))
    assert not cp.warnings and not utf.warnings
    assert cp.movements.equals(utf.movements)
    row = utf.movements.row(0, named=True)
    assert row["counterparty_name"] == "Crèmerie Lefèvre à Liège"
    assert row["communication"].startswith("Paiement Société") and row["communication"].endswith("et café")
    assert row["counterparty_bic"] == "BBRUBEBB"


def test_replacement_characters_are_tolerated():
    body = [m21(1, 0, 5_000, "R\ufffdf\ufffdrence 12"), m23(1, 0, "BE71096123456769", "D\ufffdbit SA")]
    batch = parse(coda(statement(body), encoding="utf-8"))
    assert batch.movements["counterparty_name"][0] == "D\ufffdbit SA"
    assert batch.movements["communication"][0] == "R\ufffdf\ufffdrence 12"
    assert "line_length" not in codes(batch)


# ---------------------------------------------------------------- communications


def test_communication_zones_are_joined_before_interpretation():
    text = "A" * 52 + "BC" + "D" * 51 + "EF" + "G" * 20
    body = [m21(1, 0, 100, text[:53]), m22(1, 0, text[53:106]), m23(1, 0, "", "", text[106:])]
    batch = parse(coda(statement(body)))
    assert batch.movements["communication"][0] == text


def test_bad_ogm_check_digits_are_flagged_not_dropped():
    bad = ogm(1000008349)[:10] + "00"
    body = [m21(1, 0, 500, structured="101", comm=bad), m21(2, 0, 700, structured="102", comm=ogm(1000008357))]
    batch = parse(coda(statement(body)))
    first, second = batch.movements.to_dicts()
    assert first["structured_reference"] == bad and first["reference_valid"] is False
    assert second["communication_type"] == "102" and second["reference_valid"] is True
    flagged = [w for w in batch.warnings if w.code == "bad_check_digits"]
    assert len(flagged) == 1 and flagged[0].location == "line 3" and bad in flagged[0].message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet="0123456789", min_size=12, max_size=12), min_size=1, max_size=30))
def test_vectorised_ogm_check_agrees_with_stdnum(references):
    body = [m21(i + 1, 0, 100 + i, structured="101", comm=ref) for i, ref in enumerate(references)]
    batch = parse(coda(statement(body)))
    assert batch.movements["reference_valid"].to_list() == [ogm_vcs.is_valid(r) for r in references]
    assert batch.movements["structured_reference"].to_list() == references


def test_sepa_direct_debit_127_spans_three_records_and_matches_the_reference_decoder():
    content = ("150124" + "110" + "BE98ZZZ0123456789".ljust(35) + "MANDATE-42".ljust(35)
               + "Abonnement janvier".ljust(62) + " " + "    ")
    zone = "127" + content
    body = [m21(1, 0, -12_340, zone[3:53], structured="127", code="00501000"),
            m22(1, 0, zone[53:106], customer_ref="E2E-1"), m23(1, 0, "BE71096123456769", "CLIENT", zone[106:149])]
    batch = parse(coda(statement(body)))
    row = batch.movements.row(0, named=True)
    assert row["communication"] == decode_movement("127", zone[3:]).text
    assert "creditor BE98ZZZ0123456789" in row["communication"] and "mandate MANDATE-42" in row["communication"]
    assert row["communication"].endswith("Abonnement janvier") and "2024-01-15" in row["communication"]
    assert row["end_to_end_id"] == "E2E-1" and row["customer_reference"] == "E2E-1"


@pytest.mark.parametrize("placeholder", ["NOTPROVIDED", "NOT PROVIDED", "Not Provided"])
def test_not_provided_customer_reference_is_no_reference_as_in_camt(placeholder):
    body = [m21(1, 0, 10_000, "x"), m22(1, 0, customer_ref=placeholder),
            m21(2, 0, 20_000, "y"), m22(2, 0, customer_ref="NOT PROVIDED-1")]
    rows = parse(coda(statement(body))).movements.select("customer_reference", "end_to_end_id").rows()
    assert rows == [(None, None), ("NOT PROVIDED-1", "NOT PROVIDED-1")]


def test_other_structured_types_are_decoded_and_typed():
    t105 = (f"{8_000:015d}" + f"{9_200:015d}" + "000115000000" + "USD" + ogm(1234567890) + "US"
            + f"{8_000:015d}")
    t106 = f"{1_680:015d}" + f"{8_000:015d}" + "002100000000" + "2" + f"{1_680:015d}"
    body = [m21(1, 0, 8_000, t105[:50], structured="105"), m22(1, 0, t105[50:]),
            m21(2, 0, -1_680, t106[:50], structured="106"), m22(2, 0, t106[50:]),
            m21(3, 0, -50, "4871********1234", structured="113")]
    batch = parse(coda(statement(body)))
    rows = batch.movements.to_dicts()
    assert [r["communication_type"] for r in rows] == ["105", "106", "113"]
    assert rows[0]["communication"].startswith("Original amount USD 9.200")
    assert rows[0]["structured_reference"] == ogm(1234567890) and rows[0]["reference_valid"] is True
    assert rows[1]["communication"] == "Calculation: 21.00000000 % of 8.000 = 1.680; in transaction currency 1.680"
    assert rows[2]["communication"] == "ATM/POS debit: 4871********1234"
    assert decode_movement("100", "RF18539007547034").reference_valid is True
    assert decode_information("006", "Coupon".ljust(30) + "EUR" + f"{1_500:015d}" + "1" + "000").text == (
        "Coupon: EUR -1.500 (category 000)"
    )


# ---------------------------------------------------------------- globalisation, dates, keys


def test_bank_globalisation_keeps_the_booking_and_links_its_details():
    body = [
        m21(1, 0, 300, "GLOBAL", code="20150000", glob="1"),
        m21(1, 1, 100, structured="101", comm=ogm(1111111111), code="60150000"),
        m21(1, 2, 200, structured="101", comm=ogm(2222222222), code="60150000", glob="1"),
        m21(2, 0, 50, "GLOBAL WITHOUT DETAILS", code="10150000", glob="1"),
    ]
    batch = parse(coda(statement(body)))
    assert not batch.warnings
    rows = batch.movements.to_dicts()
    booking, d1, d2, lone = rows
    assert booking["is_booking"] and booking["has_details"] and booking["parent_key"] is None
    assert [d1["parent_key"], d2["parent_key"]] == [booking["movement_key"]] * 2
    assert not d1["is_booking"] and (d1["detail_number"], d2["detail_number"]) == (1, 2)
    assert lone["is_booking"] and not lone["has_details"]
    s = batch.statements.row(0, named=True)
    assert s["movement_count"] == 2 and s["credit_milli"] == 350


def test_value_date_zero_is_null_and_a_bad_date_warns():
    body = [m21(1, 0, 100, "A", value="000000"), m21(2, 0, 100, "B", value="310224")]
    batch = parse(coda(statement(body)))
    assert batch.movements["value_date"].to_list() == [None, None]
    bad = [w for w in batch.warnings if w.code == "bad_date"]
    assert len(bad) == 1 and bad[0].location == "line 4"


def test_keys_are_stable_and_distinct_across_statements_and_repeats():
    one = statement(SIMPLE)
    other = [header(), old_balance(0, account="BE43068999999501"), m21(1, 0, 10, "X"),
             new_balance(10, account="BE43068999999501")]
    other.append(trailer(other[1:]))
    data = coda(one, other)
    a, b = parse(data), parse(data)
    assert a.movements["movement_key"].equals(b.movements["movement_key"])
    assert a.statements.height == 2 and a.statements["statement_key"].n_unique() == 2
    assert a.movements["movement_key"].n_unique() == a.movements.height
    assert a.statements["statement_key"][0] == "coda:BE62510007547061:007:2024-01-15"

    repeated = parse(coda(statement([m21(1, 0, 10, "A"), m21(1, 0, 10, "A")])))
    keys = repeated.movements["movement_key"].to_list()
    assert len(set(keys)) == 2 and keys[0].endswith(":0001:0000:0") and keys[1].endswith(":0001:0000:1")

    twice = parse(coda(one, one))
    assert twice.statements["statement_key"].to_list()[1].endswith("#2")
    assert "duplicate_statement" in codes(twice)


def test_several_statements_each_get_their_own_movements():
    other = [header(), old_balance(0, account="BE43068999999501"), m21(1, 0, 10, "X"),
             new_balance(10, account="BE43068999999501")]
    other.append(trailer(other[1:]))
    batch = parse(coda(statement(SIMPLE), other))
    counts = batch.movements.group_by("statement_key", maintain_order=True).len()["len"].to_list()
    assert counts == [2, 1] and not batch.warnings


# ---------------------------------------------------------------- checks that warn


def test_trailer_and_balance_mismatches_warn_and_never_abort():
    batch = parse(coda(statement(SIMPLE, count=99, debit=1, credit=2, new=5)))
    assert {"trailer_count", "trailer_debit", "trailer_credit", "balance_continuity"} <= codes(batch)
    assert batch.movements.height == 2


def test_empty_statement_keeps_the_old_balance():
    records = [old_balance(4_200)]
    batch = parse(coda([header(), *records, trailer(records)]))
    s = batch.statements.row(0, named=True)
    assert s["new_balance_milli"] == s["old_balance_milli"] == 4_200 and s["movement_count"] == 0
    assert batch.movements.height == 0 and not batch.warnings


def test_missing_trailer_and_orphans_warn():
    lines = statement(SIMPLE)[:-1] + [m22(9, 0, "lost"), header(), old_balance(0), m23(5, 0, "", "ORPHAN")]
    batch = parse("\n".join(lines).encode())
    found = codes(batch)
    assert {"missing_trailer", "orphan_record", "record_order"} <= found
    assert batch.statements.height == 2


def test_records_after_the_trailer_are_flagged_and_ignored():
    lines = statement(SIMPLE) + ["", "100/0000/00135"]
    batch = parse("\n".join(lines).encode())
    assert "record_outside_statement" in codes(batch)
    assert batch.statements.height == 1 and batch.movements.height == 2


def test_warnings_are_capped_per_code():
    body = [m21(i, 0, 1, "X", value="999999") for i in range(1, 200)]
    batch = parse(coda(statement(body)))
    assert sum(w.code == "bad_date" for w in batch.warnings) == 50
    assert any(w.code == "too_many_warnings" and "149 more 'bad_date'" in w.message for w in batch.warnings)


# ---------------------------------------------------------------- information records


def test_information_records_link_to_their_movement_and_fill_the_counterparty():
    body = [
        m21(1, 0, 100, structured="101", comm=ogm(1234567890)),
        i31(1, 1, "PEETERS MARC".ljust(70), structured="001"),
        i32(1, 1, "KERKSTRAAT 12".ljust(35) + "2000 ANTWERPEN".ljust(35) + "ID-1"),
        m21(2, 0, 100, "FREE"),
        i31(2, 1, "INVOICE 2011/02/0002548 ING Belgique SA - Avenue".ljust(68) + "Marni", link="1"),
        i31(2, 2, "x 24, B-1000 Bruxelles", link="0"),
    ]
    batch = parse(coda(statement(body)))
    assert not batch.warnings
    info = batch.information.to_dicts()
    keys = batch.movements["movement_key"].to_list()
    assert info[0]["movement_key"] == keys[0] and info[0]["communication_type"] == "001"
    assert info[0]["communication"] == "PEETERS MARC, KERKSTRAAT 12, 2000 ANTWERPEN, ID-1"
    assert batch.movements["counterparty_name"][0] == "PEETERS MARC"
    assert len(info) == 2 and info[1]["movement_key"] == keys[1]
    assert info[1]["communication"].endswith("Marnix 24, B-1000 Bruxelles")  # one text, word rejoined


def test_free_communication_record_4_is_kept():
    records = [old_balance(0), m21(1, 0, 10, "X"), new_balance(10)]
    lines = [header(), *records, free4("CLOSING AVAILABLE BALANCE"), trailer(records)]
    batch = parse("\n".join(lines).encode())
    four = batch.information.filter(pl.col("record") == "4").to_dicts()
    assert four == [{"statement_key": batch.statements["statement_key"][0], "movement_key": None, "sequence": 1,
                     "detail_number": 0, "record": "4", "transaction_code": None, "communication_type": None,
                     "communication": "CLOSING AVAILABLE BALANCE", "source_line": 5}]


# ---------------------------------------------------------------- version 1


def test_version_1_uses_the_old_layout():
    v1_old = put((1, "1"), (2, "0"), (3, "003"), (6, "539007547034"), (19, "EUR"), (43, amount(0)),
                 (59, "140124"), (65, "OLD STYLE NV"), (126, "003"))
    v1_new = put((1, "8"), (2, "003"), (5, "539007547034"), (18, "EUR"), (42, amount(100)), (58, "150124"))
    move = m21(1, 0, 100, "V1 PAYMENT")
    v1_23 = put((1, "23"), (3, "0001"), (7, "0000"), (11, "096123456769"), (48, "SHORT NAME V1"),
                (74, "KERKSTRAAT 1 2000 ANTWERPEN"))
    records = [v1_old, move, v1_23, v1_new]
    batch = parse(coda([header(version="1"), *records, trailer(records)]))
    row = batch.movements.row(0, named=True)
    assert row["counterparty_name"] == "SHORT NAME V1" and row["counterparty_account"] == "096123456769"
    assert row["communication"] == "V1 PAYMENT"
    s = batch.statements.row(0, named=True)
    assert s["account_number"] == "539007547034" and s["account_iban"] is None and s["currency"] == "EUR"


# ---------------------------------------------------------------- robustness


@settings(max_examples=100, deadline=2000)
@given(st.binary(max_size=2000))
def test_random_bytes_give_a_batch_or_a_parse_error(data):
    try:
        assert isinstance(parse(data), StatementBatch)
    except FileRejected as exc:
        assert not exc.message.startswith("could not read"), exc.message  # an internal error, not bad input
    except ParseError:
        pass


@settings(max_examples=60, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_garbled_records_of_a_built_file_never_crash(rnd: random.Random):
    lines = statement(SIMPLE + [i31(2, 1, "INFO"), i32(2, 1, "MORE")])
    for _ in range(rnd.randint(1, 6)):
        i = rnd.randrange(1, len(lines))
        j = rnd.randrange(128)
        lines[i] = lines[i][:j] + rnd.choice("0123456789 AZ\u00e9\ufffd") + lines[i][j + 1 :]
    try:
        batch = parse("\n".join(lines).encode("utf-8"))
    except FileRejected as exc:
        assert not exc.message.startswith("could not read"), exc.message
        return
    assert batch.movements.schema == pl.Schema(MOVEMENT_SCHEMA)


# ---------------------------------------------------------------- the fast paths change nothing

import hashlib  # noqa: E402
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from polars.testing import assert_frame_equal  # noqa: E402

from creditflow.parsers import coda as coda_module  # noqa: E402
from creditflow.parsers import coda_grid  # noqa: E402


def _gen_coda():
    """The benchmark's generator (benchmarks/ is not a package): a realistic 20 k-movement file."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gen_coda.py"
    spec = importlib.util.spec_from_file_location("gen_coda_for_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _messy(text: str) -> str:
    """The generated file made irregular: blank line, short/long/unknown records, CRLF, no final newline."""
    lines = text.split("\n")[:-1]
    lines.insert(50, "")
    lines[80] = lines[80][:127]
    lines[120] = lines[120] + "XX"
    lines.insert(200, "77" + " " * 126)
    lines[300] = lines[300][:60] + "\u00e9" + lines[300][61:]
    return "\r\n".join(lines)


@pytest.fixture(scope="module")
def generated_files() -> dict[str, bytes]:
    text, movements, statements = _gen_coda().generate(20_000, seed=11)
    assert (movements, statements) == (20_000, 3)
    messy = _messy(text)
    return {
        "lf": text.encode("cp1252"),
        "crlf": text.replace("\n", "\r\n").encode("cp1252"),
        "utf8": text.encode("utf-8"),
        "messy": messy.encode("cp1252"),
        "messy-utf8": messy.encode("utf-8"),
    }


def _digest(batch: StatementBatch) -> str:
    """Every value of every frame (with the schemas) and every warning, as Python reprs, hashed."""
    h = hashlib.sha256()
    for name in ("statements", "movements", "information"):
        frame = getattr(batch, name)
        h.update(repr((name, list(frame.schema.items()))).encode())
        for row in frame.iter_rows():
            h.update(repr(row).encode())
    for w in batch.warnings:
        h.update(repr((w.location, w.code, w.message)).encode())
    return h.hexdigest()


# Digests of the parser's output on these files, taken with the parser as it was *before* the speed
# work (numpy matrix copy, offset-built text columns, one thread). A change here is a change of output.
SNAPSHOT = {
    "lf": "e93079b9a1de495af4708db53d9c2adcfb11b97762e582c915cdfb58f8972809",
    "crlf": "e93079b9a1de495af4708db53d9c2adcfb11b97762e582c915cdfb58f8972809",
    "utf8": "e93079b9a1de495af4708db53d9c2adcfb11b97762e582c915cdfb58f8972809",
    "messy": "23eb4db4dd524e855187c14fc3498b0199e0777705c1d5bbb7372ff8fda2682b",
    "messy-utf8": "23eb4db4dd524e855187c14fc3498b0199e0777705c1d5bbb7372ff8fda2682b",
}


def _reference_text(block, decode, utf8_len, *, strip=True, valid=None):
    series = coda_grid.text_offsets(block, decode, utf8_len, strip=strip)
    return series if valid is None else pl.select(pl.when(pl.Series(valid)).then(series)).to_series().alias("")


@pytest.mark.parametrize("variant", sorted(SNAPSHOT))
def test_fast_paths_give_the_same_frames_as_the_reference_path_and_the_snapshot(variant, generated_files,
                                                                               monkeypatch):
    data = generated_files[variant]
    fast = CodaParser().parse(data, source="gen.cod")
    assert fast.movements.height == 20_000
    assert _digest(fast) == SNAPSHOT[variant]

    with monkeypatch.context() as m:  # the slow path: line index + copied matrix, offset text, one thread
        m.setattr(coda_module, "PARALLEL", False)
        m.setattr(coda_grid, "regular_records", lambda data: None)
        m.setattr(coda_grid, "text", _reference_text)
        slow = CodaParser().parse(data, source="gen.cod")
    for name in ("statements", "movements", "information"):
        assert_frame_equal(getattr(fast, name), getattr(slow, name), check_exact=True)
    assert fast.warnings == slow.warnings


def test_regular_file_layouts_take_the_zero_copy_path_and_irregular_ones_do_not():
    records = statement(SIMPLE)
    for newline in ("\n", "\r\n"):
        view = coda_grid.regular_records(coda(records, newline=newline))
        assert view is not None and view[1] == len(records)
        assert bytes(view[0][0]).decode() == records[0]
    lf = coda(records)
    assert coda_grid.regular_records(coda(records, final=False)) is None
    assert coda_grid.regular_records(lf.replace(b"\n", b"\r\n", 1)) is None  # mixed line endings
    split = lf[:200] + b"\n" + lf[201:]  # a newline inside a record: two short lines, not one record
    assert coda_grid.regular_records(split) is None
    assert coda_grid.regular_records(lf + b" " * 128 + b"\n") is None  # a blank line
    assert coda_grid.regular_records(lf[:128] + b"\r" + lf[129:]) is None  # "...\r\n" is 127 characters


@settings(max_examples=80, deadline=3000)
@given(
    st.integers(1, 30),
    st.sampled_from([1, 3, 4, 11, 12, 13, 20, 35, 149]),
    st.binary(min_size=1, max_size=4000),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["cp1252", "ascii"]),
)
def test_text_columns_equal_the_plain_offset_construction(rows, width, seed, strip, masked, encoding):
    rng = np.random.default_rng(list(seed))
    alphabet = b"   aZ9\\~" + (b"\t" if width % 2 else b"")  # a tab: not stripped, unlike a blank
    if encoding == "cp1252":
        alphabet += b"\xe9\xa0\x80\x81\x9f"  # accents, no-break space, euro, undefined
    block = rng.choice(np.frombuffer(alphabet, dtype=np.uint8), (rows, width))
    block[rng.random(rows) < 0.3] = 0x20  # blank rows become null when stripped
    decode = coda_grid._cp1252 if encoding == "cp1252" else coda_grid._ascii
    utf8_len = coda_grid.utf8_lengths(decode)
    valid = rng.random(rows) < 0.7 if masked else None
    got = coda_grid.text(block[:, ::-1] if rows % 2 else block, decode, utf8_len, strip=strip, valid=valid)
    expected = _reference_text(block[:, ::-1] if rows % 2 else block, decode, utf8_len, strip=strip, valid=valid)
    assert got.to_list() == expected.to_list()
    assert got.dtype == pl.String



def _with_warnings(text: str) -> bytes:
    """The generated file with faults that warn from every step run on a thread: bad OGM check digits
    (communications), bad dates and orphan details (movements), duplicate 3.2 records (information);
    more than the per-code cap of some, so the replayed order and caps are both checked."""
    lines = text.split("\n")[:-1]
    out = []
    for i, line in enumerate(lines):
        if line.startswith("21") and line[61:65] == "1101" and i % 3 == 0:
            line = line[:76] + str((int(line[76]) + 1) % 10) + line[77:]
        elif line.startswith("21") and i % 41 == 0:
            line = line[:47] + "993199" + line[53:]
        elif line.startswith("21") and line[6:10] != "0000" and i % 5 == 0:
            line = line[:2] + "9999" + line[6:]
        out.append(line)
        if line.startswith("32") and i % 4 == 0:
            out.append(line)
    return ("\n".join(out) + "\n").encode("cp1252")


def test_warnings_from_threaded_steps_keep_the_sequential_order_and_caps(generated_files, monkeypatch):
    data = _with_warnings(_gen_coda().generate(20_000, seed=11)[0])
    fast = CodaParser().parse(data, source="gen.cod")
    monkeypatch.setattr(coda_module, "PARALLEL", False)
    slow = CodaParser().parse(data, source="gen.cod")
    assert {"bad_check_digits", "bad_date", "detail_without_booking", "duplicate_record",
            "too_many_warnings"} <= codes(fast)
    assert fast.warnings == slow.warnings
    for name in ("statements", "movements", "information"):
        assert_frame_equal(getattr(fast, name), getattr(slow, name), check_exact=True)


@settings(max_examples=60, deadline=3000)
@given(st.lists(st.text(alphabet=" 0aZbE9\u00e9\u00df-", max_size=34), min_size=1, max_size=30),
       st.lists(st.sampled_from(["BE71096123456769", "be71 0961 2345 6769", "0000000", " 000", "NL91ABNA0417164300",
                                 "  BE71096123456769", "BE7", "DE89 3704 0044 0532 0130 00x", "123456789012"]),
                max_size=6))
def test_counterparty_accounts_follow_the_string_rule_on_every_row(texts, accounts):
    from creditflow.parsers.coda import _Run, account_rule

    values = [t.ljust(37)[:37] for t in texts + accounts]
    zone = np.frombuffer("".join(values).encode("cp1252"), dtype=np.uint8).reshape(len(values), 37)
    run = _Run(b"", "t.cod")
    run.decode, run.utf8_len = coda_grid._cp1252, coda_grid.utf8_lengths(coda_grid._cp1252)
    _, bban_ok = coda_grid.digits(zone[:, :12])
    block = zone[:, :34].copy()
    block[bban_ok & (zone[:, 12] == 0x20), 12:] = 0x20
    expected = account_rule(coda_grid.text_offsets(block, run.decode, run.utf8_len))
    assert run._counterparty_account(zone).to_list() == expected.to_list()
