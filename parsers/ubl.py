"""UBL 2.1 / Peppol BIS Billing 3.0 (EN 16931) invoices and credit notes into canonical invoice rows.

Why it is built this way:

* Speed. A creditor may drop a ZIP of tens of thousands of documents. Each document is read with a
  few precompiled XPath objects (module level), each one ``concat()`` returning every scalar field
  of the document (or of one line / payment means / VAT subtotal) in a single libxml2 call, joined
  by U+241F (a value containing it is detected and re-read field by field). The customer party is
  passed as the variable ``$c`` so its fields are not searched from the root again. The repeated
  aggregates are found in one pass over the root's children. Measured in benchmarks/bench_ubl.py.
* A folder or ZIP is one batch: ``parse_many`` reads every document, and a bad document becomes
  ``RowError``s naming the document (the ZIP member name) and the XPath of the bad field, while the
  rest of the batch goes on. ``parse`` on one file raises ``FileRejected`` only when the file as a
  whole is unreadable (not XML, DOCTYPE, not a UBL Invoice/CreditNote).
* Sign: the receivable delta is +PayableAmount for an Invoice and -PayableAmount for a CreditNote,
  whatever sign is written (a negative credit note means the buyer owes).
* Nothing money-related goes through float: amounts are parsed with ``Decimal`` and must be whole
  cents; quantities and VAT percentages are kept as their decimal text.
* XPath 1.0 returns the first node in *document order*, so "RegistrationName, else PartyName" is done
  in Python from two separate fields, not with ``(a|b)[1]``.
"""

from __future__ import annotations

import base64
import gc
import binascii
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Iterable

import polars as pl
from lxml import etree
from stdnum import iban as stdnum_iban
from stdnum import iso11649

from creditflow.parsers.base import InvoiceBatch
from creditflow.parsers.errors import (
    MALFORMED,
    NOT_THIS_FORMAT,
    FileRejected,
    ParseWarning,
    RowError,
)
from creditflow.parsers.schema import INVOICE_SCHEMA
from creditflow.parsers.xmlsafe import parse_xml

FORMAT = "ubl"
INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
_ROOTS = {
    f"{{{INVOICE_NS}}}Invoice": ("Invoice", "invoice"),
    f"{{{CREDIT_NOTE_NS}}}CreditNote": ("CreditNote", "credit_note"),
}
_SEP = "\u241f"  # SYMBOL FOR UNIT SEPARATOR: a value containing it is detected (see _Fields)

# RowError / ParseWarning codes
MISSING = "missing"
INVALID_AMOUNT = "invalid_amount"
INVALID_DATE = "invalid_date"
INVALID_QUANTITY = "invalid_quantity"
CURRENCY_MISMATCH = "currency_mismatch"
INVALID_BASE64 = "invalid_base64"
NO_DUE_DATE = "no_due_date"
INVALID_PHONE = "invalid_phone"
NO_PAYEE_IBAN = "no_payee_iban"
PAYEE_IBAN_FALLBACK = "payee_iban_not_credit_transfer"
INVALID_REFERENCE = "invalid_reference"
SKIPPED_MEMBER = "skipped_member"

CREDIT_TRANSFER_CODES = frozenset({"30", "58"})
DIRECT_DEBIT_CODES = frozenset({"49", "59"})


class _Fields:
    """Several string fields read with ONE precompiled XPath ``concat()`` call.

    The values are joined by U+241F. Should a value ever contain that character, the split yields
    too many parts; we notice and read each field with its own precompiled XPath instead, so the
    result is exact either way. Values are whitespace-normalised (``normalize-space``: trimmed, inner
    runs of blanks and line breaks become one space); an empty value is None.
    """

    def __init__(self, *paths: str):
        self.count = len(paths)
        self.variables = "$" in "".join(paths)
        joined = ", '\u241f', ".join(f"normalize-space({p})" for p in paths)
        self.together = etree.XPath(f"concat({joined}, '')", namespaces=NS, smart_strings=False)
        self.one_by_one = [etree.XPath(f"normalize-space({p})", namespaces=NS, smart_strings=False)
                           for p in paths]

    def __call__(self, element, **variables) -> list[str | None]:
        parts = self.together(element, **variables).split(_SEP)
        if len(parts) != self.count:
            parts = [xpath(element, **variables) for xpath in self.one_by_one]
        return [p or None for p in parts]


