"""Canonical row validation, shared by every invoice parser (CSV, UBL).

A parser's job ends at "which text belongs to which field"; everything that decides whether a value is
acceptable lives here, so a CSV row and a UBL document are judged by the same rules and produce the
same error codes in the creditor's error report.

Input: a DataFrame with `source_row` (the row or document number the creditor sees) and any of the
canonical fields of `creditflow.parsers.schema.MAPPED_FIELDS` as String columns (a field that is
absent is treated as empty). Two optional String columns serve UBL: `document_type` ("invoice" or
"credit_note"; empty = invoice; a credit note's amount_cents is stored negative) and
`preceding_invoice` (passed through). Surrounding whitespace is stripped everywhere; an empty string
is null. Output: the accepted rows as an `INVOICE_SCHEMA` frame, and one `RowError` per problem.
A row with several problems yields several errors but is rejected once.

Speed (the target is a million rows in seconds): every rule is a vectorised polars expression.
python-stdnum and phonenumbers remain the authority for IBAN, VAT, structured references and phone
numbers, but calling them per value costs 17-42 µs on this box, i.e. minutes per million distinct
values. So a vectorised fast path, built from those libraries' own tables (stdnum's IBAN registry,
phonenumbers' metadata) and tested against them, may only ACCEPT a value; every value it does not
accept goes, once per distinct value, to the library, which accepts it or gives the reason.

Error codes (stable; the error report and the tests rely on them):

    missing_required       invoice_number, issue_date, due_date, amount or debtor_name is empty
    invalid_amount         amount is not a number written with the agreed decimal separator
                           (thousands separators: the other one of "." / ",", a space or "'",
                           in groups of three)
    too_many_decimals      amount has more than two decimals
    amount_not_positive    amount is zero or negative (the sign of a credit note comes from
                           document_type, never from the amount)
    amount_too_large       amount has more than 13 digits before the decimal separator
    invalid_currency       currency is not three letters (ISO 4217)
    unsupported_currency   currency is not EUR: we collect through SEPA transfers and EPC QR codes
    invalid_date           issue_date / due_date does not match the agreed date format, or its year
                           is outside 2000-2099 (a two-digit year read as a four-digit one)
    due_before_issue       due_date is earlier than issue_date
    invalid_email          debtor_email is not one address of the form local@domain.tld
    invalid_phone          debtor_phone is not a valid number (region: debtor_country, default BE)
    invalid_language       debtor_language is not nl, fr, en or de (case-insensitive)
    invalid_country        debtor_country is not an ISO 3166 alpha-2 code
    invalid_vat            debtor_vat fails python-stdnum (no prefix: the debtor's country, default BE)
    invalid_iban           debtor_iban fails python-stdnum's IBAN check
    invalid_reference      structured_reference is neither a valid OGM (+++123/4567/89012+++) nor a
                           valid RF creditor reference
    invalid_document_type  document_type is not "invoice" or "credit_note" (UBL only)
    duplicate_in_file      the invoice_number, or the structured_reference, already appears on an
                           earlier row of the same file; the message names that first row. Every
                           occurrence after the first is rejected, whatever else is wrong with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import phonenumbers
import polars as pl
from phonenumbers import PhoneMetadata
from stdnum import iban as stdnum_iban
from stdnum import iso11649, numdb, vatin
from stdnum.be import ogm_vcs
from stdnum.be import vat as be_vat

from creditflow.ogm_rf import WRITTEN_OGM_SEPARATORS, ogm_is_valid, strip_written_ogm
from creditflow.parsers.errors import RowError
from creditflow.parsers.schema import INVOICE_SCHEMA, MAPPED_FIELDS, MAX_INTEGER_DIGITS, ROW_ERROR_COLUMNS

REQUIRED_FIELDS = ("invoice_number", "issue_date", "due_date", "amount", "debtor_name")
LANGUAGES = ("nl", "fr", "en", "de")
PAYABLE_CURRENCIES = frozenset({"EUR"})
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)
"""ISO 3166 alpha-2 codes as phonenumbers knows them (a superset of what a debtor lives in)."""

EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)

_OPTIONAL_TEXT = ("document_type", "preceding_invoice")
_SHOWN_CHARS = 40

# One address, no spaces, a dotted domain ending in a letters-only TLD; Unicode letters allowed
# (internationalised addresses). Lengths and dots at the edges of the local part are checked
# separately: bounded repetitions of Unicode classes make the regex automaton 40 times slower.
_EMAIL_RE = (
    r"^[\p{L}\p{N}.!#$%&'*+/=?^_`{|}~-]+@"
    r"(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+\p{L}{2,}$"
)


@dataclass(frozen=True, slots=True)
class RowRules:
    """How to read the text of one source: the CSV mapping gives these; UBL uses the defaults."""

    decimal_separator: str = "."
    date_format: str = "%Y-%m-%d"
    default_currency: str = "EUR"
    default_country: str = "BE"


@dataclass(frozen=True, slots=True)
class _Check:
    field: str
    code: str
    flag: pl.Expr  # true where the row has this problem
    message: pl.Expr  # evaluated only on rejected rows


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def validate_rows(
    rows: pl.DataFrame, *, source: str, rules: RowRules = RowRules()
) -> tuple[pl.DataFrame, list[RowError]]:
    """Accepted rows as an INVOICE_SCHEMA frame, and every problem as a RowError."""
    accepted, errors = validate_rows_frame(rows, rules=rules)
    return accepted, [RowError(source, *values) for values in errors.iter_rows()]


def validate_rows_frame(
    rows: pl.DataFrame, *, rules: RowRules = RowRules()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Like `validate_rows`, but the errors as a frame of ROW_ERROR_COLUMNS (cheap for huge files)."""
    frame = _normalised(rows, rules)
    frame = _with_library_verdicts(frame, rules)
    frame = _with_derived_columns(frame, rules)
    checks = _checks(rules)
    flags = [f"__flag{i}" for i in range(len(checks))]
    frame = frame.with_columns(
        [check.flag.fill_null(False).alias(flag) for flag, check in zip(flags, checks)]
    ).with_columns(pl.any_horizontal(flags).alias("__rejected"))
    # lazy, so that only the output columns are gathered (the frame holds ~70 working columns)
    accepted = (
        frame.lazy().filter(~pl.col("__rejected")).select(_output_columns(frame.schema)).collect()
    )
    return accepted, _error_frame(frame, checks)


