"""Canonical row validation (creditflow.parsers.validate): every error code, the stored forms, and
the vectorised fast paths checked against python-stdnum and phonenumbers themselves."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import phonenumbers
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum import iban as stdnum_iban
from stdnum import iso11649
from stdnum.be import ogm_vcs
from stdnum.be import vat as be_vat

from creditflow.parsers import validate
from creditflow.parsers.errors import RowError
from creditflow.parsers.schema import INVOICE_SCHEMA
from creditflow.parsers.validate import RowRules, validate_rows, validate_rows_frame

BELGIAN = RowRules(decimal_separator=",", date_format="%d/%m/%Y")
SOURCE = "billing.csv"

VALID = {
    "invoice_number": "DN-1",
    "issue_date": "03/11/2026",
    "due_date": "03/12/2026",
    "amount": "87,45",
    "debtor_name": "Jan Peeters",
}


def frame(*rows: dict[str, str | None]) -> pl.DataFrame:
    """Rows of string fields; each row starts from VALID (own invoice number) plus overrides."""
    records = []
    for index, overrides in enumerate(rows):
        record = {**VALID, "invoice_number": f"DN-{index + 1}", **overrides}
        records.append({"source_row": index + 2, **record})
    columns = sorted({key for record in records for key in record})
    return pl.DataFrame(
        [{c: r.get(c) for c in columns} for r in records],
        schema={c: (pl.Int64 if c == "source_row" else pl.String) for c in columns},
    )


def run(*rows: dict[str, str | None], rules: RowRules = BELGIAN):
    return validate_rows(frame(*rows), source=SOURCE, rules=rules)


def codes(errors: list[RowError]) -> set[tuple[int, str, str]]:
    return {(e.row, e.field, e.code) for e in errors}


# -- the accepted shape ------------------------------------------------------------------------


def test_accepted_rows_have_the_canonical_schema_and_typed_values():
    accepted, errors = run({
        "amount": " 1.234,56 ", "debtor_email": "jan@telenet.be", "debtor_phone": "0470 12 34 56",
        "debtor_iban": "be71 0961 2345 6769", "debtor_vat": "BE 0403.170.701",
        "structured_reference": "+++090/9337/55493+++", "debtor_language": "NL",
        "debtor_country": "be", "debtor_postcode": "0100", "customer_number": "000123",
        "description": "  ", "currency": "eur",
    })
    assert errors == []
    assert dict(accepted.schema) == INVOICE_SCHEMA
    row = accepted.row(0, named=True)
    assert row["source_row"] == 2
    assert row["amount_cents"] == 123456
    assert row["issue_date"] == date(2026, 11, 3) and row["due_date"] == date(2026, 12, 3)
    assert row["currency"] == "EUR"
    assert row["debtor_phone"] == "+32470123456"
    assert row["debtor_iban"] == "BE71096123456769"
    assert row["debtor_vat"] == "BE0403170701"
    assert row["structured_reference"] == "090933755493"
    assert row["debtor_language"] == "nl" and row["debtor_country"] == "BE"
    assert row["debtor_postcode"] == "0100" and row["customer_number"] == "000123"
    assert row["description"] is None  # blank is null
    assert row["document_type"] == "invoice" and row["preceding_invoice"] is None


def test_defaults_fill_currency_and_country_but_not_language():
    accepted, errors = run({}, rules=RowRules(decimal_separator=",", date_format="%d/%m/%Y",
                                              default_currency="EUR", default_country="BE"))
    assert errors == []
    row = accepted.row(0, named=True)
    assert (row["currency"], row["debtor_country"], row["debtor_language"]) == ("EUR", "BE", None)


@pytest.mark.parametrize(
    ("written", "separator", "cents"),
    [
        ("1.234,56", ",", 123456),
        ("12,3", ",", 1230),
        ("12", ",", 1200),
        ("007,50", ",", 750),
        ("1 234,56", ",", 123456),
        ("1\u00a0234\u00a0567,89", ",", 123456789),
        ("1.234.567,8", ",", 123456780),
        ("9999999999999,99", ",", 999999999999999),
        ("1,234.56", ".", 123456),
        ("12,345", ".", 1234500),  # with a decimal point, the comma groups thousands
        ("0.01", ".", 1),
    ],
)
def test_amounts_become_exact_integer_cents(written, separator, cents):
    accepted, errors = run({"amount": written}, rules=RowRules(decimal_separator=separator,
                                                                date_format="%d/%m/%Y"))
    assert errors == []
    assert accepted.schema["amount_cents"] == pl.Int64
    assert accepted["amount_cents"].to_list() == [cents]


def _written(cents: int, grouped: bool, decimal_separator: str) -> str:
    thousands = "." if decimal_separator == "," else ","
    text = f"{Decimal(cents) / 100:,.2f}" if grouped else f"{Decimal(cents) / 100:.2f}"
    return text.replace(",", "\0").replace(".", decimal_separator).replace("\0", thousands)


@given(amounts=st.lists(st.tuples(st.integers(min_value=1, max_value=10**15 - 1), st.booleans()),
                        min_size=1, max_size=40),
       comma=st.booleans())
@settings(max_examples=25, deadline=None)
def test_any_written_amount_round_trips_to_the_same_cents(amounts, comma):
    separator = "," if comma else "."
    rows = [{"amount": _written(cents, grouped, separator)} for cents, grouped in amounts]
    accepted, errors = run(*rows, rules=RowRules(decimal_separator=separator, date_format="%d/%m/%Y"))
    assert errors == []
    assert accepted["amount_cents"].to_list() == [cents for cents, _ in amounts]


# -- every error code --------------------------------------------------------------------------


@pytest.mark.parametrize("field", validate.REQUIRED_FIELDS)
@pytest.mark.parametrize("empty", [None, "", "   "])
def test_missing_required(field, empty):
    accepted, errors = run({field: empty})
    assert accepted.is_empty()
    assert (2, field, "missing_required") in codes(errors)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("abc", "invalid_amount"),
        ("45.00", "invalid_amount"),  # decimal point in a decimal-comma file
        ("1.23,45", "invalid_amount"),  # thousands group of two digits
        ("€ 12,50", "invalid_amount"),
        ("12,50-", "invalid_amount"),
        ("١٢,٥٠", "invalid_amount"),  # non-ASCII digits never reach the integer cast
        ("12,345", "too_many_decimals"),
        ("0,001", "too_many_decimals"),
        ("0,00", "amount_not_positive"),
        ("0", "amount_not_positive"),
        ("-5", "amount_not_positive"),
        ("-1.234,56", "amount_not_positive"),
        ("12345678901234", "amount_too_large"),
    ],
)
def test_amount_errors(value, code):
    accepted, errors = run({"amount": value})
    assert accepted.is_empty()
    assert [(e.field, e.code) for e in errors] == [("amount", code)]
    assert repr(value)[1:-1] in errors[0].message or value in errors[0].message


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("currency", "EU", "invalid_currency"),
        ("currency", "€", "invalid_currency"),
        ("currency", "USD", "unsupported_currency"),
        ("currency", "gbp", "unsupported_currency"),
        ("issue_date", "31/02/2026", "invalid_date"),
        ("issue_date", "2026-11-03", "invalid_date"),
        ("issue_date", "03/11/26", "invalid_date"),  # %Y reads 26 as the year 26
        ("due_date", "03/12/2026 10:00", "invalid_date"),
        ("due_date", "01/10/2026", "due_before_issue"),
        ("debtor_email", "jan@@telenet.be", "invalid_email"),
        ("debtor_email", "jan@telenet", "invalid_email"),
        ("debtor_email", "jan peeters@telenet.be", "invalid_email"),
        ("debtor_email", "jan..peeters@telenet.be", "invalid_email"),
        ("debtor_email", ".jan@telenet.be", "invalid_email"),
        ("debtor_email", "jan@telenet.be, an@skynet.be", "invalid_email"),
        ("debtor_email", "jan@-telenet.be", "invalid_email"),
        ("debtor_phone", "12", "invalid_phone"),
        ("debtor_phone", "0470 12 34", "invalid_phone"),
        ("debtor_phone", "call me", "invalid_phone"),
        ("debtor_language", "es", "invalid_language"),
        ("debtor_language", "nederlands", "invalid_language"),
        ("debtor_country", "UK", "invalid_country"),
        ("debtor_country", "BEL", "invalid_country"),
        ("debtor_vat", "BE0403170702", "invalid_vat"),
        ("debtor_vat", "0403170702", "invalid_vat"),
        ("debtor_vat", "XX123", "invalid_vat"),
        ("debtor_iban", "BE71096123456768", "invalid_iban"),
        ("debtor_iban", "BE7109612345676", "invalid_iban"),
        ("debtor_iban", "NL91ABNA0417164301", "invalid_iban"),
        ("debtor_iban", "XX71096123456769", "invalid_iban"),
        ("structured_reference", "+++090/9337/55494+++", "invalid_reference"),
        ("structured_reference", "000000000000", "invalid_reference"),
        ("structured_reference", "12345", "invalid_reference"),
        ("structured_reference", "RF18 5390 0754 7035", "invalid_reference"),
        ("structured_reference", "invoice 42", "invalid_reference"),
        ("document_type", "order", "invalid_document_type"),
    ],
)
def test_field_errors(field, value, code):
    accepted, errors = run({field: value})
    assert accepted.is_empty()
    assert [(e.row, e.field, e.code) for e in errors] == [(2, field, code)]
    error = errors[0]
    assert error.source == SOURCE and error.invoice_number == "DN-1"
    assert error.message


def test_invalid_date_message_names_the_expected_format():
    _, errors = run({"issue_date": "2026-11-03"})
    assert "dd/mm/yyyy" in errors[0].message and "2026-11-03" in errors[0].message


def test_due_date_on_issue_date_is_fine():
    accepted, errors = run({"due_date": VALID["issue_date"]})
    assert errors == [] and accepted.height == 1


def test_duplicate_invoice_numbers_each_later_occurrence_names_the_first_row():
    accepted, errors = run({"invoice_number": "A"}, {"invoice_number": "B"},
                           {"invoice_number": " A "}, {"invoice_number": "A"})
    assert accepted["invoice_number"].to_list() == ["A", "B"]
    duplicates = [e for e in errors if e.code == "duplicate_in_file"]
    assert [(e.row, e.field) for e in duplicates] == [(4, "invoice_number"), (5, "invoice_number")]
    assert all("row 2" in e.message for e in duplicates)


def test_duplicate_structured_references_compare_the_compact_form():
    accepted, errors = run({"structured_reference": "+++090/9337/55493+++"},
                           {"structured_reference": "090933755493"},
                           {"structured_reference": "RF18 5390 0754 7034"},
                           {"structured_reference": "rf18539007547034"})
    assert accepted["source_row"].to_list() == [2, 4]
    assert codes(errors) == {(3, "structured_reference", "duplicate_in_file"),
                             (5, "structured_reference", "duplicate_in_file")}
    assert "row 2" in errors[0].message and "row 4" in errors[1].message


def test_a_row_with_several_problems_gets_every_error_and_is_rejected_once():
    accepted, errors = run({}, {"amount": "-5", "debtor_email": "x@y", "currency": "USD",
                                "debtor_name": ""})
    assert accepted["source_row"].to_list() == [2]
    assert codes(errors) == {(3, "amount", "amount_not_positive"),
                             (3, "debtor_email", "invalid_email"),
                             (3, "currency", "unsupported_currency"),
                             (3, "debtor_name", "missing_required")}


def test_errors_frame_and_list_agree_and_are_sorted_by_row():
    rows = frame({"amount": "x"}, {}, {"due_date": "01/01/2026"}, {"debtor_phone": "1"})
    accepted, errors = validate_rows_frame(rows, rules=BELGIAN)
    assert errors.columns == ["row", "invoice_number", "field", "code", "message"]
    assert errors["row"].to_list() == [2, 4, 5]
    _, listed = validate_rows(rows, source=SOURCE, rules=BELGIAN)
    assert [e.as_report_row() for e in listed] == errors.to_dicts()
    assert accepted["source_row"].to_list() == [3]


def test_rows_out_of_order_are_judged_in_source_order():
    rows = frame({"invoice_number": "A"}, {"invoice_number": "A"}).reverse()
    _, errors = validate_rows(rows, source=SOURCE, rules=BELGIAN)
    assert [(e.row, e.code) for e in errors] == [(3, "duplicate_in_file")]


def test_empty_input_gives_empty_output():
    accepted, errors = validate_rows(pl.DataFrame({"source_row": []}, schema={"source_row": pl.Int64}),
                                     source=SOURCE)
    assert accepted.is_empty() and dict(accepted.schema) == INVOICE_SCHEMA and errors == []


# -- reuse by the UBL parser -------------------------------------------------------------------


def test_ubl_style_rows_credit_notes_are_negative_and_preceding_invoice_kept():
    rows = pl.DataFrame({
        "source_row": [1, 2],
        "invoice_number": ["INV-1", "CN-1"],
        "document_type": ["invoice", "credit_note"],
        "issue_date": ["2026-11-03", "2026-11-05"],
        "due_date": ["2026-12-03", "2026-11-05"],
        "amount": ["1656.25", "100.11"],
        "debtor_name": ["Buyer NV", "Buyer NV"],
        "preceding_invoice": [None, "INV-1"],
    })
    accepted, errors = validate_rows(rows, source="peppol.xml")  # default rules: ISO dates, "."
    assert errors == []
    assert accepted["amount_cents"].to_list() == [165625, -10011]
    assert accepted["document_type"].to_list() == ["invoice", "credit_note"]
    assert accepted["preceding_invoice"].to_list() == [None, "INV-1"]


# -- the fast paths agree with the libraries -----------------------------------------------------


def _verdicts(field: str, values: list[str], countries: list[str] | None = None) -> list[str | None]:
    """What validate_rows stores for each value (None when rejected)."""
    rows = [{field: v, "debtor_country": c} for v, c in zip(values, countries or ["BE"] * len(values))]
    accepted, errors = run(*rows)
    stored = dict(zip(accepted["source_row"].to_list(), accepted[field].to_list()))
    return [stored.get(i + 2) for i in range(len(values))]


def _library(function, value: str):
    try:
        return function(value)
    except Exception:  # noqa: BLE001 - any library refusal is a rejection
        return None


def _mutations(rng: random.Random, value: str, count: int) -> list[str]:
    out = []
    for _ in range(count):
        chars = list(value)
        position = rng.randrange(len(chars))
        choice = rng.random()
        if choice < 0.5 and chars[position].isdigit():
            chars[position] = str(rng.randrange(10))
        elif choice < 0.7:
            del chars[position]
        elif choice < 0.85:
            chars.insert(position, rng.choice("0123456789"))
        else:
            chars[position], chars[-1] = chars[-1], chars[position]
        out.append("".join(chars))
    return out


def test_iban_fast_path_agrees_with_stdnum():
    rng = random.Random(7)
    examples = ["BE71096123456769", "NL91ABNA0417164300", "DE89370400440532013000",
                "FR1420041010050500013M02606", "LU280019400644750000", "GB29NWBK60161331926819",
                "IT60X0542811101000000123456", "MT84MALT011000012345MTLCAST001S"]
    values = []
    for example in examples:
        values += [example, example.lower()] + _mutations(rng, example, 60)
    values += [stdnum_iban.format(v) for v in examples]
    expected = [_library(lambda v: stdnum_iban.validate(v, check_country=False), v) for v in values]
    assert _verdicts("debtor_iban", values) == expected
    assert sum(e is not None for e in expected) > len(examples) * 2  # the sample holds valid ones


def test_ogm_and_rf_fast_path_agree_with_stdnum():
    rng = random.Random(11)
    values = []
    for _ in range(200):
        body = f"{rng.randrange(1, 10**10):010d}"
        ogm = body + ogm_vcs.calc_check_digits(body)
        written = rng.choice([ogm, f"+++{ogm[:3]}/{ogm[3:7]}/{ogm[7:]}+++",
                              f"***{ogm[:3]}/{ogm[3:7]}/{ogm[7:]}***"])
        values.append(written if rng.random() < 0.6 else _mutations(rng, written, 1)[0])
    values += ["RF18 5390 0754 7034", "RF19539007547034", "RF71", "rf18000000000000000000"]

    def library(value: str) -> str:
        if value.replace(" ", "").upper().startswith("RF"):
            return iso11649.validate(value)
        return ogm_vcs.validate(value.replace("*", ""))

    # a repeated reference would (rightly) be rejected as duplicate_in_file: keep first ones only
    seen: set[str] = set()
    values = [v for v in values if (c := _library(library, v) or v) not in seen and not seen.add(c)]
    expected = [_library(library, v) for v in values]
    verdicts = _verdicts("structured_reference", values)
    assert verdicts == expected
    assert sum(e is not None for e in expected) > 100


def test_be_vat_fast_path_agrees_with_stdnum():
    rng = random.Random(3)
    values = []
    for _ in range(150):
        body = f"{rng.randrange(0, 2)}{rng.randrange(10**7):07d}"
        number = f"{body}{97 - int(body) % 97:02d}"
        written = rng.choice([number, "BE" + number, f"BE {number[:4]}.{number[4:7]}.{number[7:]}",
                              number[1:] if number[0] == "0" else number])
        values.append(written if rng.random() < 0.6 else _mutations(rng, written, 1)[0])
    expected = [_library(lambda v: "BE" + be_vat.validate(v), v) for v in values]
    assert _verdicts("debtor_vat", values) == expected
    assert sum(e is not None for e in expected) > 60


def _e164(value: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_phone_fast_path_agrees_with_phonenumbers():
    rng = random.Random(5)
    regions = ["BE", "NL", "FR", "DE", "LU", "US", "GB", "IT"]
    values, countries = [], []
    for _ in range(600):
        region = rng.choice(regions)
        kind = rng.choice([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])
        example = phonenumbers.example_number_for_type(region, kind)
        digits = list(str(example.national_number))
        for _ in range(rng.randrange(0, 3)):  # vary a few digits: valid or not, the library decides
            digits[rng.randrange(len(digits))] = str(rng.randrange(10))
        number = phonenumbers.PhoneNumber(country_code=example.country_code,
                                          national_number=int("".join(digits)))
        style = rng.choice([phonenumbers.PhoneNumberFormat.E164,
                            phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                            phonenumbers.PhoneNumberFormat.NATIONAL])
        written = phonenumbers.format_number(number, style)
        if rng.random() < 0.15:
            written = written.replace("+", "00", 1)
        if rng.random() < 0.1:
            written = written.replace(" ", ".")
        values.append(written)
        countries.append(region if style == phonenumbers.PhoneNumberFormat.NATIONAL else rng.choice(regions))
    values += ["+32 (0)470 12 34 56", "0470/12.34.56", "32470123456", "+32 0470 12 34 56"]
    countries += ["BE"] * 4
    expected = [_e164(v, c) for v, c in zip(values, countries)]
    assert _verdicts("debtor_phone", values, countries) == expected
    assert sum(e is not None for e in expected) > 300


def test_the_fast_paths_carry_the_common_forms_without_library_calls(monkeypatch):
    """The speed target rests on this: plain valid values never reach the per-value libraries."""
    def refuse(*args):
        raise AssertionError(f"library called for {args}")

    for name in ("_phone_slow", "_iban_slow", "_vat_slow", "_reference_slow"):
        monkeypatch.setattr(validate, name, refuse)
    accepted, errors = run(
        {"debtor_phone": "0470 12 34 56", "debtor_iban": "BE71 0961 2345 6769",
         "debtor_vat": "BE0403170701", "structured_reference": "+++090/9337/55493+++"},
        {"debtor_phone": "+32 9 233 45 67", "debtor_iban": "NL91ABNA0417164300",
         "debtor_vat": "0403.170.701"},
        {"debtor_phone": "+33 6 12 34 56 78", "debtor_country": "FR"},
        {"debtor_phone": "06 12 34 56 78", "debtor_country": "FR"},
        {"debtor_phone": "0031 6 12345678"},
    )
    assert errors == []
    assert accepted["debtor_phone"].to_list() == ["+32470123456", "+3292334567", "+33612345678",
                                                  "+33612345678", "+31612345678"]


@given(values=st.lists(st.text(max_size=40), min_size=1, max_size=8))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_text_in_any_field_gives_a_verdict_not_an_exception(values):
    fields = ["amount", "issue_date", "debtor_email", "debtor_phone", "debtor_vat", "debtor_iban",
              "structured_reference", "currency", "debtor_country", "debtor_language",
              "invoice_number", "debtor_name"]
    rows = [{f: value} for value in values for f in fields]
    accepted, errors = run(*rows)
    assert accepted.height + len({e.row for e in errors}) == len(rows)
    assert set(accepted["source_row"].to_list()).isdisjoint({e.row for e in errors})