_CUSTOMER = "cac:AccountingCustomerParty/cac:Party"
_SUPPLIER = "cac:AccountingSupplierParty/cac:Party"
_DOC_FIELDS = (  # relative to the root
    ("customization_id", "cbc:CustomizationID"),
    ("profile_id", "cbc:ProfileID"),
    ("invoice_number", "cbc:ID"),
    ("issue_date", "cbc:IssueDate"),
    ("due_date", "cbc:DueDate"),
    ("type_code", "cbc:InvoiceTypeCode|cbc:CreditNoteTypeCode"),
    ("currency", "cbc:DocumentCurrencyCode"),
    ("buyer_reference", "cbc:BuyerReference"),
    ("order_reference", "cac:OrderReference/cbc:ID"),
    ("preceding_invoice", "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID"),
    ("payment_terms", "cac:PaymentTerms/cbc:Note"),
    ("payable", "cac:LegalMonetaryTotal/cbc:PayableAmount"),
    ("payable_currency", "cac:LegalMonetaryTotal/cbc:PayableAmount/@currencyID"),
    ("supplier_registration_name", f"{_SUPPLIER}/cac:PartyLegalEntity/cbc:RegistrationName"),
    ("supplier_party_name", f"{_SUPPLIER}/cac:PartyName/cbc:Name"),
    ("supplier_vat",
     f"{_SUPPLIER}/cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID"),
    ("payee_name", "cac:PayeeParty/cac:PartyName/cbc:Name"),
    ("payee_id", "cac:PayeeParty/cac:PartyIdentification/cbc:ID"),
    ("payee_company_id", "cac:PayeeParty/cac:PartyLegalEntity/cbc:CompanyID"),
)
# Relative to the customer's cac:Party, passed as the XPath variable $c: evaluating from there
# instead of from the root saves walking the root's children again for each of these fields
# (about a third of the XPath time), and it is still one call with the root-level fields.
_CUSTOMER_FIELDS = (
    ("customer_registration_name", "cac:PartyLegalEntity/cbc:RegistrationName"),
    ("customer_party_name", "cac:PartyName/cbc:Name"),
    ("customer_street", "cac:PostalAddress/cbc:StreetName"),
    ("customer_additional_street", "cac:PostalAddress/cbc:AdditionalStreetName"),
    ("customer_address_line", "cac:PostalAddress/cac:AddressLine/cbc:Line"),
    ("customer_postcode", "cac:PostalAddress/cbc:PostalZone"),
    ("customer_city", "cac:PostalAddress/cbc:CityName"),
    ("customer_country", "cac:PostalAddress/cac:Country/cbc:IdentificationCode"),
    ("customer_email", "cac:Contact/cbc:ElectronicMail"),
    ("customer_phone", "cac:Contact/cbc:Telephone"),
    ("customer_vat", "cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID"),
    ("customer_number", "cac:PartyIdentification/cbc:ID"),
    ("customer_endpoint_id", "cbc:EndpointID"),
    ("customer_endpoint_scheme", "cbc:EndpointID/@schemeID"),
)
_DOC_KEYS = tuple(name for name, _ in _DOC_FIELDS) + tuple(name for name, _ in _CUSTOMER_FIELDS)
_DOC_XPATH = _Fields(*(path for _, path in _DOC_FIELDS),
                     *(f"$c/{path}" for _, path in _CUSTOMER_FIELDS))
_CAC = "{%s}" % NS["cac"]
_CUSTOMER_TAG = _CAC + "AccountingCustomerParty"
_PARTY_TAG = _CAC + "Party"
_PAYMENT_MEANS_TAG = _CAC + "PaymentMeans"
_TAX_TOTAL_TAG = _CAC + "TaxTotal"
_LINE_TAGS = frozenset({_CAC + "InvoiceLine", _CAC + "CreditNoteLine"})
_REFERENCE_TAG = _CAC + "AdditionalDocumentReference"

_PM_FIELDS = ("code", "due_date", "payment_id", "account", "bic", "mandate", "payer_account")
_PM_XPATH = _Fields(
    "cbc:PaymentMeansCode",
    "cbc:PaymentDueDate",
    "cbc:PaymentID",
    "cac:PayeeFinancialAccount/cbc:ID",
    "cac:PayeeFinancialAccount/cac:FinancialInstitutionBranch/cbc:ID",
    "cac:PaymentMandate/cbc:ID",
    "cac:PaymentMandate/cac:PayerFinancialAccount/cbc:ID",
)
_TAX_CURRENCY = etree.XPath("string(cbc:TaxAmount/@currencyID)", namespaces=NS, smart_strings=False)
_TAX_SUBTOTALS = etree.XPath("cac:TaxSubtotal", namespaces=NS)
_SUBTOTAL_XPATH = _Fields(
    "cac:TaxCategory/cbc:ID",
    "cac:TaxCategory/cbc:Percent",
    "cbc:TaxableAmount",
    "cbc:TaxAmount",
    "cac:TaxCategory/cbc:TaxExemptionReasonCode",
    "cac:TaxCategory/cbc:TaxExemptionReason",
)
_LINE_XPATH = _Fields(
    "cbc:ID",
    "cbc:InvoicedQuantity|cbc:CreditedQuantity",
    "cbc:InvoicedQuantity/@unitCode|cbc:CreditedQuantity/@unitCode",
    "cbc:LineExtensionAmount",
    "cac:Item/cbc:Name",
    "cac:Item/cac:ClassifiedTaxCategory/cbc:ID",
    "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent",
)
_EMBEDDED = etree.XPath("cac:Attachment/cbc:EmbeddedDocumentBinaryObject", namespaces=NS)