# ----------------------------------------------------------------------------------------------
# Normalisation and derived columns
# ----------------------------------------------------------------------------------------------


def _normalised(rows: pl.DataFrame, rules: RowRules) -> pl.DataFrame:
    """Every canonical field present as stripped text (null when empty), in source row order."""
    if "source_row" not in rows.columns:
        raise ValueError("rows need a source_row column")
    fields = (*MAPPED_FIELDS, *_OPTIONAL_TEXT)
    present = [f for f in fields if f in rows.columns]
    frame = (
        rows.lazy()
        .select(
            pl.col("source_row").cast(pl.Int64),
            *[pl.col(f).cast(pl.String).str.strip_chars() for f in present],
            *[pl.lit(None, pl.String).alias(f) for f in fields if f not in present],
        )
        # two stages: inside one when/then polars would strip twice
        .with_columns([pl.when(pl.col(f).str.len_bytes() > 0).then(pl.col(f)).alias(f)
                       for f in present])
        .with_columns(
            pl.col("currency").str.to_uppercase().fill_null(pl.lit(rules.default_currency)),
            pl.col("debtor_country").str.to_uppercase().fill_null(pl.lit(rules.default_country)),
            pl.col("debtor_language").str.to_lowercase(),
            pl.col("document_type").str.to_lowercase(),
        )
        .collect()
    )
    if not frame["source_row"].is_sorted():
        frame = frame.sort("source_row")
    return frame


def _amount_pattern(decimal_separator: str) -> str:
    thousands = "," if decimal_separator == "." else "."
    group = f"[{re.escape(thousands)} \u00a0\u202f']"
    return (
        rf"^(-)?([0-9]{{1,3}}(?:{group}[0-9]{{3}})+|[0-9]+)(?:{re.escape(decimal_separator)}([0-9]+))?$"
    )


