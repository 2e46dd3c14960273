"""UBL 2.1 / Peppol BIS Billing 3.0 (EN 16931) invoices and credit notes into canonical invoice rows.

Why it is built this way:

* Speed. A creditor may drop a ZIP of tens of thousands of documents. Every field is declared as
  an XPath child path and read as exactly ``normalize-space(path)`` would read it, but through
  lxml's C-level ``ObjectPath`` (first child with a tag, at each step), falling back to the
  precompiled XPath only when a repeated container means ObjectPath may have missed the first
  node in document order (see `_Field`); each group of fields is read by one generated
  straight-line function (see `_Fields`), as the Python around ~60 calls a document cost as much
  as the calls. The repeated aggregates (lines, payment means, tax totals, attachments) are
  picked from the root's children in one C-filtered pass. Validation is one vectorised call over
  the whole batch. Measured in benchmarks/bench_ubl.py.
* A folder or ZIP is one batch: ``parse_many`` reads every document, and a bad document becomes
  ``RowError``s naming the document (the ZIP member name) and the XPath of the bad field, while the
  rest of the batch goes on. ``parse`` on one file raises ``FileRejected`` only when the file as a
  whole is unreadable (not XML, DOCTYPE, not a UBL Invoice/CreditNote).
* Peppol envelopes: a StandardBusinessDocument (SBDH) whose one payload is a UBL Invoice or
  CreditNote is read as that document (`_unwrap_sbd`; only a root that is not UBL is looked at,
  so an ordinary document never pays for it). XPaths in errors and warnings then name the element
  where it really is: ``/StandardBusinessDocument/Invoice/cbc:ID``. Several payloads, or one that
  is not UBL, are refused naming the element.
* What we do not need does not reject a document: an embedded attachment that is not valid base64
  is dropped with a warning (we render our own PDF); a credit note without a due date (UBL 2.1 has
  no root DueDate on a CreditNote) or without PaymentMeans (the creditor pays it back) is normal
  and not warned about, while an invoice without them is.
* Sign: the receivable delta is +PayableAmount for an Invoice and -PayableAmount for a CreditNote,
  whatever sign is written (a negative credit note means the buyer owes).
* Nothing money-related goes through float: amounts are read as integers ("123.45") or, when
  written otherwise, with ``Decimal``, and must be whole cents; quantities and VAT percentages are
  kept as their decimal text.
* XPath 1.0 returns the first node in *document order*, so "RegistrationName, else PartyName" is done
  in Python from two separate fields, not with ``(a|b)[1]``.
* Policy (lead's decision): an invalid buyer VAT number (left empty) or phone number (left empty),
  and a currency other than EUR (kept), are document WARNINGS naming the XPath, not row errors: the
  invoice is read with its real figures; the intake pipeline decides what it collects.
"""

from __future__ import annotations

import base64
import binascii
import gc
import io
import re
import zipfile
from collections import namedtuple
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Iterable

import polars as pl
from lxml import etree
from lxml.objectify import ObjectPath
from stdnum import iso11649

from creditflow.ogm_rf import compact_ogm_is_valid, strip_statement_separators, strip_written_ogm
from creditflow.parsers.base import InvoiceBatch
from creditflow.parsers.identifiers import compact_iban
from creditflow.parsers.errors import (
    MALFORMED,
    NOT_THIS_FORMAT,
    FileRejected,
    ParseWarning,
    RowError,
)
from creditflow.parsers.schema import INVOICE_SCHEMA, MAX_INTEGER_DIGITS
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
# A Peppol access point delivers the document inside a StandardBusinessDocument envelope (SBDH):
# the header first, then the payload (see `_unwrap_sbd`).
SBDH_NS = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
_SBD_TAG = f"{{{SBDH_NS}}}StandardBusinessDocument"
_SBD_HEADER_TAG = f"{{{SBDH_NS}}}StandardBusinessDocumentHeader"
_HEAD_MARKERS = (INVOICE_NS.encode(), CREDIT_NOTE_NS.encode(), SBDH_NS.encode())
# A Peppol participant identifier written whole ("0208:0705969661"): the ICD, then the identifier.
PEPPOL_ACTOR_SCHEME = "iso6523-actorid-upis"
_PEPPOL_ACTOR_ID = re.compile(r"([0-9]{4}):(.+)")

# RowError / ParseWarning codes
MISSING = "missing"
INVALID_AMOUNT = "invalid_amount"
INVALID_DATE = "invalid_date"
INVALID_QUANTITY = "invalid_quantity"
CURRENCY_MISMATCH = "currency_mismatch"
INVALID_BASE64 = "invalid_base64"
NO_DUE_DATE = "no_due_date"
INVALID_PHONE = "invalid_phone"
INVALID_VAT = "invalid_vat"
UNSUPPORTED_CURRENCY = "unsupported_currency"
NO_PAYEE_IBAN = "no_payee_iban"
SBD_SEVERAL_PAYLOADS = "sbd_several_payloads"
PAYEE_IBAN_FALLBACK = "payee_iban_not_credit_transfer"
INVALID_REFERENCE = "invalid_reference"
SKIPPED_MEMBER = "skipped_member"

INVALID_PAYER_IBAN = "invalid_payer_iban"

# UNCL 4461: 30 credit transfer, 58 SEPA credit transfer, 42 payment to bank account. Belgian billing
# software writes 42 for an ordinary transfer to the creditor's IBAN, so it is no reason to warn.
CREDIT_TRANSFER_CODES = frozenset({"30", "42", "58"})
DIRECT_DEBIT_CODES = frozenset({"49", "59"})


# ----------------------------------------------------------------------------------------------
# Reading fields: lxml's C-level ObjectPath, with XPath where it cannot be sure
# ----------------------------------------------------------------------------------------------
#
# Every field is declared as an XPath 1.0 child path, and the value wanted is exactly
# ``normalize-space(path)``: the FIRST node in document order. Evaluating ~60 such XPaths per
# document cost ~2 us each (libxml2 builds a node-set per step); a Python walk over the tree
# costs about as much (``element.tag`` builds a 90-character string per element, ~0.35 us).
# lxml's ``objectify.ObjectPath`` follows "first child with this tag" at each step in C (~0.5 us a
# field in isolation; the whole parse measured 15-20 % faster than with XPath). When it finds a node, that node IS the first in document order (any other match lies under a
# later sibling). When it finds nothing, the answer is certainly "nothing" unless some container
# on the path has a same-tag sibling that ObjectPath did not look into; that is checked (again in
# C, with the ``[1]`` index) and only then is the field read with its precompiled XPath. Unions
# (``a|b``), a final ``@attribute`` and the ``[cac:TaxScheme/cbc:ID='VAT']`` predicate are handled
# the same way (see `_Field`). tests/test_parsers_ubl.py holds every field equal to its XPath on
# documents built to defeat the fast path.

