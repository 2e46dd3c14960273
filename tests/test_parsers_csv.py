"""CSV intake (creditflow.parsers.csv_invoices): decoding, delimiters, whole-file rejections with
one clear reason, spreadsheet row numbers, the demo sample, and robustness against any bytes."""

from __future__ import annotations

import random
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditflow.config.profiles import CsvMapping, load_profile
from creditflow.parsers.base import InvoiceBatch, Parser
from creditflow.parsers.csv_invoices import CsvInvoiceParser
from creditflow.parsers.errors import (
    EMPTY_FILE,
    MALFORMED,
    MISSING_COLUMN,
    UNDECODABLE,
    FileRejected,
    ParseError,
)
from creditflow.parsers.schema import INVOICE_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "sample_files/creditors/demo-utility.yaml"
SAMPLE = ROOT / "sample_files/demo-utility/billing-2026-11.csv"
SHARED_SAMPLES = Path(os.environ.get("CREDITFLOW_SHARED_SAMPLES",
                        Path(__file__).resolve().parents[2] / "shared" / "samples"))  # read in place, never copied

DUTCH = {"Factuurnummer": "invoice_number", "Factuurdatum": "issue_date",
         "Vervaldatum": "due_date", "Bedrag": "amount", "Naam": "debtor_name",
         "E-mail": "debtor_email", "Gestructureerde mededeling": "structured_reference"}
HEADER = "Factuurnummer;Factuurdatum;Vervaldatum;Bedrag;Naam;E-mail;Gestructureerde mededeling"
ROW = "DN-{n};03/11/2026;03/12/2026;{amount};{name};;"


def mapping(**overrides) -> CsvMapping:
    options = {"columns": DUTCH, "delimiter": "auto", "encoding": "auto",
               "decimal_separator": ",", "date_format": "%d/%m/%Y", **overrides}
    return CsvMapping(**options)


def parser(**overrides) -> CsvInvoiceParser:
    return CsvInvoiceParser(mapping(**overrides))


def lines(*rows: str, header: str = HEADER, end: str = "\r\n") -> str:
    return end.join([header, *rows]) + end


def simple_rows(count: int = 3) -> list[str]:
    names = ["Jan Peeters", "Françoise Lejeune", "Jürgen Krings", "Sarah O'Connor"]
    return [ROW.format(n=i, amount=f"{10 + i},50", name=names[i % len(names)]) for i in range(count)]


def rejected(data: bytes, **overrides) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        parser(**overrides).parse(data, source="in.csv")
    assert caught.value.source == "in.csv"
    return caught.value


# -- the parser contract -----------------------------------------------------------------------


def test_the_parser_follows_the_contract():
    csv_parser = parser()
    assert isinstance(csv_parser, Parser)
    assert csv_parser.name == "csv"


def test_a_small_file_parses_to_canonical_rows():
    batch = parser().parse(lines(*simple_rows(3)).encode("utf-8"), source="in.csv")
    assert isinstance(batch, InvoiceBatch)
    assert dict(batch.invoices.schema) == INVOICE_SCHEMA
    assert batch.rows_read == 3 and batch.errors == []
    assert batch.invoices["source_row"].to_list() == [2, 3, 4]
    assert batch.invoices["amount_cents"].to_list() == [1050, 1150, 1250]
    assert batch.invoices["debtor_name"].to_list() == ["Jan Peeters", "Françoise Lejeune",
                                                       "Jürgen Krings"]


# -- encodings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["auto", "cp1252"])
def test_cp1252_input(encoding):
    data = lines(*simple_rows(2)).encode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    batch = parser(encoding=encoding).parse(data, source="in.csv")
    assert batch.invoices["debtor_name"].to_list() == ["Jan Peeters", "Françoise Lejeune"]