def _with_derived_columns(frame: pl.DataFrame, rules: RowRules) -> pl.DataFrame:
    """Amount parts, cents and parsed dates, each computed once for every check that reads them."""
    digits = pl.col("__amount_integer")
    return (
        frame.lazy()
        .with_columns(
            pl.col("amount").str.extract_groups(_amount_pattern(rules.decimal_separator))
            .struct.rename_fields(["__amount_sign", "__amount_integer", "__amount_fraction"])
            .struct.unnest(),
            *[pl.col(f).str.strptime(pl.Date, rules.date_format, strict=False).alias(f"__{f}")
              for f in ("issue_date", "due_date")],
        )
        .with_columns(pl.col("__amount_integer").str.replace_all(r"[^0-9]", ""))
        .with_columns(
            pl.col("__amount_integer").is_not_null().alias("__amount_shape"),
            pl.col("__amount_sign").is_not_null().alias("__amount_negative"),
            pl.col("__amount_fraction").str.len_chars().fill_null(0).alias("__amount_decimals"),
            digits.str.strip_chars_start("0").str.len_chars().alias("__amount_digits"),
            (
                digits.str.slice(0, MAX_INTEGER_DIGITS + 2).cast(pl.Int64, strict=False) * 100
                + pl.col("__amount_fraction").fill_null("").str.pad_end(2, "0").str.slice(0, 2)
                .cast(pl.Int64, strict=False)
            ).alias("__amount_cents"),
        )
        .collect()
    )


def _date_in_range(name: str) -> pl.Expr:
    return pl.col(name).is_between(pl.lit(EARLIEST_DATE), pl.lit(LATEST_DATE))


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def _shown(name: str) -> pl.Expr:
    """The offending value, quoted and shortened for the report."""
    value = pl.col(name)
    short = pl.when(value.str.len_chars() > _SHOWN_CHARS).then(
        value.str.slice(0, _SHOWN_CHARS - 3) + pl.lit("...")
    ).otherwise(value)
    return pl.lit("'") + short + pl.lit("'")


def _human_format(date_format: str) -> str:
    for code, shown in (("%d", "dd"), ("%m", "mm"), ("%Y", "yyyy"), ("%y", "yy")):
        date_format = date_format.replace(code, shown)
    return date_format