_XML_BLANKS = " \t\n\r"
_BLANK_RUN = re.compile(r"[ \t\n\r]+")
_VAT_PREDICATE = "[cac:TaxScheme/cbc:ID='VAT']"
_PATH_STEPS = re.compile(r"/(?![^\[]*\])")  # "/" outside a [predicate]


def _clark(qualified: str) -> str:
    prefix, local = qualified.split(":")
    return f"{{{NS[prefix]}}}{local}"


def _normalised(raw: str) -> str:
    """XPath ``normalize-space``: XML blanks (space, tab, CR, LF) trimmed and inner runs made one
    space; other characters (a no-break space) untouched."""
    if (raw[0] in _XML_BLANKS or raw[-1] in _XML_BLANKS or "  " in raw or "\n" in raw
            or "\t" in raw or "\r" in raw):
        return _BLANK_RUN.sub(" ", raw).strip(" ")
    return raw


def _object_path(steps: list[str]) -> ObjectPath:
    """Relative to the element it is called on (leading "."), every step a Clark name."""
    assert all("." not in uri for uri in NS.values())  # ObjectPath separates steps with "."
    return ObjectPath("." + ".".join(steps))


_TAX_SCHEME_TAG = _clark("cac:TaxScheme")
_CBC_ID_TAG = _clark("cbc:ID")


def _is_vat_scheme(element) -> bool:
    """The predicate ``[cac:TaxScheme/cbc:ID='VAT']``: some such ID has the string value 'VAT'
    exactly (XPath compares a node-set to a string node by node, without normalising)."""
    for scheme in element.iterchildren(_TAX_SCHEME_TAG):
        for identifier in scheme.iterchildren(_CBC_ID_TAG):
            if (identifier.text if not len(identifier) else _STRING_VALUE(identifier)) == "VAT":
                return True
    return False


_STRING_VALUE = etree.XPath("string()", smart_strings=False)


class _Field:
    """One field: `path` relative to the context element, read as ``normalize-space(path)``."""

    __slots__ = ("key", "path", "exact", "alternatives", "vat_prefix", "vat_leaf", "read")

    def __init__(self, key: str, path: str):
        self.key = key
        self.path = path
        self.exact = etree.XPath(f"normalize-space({path})", namespaces=NS, smart_strings=False)
        self.alternatives = []  # (ObjectPath to the element, [ObjectPath sibling checks], attribute)
        self.vat_prefix = self.vat_leaf = None
        for alternative in path.split("|"):
            steps = _PATH_STEPS.split(alternative)
            attribute = steps.pop()[1:] if steps[-1].startswith("@") else None
            if any(step.endswith(_VAT_PREDICATE) for step in steps):
                assert len(path.split("|")) == 1 and steps[-2].endswith(_VAT_PREDICATE)
                assert attribute is None and "[" not in "".join(steps[:-2] + steps[-1:])
                prefix = [_clark(step) for step in steps[:-2]]
                self.vat_prefix = (_object_path(prefix) if prefix else None,
                                   self._checks(prefix, len(prefix)),
                                   # the usual document in one call each: the first
                                   # PartyTaxScheme's TaxScheme/ID and its CompanyID
                                   _object_path(prefix + [_PARTY_TAX_SCHEME_TAG, _TAX_SCHEME_TAG,
                                                          _CBC_ID_TAG]),
                                   _object_path(prefix + [_PARTY_TAX_SCHEME_TAG, _COMPANY_ID_TAG]))
                self.vat_leaf = _clark(steps[-1])
                assert self.vat_leaf == _COMPANY_ID_TAG, "the fast path below reads CompanyID"
                continue
            assert "[" not in alternative, f"unsupported XPath {alternative!r}"
            clark = [_clark(step) for step in steps]
            # an attribute may sit on a later same-tag element too: the leaf step is checked as well
            self.alternatives.append((_object_path(clark),
                                      self._checks(clark, len(clark) - (attribute is None)),
                                      attribute))
        if self._is_plain():
            self.read = self._plain_reader()
        elif self._is_attribute():
            self.read = self._attribute_reader()
        elif self.vat_leaf is not None:
            self.read = self._vat_reader()
        else:
            self.read = self._read

    @staticmethod
    def _checks(clark: list[str], upto: int) -> list[ObjectPath]:
        """ObjectPaths to a SECOND same-tag sibling at each of the first `upto` steps (below the
        first of the steps before): any of them present means ObjectPath may have missed a node."""
        return [_object_path(clark[:index] + [clark[index] + "[1]"]) for index in range(upto)]

    def _is_plain(self) -> bool:
        return (self.vat_leaf is None and len(self.alternatives) == 1
                and self.alternatives[0][2] is None)

    def _plain_reader(self):
        """The common case (one path to an element), as a closure: ~half the time of `_read`."""
        [(fast, checks, _)] = self.alternatives
        exact = self.exact

        def read(element) -> str | None:
            node = fast(element, None)
            if node is None:
                for check in checks:
                    if check(element, None) is not None:
                        return exact(element) or None
                return None
            if len(node):  # mixed content: the XPath string value
                return exact(element) or None
            raw = node.text
            if not raw:
                return None
            if raw.isprintable() and raw[0] != " " != raw[-1] and "  " not in raw:
                return raw
            return _normalised(raw) or None

        return read

    def _is_attribute(self) -> bool:
        return (self.vat_leaf is None and len(self.alternatives) == 1
                and self.alternatives[0][2] is not None)

    def _attribute_reader(self):
        """One path to an attribute (``.../@currencyID``), as a closure."""
        [(fast, checks, attribute)] = self.alternatives
        exact = self.exact

        def read(element) -> str | None:
            node = fast(element, None)
            value = None if node is None else node.get(attribute)
            if value is None:
                for check in checks:
                    if check(element, None) is not None:
                        return exact(element) or None
                return None
            return _normalised(value) or None if value else None

        return read

    def _read(self, element) -> str | None:
        """A union (``a|b``); the other kinds have their own readers above."""
        found = None  # the element (or the attribute's text) on the first-child chain
        for fast, checks, attribute in self.alternatives:
            node = fast(element, None)
            value = node if node is None or attribute is None else node.get(attribute)
            if value is None:
                for check in checks:
                    if check(element, None) is not None:
                        return self.exact(element) or None
                continue
            if found is not None:  # both sides of a union: document order decides
                return self.exact(element) or None
            found = value
        if found is None:
            return None
        if found.__class__ is str:  # an attribute
            return _normalised(found) or None if found else None
        if len(found):  # mixed content: the XPath string value
            return self.exact(element) or None
        raw = found.text
        return _normalised(raw) or None if raw else None

    def _vat_reader(self):
        """The VAT predicate field as a closure. The usual document (the party's first
        PartyTaxScheme is the VAT one, with a plain CompanyID) takes two ObjectPath calls: a node
        found on the first-child chain is the first in document order, as for the plain fields, so
        the same-tag sibling checks (each a walk to the end of a sibling list) are only needed when
        that chain finds nothing; `_read_vat` then does them and walks every scheme."""
        _, _, first_scheme_id, first_company_id = self.vat_prefix
        exact, slow = self.exact, self._read_vat

        def read(element) -> str | None:
            identifier = first_scheme_id(element, None)
            if identifier is None or len(identifier) or identifier.text != "VAT":
                return slow(element)
            company_id = first_company_id(element, None)
            if company_id is None:
                return slow(element)
            if len(company_id):
                return exact(element) or None
            raw = company_id.text
            return _normalised(raw) or None if raw else None

        return read

    def _read_vat(self, element) -> str | None:
        prefix, checks, _, _ = self.vat_prefix
        for check in checks:
            if check(element, None) is not None:
                return self.exact(element) or None
        party = element if prefix is None else prefix(element, None)
        if party is None:
            return None
        # the usual document: the first PartyTaxScheme is the VAT one and has a CompanyID
        scheme = _FIRST_PARTY_TAX_SCHEME(party, None)
        if scheme is not None:
            identifier = _SCHEME_ID(scheme, None)
            if identifier is not None and not len(identifier) and identifier.text == "VAT":
                company_id = _COMPANY_ID(scheme, None)
                if company_id is not None:
                    if len(company_id):
                        return self.exact(element) or None
                    raw = company_id.text
                    return _normalised(raw) or None if raw else None
        for scheme in party.iterchildren(_PARTY_TAX_SCHEME_TAG):
            if _is_vat_scheme(scheme):
                for company_id in scheme.iterchildren(self.vat_leaf):
                    if len(company_id):
                        return self.exact(element) or None
                    raw = company_id.text
                    return _normalised(raw) or None if raw else None
        return None