def test_cp1252_bytes_that_latin1_reads_differently():
    """0x80-0x9F (€, ‚ „ … Š Œ Ž ‘ ’ “ ” – — ™ š œ ž Ÿ) are where Windows-1252 is not Latin-1."""
    rows = [ROW.format(n=1, amount="1,00", name="Œuvre “Šport” – 5€")]
    batch = parser(encoding="cp1252").parse(lines(*rows).encode("cp1252"), source="in.csv")
    assert batch.invoices["debtor_name"].to_list() == ["Œuvre “Šport” – 5€"]


@pytest.mark.parametrize("encoding", ["auto", "utf-8", "cp1252"])
def test_utf8_with_bom_input(encoding):
    """A BOM says UTF-8 whatever the profile says; the header's first cell must not carry it."""
    data = b"\xef\xbb\xbf" + lines(*simple_rows(2)).encode("utf-8")
    batch = parser(encoding=encoding).parse(data, source="in.csv")
    assert batch.invoices["invoice_number"].to_list() == ["DN-0", "DN-1"]
    assert batch.invoices["debtor_name"].to_list()[1] == "Françoise Lejeune"


def test_plain_utf8_in_auto_mode_is_not_read_as_cp1252():
    batch = parser().parse(lines(*simple_rows(3)).encode("utf-8"), source="in.csv")
    assert batch.invoices["debtor_name"].to_list()[2] == "Jürgen Krings"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"\x81", "auto"),  # neither UTF-8 nor Windows-1252 (0x81 is undefined there)
        (b"\x81", "cp1252"),
        ("é".encode("cp1252"), "utf-8"),  # a Windows-1252 é in a UTF-8 file
        (b"\xc3\x28", "utf-8"),  # invalid UTF-8 sequence
        (b"\xed\xa0\x80", "utf-8"),  # encoded surrogate
    ],
)
def test_undecodable_bytes_name_the_offset_and_line(data, encoding):
    good = lines(*simple_rows(2)).encode("utf-8")
    bad = good + b"DN-9;03/11/2026;03/12/2026;5,00;Bad " + data + b" Name;;\r\n"
    error = rejected(bad, encoding=encoding)
    assert error.code == UNDECODABLE
    assert f"offset {bad.index(data)}" in error.message
    assert "line 4" in error.message and error.location == "line 4"


def test_utf16_is_rejected_with_a_hint():
    data = lines(*simple_rows(1)).encode("utf-16")
    error = rejected(data)
    assert error.code == UNDECODABLE and "UTF-16" in error.message


def test_nul_bytes_are_rejected_as_binary():
    error = rejected(lines(*simple_rows(2)).encode() + b"\x00\x00garbage\r\n")
    assert error.code == UNDECODABLE and "line 4" in error.message


# -- delimiters and number formats ---------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", ",", "\t", "|"])
@pytest.mark.parametrize("declared", ["auto", "explicit"])
def test_delimiters(delimiter, declared):
    amount = '"12,3"' if delimiter == "," else "12,3"  # a decimal comma in a comma file is quoted
    rows = [f'DN-1{delimiter}03/11/2026{delimiter}03/12/2026{delimiter}"1.234,56"{delimiter}'
            f'"Peeters, Jan"{delimiter}jan@telenet.be{delimiter}',
            f'DN-2{delimiter}03/11/2026{delimiter}03/12/2026{delimiter}{amount}{delimiter}'
            f'"Claes; Sofie"{delimiter}{delimiter}']
    data = lines(*rows, header=HEADER.replace(";", delimiter)).encode()
    csv_parser = parser(delimiter=delimiter if declared == "explicit" else "auto")
    batch = csv_parser.parse(data, source="in.csv")
    assert batch.errors == []
    assert batch.invoices["amount_cents"].to_list() == [123456, 1230]
    assert batch.invoices["debtor_name"].to_list() == ["Peeters, Jan", "Claes; Sofie"]


def test_comma_file_with_decimal_point():
    header = "Factuurnummer,Factuurdatum,Vervaldatum,Bedrag,Naam"
    data = lines("A-1,2026-11-03,2026-12-03,\"1,234.56\",Jan", "A-2,2026-11-03,2026-12-03,12.3,An",
                 header=header, end="\n").encode()
    batch = parser(decimal_separator=".", date_format="%Y-%m-%d").parse(data, source="in.csv")
    assert batch.errors == []
    assert batch.invoices["amount_cents"].to_list() == [123456, 1230]