def _checks(rules: RowRules) -> list[_Check]:
    checks = [
        _Check(f, "missing_required", pl.col(f).is_null(), pl.lit(f"{f} is required"))
        for f in REQUIRED_FIELDS
    ]
    amount = pl.col("amount").is_not_null()
    shape_ok = amount & pl.col("__amount_shape") & pl.col("__amount_cents").is_not_null()
    sep = rules.decimal_separator
    checks += [
        _Check("amount", "invalid_amount",
               amount & (~pl.col("__amount_shape") | pl.col("__amount_cents").is_null()),
               _shown("amount") + pl.lit(f" is not an amount (decimal separator '{sep}')")),
        _Check("amount", "too_many_decimals", shape_ok & (pl.col("__amount_decimals") > 2),
               _shown("amount") + pl.lit(" has more than two decimals")),
        _Check("amount", "amount_too_large",
               shape_ok & (pl.col("__amount_decimals") <= 2)
               & (pl.col("__amount_digits") > MAX_INTEGER_DIGITS),
               _shown("amount") + pl.lit(" is too large")),
        _Check("amount", "amount_not_positive",
               shape_ok & (pl.col("__amount_decimals") <= 2)
               & (pl.col("__amount_digits") <= MAX_INTEGER_DIGITS)
               & (pl.col("__amount_negative") | (pl.col("__amount_cents") == 0)),
               _shown("amount") + pl.lit(" must be greater than zero")),
    ]
    human = _human_format(rules.date_format)
    for f in ("issue_date", "due_date"):
        parsed = pl.col(f"__{f}")
        checks += [
            _Check(f, "invalid_date", pl.col(f).is_not_null() & parsed.is_null(),
                   _shown(f) + pl.lit(f" is not a date written as {human}")),
            _Check(f, "invalid_date", parsed.is_not_null() & ~_date_in_range(f"__{f}"),
                   _shown(f) + pl.lit(" gives year ") + parsed.dt.year().cast(pl.String)
                   + pl.lit(f"; expected {EARLIEST_DATE.year}-{LATEST_DATE.year} ({human})")),
        ]
    issue, due = pl.col("__issue_date"), pl.col("__due_date")
    checks.append(_Check(
        "due_date", "due_before_issue",
        _date_in_range("__issue_date") & _date_in_range("__due_date") & (due < issue),
        pl.lit("due date ") + due.dt.strftime("%Y-%m-%d")
        + pl.lit(" is before issue date ") + issue.dt.strftime("%Y-%m-%d"),
    ))
    currency = pl.col("currency")
    checks += [
        _Check("currency", "invalid_currency", ~currency.str.contains(r"^[A-Z]{3}$"),
               _shown("currency") + pl.lit(" is not a three-letter ISO 4217 code")),
        _Check("currency", "unsupported_currency",
               currency.str.contains(r"^[A-Z]{3}$")
               & ~currency.is_in(sorted(PAYABLE_CURRENCIES)),
               _shown("currency") + pl.lit(" cannot be collected: SEPA payments are in EUR only")),
        _Check("debtor_country", "invalid_country",
               ~pl.col("debtor_country").is_in(sorted(COUNTRIES)),
               _shown("debtor_country") + pl.lit(" is not an ISO 3166 two-letter country code")),
        _Check("debtor_language", "invalid_language",
               pl.col("debtor_language").is_not_null()
               & ~pl.col("debtor_language").is_in(list(LANGUAGES)),
               _shown("debtor_language") + pl.lit(" is not one of " + ", ".join(LANGUAGES))),
        _Check("document_type", "invalid_document_type",
               pl.col("document_type").is_not_null()
               & ~pl.col("document_type").is_in(["invoice", "credit_note"]),
               _shown("document_type") + pl.lit(" is not invoice or credit_note")),
    ]
    email = pl.col("debtor_email")
    local = email.str.split_exact("@", 1).struct.field("field_0")
    email_ok = (
        email.str.contains(_EMAIL_RE)
        & ~email.str.contains("..", literal=True)
        & ~local.str.starts_with(".") & ~local.str.ends_with(".")
        & (local.str.len_chars() <= 64)
        & (email.str.len_chars() <= 254)
    )
    checks.append(_Check("debtor_email", "invalid_email", email.is_not_null() & ~email_ok,
                         _shown("debtor_email") + pl.lit(" is not a valid e-mail address")))
    for f, code, what in (
        ("debtor_phone", "invalid_phone", "is not a valid phone number"),
        ("debtor_vat", "invalid_vat", "is not a valid VAT number"),
        ("debtor_iban", "invalid_iban", "is not a valid IBAN"),
        ("structured_reference", "invalid_reference", "is not a valid OGM or RF reference"),
    ):
        why = pl.col(f"__{f}_why")
        checks.append(_Check(
            f, code, pl.col(f).is_not_null() & pl.col(f"__{f}").is_null(),
            _shown(f) + pl.lit(f" {what}") + pl.when(why.is_not_null()).then(
                pl.lit(": ") + why).otherwise(pl.lit("")),
        ))
    for f, key in (("invoice_number", "invoice_number"),
                   ("structured_reference", "__structured_reference")):
        checks.append(_Check(
            f, "duplicate_in_file",
            pl.col(key).is_not_null() & ~pl.col(key).is_first_distinct(),
            pl.lit(f"{f} ") + _shown(f) + pl.lit(" already appears on row ")
            + pl.col(f"__first_{f}").cast(pl.String),
        ))
    return checks