_PARTY_TAX_SCHEME_TAG = _clark("cac:PartyTaxScheme")
_FIRST_PARTY_TAX_SCHEME = _object_path([_PARTY_TAX_SCHEME_TAG])
_SCHEME_ID = _object_path([_TAX_SCHEME_TAG, _CBC_ID_TAG])
_COMPANY_ID_TAG = _clark("cbc:CompanyID")
_COMPANY_ID = _object_path([_COMPANY_ID_TAG])


class _Fields:
    """Several `_Field`s read from one context element into a dict, by ONE generated function.

    Why generated: with ~60 fields a document, the Python around each ObjectPath call (a closure
    call, its frame, the dict comprehension) cost as much as the C work. The function built here
    does, field after field in straight-line code, exactly what `_Field`'s plain reader does (the
    other kinds, rare, call their `read`), so the per-field tests of `_Field` cover it; the tests
    also hold the whole dict equal to the per-field readers.
    """

    def __init__(self, fields: Iterable[tuple[str, str]], *, record: str | None = None):
        self.fields = [_Field(key, path) for key, path in fields]
        # With a record name, `read` returns a named tuple of that name (built with tuple.__new__,
        # a third of the cost of a dict, and read by attribute or unpacked); else a dict.
        self.record = None if record is None else namedtuple(record, [f.key for f in self.fields])
        self.read = self._compiled()

    def __call__(self, element) -> dict:
        return self.read(element)

    def _compiled(self):
        names: dict = {"_normalised": _normalised}
        body = []
        nodes = {}  # element path -> name of the variable holding its first-child-chain node
        for index, field in enumerate(self.fields):
            value = f"v{index}"
            element_path = field.path.rpartition("/@")[0]
            if field._is_attribute() and element_path in nodes:
                # the attribute of an element a plain field above has found: when that element
                # (the first in document order) carries it, it is the first such attribute
                node, attribute = nodes[element_path], field.alternatives[0][2]
                names[f"read{index}"] = field.read
                body += [
                    f"    a = {node}.get({attribute!r}) if {node} is not None else None",
                    f"    {value} = read{index}(e) if a is None else _normalised(a) or None if a "
                    "else None",
                ]
                continue
            if field.vat_leaf is None and len(field.alternatives) > 1:
                body += self._union_lines(field, index, names)
                continue
            if not field._is_plain():
                names[f"read{index}"] = field.read
                body.append(f"    {value} = read{index}(e)")
                continue
            [(fast, checks, _)] = field.alternatives
            names[f"fast{index}"], names[f"exact{index}"] = fast, field.exact
            node = nodes[field.path] = f"n{index}"
            tests = []
            for number, check in enumerate(checks):
                names[f"check{index}_{number}"] = check
                tests.append(f"check{index}_{number}(e, None) is not None")
            body += [
                f"    {node} = fast{index}(e, None)",
                f"    if {node} is None:",
                f"        {value} = exact{index}(e) or None if {' or '.join(tests)} else None"
                if tests else f"        {value} = None",
                f"    elif len({node}):",
                f"        {value} = exact{index}(e) or None",
                "    else:",
                f"        {value} = {node}.text",
                f"        if not {value}:",
                f"            {value} = None",
                f"        elif not ({value}.isprintable() and {value}[0] != ' ' != {value}[-1]"
                f" and '  ' not in {value}):",
                f"            {value} = _normalised({value}) or None",
            ]
        if self.record is not None:
            names["_record"], names["_new"] = self.record, tuple.__new__
            result = "_new(_record, (" + "".join(f"v{i}, " for i in range(len(self.fields))) + "))"
        else:
            result = "{" + ", ".join(f"{field.key!r}: v{index}"
                                     for index, field in enumerate(self.fields)) + "}"
        source = "def read(e):\n" + "\n".join(body) + f"\n    return {result}\n"
        exec(compile(source, f"<_Fields {self.fields[0].key}...>", "exec"), names)
        return names["read"]

    @staticmethod
    def _union_lines(field: _Field, index: int, names: dict) -> list[str]:
        """A union (``a|b``, e.g. InvoicedQuantity|CreditedQuantity on every line) inline: what
        `_Field._read` does, without its call and loop. The order of its early returns does not
        matter (each returns the same exact XPath value), so: the exact XPath when any alternative
        is uncertain (not found but a same-tag sibling exists) or more than one is found, else the
        one found, read as `_Field._read` reads it."""
        value = f"v{index}"
        names[f"exact{index}"] = field.exact
        lines, found, uncertain = [], [], []
        for number, (fast, checks, attribute) in enumerate(field.alternatives):
            node = f"u{index}_{number}"
            names[f"fast{index}_{number}"] = fast
            lines.append(f"    {node} = fast{index}_{number}(e, None)")
            if attribute is not None:
                lines.append(f"    {node} = None if {node} is None else {node}.get({attribute!r})")
            found.append(node)
            tests = []
            for check_number, check in enumerate(checks):
                names[f"check{index}_{number}_{check_number}"] = check
                tests.append(f"check{index}_{number}_{check_number}(e, None) is not None")
            if tests:
                uncertain.append(f"({node} is None and ({' or '.join(tests)}))")
        several = " + ".join(f"({node} is not None)" for node in found) + " > 1"
        lines += [
            f"    if {' or '.join(uncertain + [several])}:",
            f"        {value} = exact{index}(e) or None",
            "    else:",
            "        x = " + "".join(f"{node} if {node} is not None else " for node in found[:-1])
            + found[-1],
            "        if x is None:",
            f"            {value} = None",
            "        elif x.__class__ is str:",
            f"            {value} = _normalised(x) or None if x else None",
            "        elif len(x):",
            f"            {value} = exact{index}(e) or None",
            "        else:",
            "            x = x.text",
            f"            {value} = _normalised(x) or None if x else None",
        ]
        return lines


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
    ("supplier_vat", f"{_SUPPLIER}/cac:PartyTaxScheme{_VAT_PREDICATE}/cbc:CompanyID"),
    ("payee_name", "cac:PayeeParty/cac:PartyName/cbc:Name"),
    ("payee_id", "cac:PayeeParty/cac:PartyIdentification/cbc:ID"),
    ("payee_company_id", "cac:PayeeParty/cac:PartyLegalEntity/cbc:CompanyID"),
)
# Relative to the cac:Party of the FIRST cac:AccountingCustomerParty (BG-7 occurs once).
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
    ("customer_vat", f"cac:PartyTaxScheme{_VAT_PREDICATE}/cbc:CompanyID"),
    ("customer_number", "cac:PartyIdentification/cbc:ID"),
    ("customer_endpoint_id", "cbc:EndpointID"),
    ("customer_endpoint_scheme", "cbc:EndpointID/@schemeID"),
)
_DOC_READER = _Fields(_DOC_FIELDS, record="DocumentFields")
_CUSTOMER_READER = _Fields(_CUSTOMER_FIELDS, record="CustomerFields")
_NO_CUSTOMER = _CUSTOMER_READER.record(*[None] * len(_CUSTOMER_FIELDS))
_CAC = "{%s}" % NS["cac"]
_CUSTOMER_TAG = _CAC + "AccountingCustomerParty"
_PARTY_TAG = _CAC + "Party"
_PAYMENT_MEANS_TAG = _CAC + "PaymentMeans"
_TAX_TOTAL_TAG = _CAC + "TaxTotal"
_TAX_SUBTOTAL_TAG = _CAC + "TaxSubtotal"
_LINE_TAGS = frozenset({_CAC + "InvoiceLine", _CAC + "CreditNoteLine"})
_REFERENCE_TAG = _CAC + "AdditionalDocumentReference"
_ATTACHMENT_TAG = _CAC + "Attachment"
_EMBEDDED_TAG = _clark("cbc:EmbeddedDocumentBinaryObject")
# Root children gathered whole (several of each); kind numbers for the dispatch in `extract`.
_LINE, _MEANS, _TAX_TOTAL, _REFERENCE, _CUSTOMER_PARTY = range(5)
_ROOT_COLLECTED = {
    **{tag: _LINE for tag in _LINE_TAGS}, _PAYMENT_MEANS_TAG: _MEANS, _TAX_TOTAL_TAG: _TAX_TOTAL,
    _REFERENCE_TAG: _REFERENCE, _CUSTOMER_TAG: _CUSTOMER_PARTY,
}