LINE_SCHEMA: dict[str, pl.DataType] = {
    "source_row": pl.Int64,
    "document": pl.String,
    "invoice_number": pl.String,
    "line_id": pl.String,
    "quantity": pl.String,  # decimal text as written (Decimal-safe), sign kept
    "unit_code": pl.String,
    "line_amount_cents": pl.Int64,  # as written (not sign-flipped for credit notes)
    "item_name": pl.String,
    "vat_category": pl.String,
    "vat_percent": pl.String,  # decimal text
}
VAT_SCHEMA: dict[str, pl.DataType] = {
    "source_row": pl.Int64,
    "document": pl.String,
    "invoice_number": pl.String,
    "category": pl.String,
    "percent": pl.String,
    "taxable_cents": pl.Int64,
    "tax_cents": pl.Int64,
    "exemption_reason_code": pl.String,
    "exemption_reason": pl.String,
}
DOCUMENT_SCHEMA: dict[str, pl.DataType] = {
    "source_row": pl.Int64,
    "document": pl.String,
    "invoice_number": pl.String,
    "document_type": pl.String,
    "type_code": pl.String,
    "customization_id": pl.String,
    "profile_id": pl.String,
    "buyer_reference": pl.String,
    "order_reference": pl.String,
    "payment_terms": pl.String,
    "supplier_name": pl.String,
    "supplier_vat": pl.String,
    "payee_iban": pl.String,  # the chosen account: credit transfer (30/58) with a valid IBAN
    "payee_bic": pl.String,
    "payment_means_code": pl.String,  # code of the chosen payment means
    "payment_accounts": pl.List(pl.String),  # every PayeeFinancialAccount/ID, compacted (null: none)
    "payment_means_codes": pl.List(pl.String),  # in document order (null: no PaymentMeans)
    "mandate_id": pl.String,  # direct debit mandate: the invoice is already being collected
    "customer_endpoint_id": pl.String,
    "customer_endpoint_scheme": pl.String,
    "payee_name": pl.String,  # set when the payee is not the seller (factoring)
    "payee_id": pl.String,
    "payee_company_id": pl.String,
    "payable_cents": pl.Int64,  # BT-115 as written (sign not flipped for credit notes)
}
ATTACHMENT_SCHEMA: dict[str, pl.DataType] = {
    "source_row": pl.Int64,
    "document": pl.String,
    "invoice_number": pl.String,
    "filename": pl.String,  # as written: a label, never used as a path
    "mime": pl.String,
    "content": pl.Binary,
}

_CENT = Decimal(100)
_DAYS = re.compile(
    r"(?<![\d.,%])(\d{1,3})\s*(?:calendar\s+)?(?:days?|dagen|dag|jours?|j\b|tage?n?|d\b)",
    re.IGNORECASE,
)
_NET_DAYS = re.compile(r"\bnet(?:to)?\s*(\d{1,3})\b", re.IGNORECASE)
_BUSINESS_DAYS = re.compile(r"werkdag|business|working|ouvrable|werktag|bankdag", re.IGNORECASE)
_OGM_FRAMED = re.compile(r"^\s*(\+\+\+|\*\*\*).*(\+\+\+|\*\*\*)\s*$")
_OGM_STRIP = re.compile(r"[\s+*/.]")
_VAT_STRIP = re.compile(r"[\s.\-/]")
_B64_WS = re.compile(r"\s+")


class _DocumentError(Exception):
    """Internal: the document cannot be read at all (becomes one RowError)."""

    def __init__(self, field: str, code: str, message: str):
        super().__init__(message)
        self.field = field
        self.code = code
        self.message = message


@dataclass
class ZipContents:
    """The XML members of a ZIP and what was skipped."""

    items: list[tuple[str, bytes]]
    warnings: list[ParseWarning] = field(default_factory=list)


