"""Creditor profiles: one YAML file per creditor, validated at start.

A profile says who the creditor is (legal name, address, VAT, IBAN/BIC), how to read its CSV billing
files (which of its columns is which of our fields, date format, decimal separator) and through which
channels its debtors are reached, in order of preference. A wrong profile stops the process with one
message listing every problem as `file: field: reason`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum import vatin as stdnum_vatin
from stdnum.exceptions import ValidationError as StdnumError

from creditflow.config.errors import ProfileError
from creditflow.config.ids import is_creditor_id
from creditflow.config.stores import StoreConfig

Language = Literal["nl", "fr", "en", "de"]
Channel = Literal["email", "sms", "post", "payment_request"]

MAPPABLE_FIELDS: dict[str, bool] = {
    # our field -> required in every billing file
    "invoice_number": True,
    "issue_date": True,
    "due_date": True,
    "amount": True,
    "debtor_name": True,
    "currency": False,
    "debtor_street": False,
    "debtor_postcode": False,
    "debtor_city": False,
    "debtor_country": False,
    "debtor_email": False,
    "debtor_phone": False,
    "debtor_language": False,
    "debtor_vat": False,
    "debtor_iban": False,
    "customer_number": False,
    "structured_reference": False,
    "description": False,
}
"""The fields a creditor's CSV columns can be mapped to. Mirrors the canonical invoice columns of
`creditflow.parsers.schema` (tests/test_config.py keeps the two in step)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Address(_Strict):
    street: str = Field(min_length=1)
    postcode: str = Field(min_length=1)
    city: str = Field(min_length=1)
    country: str = Field("BE", pattern=r"^[A-Z]{2}$")

    def lines(self) -> list[str]:
        return [self.street, f"{self.postcode} {self.city}"]


class CsvMapping(_Strict):
    """How to read this creditor's CSV files."""

    columns: dict[str, str] = Field(
        description="The creditor's column header -> our field name (see MAPPABLE_FIELDS)."
    )
    delimiter: Literal[",", ";", "\t", "|", "auto"] = "auto"
    encoding: Literal["auto", "utf-8", "cp1252"] = "auto"
    decimal_separator: Literal[".", ","] = "."
    date_format: str = Field("%Y-%m-%d", description="strptime format of the date columns.")
    default_currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, columns: dict[str, str]) -> dict[str, str]:
        unknown = sorted({f for f in columns.values() if f not in MAPPABLE_FIELDS})
        if unknown:
            raise ValueError(
                f"unknown target field(s) {', '.join(unknown)}; "
                f"known: {', '.join(MAPPABLE_FIELDS)}"
            )
        targets = list(columns.values())
        doubles = sorted({f for f in targets if targets.count(f) > 1})
        if doubles:
            raise ValueError(f"field(s) mapped from more than one column: {', '.join(doubles)}")
        missing = [f for f, required in MAPPABLE_FIELDS.items() if required and f not in targets]
        if missing:
            raise ValueError(f"required field(s) not mapped: {', '.join(missing)}")
        return columns

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, value: str) -> str:
        if not all(code in value for code in ("%d", "%m")) or not ("%Y" in value or "%y" in value):
            raise ValueError("must contain %d, %m and %Y (or %y)")
        return value

    def column_for(self, field: str) -> str | None:
        for column, target in self.columns.items():
            if target == field:
                return column
        return None