_PM_READER = _Fields((
    ("code", "cbc:PaymentMeansCode"),
    ("due_date", "cbc:PaymentDueDate"),
    ("payment_id", "cbc:PaymentID"),
    ("account", "cac:PayeeFinancialAccount/cbc:ID"),
    ("bic", "cac:PayeeFinancialAccount/cac:FinancialInstitutionBranch/cbc:ID"),
    ("mandate", "cac:PaymentMandate/cbc:ID"),
    ("payer_account", "cac:PaymentMandate/cac:PayerFinancialAccount/cbc:ID"),
))
_SUBTOTAL_READER = _Fields((
    ("category", "cac:TaxCategory/cbc:ID"),
    ("percent", "cac:TaxCategory/cbc:Percent"),
    ("taxable", "cbc:TaxableAmount"),
    ("tax", "cbc:TaxAmount"),
    ("reason_code", "cac:TaxCategory/cbc:TaxExemptionReasonCode"),
    ("reason", "cac:TaxCategory/cbc:TaxExemptionReason"),
), record="SubtotalFields")


def _line_fields(quantity: str) -> tuple[tuple[str, str], ...]:
    """An InvoiceLine holds InvoicedQuantity, a CreditNoteLine CreditedQuantity (the UBL schemas):
    one reader per document type, so the quantity is one path and not a union of two."""
    return (
        ("line_id", "cbc:ID"),
        ("quantity", quantity),
        ("unit", f"{quantity}/@unitCode"),
        ("amount", "cbc:LineExtensionAmount"),
        ("item", "cac:Item/cbc:Name"),
        ("category", "cac:Item/cac:ClassifiedTaxCategory/cbc:ID"),
        ("percent", "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent"),
    )