def expand_zip(data: bytes, *, source: str, max_members: int = 50_000,
               max_total_bytes: int = 512 * 1024 * 1024,
               max_member_bytes: int = 64 * 1024 * 1024) -> ZipContents:
    """The ``*.xml`` members of a ZIP as (member name, bytes), guarded against ZIP bombs.

    Sizes are enforced while decompressing (the sizes in the ZIP directory can lie), directory
    entries and other files are skipped, and member names are only labels: nothing is written to
    disk, so a name like ``../../etc/x.xml`` is harmless.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise FileRejected(source, f"not a readable ZIP archive: {exc}", code=MALFORMED) from None
    files = [info for info in infos if not info.is_dir()]
    if len(files) > max_members:
        raise FileRejected(source, f"the ZIP holds {len(files)} files, more than {max_members}",
                           code="zip_too_many_members")
    contents = ZipContents(items=[])
    total = 0
    for info in files:
        name = info.filename
        if not name.lower().endswith(".xml") or name.rsplit("/", 1)[-1].startswith((".", "__MACOSX")):
            contents.warnings.append(ParseWarning(source, name, SKIPPED_MEMBER,
                                                  "not an .xml document: skipped"))
            continue
        budget = min(max_member_bytes, max_total_bytes - total)
        try:
            with archive.open(info) as member:
                content = member.read(budget + 1)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError,
                ValueError, zipfile.LargeZipFile) as exc:  # encrypted, unsupported method, CRC
            contents.warnings.append(ParseWarning(source, name, SKIPPED_MEMBER,
                                                  f"unreadable ZIP member: {exc}"))
            continue
        if len(content) > budget:
            raise FileRejected(source, f"ZIP member {name!r} expands beyond the size limit "
                                       f"({max_member_bytes} bytes per member, {max_total_bytes} "
                                       "in total)", code="zip_too_large", location=name)
        total += len(content)
        contents.items.append((name, content))
    return contents


def _cents(raw: str | None, field: str = "") -> int:
    if raw is None:
        raise _DocumentError(field, MISSING, "amount missing")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _DocumentError(field, INVALID_AMOUNT, f"{raw!r} is not a decimal amount") from None
    scaled = value * _CENT
    if not value.is_finite() or scaled != scaled.to_integral_value():
        raise _DocumentError(field, INVALID_AMOUNT, f"{raw!r} is not a whole number of cents")
    return int(scaled)


def _date(raw: str | None, field: str = "") -> date | None:
    if raw is None:
        return None
    if len(raw) != 10:
        raise _DocumentError(field, INVALID_DATE, f"{raw!r} is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _DocumentError(field, INVALID_DATE, f"{raw!r} is not a YYYY-MM-DD date") from None


@lru_cache(maxsize=1024)  # a creditor writes the same terms on every invoice
def days_from_terms(note: str | None) -> int | None:
    """Calendar days in a payment-terms note ("30 days net", "betaling binnen 30 dagen"), else None.

    Business-day terms are not turned into a date: that needs the holiday calendar of the creditor,
    which a parser does not have.
    """
    if not note or _BUSINESS_DAYS.search(note):
        return None
    found = {int(m.group(1)) for m in _DAYS.finditer(note)}
    found |= {int(m.group(1)) for m in _NET_DAYS.finditer(note)}
    if len(found) != 1:  # "2% discount within 10 days, net 30 days": ambiguous, say nothing
        return None
    return found.pop()


def is_valid_ogm(digits: str) -> bool:
    """stdnum.be.ogm_vcs.is_valid for 12 ASCII digits, without its per-character cleaning, which
    cost a third of the time per document (every invoice has a distinct OGM, so caching does not
    help). Same rule: check digits = first ten mod 97, 0 written as 97; all-zero base refused.
    tests/test_parsers_ubl.py holds it equal to stdnum on random input."""
    base = int(digits[:10])
    return base > 0 and int(digits[10:]) == (base % 97 or 97)


@lru_cache(maxsize=8192)
def classify_payment_id(raw: str) -> tuple[str | None, bool]:
    """(structured reference or None, looked like an OGM but failed mod 97) for a PaymentID.

    In order: OGM (``+++``/``***``/``/``/spaces stripped, 12 digits, mod 97), then ISO 11649 RF.
    """
    compact = _OGM_STRIP.sub("", raw)
    if len(compact) == 12 and compact.isdigit():
        if is_valid_ogm(compact):
            return compact, False
        return None, True
    framed = _OGM_FRAMED.match(raw) is not None
    rf = iso11649.compact(raw)
    if rf[:2].upper() == "RF" and iso11649.is_valid(rf):
        return rf.upper(), False
    return None, framed


@lru_cache(maxsize=8192)
def compact_iban(raw: str) -> str | None:
    """The compact IBAN when `raw` is a valid one (checksum and country length), else None."""
    compact = stdnum_iban.compact(raw)
    return compact if stdnum_iban.is_valid(compact, check_country=False) else None


def _vat(raw: str | None, country: str | None) -> str | None:
    if raw is None:
        return None
    vat = _VAT_STRIP.sub("", raw).upper()
    if vat[:2].isalpha() or not country:
        return vat
    return country + vat


def _amount_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# Where each canonical field comes from, so the shared validator's errors can name the XPath.
FIELD_XPATHS = {
    "invoice_number": "cbc:ID",
    "issue_date": "cbc:IssueDate",
    "due_date": "cbc:DueDate",
    "amount": "cac:LegalMonetaryTotal/cbc:PayableAmount",
    "currency": "cbc:DocumentCurrencyCode",
    "debtor_name": f"{_CUSTOMER}/cac:PartyLegalEntity/cbc:RegistrationName",
    "debtor_street": f"{_CUSTOMER}/cac:PostalAddress/cbc:StreetName",
    "debtor_postcode": f"{_CUSTOMER}/cac:PostalAddress/cbc:PostalZone",
    "debtor_city": f"{_CUSTOMER}/cac:PostalAddress/cbc:CityName",
    "debtor_country": f"{_CUSTOMER}/cac:PostalAddress/cac:Country/cbc:IdentificationCode",
    "debtor_email": f"{_CUSTOMER}/cac:Contact/cbc:ElectronicMail",
    "debtor_phone": f"{_CUSTOMER}/cac:Contact/cbc:Telephone",
    "debtor_vat": f"{_CUSTOMER}/cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID",
    "debtor_iban": "cac:PaymentMeans/cac:PaymentMandate/cac:PayerFinancialAccount/cbc:ID",
    "customer_number": f"{_CUSTOMER}/cac:PartyIdentification/cbc:ID",
    "structured_reference": "cac:PaymentMeans/cbc:PaymentID",
    "description": "cac:PaymentMeans/cbc:PaymentID",
    "preceding_invoice": "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID",
}

_CANONICAL_TEXT = (
    "invoice_number", "issue_date", "due_date", "amount", "currency", "debtor_name",
    "debtor_street", "debtor_postcode", "debtor_city", "debtor_country", "debtor_email",
    "debtor_phone", "debtor_language", "debtor_vat", "debtor_iban", "customer_number",
    "structured_reference", "description", "document_type", "preceding_invoice",
)
_CANONICAL_SCHEMA = {"source_row": pl.Int64, **{name: pl.String for name in _CANONICAL_TEXT}}
_CANONICAL_INDEX = {name: index for index, name in enumerate(_CANONICAL_SCHEMA)}

SOFT_FIELDS = {"debtor_phone": INVALID_PHONE}
"""Canonical fields whose invalid value does not reject a UBL document: it is left empty with a
warning (issue 3: a phone that cannot be normalised to E.164 is null + warning). Adding a field here
(e.g. "debtor_vat") is the one place to soften another shared rule for UBL."""


def _frame(rows: list[tuple], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows of tuples -> frame, built column by column (polars' row constructor builds a Series per
    value for list columns, which made the documents frame the slowest step)."""
    if not rows:
        return pl.DataFrame(schema=schema)
    series = []
    for (name, dtype), values in zip(schema.items(), zip(*rows)):
        if dtype == pl.List(pl.String):  # joined and split again: no Series per value
            joined = pl.Series(name, ["\n".join(v) if v else None for v in values], dtype=pl.String)
            series.append(joined.str.split("\n"))
        else:
            series.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(series)