@pytest.mark.parametrize(
    ("amount", "cents", "code"),
    [("1.234,56", 123456, None), ("12,3", 1230, None), ("0,00", None, "amount_not_positive"),
     ("12,345", None, "too_many_decimals"), ("-5", None, "amount_not_positive")],
)
def test_decimal_comma_amounts(amount, cents, code):
    batch = parser().parse(lines(ROW.format(n=1, amount=amount, name="Jan")).encode(), source="in.csv")
    if code is None:
        assert batch.errors == [] and batch.invoices["amount_cents"].to_list() == [cents]
    else:
        assert batch.invoices.is_empty()
        assert [(e.row, e.field, e.code) for e in batch.errors] == [(2, "amount", code)]


def test_values_are_read_as_text_never_inferred():
    header = HEADER + ";Postcode;Klantnummer"
    rows = ["DN-1;03/11/2026;03/12/2026;10,00;Jan;;000/0000/09797;0100;000123"]
    columns = {**DUTCH, "Postcode": "debtor_postcode", "Klantnummer": "customer_number"}
    batch = parser(columns=columns).parse(lines(*rows, header=header).encode(), source="in.csv")
    assert batch.errors == []
    row = batch.invoices.row(0, named=True)
    assert row["structured_reference"] == "000000009797"
    assert row["debtor_postcode"] == "0100" and row["customer_number"] == "000123"


# -- whole-file rejections ------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \r\n\r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"])
def test_empty_file(data):
    error = rejected(data)
    assert error.code == EMPTY_FILE


@pytest.mark.parametrize("data", [HEADER, HEADER + "\r\n", HEADER + "\r\n\r\n;;;;;;\r\n  \r\n"])
def test_header_only(data):
    error = rejected(data.encode())
    assert error.code == EMPTY_FILE and "no invoice rows" in error.message


def test_missing_required_column_names_it_and_the_columns_found():
    header = HEADER.replace("Bedrag", "Totaal").replace("Naam", "Klant")
    error = rejected(lines(*simple_rows(1), header=header).encode())
    assert error.code == MISSING_COLUMN
    assert "'Bedrag'" in error.message and "'Naam'" in error.message
    assert "'Totaal'" in error.message and "'Klant'" in error.message


def test_missing_optional_column_is_a_warning_and_left_empty():
    header = HEADER.replace(";E-mail", "")
    rows = [r.replace(";;", ";", 1) for r in simple_rows(2)]
    batch = parser().parse(lines(*rows, header=header).encode(), source="in.csv")
    assert batch.errors == [] and batch.invoices["debtor_email"].to_list() == [None, None]
    assert [w.code for w in batch.warnings] == ["missing_optional_column"]
    assert "E-mail" in batch.warnings[0].message


def test_header_matching_ignores_case_and_spacing_and_column_order():
    header = "naam ; BEDRAG;factuurnummer;Gestructureerde  mededeling;Factuurdatum;Vervaldatum"
    data = lines("Jan;9,99;X-1;;03/11/2026;03/12/2026", header=header).encode()
    batch = parser().parse(data, source="in.csv")
    assert batch.errors == []
    assert batch.invoices.select("invoice_number", "amount_cents", "debtor_name").row(0) == (
        "X-1", 999, "Jan")


def test_a_mapped_column_twice_is_malformed():
    error = rejected(lines("DN-1;03/11/2026;03/12/2026;1,00;Jan;;;1,00",
                           header=HEADER + ";Bedrag").encode())
    assert error.code == MALFORMED and "Bedrag" in error.message