def _error_frame(frame: pl.DataFrame, checks: list[_Check]) -> pl.DataFrame:
    schema = dict(zip(ROW_ERROR_COLUMNS, (pl.Int64, pl.String, pl.String, pl.String, pl.String)))
    if not frame["__rejected"].any():
        return pl.DataFrame(schema=schema)
    rejected = _with_first_rows(frame.lazy().filter(pl.col("__rejected")), frame.lazy())
    parts = [
        rejected.filter(pl.col(f"__flag{i}")).select(
            pl.col("source_row").alias("row"),
            pl.col("invoice_number"),
            pl.lit(check.field).alias("field"),
            pl.lit(check.code).alias("code"),
            check.message.cast(pl.String).alias("message"),
            pl.lit(i).alias("__order"),
        )
        for i, check in enumerate(checks)
    ]
    errors = pl.concat(parts).sort("row", "__order").select(ROW_ERROR_COLUMNS).collect()
    return errors.cast(schema)


def _with_first_rows(rejected: pl.LazyFrame, whole: pl.LazyFrame) -> pl.LazyFrame:
    """The first row of each duplicated invoice number / reference, for the duplicate messages."""
    for f, key in (("invoice_number", "invoice_number"),
                   ("structured_reference", "__structured_reference")):
        keys = rejected.select(key).drop_nulls().unique()
        firsts = (
            whole.join(keys, on=key, how="semi")
            .group_by(key).agg(pl.col("source_row").min().alias(f"__first_{f}"))
        )
        rejected = rejected.join(firsts, on=key, how="left", maintain_order="left")
    return rejected


def _output_columns(schema: pl.Schema) -> list[pl.Expr]:
    credit = pl.col("document_type") == "credit_note"
    cents = pl.col("__amount_cents")
    computed = {
        "source_row": pl.col("source_row"),
        "document_type": pl.col("document_type").fill_null("invoice"),
        "issue_date": pl.col("__issue_date"),
        "due_date": pl.col("__due_date"),
        "amount_cents": pl.when(credit.fill_null(False)).then(-cents).otherwise(cents),
        "debtor_phone": pl.col("__debtor_phone"),
        "debtor_vat": pl.col("__debtor_vat"),
        "debtor_iban": pl.col("__debtor_iban"),
        "structured_reference": pl.col("__structured_reference"),
    }
    columns = []
    for name, dtype in INVOICE_SCHEMA.items():
        expr = computed.get(name, pl.col(name))
        if name not in computed and schema.get(name) == dtype:
            columns.append(expr)  # a no-op cast still copies the strings
        else:
            columns.append(expr.cast(dtype).alias(name))
    return columns


# ----------------------------------------------------------------------------------------------
# Library-backed fields: vectorised acceptance, the library for everything else
# ----------------------------------------------------------------------------------------------


def _with_library_verdicts(frame: pl.DataFrame, rules: RowRules) -> pl.DataFrame:
    """Add `__<field>` (the stored compact form, null when invalid) and `__<field>_why`."""
    region = (
        pl.when(pl.col("debtor_country").is_in(sorted(COUNTRIES)))
        .then(pl.col("debtor_country")).otherwise(pl.lit(rules.default_country))
    )
    frame = frame.with_columns(region.alias("__region"))
    frame = _verdicts(frame, "debtor_iban", _iban_fast, _iban_slow)
    frame = _verdicts(frame, "structured_reference", _ogm_fast, _reference_slow)
    frame = _verdicts(frame, "debtor_vat", _be_vat_fast, _vat_slow, with_region=True)
    frame = _verdicts(frame, "debtor_phone", _phone_fast, _phone_slow, with_region=True)
    return frame