def validate_invoice_rows(rows: list[tuple], *, source: str) -> tuple[pl.DataFrame, list[RowError]]:
    """THE call site of the shared validator (`creditflow.parsers.validate.validate_rows`).

    `rows` are canonical text tuples (`_CANONICAL_SCHEMA` order). Returns the accepted rows as an
    INVOICE_SCHEMA frame and the validator's RowErrors (field = canonical name; the caller maps it
    to an XPath).
    """
    from creditflow.parsers.validate import validate_rows

    return validate_rows(_frame(rows, _CANONICAL_SCHEMA), source=source)


class UblParser:
    """UBL Invoice / CreditNote documents -> one `InvoiceBatch` (invoices + lines/vat/documents/
    attachments frames in ``extra``)."""

    name = FORMAT

    def identify(self, name: str, head: bytes) -> bool:
        """UBL by the root namespace in the first bytes; a ``.zip`` is claimed too, because a ZIP of
        e-invoices is the only archive a creditor drops (its members are checked one by one)."""
        if head[:4] == b"PK\x03\x04":
            return name.lower().endswith(".zip")
        return INVOICE_NS.encode() in head or CREDIT_NOTE_NS.encode() in head

    def parse(self, data: bytes, *, source: str) -> InvoiceBatch:
        """One XML document, or a ZIP of documents (detected by its magic bytes)."""
        if data[:4] == b"PK\x03\x04":
            return self.parse_zip(data, source=source)
        root = parse_xml(data, source=source)
        if root.tag not in _ROOTS:
            raise FileRejected(source, f"root element {root.tag} is not a UBL Invoice or CreditNote",
                               code=NOT_THIS_FORMAT, location="/")
        reader = _BatchReader(source)
        reader.read_root(root, source, 1)
        return reader.batch()

    def parse_zip(self, data: bytes, *, source: str, **limits) -> InvoiceBatch:
        """A ZIP of documents as one batch (limits: see `expand_zip`)."""
        contents = expand_zip(data, source=source, **limits)
        batch = self.parse_many(contents.items, source=source)
        batch.warnings[:0] = contents.warnings
        return batch

    def parse_many(self, items: Iterable[tuple[str, bytes]], *, source: str) -> InvoiceBatch:
        """Many documents (a folder, a ZIP) as ONE batch; `source_row` = 1-based document number."""
        reader = _BatchReader(source)
        # The batch builds tens of thousands of small containers and no reference cycles; the
        # cyclic collector would re-scan them all again and again (25 % of the time, measured on
        # 10,000 documents). Reference counting still frees every tree as we go.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for number, (name, data) in enumerate(items, start=1):
                reader.read_bytes(name, data, number)
        finally:
            if collecting:
                gc.enable()
        return reader.batch()

    def extract(self, data: bytes, *, source: str) -> "UblDocument":
        """What we read from one document BEFORE the shared validation (for tools and tests):
        `.problems` lists what already rejects it, `.info` the documents-frame values."""
        root = parse_xml(data, source=source)
        if root.tag not in _ROOTS:
            raise FileRejected(source, f"root element {root.tag} is not a UBL Invoice or CreditNote",
                               code=NOT_THIS_FORMAT, location="/")
        document = UblDocument(root, source, source, 1)
        try:
            document.extract()
        except _DocumentError as exc:
            document.problems.append((exc.field, exc.code, exc.message))
        return document