@pytest.mark.parametrize(
    ("bad_row", "fields"),
    [("DN-9;03/11/2026;03/12/2026;5,00;Jan", 5),  # too few: polars alone would pad it
     ("DN-9;03/11/2026;03/12/2026;5,00;Jan;;;extra", 8)],  # too many
)
def test_ragged_row_is_malformed_and_named(bad_row, fields):
    rows = simple_rows(3)
    rows.insert(2, bad_row)
    error = rejected(lines(*rows).encode())
    assert error.code == MALFORMED
    assert error.location == "row 4"
    assert f"row 4 has {fields} fields where the header has 7" in error.message


def test_an_unclosed_quote_is_malformed_and_points_at_its_line():
    rows = simple_rows(4)
    rows[1] = rows[1].replace(";Françoise", ';"Françoise')
    error = rejected(lines(*rows).encode())
    assert error.code == MALFORMED and error.location == "line 3"


def test_row_numbers_are_spreadsheet_rows_with_blank_and_multiline_rows():
    rows = [ROW.format(n=1, amount="1,00", name="Jan"), "", ";;;;;;",
            'DN-2;03/11/2026;03/12/2026;2,00;"An\r\nDe Smet";;',
            ROW.format(n=3, amount="abc", name="Piet")]
    batch = parser().parse(lines(*rows).encode(), source="in.csv")
    assert batch.rows_read == 3
    assert batch.invoices["source_row"].to_list() == [2, 5]
    assert batch.invoices["debtor_name"].to_list()[1] == "An\r\nDe Smet"
    assert [(e.row, e.code) for e in batch.errors] == [(6, "invalid_amount")]


def test_classic_mac_line_ends():
    batch = parser().parse(lines(*simple_rows(2), end="\r").encode(), source="in.csv")
    assert batch.invoices.height == 2


# -- identify -----------------------------------------------------------------------------------


def test_identify_takes_our_csv_files_only():
    csv_parser = parser()
    head = lines(*simple_rows(2)).encode("cp1252")
    assert csv_parser.identify("billing.csv", head)
    assert csv_parser.identify("BILLING.TXT", b"\xef\xbb\xbf" + head)
    assert not csv_parser.identify("billing.xml", head)
    assert not csv_parser.identify("billing.csv", b"<?xml version='1.0'?><Invoice/>")
    coda = b"0000001112672505        00097388  Demo NV                   GKCCBEBB   00401234567 00000                                       2\r\n"
    assert not csv_parser.identify("statement.txt", coda)
    assert not csv_parser.identify("billing.csv", lines(header="Nummer;Datum;Bedrag").encode())
    assert not csv_parser.identify("billing.csv", lines(*simple_rows(1)).encode("utf-16"))
    assert not csv_parser.identify("billing.csv", b"\x89PNG\r\n\x1a\n\x00\x00")
    assert not csv_parser.identify("billing.csv", b"")


def test_identify_with_a_head_cut_inside_a_character():
    head = lines(*simple_rows(3)).encode("utf-8")
    cut = head[: head.index("ç".encode()) + 1]
    assert parser().identify("billing.csv", cut)


@pytest.mark.skipif(not SHARED_SAMPLES.is_dir(), reason="shared real samples not present")
def test_identify_refuses_every_real_bank_and_ubl_sample():
    """Conformance: the real CODA, CAMT.053 and UBL files must never be taken by the CSV parser."""
    csv_parser = CsvInvoiceParser(load_profile(PROFILE).csv)
    files = [p for p in SHARED_SAMPLES.rglob("*") if p.is_file() and p.suffix.lower() != ".md"]
    assert files
    for path in files:
        head = path.read_bytes()[:4096]
        assert not csv_parser.identify(path.name, head), path
        assert not csv_parser.identify(path.stem + ".csv", head), path


# -- the demo sample ------------------------------------------------------------------------------


def test_demo_profile_is_valid_and_describes_the_sample():
    profile = load_profile(PROFILE)
    assert profile.id == "demo-utility" and profile.language == "nl"
    assert profile.channels == ["email", "sms", "post"]
    assert (profile.csv.delimiter, profile.csv.decimal_separator, profile.csv.date_format) == (
        ";", ",", "%d/%m/%Y")