_INVOICE_LINE_READER = _Fields(_line_fields("cbc:InvoicedQuantity"), record="LineFields")
_CREDIT_NOTE_LINE_READER = _Fields(_line_fields("cbc:CreditedQuantity"), record="LineFields")

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
    "payee_iban": pl.String,  # the chosen account: credit transfer (30/42/58) with a valid IBAN
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

_DAYS = re.compile(
    r"(?<![\d.,%])(\d{1,3})\s*(?:calendar\s+)?(?:days?|dagen|dag|jours?|j\b|tage?n?|d\b)",
    re.IGNORECASE,
)
_NET_DAYS = re.compile(r"\bnet(?:to)?\s*(\d{1,3})\b", re.IGNORECASE)
_BUSINESS_DAYS = re.compile(r"werkdag|business|working|ouvrable|werktag|bankdag", re.IGNORECASE)
_OGM_FRAMED = re.compile(r"^\s*(\+\+\+|\*\*\*).*(\+\+\+|\*\*\*)\s*$")
_ACCOUNT_SEPARATORS = re.compile(r"[\s+*/.]")
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
    """Whole cents of a decimal amount (sign kept). An amount with more than MAX_INTEGER_DIGITS
    digits before the point is refused: every amount becomes Int64 cents in a frame, and
    ``Decimal("1E999999")`` would first build a million-digit integer."""
    if raw is None:
        raise _DocumentError(field, MISSING, "amount missing")
    # The usual "123.45" / "75" first: str methods only (a regex match cost twice as much, and a
    # document has five amounts); the same value Decimal gives. isdigit() admits other scripts'
    # digits, isascii() keeps them out.
    units, dot, fraction = raw.partition(".")
    if units.isdigit() and raw.isascii() and len(units) <= MAX_INTEGER_DIGITS:
        if not dot:
            return int(units) * 100
        if len(fraction) == 2 and fraction.isdigit():
            return int(units) * 100 + int(fraction)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _DocumentError(field, INVALID_AMOUNT, f"{raw!r} is not a decimal amount") from None
    if not value.is_finite():
        raise _DocumentError(field, INVALID_AMOUNT, f"{raw!r} is not a whole number of cents")
    if value and value.adjusted() >= MAX_INTEGER_DIGITS:
        raise _DocumentError(field, INVALID_AMOUNT,
                             f"{raw!r} has more than {MAX_INTEGER_DIGITS} digits before the decimal point")
    scaled = value.scaleb(2)
    if scaled != scaled.to_integral_value():
        raise _DocumentError(field, INVALID_AMOUNT, f"{raw!r} is not a whole number of cents")
    return int(scaled)


def _is_decimal(raw: str) -> bool:
    """A finite decimal number as ``Decimal`` reads it (the common "2" or "2.5" without building one,
    nor a regex match: str methods cost a third)."""
    units, _, fraction = raw.partition(".")
    if units.isdigit() and raw.isascii() and (not fraction or fraction.isdigit()):
        return True
    try:
        return Decimal(raw).is_finite()
    except InvalidOperation:
        return False


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


def _twelve_digits(text: str) -> bool:
    return len(text) == 12 and text.isdigit() and text.isascii()


def classify_payment_id(raw: str) -> tuple[str | None, str | None]:
    """(structured reference, None), or (None, why it looks like an OGM yet is not one) for a PaymentID.

    In order: an OGM as a creditor may write it (`ogm_rf.WRITTEN_OGM_SEPARATORS`: 12 digits with
    ``+++``/``***``/``/``/blanks, mod 97), then ISO 11649 RF. Text that is neither goes to the
    description; the reason, when there is one, becomes a warning, because the creditor meant an OGM.
    Not cached: every invoice carries its own PaymentID.
    """
    # `+++123/4567/89012+++` with two str.replace calls (a fifth of the regex's time); the regex
    # when anything else is left, so the result is always `strip_written_ogm`'s.
    compact = raw.replace("+", "").replace("/", "")
    if not _twelve_digits(compact):
        compact = strip_written_ogm(raw)
    if _twelve_digits(compact):
        if compact_ogm_is_valid(compact):
            return compact, None
        return None, "fails mod 97"
    rf = iso11649.compact(raw)
    if rf[:2].upper() == "RF" and iso11649.is_valid(rf):
        return rf.upper(), None
    if _twelve_digits(strip_statement_separators(raw)):
        return None, "is written with '.' or '-', which an OGM never carries"
    if _OGM_FRAMED.match(raw) is not None:
        return None, "is not 12 digits"
    return None, None


@lru_cache(maxsize=8192)
def _vat(raw: str | None) -> str | None:
    """A VAT number as the shared validator and the documents frame receive it: separators
    removed, upper case, no prefix added (the validator applies the debtor's country)."""
    return None if raw is None else _VAT_STRIP.sub("", raw).upper()


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

SOFT_FIELDS = {"debtor_phone": INVALID_PHONE, "debtor_vat": INVALID_VAT}
"""Canonical fields whose invalid value does not reject a UBL document: it is left empty with a
warning naming its XPath (issue 3: a phone that cannot be normalised to E.164; the lead's decision:
a buyer VAT number failing its check digits, as in the OpenPeppol reference examples). Adding a field
here is the one place to soften another shared rule for UBL. The other softened rule, a currency
other than EUR, is handled in `UblDocument.extract` / `_BatchReader` (its value is kept, not
emptied)."""


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


_CURRENCY_INDEX = _CANONICAL_INDEX["currency"]


def _with_eur(canonical) -> tuple:
    return (*canonical[:_CURRENCY_INDEX], "EUR", *canonical[_CURRENCY_INDEX + 1:])