class _BatchReader:
    def __init__(self, source: str):
        self.source = source
        self.accepted: list[UblDocument] = []
        self.errors: list[RowError] = []
        self.warnings: list[ParseWarning] = []
        self.read = 0

    def _doc_source(self, name: str) -> str:
        return self.source if name == self.source else f"{self.source}!{name}"

    def read_bytes(self, name: str, data: bytes, number: int) -> None:
        self.read += 1
        where = self._doc_source(name)
        try:
            root = parse_xml(data, source=where)
        except FileRejected as exc:
            self.errors.append(RowError(where, number, None, exc.location or "/", exc.code,
                                        f"{name}: {exc.message}"))
            return
        if root.tag not in _ROOTS:
            self.errors.append(RowError(where, number, None, "/", NOT_THIS_FORMAT,
                                        f"{name}: root element {root.tag} is not a UBL Invoice or "
                                        "CreditNote"))
            return
        self._read(root, name, number)

    def read_root(self, root, name: str, number: int) -> None:
        self.read += 1
        self._read(root, name, number)

    def _read(self, root, name: str, number: int) -> None:
        document = UblDocument(root, name, self._doc_source(name), number)
        try:
            document.extract()
        except _DocumentError as exc:
            document.problems.append((exc.field, exc.code, exc.message))
        self.warnings.extend(document.warnings)
        if document.problems:
            for field_path, code, message in document.problems:
                self.errors.append(RowError(document.where, number, document.invoice_number,
                                            field_path, code, f"{name}: {message}"))
            return
        document.root = None  # the tree is no longer needed: free it while the batch goes on
        self.accepted.append(document)

    def _validate(self, documents: list["UblDocument"]) -> tuple[pl.DataFrame, list[RowError]]:
        """Shared validation. An invalid soft field (see SOFT_FIELDS) is a warning, never an error;
        a document rejected ONLY for soft fields is validated again with them left empty."""
        invoices, errors = validate_invoice_rows([d.canonical for d in documents],
                                                 source=self.source)
        fields_by_row: dict[int, set[str]] = {}
        for error in errors:
            fields_by_row.setdefault(error.row, set()).add(error.field)
        if not any(error.field in SOFT_FIELDS for error in errors):
            return invoices, errors
        by_number = {d.number: d for d in documents}
        kept_errors = []
        for error in errors:
            if error.field not in SOFT_FIELDS:
                kept_errors.append(error)
                continue
            document = by_number[error.row]
            self.warnings.append(ParseWarning(
                document.where, document.path(FIELD_XPATHS.get(error.field, error.field)),
                SOFT_FIELDS[error.field], f"{document.name}: {error.message}; left empty"))
        soft_rows = {row for row, fields in fields_by_row.items() if fields <= SOFT_FIELDS.keys()}
        if not soft_rows:
            return invoices, kept_errors
        retry = []
        for number in sorted(soft_rows):
            canonical = list(by_number[number].canonical)
            for name in fields_by_row[number]:
                canonical[_CANONICAL_INDEX[name]] = None
            retry.append(tuple(canonical))
        again, again_errors = validate_invoice_rows(retry, source=self.source)
        return pl.concat([invoices, again]).sort("source_row"), kept_errors + again_errors

    def batch(self) -> InvoiceBatch:
        documents = self.accepted
        invoices, validation_errors = self._validate(documents)
        by_row = {d.number: d for d in documents}
        for error in validation_errors:
            document = by_row[error.row]
            self.errors.append(RowError(
                document.where, error.row, error.invoice_number,
                document.path(FIELD_XPATHS.get(error.field, error.field)), error.code,
                f"{document.name}: {error.message}"))
        self.errors.sort(key=lambda e: e.row)
        kept = set(invoices["source_row"].to_list())
        documents = [d for d in documents if d.number in kept]
        # The validator derives the sign from document_type and an amount > 0; UBL's receivable delta
        # (+Payable for an Invoice, -Payable for a CreditNote, whatever sign is written) and a due
        # date that may be unknown are put back here.
        fixes = pl.DataFrame(
            {
                "source_row": [d.number for d in documents],
                "__amount": [d.amount_cents for d in documents],
                "__due": [d.due_date for d in documents],
            },
            schema={"source_row": pl.Int64, "__amount": pl.Int64, "__due": pl.Date},
        )
        invoices = (
            invoices.join(fixes, on="source_row", how="left", maintain_order="left")
            .with_columns(pl.col("__amount").alias("amount_cents"), pl.col("__due").alias("due_date"))
            .select(list(INVOICE_SCHEMA))
        )
        return InvoiceBatch(
            invoices=invoices,
            errors=self.errors,
            warnings=self.warnings,
            rows_read=self.read,
            extra={
                "lines": _frame([r for d in documents for r in d.lines], LINE_SCHEMA),
                "vat": _frame([r for d in documents for r in d.vat], VAT_SCHEMA),
                "documents": _frame([d.document for d in documents], DOCUMENT_SCHEMA),
                "attachments": _frame([r for d in documents for r in d.attachments],
                                      ATTACHMENT_SCHEMA),
            },
        )