def _verdicts(
    frame: pl.DataFrame,
    field: str,
    fast: Callable[[pl.DataFrame], pl.Series],
    slow: Callable[[str, str], str],
    *,
    with_region: bool = False,
) -> pl.DataFrame:
    """Fast acceptance for the bulk; `slow(value, region)` once per distinct remaining value.

    `slow` returns the compact form or raises with the reason (stdnum's ValidationError,
    phonenumbers' NumberParseException, ValueError; anything a library raises on a strange value
    counts as a rejection of that value, never as a failed batch)."""
    ok, why = f"__{field}", f"__{field}_why"
    keys = [field, "__region"] if with_region else [field]
    no_reason = pl.lit(None, pl.String).alias(why)
    if frame[field].has_nulls():
        present = frame.select(keys).with_row_index("__index").filter(pl.col(field).is_not_null())
        if present.is_empty():
            return frame.with_columns(pl.lit(None, pl.String).alias(ok), no_reason)
        present = present.with_columns(fast(present).alias(ok), no_reason)
    else:  # every row has a value: when all pass the fast check, no index, filter or scatter
        verdicts = fast(frame.select(keys)).alias(ok)
        if not verdicts.has_nulls():
            return frame.with_columns(verdicts, no_reason)
        present = frame.select(keys).with_row_index("__index").with_columns(verdicts, no_reason)
    pending = present.filter(pl.col(ok).is_null())
    if pending.height:
        distinct = pending.select(keys).unique()
        accepted, reasons = [], []
        for values in distinct.iter_rows():
            region = values[1] if with_region else ""
            try:
                accepted.append(slow(values[0], region))
                reasons.append(None)
            except Exception as exc:  # noqa: BLE001 - a library choking on a value rejects it
                accepted.append(None)
                reasons.append(_reason(exc))
        verdicts = distinct.with_columns(
            pl.Series(ok, accepted, pl.String), pl.Series(why, reasons, pl.String)
        )
        pending = pending.drop(ok, why).join(verdicts, on=keys, how="left")
        present = pl.concat([present.filter(pl.col(ok).is_not_null()), pending.select(present.columns)])
    return frame.with_columns(
        _scattered(ok, frame.height, present["__index"], present[ok]),
        _scattered(why, frame.height, present["__index"], present[why]),
    )


def _scattered(name: str, length: int, indices: pl.Series, values: pl.Series) -> pl.Series:
    """A column of `length` nulls with `values` at `indices` (cheaper than a join on 1M rows)."""
    column = pl.repeat(None, length, dtype=pl.String, eager=True).alias(name)
    if indices.len():
        column = column.scatter(indices, values)
    return column


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc or type(exc).__name__).rstrip(".")
    return text[:1].lower() + text[1:]


def _letters_to_digits(expr: pl.Expr) -> pl.Expr:
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    return expr.str.replace_many(letters, [str(10 + i) for i in range(26)])


def _mod97(padded: pl.Expr) -> pl.Expr:
    """Remainder modulo 97 of a digit string left-padded with zeros to 75 digits, in Int64 steps of
    15 digits (remainder * 10^15 + chunk stays below 2^63)."""
    remainder = pl.lit(0, pl.Int64)
    for start in range(0, 75, 15):
        chunk = padded.str.slice(start, 15).cast(pl.Int64, strict=False)
        remainder = (remainder * 10**15 + chunk) % 97
    return remainder


def _iban_structure_pattern() -> str:
    """One regular expression for `country + BBAN` of every country in python-stdnum's IBAN
    registry (one pass over the column instead of one per country)."""
    database = numdb.get("iban")
    branches = []
    for first in range(26):
        for second in range(26):
            country = chr(65 + first) + chr(65 + second)
            structure = database.info(country)[0][1].get("bban")
            if structure:
                bban = stdnum_iban._struct_to_re(structure).pattern.strip("^$")
                branches.append(f"{country}{bban}")
    return "^(?:" + "|".join(branches) + ")$"


_IBAN_STRUCTURE = _iban_structure_pattern()


def _staged(frame: pl.DataFrame, *stages: dict[str, pl.Expr]) -> pl.Series:
    """Evaluate named intermediate columns stage by stage and return the last one: each
    intermediate is computed once (polars does not share sub-expressions inside when/then)."""
    lazy = frame.lazy()
    for stage in stages:
        lazy = lazy.with_columns(**stage)
    return lazy.select(pl.col(list(stages[-1])[-1])).collect().to_series()