def _unwrap_sbd(root, source: str) -> tuple:
    """(the UBL Invoice / CreditNote, its path from the file's root) for a root that is NOT one.

    Only called when the root tag is not in `_ROOTS`, so an ordinary document never pays for it.
    A Peppol access point delivers the document in a StandardBusinessDocument envelope: the
    StandardBusinessDocumentHeader (routing data we do not need), then exactly one payload, read
    as the document. Anything else is refused with a typed error naming the element: a root that
    is neither, an envelope without a payload or with a payload other than a UBL Invoice or
    CreditNote (NOT_THIS_FORMAT), an envelope with several payloads (SBD_SEVERAL_PAYLOADS: which
    one the sender meant is not ours to guess).
    """
    if root.tag != _SBD_TAG:
        raise FileRejected(source, f"root element {root.tag} is not a UBL Invoice or CreditNote",
                           code=NOT_THIS_FORMAT, location="/")
    payloads = [child for child in root.iterchildren(tag=etree.Element)
                if child.tag != _SBD_HEADER_TAG]
    if not payloads:
        raise FileRejected(source, "the StandardBusinessDocument holds no document after its header",
                           code=NOT_THIS_FORMAT, location="/StandardBusinessDocument")
    if len(payloads) > 1:
        raise FileRejected(source, f"the StandardBusinessDocument holds {len(payloads)} documents ("
                           + ", ".join(child.tag for child in payloads) + "); one UBL Invoice or "
                           "CreditNote per envelope is expected", code=SBD_SEVERAL_PAYLOADS,
                           location="/StandardBusinessDocument")
    [payload] = payloads
    if payload.tag not in _ROOTS:
        raise FileRejected(source, f"the StandardBusinessDocument holds {payload.tag}, not a UBL "
                           "Invoice or CreditNote", code=NOT_THIS_FORMAT,
                           location=f"/StandardBusinessDocument/{etree.QName(payload).localname}")
    return payload, f"StandardBusinessDocument/{_ROOTS[payload.tag][0]}"