class UblDocument:
    """Everything read from one UBL document; `problems` non-empty means it is rejected."""

    def __init__(self, root, name: str, where: str, number: int):
        self.root = root
        self.name = name
        self.where = where
        self.number = number
        self.root_name, self.document_type = _ROOTS[root.tag]
        self.invoice_number: str | None = None
        self.problems: list[tuple[str, str, str]] = []
        self.warnings: list[ParseWarning] = []
        self.canonical: tuple = ()
        self.amount_cents: int | None = None  # receivable delta
        self.payable_cents: int | None = None  # PayableAmount as written
        self.due_date: date | None = None
        self.lines: list[tuple] = []
        self.vat: list[tuple] = []
        self.document: tuple = ()
        self.attachments: list[tuple] = []

    @property
    def info(self) -> dict:
        return dict(zip(DOCUMENT_SCHEMA, self.document))

    def path(self, tail: str) -> str:
        return f"/{self.root_name}/{tail}"

    def warn(self, tail: str, code: str, message: str) -> None:
        self.warnings.append(ParseWarning(self.where, self.path(tail), code,
                                          f"{self.name}: {message}"))

    def problem(self, tail: str, code: str, message: str) -> None:
        self.problems.append((self.path(tail), code, message))

    def attempt(self, func, raw: str | None, tail: str):
        """Convert one field; a failure is recorded (XPath = root + `tail`) and None returned, so
        every problem of the document is reported, not only the first."""
        try:
            return func(raw)
        except _DocumentError as exc:
            self.problems.append((self.path(tail), exc.code, exc.message))
            return None

    def extract(self) -> None:
        # One pass over the root's children finds the repeated aggregates: cheaper than one
        # XPath evaluation per kind.
        self.means_elements, self.tax_totals, self.line_elements, self.references = [], [], [], []
        customer = None
        by_tag = {_PAYMENT_MEANS_TAG: self.means_elements, _TAX_TOTAL_TAG: self.tax_totals,
                  _REFERENCE_TAG: self.references}
        for child in self.root:
            tag = child.tag
            if tag in _LINE_TAGS:
                self.line_elements.append(child)
            elif tag in by_tag:
                by_tag[tag].append(child)
            elif tag == _CUSTOMER_TAG and customer is None:
                customer = child.find(_PARTY_TAG)
        values = dict(zip(_DOC_KEYS, _DOC_XPATH(self.root, c=[] if customer is None else customer)))
        self.invoice_number = number = values["invoice_number"]
        if number is None:
            self.problem("cbc:ID", MISSING, "invoice number (BT-1) missing")
        issue_date = self.attempt(_date, values["issue_date"], "cbc:IssueDate")
        if values["issue_date"] is None:
            self.problem("cbc:IssueDate", MISSING, "issue date (BT-2) missing")
        currency = values["currency"]
        if currency is None:
            self.problem("cbc:DocumentCurrencyCode", MISSING, "document currency (BT-5) missing")
        payable = self.attempt(_cents, values["payable"], "cac:LegalMonetaryTotal/cbc:PayableAmount")
        payable_currency = values["payable_currency"]
        if payable_currency is None:
            self.warn("cac:LegalMonetaryTotal/cbc:PayableAmount/@currencyID", MISSING,
                      "PayableAmount has no currencyID; taken to be the document currency")
        elif currency and payable_currency != currency:
            self.problem("cac:LegalMonetaryTotal/cbc:PayableAmount/@currencyID", CURRENCY_MISMATCH,
                         f"PayableAmount is in {payable_currency}, the document in {currency}")

        debtor_name = values["customer_registration_name"] or values["customer_party_name"]
        country = values["customer_country"]
        country = country.upper() if country and len(country) == 2 else country

        means = self._payment_means()
        due_date = self._due_date(values, means, issue_date)

        payee_iban, payee_bic, chosen_code = self._choose_account(means)
        payment_id = next((pm["payment_id"] for pm in means if pm["payment_id"]), None)
        chosen = next((pm for pm in means if payee_iban and pm["iban"] == payee_iban), None)
        if chosen and chosen["payment_id"]:
            payment_id = chosen["payment_id"]
        structured_reference = description = None
        if payment_id:
            structured_reference, failed_ogm = classify_payment_id(payment_id)
            if structured_reference is None:
                description = payment_id
                if failed_ogm:
                    self.warn("cac:PaymentMeans/cbc:PaymentID", INVALID_REFERENCE,
                              f"PaymentID {payment_id!r} looks like an OGM but fails mod 97; kept as "
                              "text in the description")

        debtor_iban = next((compact_iban(pm["payer_account"]) for pm in means
                            if pm["payer_account"] and compact_iban(pm["payer_account"])), None)
        mandate = next((pm["mandate"] for pm in means if pm["mandate"]), None)

        street = values["customer_street"]
        if street and values["customer_additional_street"]:
            street = f"{street}, {values['customer_additional_street']}"
        street = street or values["customer_address_line"]

        lines = self._lines(number)
        vat = self._vat(number, currency)
        attachments = self._attachments(number)
        if self.problems or payable is None:
            return
        self.payable_cents = payable
        self.amount_cents = payable if self.document_type == "invoice" else -payable
        self.due_date = due_date
        self.canonical = (
            self.number, number, values["issue_date"],
            # The shared validator requires a due date; when the document gives none we pass the
            # issue date (it cannot trigger or hide any other rule) and restore null afterwards.
            due_date.isoformat() if due_date else values["issue_date"],
            _amount_text(abs(payable)), currency, debtor_name, street,
            values["customer_postcode"], values["customer_city"], country,
            values["customer_email"], values["customer_phone"], None, _vat(values["customer_vat"], None), debtor_iban,
            values["customer_number"], structured_reference, description, self.document_type,
            values["preceding_invoice"],
        )
        self.lines = lines
        self.vat = vat
        self.attachments = attachments
        self.document = (
            self.number, self.name, number, self.document_type, values["type_code"],
            values["customization_id"], values["profile_id"], values["buyer_reference"],
            values["order_reference"], values["payment_terms"],
            values["supplier_registration_name"] or values["supplier_party_name"],
            _vat(values["supplier_vat"], None), payee_iban, payee_bic, chosen_code,
            [_OGM_STRIP.sub("", pm["account"]) for pm in means if pm["account"]],
            [pm["code"] or "" for pm in means], mandate,
            values["customer_endpoint_id"], values["customer_endpoint_scheme"],
            values["payee_name"], values["payee_id"], values["payee_company_id"],
            payable,
        )

    def _due_date(self, values: dict, means: list[dict], issue_date: date | None) -> date | None:
        """BT-9 DueDate, else the first PaymentMeans/PaymentDueDate (credit notes have no root
        DueDate), else issue date + N from an "N days" payment-terms note, else None + warning."""
        if values["due_date"] is not None:
            return self.attempt(_date, values["due_date"], "cbc:DueDate")
        for index, pm in enumerate(means, start=1):
            if pm["due_date"]:
                return self.attempt(_date, pm["due_date"],
                                    f"cac:PaymentMeans[{index}]/cbc:PaymentDueDate")
        if issue_date is not None:
            days = days_from_terms(values["payment_terms"])
            if days is not None:
                return issue_date + timedelta(days=days)
        self.warn("cbc:DueDate", NO_DUE_DATE,
                  "no DueDate, PaymentDueDate or parseable 'N days' payment terms")
        return None

    def _payment_means(self) -> list[dict]:
        means = []
        for element in self.means_elements:
            pm = dict(zip(_PM_FIELDS, _PM_XPATH(element)))
            pm["iban"] = compact_iban(pm["account"]) if pm["account"] else None
            means.append(pm)
        return means

    def _choose_account(self, means: list[dict]) -> tuple[str | None, str | None, str | None]:
        """(IBAN, BIC, code): credit transfer (30/58) with a valid IBAN first, else any valid IBAN
        outside direct debit (with a warning), else nothing (with a warning)."""
        for pm in means:
            if pm["code"] in CREDIT_TRANSFER_CODES and pm["iban"]:
                return pm["iban"], pm["bic"], pm["code"]
        for pm in means:
            if pm["iban"] and pm["code"] not in DIRECT_DEBIT_CODES:
                self.warn("cac:PaymentMeans/cbc:PaymentMeansCode", PAYEE_IBAN_FALLBACK,
                          f"no credit transfer (30/58) with a valid IBAN; using the IBAN of payment "
                          f"means code {pm['code']}")
                return pm["iban"], pm["bic"], pm["code"]
        if any(pm["account"] for pm in means):
            self.warn("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", NO_PAYEE_IBAN,
                      "no payment means carries a valid IBAN: "
                      + ", ".join(pm["account"] for pm in means if pm["account"]))
        return None, None, None

    def _lines(self, number: str | None) -> list[tuple]:
        lines = []
        tag = "cac:InvoiceLine" if self.document_type == "invoice" else "cac:CreditNoteLine"
        for index, element in enumerate(self.line_elements, start=1):
            line_id, quantity, unit, amount, item, category, percent = _LINE_XPATH(element)
            here = f"{tag}[{index}]"
            if quantity is not None:
                try:
                    if not Decimal(quantity).is_finite():
                        raise InvalidOperation
                except InvalidOperation:
                    self.problem(f"{here}/cbc:{'InvoicedQuantity' if self.document_type == 'invoice' else 'CreditedQuantity'}",
                                 INVALID_QUANTITY, f"quantity {quantity!r} is not a decimal number")
            cents = self.attempt(_cents, amount, f"{here}/cbc:LineExtensionAmount")
            lines.append((self.number, self.name, number, line_id, quantity, unit, cents, item,
                          category, percent))
        return lines

    def _vat(self, number: str | None, currency: str | None) -> list[tuple]:
        totals = self.tax_totals
        rows = []
        for index, total in enumerate(totals, start=1):
            if len(totals) > 1 and _TAX_CURRENCY(total) != currency:
                continue  # the TaxTotal in the VAT accounting currency (BT-111) has no breakdown
            for sub_index, sub in enumerate(_TAX_SUBTOTALS(total), start=1):
                category, percent, taxable, tax, reason_code, reason = _SUBTOTAL_XPATH(sub)
                here = f"cac:TaxTotal[{index}]/cac:TaxSubtotal[{sub_index}]"
                rows.append((
                    self.number, self.name, number, category, percent,
                    self.attempt(_cents, taxable, f"{here}/cbc:TaxableAmount"),
                    self.attempt(_cents, tax, f"{here}/cbc:TaxAmount"),
                    reason_code, reason,
                ))
        return rows

    def _attachments(self, number: str | None) -> list[tuple]:
        rows = []
        for index, reference in enumerate(self.references, start=1):
            for element in _EMBEDDED(reference):
                try:
                    content = base64.b64decode(_B64_WS.sub("", element.text or ""), validate=True)
                except (binascii.Error, ValueError):
                    self.problem(f"cac:AdditionalDocumentReference[{index}]/cac:Attachment/"
                                 "cbc:EmbeddedDocumentBinaryObject", INVALID_BASE64,
                                 "attachment is not valid base64")
                    continue
                rows.append((self.number, self.name, number, element.get("filename"),
                             element.get("mimeCode"), content))
        return rows