def _iban_fast(frame: pl.DataFrame) -> pl.Series:
    """stdnum.iban.validate(check_country=False) in polars: registry structure + ISO 7064 mod 97."""
    compact = pl.col("_compact")
    return _staged(
        frame,
        {"_compact": pl.col("debtor_iban").str.replace_all(r"[ .\-]", "").str.to_uppercase()},
        {"_padded": _letters_to_digits(compact.str.slice(4) + compact.str.slice(0, 4))
         .str.pad_start(75, "0"),
         "_shape": compact.str.contains(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}$")
         & (compact.str.slice(0, 2) + compact.str.slice(4)).str.contains(_IBAN_STRUCTURE)},
        {"_ok": pl.when(
            (pl.col("_shape") & (pl.col("_padded").str.len_chars() == 75)
             & (_mod97(pl.col("_padded")) == 1)).fill_null(False)
        ).then(compact)},
    )


def _iban_slow(value: str, region: str) -> str:
    return stdnum_iban.validate(value, check_country=False)


def _ogm_fast(frame: pl.DataFrame) -> pl.Series:
    """The compact OGM where the written one is valid; RF references are left to the slow path."""
    compact = pl.col("_compact")
    return _staged(
        frame,
        {"_compact": pl.col("structured_reference").str.replace_all(WRITTEN_OGM_SEPARATORS, "")},
        {"_ok": pl.when(ogm_is_valid(compact)).then(compact)},
    )


def _reference_slow(value: str, region: str) -> str:
    if re.sub(r"\s", "", value)[:2].upper() == "RF":
        return iso11649.validate(value)
    return ogm_vcs.validate(strip_written_ogm(value))


def _be_vat_fast(frame: pl.DataFrame) -> pl.Series:
    """stdnum.be.vat in polars, for BE-prefixed numbers and unprefixed ones of Belgian debtors."""
    cleaned, number = pl.col("_cleaned"), pl.col("_number")
    return _staged(
        frame,
        {"_cleaned": pl.col("debtor_vat").str.replace_all(r"[ \-./]", "").str.to_uppercase()},
        {"_prefixed": cleaned.str.starts_with("BE"),
         "_unprefixed_be": ~cleaned.str.contains(r"^[A-Z]{2}") & (pl.col("__region") == "BE")},
        {"_number": pl.when(pl.col("_prefixed")).then(cleaned.str.slice(2)).otherwise(cleaned)},
        {"_number": pl.when(number.str.len_chars() == 9).then(pl.lit("0") + number)
         .otherwise(number)},
        {"_ok": pl.when(
            ((pl.col("_prefixed") | pl.col("_unprefixed_be"))
             & number.str.contains(r"^[01][0-9]{9}$")
             & (number.str.slice(1).cast(pl.Int64, strict=False) > 0)
             & ((number.str.slice(0, 8).cast(pl.Int64, strict=False)
                 + number.str.slice(8, 2).cast(pl.Int64, strict=False)) % 97 == 0)
             ).fill_null(False)).then(pl.lit("BE") + number)},
    )


def _vat_slow(value: str, region: str) -> str:
    cleaned = re.sub(r"\s", "", value)
    if re.match(r"^[A-Za-z]{2}", cleaned):
        return vatin.validate(cleaned)
    if region == "BE":
        return "BE" + be_vat.validate(cleaned)
    return vatin.validate(region + cleaned)


# Phone numbers -------------------------------------------------------------------------------

_PHONE_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager",
                "uan", "voicemail", "fixed_line", "mobile")


def _simple_phone_regions() -> dict[str, PhoneMetadata]:
    """Regions whose parsing rules the fast path reproduces exactly: trunk prefix "0" (or none),
    no carrier-code stripping, international prefix "00", one region per country code."""
    simple = {}
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        meta = PhoneMetadata.metadata_for_region(region)
        if (
            meta is not None
            and meta.national_prefix == "0"
            and meta.national_prefix_for_parsing in (None, "0")
            and meta.national_prefix_transform_rule is None
            and meta.international_prefix == "00"
            and len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(meta.country_code, ())) == 1
        ):
            simple[region] = meta
    return simple


_SIMPLE_PHONE_REGIONS = _simple_phone_regions()
_IDD_00_REGIONS = frozenset(
    region for region in phonenumbers.SUPPORTED_REGIONS
    if PhoneMetadata.metadata_for_region(region).international_prefix == "00"
)
"""Regions where a leading 00 is the international call prefix (not so in the US, say)."""