class UblParser:
    """UBL Invoice / CreditNote documents -> one `InvoiceBatch` (invoices + lines/vat/documents/
    attachments frames in ``extra``)."""

    name = FORMAT

    def identify(self, name: str, head: bytes) -> bool:
        """UBL by the root namespace in the first bytes; a ``.zip`` is claimed too, because a ZIP of
        e-invoices is the only archive a creditor drops (its members are checked one by one).

        The SBDH namespace counts too: in a Peppol envelope the UBL namespace comes after the
        StandardBusinessDocumentHeader, which can be longer than the head we are given (4 KiB). An
        envelope around something else is then claimed and refused by `parse`, naming its payload.
        """
        if head[:4] == b"PK\x03\x04":
            return name.lower().endswith(".zip")
        return any(marker in head for marker in _HEAD_MARKERS)

    def parse(self, data: bytes, *, source: str) -> InvoiceBatch:
        """One XML document, or a ZIP of documents (detected by its magic bytes)."""
        if data[:4] == b"PK\x03\x04":
            return self.parse_zip(data, source=source)
        root = parse_xml(data, source=source)
        root_path = None
        if root.tag not in _ROOTS:
            root, root_path = _unwrap_sbd(root, source)
        reader = _BatchReader(source)
        reader.read_root(root, source, 1, root_path)
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
            return reader.batch()
        finally:
            if collecting:
                gc.enable()

    def extract(self, data: bytes, *, source: str) -> "UblDocument":
        """What we read from one document BEFORE the shared validation (for tools and tests):
        `.problems` lists what already rejects it, `.info` the documents-frame values."""
        root = parse_xml(data, source=source)
        root_path = None
        if root.tag not in _ROOTS:
            root, root_path = _unwrap_sbd(root, source)
        document = UblDocument(root, source, source, 1, root_path)
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
        root_path = None
        if root.tag not in _ROOTS:
            try:
                root, root_path = _unwrap_sbd(root, where)
            except FileRejected as exc:
                self.errors.append(RowError(where, number, None, exc.location or "/", exc.code,
                                            f"{name}: {exc.message}"))
                return
        self._read(root, name, number, root_path)

    def read_root(self, root, name: str, number: int, root_path: str | None = None) -> None:
        self.read += 1
        self._read(root, name, number, root_path)

    def _read(self, root, name: str, number: int, root_path: str | None) -> None:
        document = UblDocument(root, name, self._doc_source(name), number, root_path)
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
        # A foreign currency was already reported as a warning (UblDocument.extract): the
        # validator, which would reject it, sees EUR; `batch` puts the real code back.
        invoices, errors = validate_invoice_rows(
            [d.canonical if d.foreign_currency is None else _with_eur(d.canonical)
             for d in documents], source=self.source)
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
            retry.append(_with_eur(canonical) if by_number[number].foreign_currency
                         else tuple(canonical))
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
                "__currency": [d.foreign_currency for d in documents],
            },
            schema={"source_row": pl.Int64, "__amount": pl.Int64, "__due": pl.Date,
                    "__currency": pl.String},
        )
        invoices = (
            invoices.join(fixes, on="source_row", how="left", maintain_order="left")
            .with_columns(pl.col("__amount").alias("amount_cents"), pl.col("__due").alias("due_date"),
                          pl.coalesce("__currency", "currency").alias("currency"))
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

    __slots__ = ("root", "name", "where", "number", "root_name", "document_type", "invoice_number",
                 "problems", "warnings", "canonical", "amount_cents", "payable_cents", "due_date",
                 "foreign_currency", "lines", "vat", "document", "attachments")

    def __init__(self, root, name: str, where: str, number: int, root_path: str | None = None):
        self.root = root
        self.name = name
        self.where = where
        self.number = number
        # root_name: the document element's path from the file's root, without the leading "/"
        # ("Invoice"; "StandardBusinessDocument/Invoice" in an envelope, see `_unwrap_sbd`), so
        # every XPath reported names the element where it really is.
        self.root_name, self.document_type = _ROOTS[root.tag]
        if root_path is not None:
            self.root_name = root_path
        self.invoice_number: str | None = None
        self.problems: list[tuple[str, str, str]] = []
        self.warnings: list[ParseWarning] = []
        self.canonical: tuple = ()
        self.amount_cents: int | None = None  # receivable delta
        self.payable_cents: int | None = None  # PayableAmount as written
        self.due_date: date | None = None
        # A valid ISO 4217 code other than EUR (upper case): the document is read with it, with a
        # warning; the shared validator, which rejects it for CSV, sees EUR (see _BatchReader).
        self.foreign_currency: str | None = None
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
        # One pass over the root's children: the scalar fields (see _DOC_FIELDS) and the repeated
        # aggregates, gathered whole and read below.
        line_elements, means_elements, tax_totals, references = [], [], [], []
        collected = (line_elements, means_elements, tax_totals, references)
        customer = None
        for child in self.root.iterchildren(*_ROOT_COLLECTED):  # matched in C, document order
            kind = _ROOT_COLLECTED[child.tag]
            if kind == _CUSTOMER_PARTY:
                if customer is None:
                    customer = next(child.iterchildren(_PARTY_TAG), None)
            else:
                collected[kind].append(child)
        doc = _DOC_READER.read(self.root)
        buyer = _NO_CUSTOMER if customer is None else _CUSTOMER_READER.read(customer)

        self.invoice_number = number = doc.invoice_number
        if number is None:
            self.problem("cbc:ID", MISSING, "invoice number (BT-1) missing")
        issue_text = doc.issue_date
        issue_date = self.attempt(_date, issue_text, "cbc:IssueDate")
        if issue_text is None:
            self.problem("cbc:IssueDate", MISSING, "issue date (BT-2) missing")
        currency = doc.currency
        if currency is None:
            self.problem("cbc:DocumentCurrencyCode", MISSING, "document currency (BT-5) missing")
        else:
            code = currency.upper()
            if code != "EUR" and len(code) == 3 and code.isascii() and code.isalpha():
                self.foreign_currency = code
                self.warn("cbc:DocumentCurrencyCode", UNSUPPORTED_CURRENCY,
                          f"the invoice is in {code}: read with its real figures, but it cannot be "
                          "collected (SEPA payments are in EUR only)")
        payable = self.attempt(_cents, doc.payable, "cac:LegalMonetaryTotal/cbc:PayableAmount")
        payable_currency = doc.payable_currency
        if payable_currency is None:
            self.warn("cac:LegalMonetaryTotal/cbc:PayableAmount/@currencyID", MISSING,
                      "PayableAmount has no currencyID; taken to be the document currency")
        elif currency and payable_currency != currency:
            self.problem("cac:LegalMonetaryTotal/cbc:PayableAmount/@currencyID", CURRENCY_MISMATCH,
                         f"PayableAmount is in {payable_currency}, the document in {currency}")

        debtor_name = buyer.customer_registration_name or buyer.customer_party_name
        country = buyer.customer_country
        country = country.upper() if country and len(country) == 2 else country

        means = [_payment_means(element) for element in means_elements]
        due_date = self._due_date(doc.due_date, doc.payment_terms, means, issue_date)

        payee_iban, payee_bic, chosen_code = self._choose_account(means)
        payment_id = debtor_iban = mandate = None
        for pm in means:
            if payment_id is None:
                payment_id = pm.get("payment_id")
            if debtor_iban is None and pm.get("payer_account"):
                debtor_iban = compact_iban(pm["payer_account"])
                if debtor_iban is None:
                    self.warn("cac:PaymentMeans/cac:PaymentMandate/cac:PayerFinancialAccount/cbc:ID",
                              INVALID_PAYER_IBAN, f"payer account {pm['payer_account']!r} is not a "
                              "valid IBAN; the debtor's IBAN is left empty")
            if mandate is None:
                mandate = pm.get("mandate")
        if payee_iban:
            chosen = next((pm for pm in means if pm["iban"] == payee_iban), None)
            if chosen and chosen.get("payment_id"):
                payment_id = chosen["payment_id"]
        structured_reference = description = None
        if payment_id:
            structured_reference, not_an_ogm = classify_payment_id(payment_id)
            if structured_reference is None:
                description = payment_id
                if not_an_ogm:
                    self.warn("cac:PaymentMeans/cbc:PaymentID", INVALID_REFERENCE,
                              f"PaymentID {payment_id!r} looks like an OGM but {not_an_ogm}; kept as "
                              "text in the description")

        street = buyer.customer_street
        additional = buyer.customer_additional_street
        if street and additional:
            street = f"{street}, {additional}"
        street = street or buyer.customer_address_line

        lines = self._lines(number, line_elements)
        vat = self._vat(number, currency, tax_totals)
        attachments = self._attachments(number, references)
        if self.problems or payable is None:
            return
        self.payable_cents = payable
        self.amount_cents = payable if self.document_type == "invoice" else -payable
        self.due_date = due_date
        self.canonical = (
            self.number, number, issue_text,
            # The shared validator requires a due date; when the document gives none we pass the
            # issue date (it cannot trigger or hide any other rule) and restore null afterwards.
            due_date.isoformat() if due_date else issue_text,
            _amount_text(-payable if payable < 0 else payable), currency, debtor_name, street,
            buyer.customer_postcode, buyer.customer_city, country,
            buyer.customer_email, buyer.customer_phone, None, _vat(buyer.customer_vat),
            debtor_iban, buyer.customer_number, structured_reference, description,
            self.document_type, doc.preceding_invoice,
        )
        self.lines = lines
        self.vat = vat
        self.attachments = attachments
        accounts = [pm["account"] for pm in means if pm.get("account")]
        endpoint_id, endpoint_scheme = buyer.customer_endpoint_id, buyer.customer_endpoint_scheme
        if endpoint_scheme == PEPPOL_ACTOR_SCHEME:  # one comparison on an ordinary document
            endpoint_id, endpoint_scheme = _split_actor_id(endpoint_id, endpoint_scheme)
        self.document = (
            self.number, self.name, number, self.document_type, doc.type_code,
            doc.customization_id, doc.profile_id, doc.buyer_reference,
            doc.order_reference, doc.payment_terms,
            doc.supplier_registration_name or doc.supplier_party_name,
            _vat(doc.supplier_vat), payee_iban, payee_bic, chosen_code,
            [_ACCOUNT_SEPARATORS.sub("", account) for account in accounts],
            [pm.get("code") or "" for pm in means], mandate,
            endpoint_id, endpoint_scheme,
            doc.payee_name, doc.payee_id, doc.payee_company_id,
            payable,
        )

    def _due_date(self, due_text: str | None, terms: str | None, means: list[dict],
                  issue_date: date | None) -> date | None:
        """BT-9 DueDate, else the first PaymentMeans/PaymentDueDate (credit notes have no root
        DueDate), else issue date + N from an "N days" payment-terms note, else None + a warning
        for an invoice (none for a credit note, see below)."""
        if due_text is not None:
            return self.attempt(_date, due_text, "cbc:DueDate")
        for index, pm in enumerate(means, start=1):
            if pm.get("due_date"):
                return self.attempt(_date, pm["due_date"],
                                    f"cac:PaymentMeans[{index}]/cbc:PaymentDueDate")
        if issue_date is not None:
            days = days_from_terms(terms)
            if days is not None:
                return issue_date + timedelta(days=days)
        if self.document_type == "credit_note":
            # The UBL 2.1 CreditNote has no root DueDate and Peppol BIS 3 makes BT-9 optional, so a
            # valid credit note usually has none: warning on it would warn on every credit note.
            return None
        self.warn("cbc:DueDate", NO_DUE_DATE,
                  "no DueDate, PaymentDueDate or parseable 'N days' payment terms")
        return None

    def _choose_account(self, means: list[dict]) -> tuple[str | None, str | None, str | None]:
        """(IBAN, BIC, code): credit transfer (30/42/58) with a valid IBAN first, else any valid IBAN
        outside direct debit (with a warning), else nothing (with a warning)."""
        for pm in means:
            if pm["iban"] and pm.get("code") in CREDIT_TRANSFER_CODES:
                return pm["iban"], pm.get("bic"), pm["code"]
        for pm in means:
            if pm["iban"] and pm.get("code") not in DIRECT_DEBIT_CODES:
                self.warn("cac:PaymentMeans/cbc:PaymentMeansCode", PAYEE_IBAN_FALLBACK,
                          f"no credit transfer (30/42/58) with a valid IBAN; using the IBAN of payment "
                          f"means code {pm.get('code')}")
                return pm["iban"], pm.get("bic"), pm.get("code")
        accounts = [pm["account"] for pm in means if pm.get("account")]
        if accounts:
            self.warn("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", NO_PAYEE_IBAN,
                      "no payment means carries a valid IBAN: " + ", ".join(accounts))
        elif not means and self.document_type == "invoice":
            # An invoice without PaymentMeans says nowhere where to pay: as much a gap as an
            # account that is no IBAN. A credit note without one is normal (the creditor pays it
            # back; there is nothing to collect), so it gets no warning.
            self.warn("cac:PaymentMeans", NO_PAYEE_IBAN, "no PaymentMeans: no payee IBAN")
        return None, None, None

    def _lines(self, number: str | None, elements: list) -> list[tuple]:
        lines = []
        credit = self.document_type != "invoice"
        read = _CREDIT_NOTE_LINE_READER.read if credit else _INVOICE_LINE_READER.read
        for index, element in enumerate(elements, start=1):
            line_id, quantity, unit, amount, item, category, percent = read(element)
            if quantity is not None and not _is_decimal(quantity):
                self.problem(f"{'cac:CreditNoteLine' if credit else 'cac:InvoiceLine'}[{index}]/"
                             f"cbc:{'CreditedQuantity' if credit else 'InvoicedQuantity'}",
                             INVALID_QUANTITY, f"quantity {quantity!r} is not a decimal number")
            try:
                cents = _cents(amount)
            except _DocumentError as exc:
                cents = None
                self.problem(f"{'cac:CreditNoteLine' if credit else 'cac:InvoiceLine'}[{index}]/"
                             "cbc:LineExtensionAmount", exc.code, exc.message)
            lines.append((self.number, self.name, number, line_id, quantity, unit, cents, item,
                          category, percent))
        return lines

    def _vat(self, number: str | None, currency: str | None, totals: list) -> list[tuple]:
        rows = []
        several = len(totals) > 1
        for index, total in enumerate(totals, start=1):
            if several and _tax_currency(total) != currency:
                continue  # the TaxTotal in the VAT accounting currency (BT-111) has no breakdown
            for sub_index, sub in enumerate(total.iterchildren(_TAX_SUBTOTAL_TAG), start=1):
                category, percent, taxable_text, tax_text, reason_code, reason = \
                    _SUBTOTAL_READER.read(sub)
                try:  # the XPath of a failure is only formatted when there is one
                    taxable = _cents(taxable_text)
                except _DocumentError as exc:
                    taxable = None
                    self.problem(f"cac:TaxTotal[{index}]/cac:TaxSubtotal[{sub_index}]/"
                                 "cbc:TaxableAmount", exc.code, exc.message)
                try:
                    tax = _cents(tax_text)
                except _DocumentError as exc:
                    tax = None
                    self.problem(f"cac:TaxTotal[{index}]/cac:TaxSubtotal[{sub_index}]/cbc:TaxAmount",
                                 exc.code, exc.message)
                rows.append((self.number, self.name, number, category, percent, taxable, tax,
                             reason_code, reason))
        return rows

    def _attachments(self, number: str | None, references: list) -> list[tuple]:
        rows = []
        for index, reference in enumerate(references, start=1):
            for attachment in reference:
                if attachment.tag != _ATTACHMENT_TAG:
                    continue
                for element in attachment:
                    if element.tag != _EMBEDDED_TAG:
                        continue
                    try:
                        content = base64.b64decode(_B64_WS.sub("", element.text or ""),
                                                   validate=True)
                    except (binascii.Error, ValueError):
                        # The creditor's own PDF is optional (we render ours): a broken one is
                        # dropped with a warning, and the invoice is kept.
                        self.warn(f"cac:AdditionalDocumentReference[{index}]/cac:Attachment/"
                                  "cbc:EmbeddedDocumentBinaryObject", INVALID_BASE64,
                                  "attachment is not valid base64: dropped, the invoice is kept")
                        continue
                    rows.append((self.number, self.name, number, element.get("filename"),
                                 element.get("mimeCode"), content))
        return rows


def _split_actor_id(endpoint_id: str | None, scheme: str) -> tuple[str | None, str]:
    """(identifier, scheme) of an EndpointID whose schemeID is PEPPOL_ACTOR_SCHEME: a value
    "0208:0705969661" carries the ICD in front, so it becomes ("0705969661", "0208") like an
    EndpointID written with schemeID="0208". Any other value is kept as written."""
    match = _PEPPOL_ACTOR_ID.fullmatch(endpoint_id) if endpoint_id else None
    if match is None:
        return endpoint_id, scheme
    return match[2], match[1]


def _payment_means(element) -> dict:
    pm = _PM_READER.read(element)
    account = pm.get("account")
    pm["iban"] = compact_iban(account) if account else None
    return pm


_TAX_AMOUNT_TAG = _clark("cbc:TaxAmount")


def _tax_currency(total) -> str:
    """``string(cbc:TaxAmount/@currencyID)``: the first such attribute, as written ('' if none)."""
    for child in total:
        if child.tag == _TAX_AMOUNT_TAG:
            currency = child.get("currencyID")
            if currency is not None:
                return currency
    return ""