def test_demo_sample_parses_to_the_documented_rows():
    data = SAMPLE.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the README says Windows-1252
    csv_parser = CsvInvoiceParser(load_profile(PROFILE).csv)
    assert csv_parser.identify(SAMPLE.name, data[:4096])
    batch = csv_parser.parse(data, source=SAMPLE.name)
    assert batch.rows_read == 50
    assert batch.invoices.height == 44
    assert {(e.row, e.field, e.code) for e in batch.errors} == {
        (9, "amount", "invalid_amount"),
        (17, "due_date", "due_before_issue"),
        (24, "debtor_email", "invalid_email"),
        (32, "debtor_iban", "invalid_iban"),
        (40, "invoice_number", "duplicate_in_file"),
        (46, "debtor_name", "missing_required"),
    }
    assert len(batch.errors) == 6
    duplicate = next(e for e in batch.errors if e.code == "duplicate_in_file")
    assert "row 15" in duplicate.message
    invoices = batch.invoices
    assert invoices["invoice_number"].is_unique().all()
    assert set(invoices["debtor_language"].drop_nulls()) == {"nl", "fr", "de", "en"}
    assert invoices["structured_reference"].drop_nulls().len() >= 5
    assert invoices["structured_reference"].drop_nulls().str.contains(r"^[0-9]{12}$").all()
    reachable = invoices.select(
        email=pl.col("debtor_email").is_not_null(),
        phone_only=pl.col("debtor_email").is_null() & pl.col("debtor_phone").is_not_null(),
        post_only=pl.col("debtor_email").is_null() & pl.col("debtor_phone").is_null(),
    ).sum().row(0)
    assert all(count > 0 for count in reachable)
    assert "Françoise Lejeune" in invoices["debtor_name"].to_list()
    settlement = invoices.filter(pl.col("description").str.contains(";", literal=True))
    assert settlement.height == 1  # the quoted ';' stays inside its field


def test_demo_sample_also_parses_with_auto_settings():
    profile = load_profile(PROFILE)
    auto = profile.csv.model_copy(update={"delimiter": "auto", "encoding": "auto"})
    batch = CsvInvoiceParser(auto).parse(SAMPLE.read_bytes(), source=SAMPLE.name)
    assert batch.invoices.height == 44 and len(batch.errors) == 6


# -- robustness ---------------------------------------------------------------------------------


def _only_batch_or_parse_error(csv_parser: CsvInvoiceParser, data: bytes) -> None:
    try:
        batch = csv_parser.parse(data, source="fuzz.csv")
    except ParseError:
        return
    assert isinstance(batch, InvoiceBatch)
    assert dict(batch.invoices.schema) == INVOICE_SCHEMA
    assert batch.invoices.height + len({e.row for e in batch.errors}) == batch.rows_read


@given(data=st.binary(max_size=600))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_give_a_batch_or_a_parse_error(data):
    _only_batch_or_parse_error(parser(), data)


@given(data=st.binary(max_size=200))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_after_a_valid_header_give_a_batch_or_a_parse_error(data):
    _only_batch_or_parse_error(parser(), HEADER.encode() + b"\r\n" + data)


@given(seed=st.integers(min_value=0, max_value=2**32 - 1),
       edits=st.integers(min_value=1, max_value=12))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_sample_gives_a_batch_or_a_parse_error(seed, edits):
    rng = random.Random(seed)
    data = bytearray(SAMPLE.read_bytes())
    for _ in range(edits):
        position = rng.randrange(len(data))
        action = rng.random()
        if action < 0.4:
            data[position] = rng.randrange(256)
        elif action < 0.6:
            del data[position: position + rng.randrange(1, 40)]
        elif action < 0.8:
            data[position:position] = rng.choice([b";", b'"', b"\r\n", b"\x00", b"\xff", b",", b"+"])
        else:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    _only_batch_or_parse_error(CsvInvoiceParser(load_profile(PROFILE).csv), bytes(data))