def _desc_regex(desc, prefix: str) -> str | None:
    """phonenumbers' _is_number_matching_desc as one regex over `LL + prefix + nsn`, where LL is
    the two-digit length of `prefix + nsn`: the possible-length check becomes part of the pattern."""
    if desc is None or desc.national_number_pattern is None:
        return None
    lengths = [n for n in desc.possible_length if n > 0]
    if desc.possible_length and not lengths:
        return None  # possible_length (-1,): no numbers of this type
    marker = "|".join(f"{n + len(prefix):02d}" for n in lengths) if lengths else "[0-9]{2}"
    # \d is Unicode in polars' regex engine (a far bigger automaton): the numbers are ASCII here
    pattern = desc.national_number_pattern.replace("\\d", "[0-9]")
    return f"(?:{marker}){re.escape(prefix)}(?:{pattern})"


def _nsn_ok(marked: pl.Expr, meta, prefix: str) -> pl.Expr:
    """`marked` (= LL + prefix + national significant number, LL its two-digit length) is a valid
    number of `meta`'s region: it matches the general description and at least one number type,
    as is_valid_number decides."""
    general = _desc_regex(meta.general_desc, prefix)
    types = [r for kind in _PHONE_TYPES if (r := _desc_regex(getattr(meta, kind), prefix))]
    if general is None or not types:
        return pl.lit(False)
    return marked.str.contains(f"^{general}$") & marked.str.contains(f"^(?:{'|'.join(types)})$")


def _marked(number: pl.Expr) -> pl.Expr:
    return number.str.len_chars().cast(pl.String).str.pad_start(2, "0") + number


def _phone_fast(frame: pl.DataFrame) -> pl.Series:
    """Accept plainly written numbers of the simple regions: `+CC nsn`, `00CC nsn` (where 00 is
    the debtor country's international prefix) or `0nsn` (a number of the debtor's country),
    separators space . / - ( ) only. Everything else goes to
    phonenumbers."""
    raw, digits = pl.col("debtor_phone"), pl.col("_digits")
    parts = frame.lazy().with_columns(
        _plain=raw.str.contains(r"^\+?[0-9 ./()\-]+$").fill_null(False),
        _digits=raw.str.replace_all(r"[^0-9+]", ""),
    ).with_columns(
        _international=pl.when(pl.col("_plain") & digits.str.starts_with("+"))
        .then(digits.str.slice(1))
        .when(pl.col("_plain") & digits.str.starts_with("00")
              & pl.col("__region").is_in(sorted(_IDD_00_REGIONS))).then(digits.str.slice(2)),
        _national=pl.when(pl.col("_plain") & digits.str.starts_with("0")
                          & ~digits.str.starts_with("00")).then(digits.str.slice(1)),
    ).with_columns(
        _international_marked=_marked(pl.col("_international")),
        _national_marked=_marked(pl.col("_national")),
    ).collect()
    abroad_codes: set[str] = set()
    for width in (1, 2, 3):
        abroad_codes |= set(parts["_international"].str.slice(0, width).drop_nulls().unique())
    home_regions = set(parts.filter(pl.col("_national").is_not_null())["__region"].unique())
    international, national = pl.col("_international"), pl.col("_national")
    accepted = pl.lit(None, pl.String)
    for region, meta in _SIMPLE_PHONE_REGIONS.items():
        code = str(meta.country_code)
        if code in abroad_codes:
            accepted = pl.when(
                international.str.starts_with(code)
                & ~international.str.starts_with(code + "0")
                & _nsn_ok(pl.col("_international_marked"), meta, code)
            ).then(pl.lit("+") + international).otherwise(accepted)
        if region in home_regions:
            accepted = pl.when(
                (pl.col("__region") == region)
                & ~national.str.starts_with("0")
                & _nsn_ok(pl.col("_national_marked"), meta, "")
            ).then(pl.lit("+" + code) + national).otherwise(accepted)
    return parts.with_columns(accepted.alias("_ok")).get_column("_ok")


def _phone_slow(value: str, region: str) -> str:
    number = phonenumbers.parse(value, region)
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid number for {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