class CreditorProfile(_Strict):
    id: str = Field(description="Stable creditor id: lower case letters, digits and dashes.")
    legal_name: str = Field(min_length=1, max_length=70)
    address: Address
    vat: str
    iban: str
    bic: str
    language: Language = "nl"
    email_from: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = None
    website: str | None = None
    csv: CsvMapping
    channels: list[Channel] = Field(default_factory=lambda: ["email", "sms", "post"], min_length=1)
    reference_kind: Literal["ogm", "rf"] = Field(
        "ogm", description="Reference generated when a billing row brings none."
    )
    qr_reference_line: Literal["structured", "unstructured"] = Field(
        "structured",
        description="Where the OGM goes in the EPC QR code: line 10 as 12 digits (as Odoo and "
        "letspeppol do) or line 11 as +++…+++ text (docs/adr/0003-ogm-in-epc-qr.md).",
    )
    invoice_number_pattern: str | None = Field(
        None, description="Regular expression of this creditor's invoice numbers (reconciliation)."
    )
    finance_email: str | None = Field(
        None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Where the nightly reconciliation reports are e-mailed; none: reports folder only.",
    )
    send_own_pdf: bool = Field(
        False, description="Send the PDF a UBL invoice embeds (its AdditionalDocumentReference) "
        "instead of rendering ours. Off by default: that PDF carries the creditor's own payment "
        "reference and no EPC QR code or payment link of ours.",
    )
    reminder_after_days: int = Field(
        7, ge=1, description="Calendar days (Brussels dates) after the due date before an unpaid "
        "invoice gets its first, free reminder (docs/collections.md).",
    )
    store: StoreConfig | None = Field(
        None, description="Where this creditor's drop zone lives; default: a local folder "
        "<dropzone>/<id> (settings.resolved_dropzone_dir).",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not is_creditor_id(value):
            raise ValueError("must be 2-63 lower case letters, digits or dashes (it names folders)")
        return value

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        return _stdnum(stdnum_iban.validate, value, check_country=False)

    @field_validator("bic")
    @classmethod
    def _bic(cls, value: str) -> str:
        return _stdnum(stdnum_bic.validate, value)

    @field_validator("vat")
    @classmethod
    def _vat(cls, value: str) -> str:
        return _stdnum(stdnum_vatin.validate, value)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    @field_validator("invoice_number_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _sepa(self) -> "CreditorProfile":
        if self.iban[:2] not in SEPA_COUNTRIES:
            raise ValueError(f"IBAN country {self.iban[:2]} is not in the SEPA zone")
        return self


SEPA_COUNTRIES = frozenset(
    "AD AT BE BG CH CY CZ DE DK EE ES FI FR GB GI GR HR HU IE IS IT LI LT LU LV MC MT NL NO PL PT "
    "RO SE SI SK SM VA".split()
)


def _stdnum(validate, value: str, **kwargs) -> str:
    try:
        return validate(value, **kwargs)
    except StdnumError as exc:
        raise ValueError(f"{value!r} is not valid: {exc}") from None


def load_profile(path: Path | str) -> CreditorProfile:
    """Read and validate one profile file; any problem raises ProfileError naming file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(path, [("(file)", f"cannot be read: {exc}")]) from None
    except yaml.YAMLError as exc:
        raise ProfileError(path, [("(file)", f"is not valid YAML: {exc}")]) from None
    if not isinstance(raw, dict):
        raise ProfileError(path, [("(file)", "must be a mapping of profile fields")])
    try:
        return CreditorProfile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "(profile)"
            message = err["msg"].removeprefix("Value error, ")
            problems.append((field, message))
        raise ProfileError(path, problems) from None


def load_profiles(folder: Path | str) -> dict[str, CreditorProfile]:
    """Every `*.yaml`/`*.yml` profile in a folder, by creditor id; problems in all files at once."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ProfileError(folder, [("(folder)", "profiles folder does not exist")])
    profiles: dict[str, CreditorProfile] = {}
    problems: list[ProfileError] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            problems.append(exc)
            continue
        if profile.id in profiles:
            problems.append(ProfileError(path, [("id", f"{profile.id!r} is used by another profile")]))
            continue
        profiles[profile.id] = profile
    if problems:
        if len(problems) == 1:
            raise problems[0]
        merged = [(f"{p.path.name}: {field}", reason) for p in problems for field, reason in p.problems]
        raise ProfileError(folder, merged)
    return profiles
