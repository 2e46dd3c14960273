"""UBL parser on our own documents (tests/fixtures/ubl) and variants built from them; the hardened
XML parser (xmlsafe) against entity attacks."""

from __future__ import annotations

import base64
import io
import json
import random
import re
import zipfile
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from stdnum.be import ogm_vcs

from creditflow.ogm_rf import strip_written_ogm
from creditflow.parsers import ubl as ubl_module
from creditflow.parsers.base import InvoiceBatch
from creditflow.parsers.errors import MALFORMED, NOT_THIS_FORMAT, FileRejected, ParseError
from creditflow.parsers.schema import INVOICE_SCHEMA
from creditflow.parsers.ubl import (
    UblParser,
    _cents,
    _is_decimal,
    classify_payment_id,
    days_from_terms,
    expand_zip,
)
from creditflow.parsers.xmlsafe import FORBIDDEN_DTD, parse_xml

FIXTURES = Path(__file__).parent / "fixtures" / "ubl"
INVOICE = (FIXTURES / "invoice-be-ogm.xml").read_bytes()
CREDIT_NOTE = (FIXTURES / "creditnote-negative.xml").read_bytes()
PARSER = UblParser()
PAYABLE = "/Invoice/cac:LegalMonetaryTotal/cbc:PayableAmount"


def parse(data: bytes, source: str = "doc.xml") -> InvoiceBatch:
    return PARSER.parse(data, source=source)


def only_row(batch: InvoiceBatch) -> dict:
    assert not batch.errors, batch.errors
    [row] = batch.invoices.to_dicts()
    return row


def test_invoice_row():
    batch = parse(INVOICE)
    assert dict(batch.invoices.schema) == INVOICE_SCHEMA
    assert batch.rows_read == 1
    row = only_row(batch)
    assert row == {
        "source_row": 1,
        "invoice_number": "CF-2026-0042",
        "document_type": "invoice",
        "issue_date": date(2026, 3, 2),
        "due_date": date(2026, 4, 1),
        "amount_cents": 36300,
        "currency": "EUR",
        "debtor_name": "Peeters & Zonen BV",  # RegistrationName wins over PartyName
        "debtor_street": "Kerkstraat 12, bus 3",
        "debtor_postcode": "2000",
        "debtor_city": "Antwerpen",
        "debtor_country": "BE",
        "debtor_email": "boekhouding@peeters.example",
        "debtor_phone": "+32470123456",
        "debtor_language": None,
        "debtor_vat": "BE0403170701",
        "debtor_iban": None,
        "customer_number": "K-1009",
        "structured_reference": "090933755493",
        "description": None,
        "preceding_invoice": None,
    }
    assert batch.warnings == []


def test_invoice_extra_frames():
    batch = parse(INVOICE)
    [doc] = batch.extra["documents"].to_dicts()
    assert doc["payee_iban"] == "BE71096123456769"  # the 58 with a valid IBAN, not the first 30
    assert doc["payee_bic"] == "GKCCBEBB" and doc["payment_means_code"] == "58"
    assert doc["payment_accounts"] == ["12345678", "BE71096123456769"]
    assert doc["payment_means_codes"] == ["30", "58"]
    assert (doc["customer_endpoint_id"], doc["customer_endpoint_scheme"]) == ("BE0202239951", "9925")
    assert doc["supplier_name"] == "Demo Incasso BV" and doc["supplier_vat"] == "BE0403170701"
    assert doc["profile_id"] == "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
    assert doc["payable_cents"] == 36300
    lines = batch.extra["lines"].to_dicts()
    assert [(line["line_id"], line["quantity"], line["unit_code"], line["line_amount_cents"],
             line["item_name"], line["vat_category"], line["vat_percent"]) for line in lines] == [
        ("1", "2.5", "HUR", 25000, "Onderhoud ovens", "S", "21"),
        ("2", "0.333333", "C62", 5000, "Verplaatsing", "S", "21"),
    ]
    vat = batch.extra["vat"].to_dicts()
    assert [(v["category"], v["percent"], v["taxable_cents"], v["tax_cents"],
             v["exemption_reason_code"]) for v in vat] == [
        ("S", "21", 30000, 6300, None), ("E", "0", 0, 0, "VATEX-EU-132")]
    [attachment] = batch.extra["attachments"].to_dicts()
    assert attachment["content"] == b"%PDF-1.4 creditflow test\n"
    assert attachment["filename"] == "../../CF-2026-0042.pdf"  # a label only, never a path
    assert attachment["mime"] == "application/pdf"


def test_negative_credit_note_is_a_positive_receivable():
    batch = parse(CREDIT_NOTE)
    row = only_row(batch)
    assert row["document_type"] == "credit_note"
    assert row["amount_cents"] == 12100  # -(-121.00): the buyer owes
    assert row["preceding_invoice"] == "CF-2025-0999"
    assert row["due_date"] == date(2026, 1, 24)  # no due date: issue date + "14 days"
    assert row["debtor_name"] == "Café De Hoek"  # PartyName when there is no RegistrationName
    assert row["debtor_street"] == "Markt 1"  # AddressLine when there is no StreetName
    assert row["debtor_country"] == "BE"
    assert row["structured_reference"] == "RF18539007547034"
    # only the TaxTotal in the document currency gives the breakdown
    assert batch.extra["vat"]["tax_cents"].to_list() == [-2100]
    assert batch.extra["lines"]["quantity"].to_list() == ["-1"]
    assert batch.extra["documents"]["payable_cents"].to_list() == [-12100]


def test_positive_credit_note_is_a_negative_receivable():
    data = CREDIT_NOTE.replace(b">-121<", b">121<").replace(b">-100<", b">100<")
    assert only_row(parse(data))["amount_cents"] == -12100


def test_negative_invoice_keeps_its_sign():
    data = INVOICE.replace(b'<cbc:PayableAmount currencyID="EUR">363.00',
                           b'<cbc:PayableAmount currencyID="EUR">-363.00')
    assert only_row(parse(data))["amount_cents"] == -36300


def test_due_date_from_payment_means_then_terms_then_warning():
    without_due = INVOICE.replace(b"<cbc:DueDate>2026-04-01</cbc:DueDate>", b"")
    assert only_row(parse(without_due))["due_date"] == date(2026, 4, 1)  # "30 dagen"
    with_means_date = without_due.replace(
        b"<cbc:PaymentMeansCode>30</cbc:PaymentMeansCode>",
        b"<cbc:PaymentMeansCode>30</cbc:PaymentMeansCode><cbc:PaymentDueDate>2026-05-05"
        b"</cbc:PaymentDueDate>")
    assert only_row(parse(with_means_date))["due_date"] == date(2026, 5, 5)
    no_terms = without_due.replace(b"Betaling binnen 30 dagen", b"einde van de maand")
    batch = parse(no_terms)
    assert only_row(batch)["due_date"] is None  # accepted, with a warning
    [warning] = batch.warnings
    assert warning.code == "no_due_date" and warning.location == "/Invoice/cbc:DueDate"


@pytest.mark.parametrize(("note", "days"), [
    ("30 days net", 30), ("Betaling binnen 30 dagen", 30), ("paiement à 45 jours", 45),
    ("zahlbar innerhalb 10 Tagen", 10), ("Net 60", 60), ("within 14 days of invoice", 14),
    ("2% discount within 10 days, net 30 days", None), ("binnen 5 werkdagen", None),
    ("end of month", None), (None, None),
])
def test_days_from_terms(note, days):
    assert days_from_terms(note) == days


@pytest.mark.parametrize(("payment_id", "expected"), [
    ("+++090/9337/55493+++", ("090933755493", None)),
    ("***090/9337/55493***", ("090933755493", None)),
    ("090933755493", ("090933755493", None)),
    ("+++123/4567/89012+++", (None, "fails mod 97")),  # invalid check digits: text, with a warning
    # Dots are no OGM spelling (ogm_rf.WRITTEN_OGM_SEPARATORS, as for CSV files): text, with a warning
    ("090.9337.55493", (None, "is written with '.' or '-', which an OGM never carries")),
    ("+++12/345+++", (None, "is not 12 digits")),
    ("rf18 5390 0754 7034", ("RF18539007547034", None)),
    ("RF19539007547034", (None, None)),
    ("Invoice 15000004", (None, None)),
])
def test_classify_payment_id(payment_id, expected):
    assert classify_payment_id(payment_id) == expected


def _cents_by_decimal(raw: str) -> int | None:
    """The rule `_cents` implements faster: the Decimal value in whole cents, at most 13 digits
    before the point (every amount becomes Int64 cents), else nothing."""
    if not _finite_decimal(raw):
        return None
    value = Decimal(raw)
    if value and value.adjusted() >= 13:
        return None
    scaled = value * 100
    return int(scaled) if scaled == scaled.to_integral_value() else None


_AMOUNT_TEXT = st.one_of(
    st.from_regex(r"\A-?[0-9]{0,12}(\.[0-9]{0,4})?\Z"),
    st.text(alphabet="0123456789.-+eE ١٢３", max_size=10),
)


@settings(max_examples=500, deadline=None)
@given(_AMOUNT_TEXT)
def test_amounts_are_read_as_decimal_reads_them(raw):
    try:
        got = _cents(raw)
    except ubl_module._DocumentError:  # any other exception fails the test
        got = None
    assert got == _cents_by_decimal(raw)


@settings(max_examples=300, deadline=None)
@given(_AMOUNT_TEXT)
def test_quantity_check_is_decimals_own(raw):
    assert _is_decimal(raw) == _finite_decimal(raw)


def _finite_decimal(raw: str) -> bool:
    try:
        return Decimal(raw).is_finite()
    except InvalidOperation:
        return False


def test_an_absurdly_large_amount_is_refused_naming_its_field():
    batch = parse(INVOICE.replace(b'<cbc:PayableAmount currencyID="EUR">363.00',
                                  b'<cbc:PayableAmount currencyID="EUR">1E999999'))
    [error] = batch.errors
    assert (error.field, error.code) == (PAYABLE, "invalid_amount")
    assert "more than 13 digits" in error.message


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(alphabet="0123456789+/*. -\t\u00a0\u0663", max_size=24),
    st.from_regex(r"\A\+\+\+[0-9]{3}/[0-9]{4}/[0-9]{5}\+\+\+\Z"),
))
def test_payment_id_is_an_ogm_exactly_when_stdnum_says_so(raw):
    """The str.replace fast path may not change what `ogm_rf.strip_written_ogm` + stdnum decide."""
    compact = strip_written_ogm(raw)
    expected = compact if compact.isascii() and ogm_vcs.is_valid(compact) else None
    assert classify_payment_id(raw)[0] == expected  # no letters in the alphabet: never an RF


def test_payment_id_text_goes_to_description():
    data = INVOICE.replace(b"+++090/9337/55493+++", b"Factuur CF-2026-0042")
    row = only_row(parse(data))
    assert row["structured_reference"] is None
    assert row["description"] == "Factuur CF-2026-0042"
    bad = parse(INVOICE.replace(b"+++090/9337/55493+++", b"+++123/4567/89012+++"))
    assert only_row(bad)["description"] == "+++123/4567/89012+++"
    assert [w.code for w in bad.warnings] == ["invalid_reference"]


def test_no_valid_iban_warns_and_keeps_all_accounts():
    data = INVOICE.replace(b"BE71 0961 2345 6769", b"BE71 0961 2345 6760")
    batch = parse(data)
    only_row(batch)
    [doc] = batch.extra["documents"].to_dicts()
    assert doc["payee_iban"] is None
    assert doc["payment_accounts"] == ["12345678", "BE71096123456760"]
    assert [w.code for w in batch.warnings] == ["no_payee_iban"]


def test_direct_debit_mandate_gives_debtor_iban():
    data = INVOICE.replace(
        b"<cac:PaymentTerms>",
        b"<cac:PaymentMeans><cbc:PaymentMeansCode>59</cbc:PaymentMeansCode><cac:PaymentMandate>"
        b"<cbc:ID>MANDATE-9</cbc:ID><cac:PayerFinancialAccount><cbc:ID>BE54 0000 0000 0097</cbc:ID>"
        b"</cac:PayerFinancialAccount></cac:PaymentMandate></cac:PaymentMeans><cac:PaymentTerms>")
    batch = parse(data)
    assert only_row(batch)["debtor_iban"] == "BE54000000000097"
    assert batch.extra["documents"]["mandate_id"].to_list() == ["MANDATE-9"]


def test_mandate_payer_account_that_is_no_iban_warns():
    data = INVOICE.replace(
        b"<cac:PaymentTerms>",
        b"<cac:PaymentMeans><cbc:PaymentMeansCode>59</cbc:PaymentMeansCode><cac:PaymentMandate>"
        b"<cbc:ID>MANDATE-9</cbc:ID><cac:PayerFinancialAccount><cbc:ID>BE54 0000 0000 0098</cbc:ID>"
        b"</cac:PayerFinancialAccount></cac:PaymentMandate></cac:PaymentMeans><cac:PaymentTerms>")
    batch = parse(data)
    assert only_row(batch)["debtor_iban"] is None
    [warning] = batch.warnings
    assert warning.code == "invalid_payer_iban"
    assert "BE54 0000 0000 0098" in warning.message
    assert warning.location.endswith("cac:PaymentMandate/cac:PayerFinancialAccount/cbc:ID")


def test_payment_to_bank_account_code_42_is_a_credit_transfer():
    """Belgian billing software writes UNCL 4461 code 42 for a plain transfer: no fallback warning."""
    batch = parse(INVOICE.replace(b'<cbc:PaymentMeansCode name="SEPA credit transfer">58<',
                                  b"<cbc:PaymentMeansCode>42<"))
    [doc] = batch.extra["documents"].to_dicts()
    assert doc["payee_iban"] == "BE71096123456769"
    assert doc["payment_means_code"] == "42"
    assert batch.warnings == []


def test_dotted_ogm_is_text_with_a_warning_as_in_csv_files():
    batch = parse(INVOICE.replace(b"+++090/9337/55493+++", b"090.9337.55493"))
    row = only_row(batch)
    assert row["structured_reference"] is None and row["description"] == "090.9337.55493"
    assert [w.code for w in batch.warnings] == ["invalid_reference"]


def test_unreadable_phone_is_left_empty_with_a_warning():
    batch = parse(INVOICE.replace(b"0470 12 34 56", b"bel ons"))
    row = only_row(batch)
    assert row["debtor_phone"] is None
    [warning] = batch.warnings
    assert warning.code == "invalid_phone"
    assert warning.location == "/Invoice/cac:AccountingCustomerParty/cac:Party/cac:Contact/cbc:Telephone"


def test_currency_mismatch_is_a_row_error_with_xpath():
    batch = parse(INVOICE.replace(b'<cbc:PayableAmount currencyID="EUR">',
                                  b'<cbc:PayableAmount currencyID="USD">'))
    assert batch.invoices.height == 0
    [error] = batch.errors
    assert (error.field, error.code) == (PAYABLE + "/@currencyID", "currency_mismatch")
    assert error.row == 1 and error.invoice_number == "CF-2026-0042"


def test_every_problem_of_a_document_is_reported():
    data = (INVOICE.replace(b"<cbc:PayableAmount currencyID=\"EUR\">363.00</cbc:PayableAmount>", b"")
            .replace(b"<cbc:IssueDate>2026-03-02", b"<cbc:IssueDate>02-03-2026")
            .replace(b">50</cbc:LineExtensionAmount>", b">5O</cbc:LineExtensionAmount>"))
    batch = parse(data)
    assert batch.invoices.height == 0
    assert {(e.field, e.code) for e in batch.errors} == {
        (PAYABLE, "missing"),
        ("/Invoice/cbc:IssueDate", "invalid_date"),
        ("/Invoice/cac:InvoiceLine[2]/cbc:LineExtensionAmount", "invalid_amount"),
    }


def test_shared_validator_errors_carry_the_ubl_xpath():
    batch = parse(INVOICE.replace(b"boekhouding@peeters.example", b"boekhouding at peeters"))
    [error] = batch.errors
    assert error.code == "invalid_email"
    assert error.field == "/Invoice/cac:AccountingCustomerParty/cac:Party/cac:Contact/cbc:ElectronicMail"
    assert batch.extra["lines"].height == 0  # frames hold accepted documents only


def test_invalid_buyer_vat_is_a_warning_and_left_empty():
    batch = parse(INVOICE.replace(b"BE0403.170.701", b"BE0403.170.702"))
    row = only_row(batch)
    assert row["debtor_vat"] is None and row["amount_cents"] == 36300
    [warning] = batch.warnings
    assert warning.code == "invalid_vat"
    assert warning.location == ("/Invoice/cac:AccountingCustomerParty/cac:Party/cac:PartyTaxScheme"
                                "[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID")
    assert "BE0403170702" in warning.message


@pytest.mark.parametrize("currency", ["SEK", "gbp"])
def test_non_eur_currency_is_a_warning_and_kept(currency):
    data = INVOICE.replace(b"EUR", currency.encode())
    batch = parse(data)
    row = only_row(batch)
    assert row["currency"] == currency.upper()
    assert row["amount_cents"] == 36300 and row["due_date"] == date(2026, 4, 1)
    assert [(w.code, w.location) for w in batch.warnings] == [
        ("unsupported_currency", "/Invoice/cbc:DocumentCurrencyCode")]
    assert batch.extra["documents"]["payee_iban"].to_list() == ["BE71096123456769"]


def test_a_non_eur_document_is_still_checked_by_every_other_rule():
    data = INVOICE.replace(b"EUR", b"SEK").replace(b"boekhouding@peeters.example", b"x at y")
    batch = parse(data)
    assert batch.invoices.height == 0
    assert [e.code for e in batch.errors] == ["invalid_email"]
    assert [w.code for w in batch.warnings] == ["unsupported_currency"]
    # and a malformed currency code is still a row error of the shared validator
    bad = parse(INVOICE.replace(b"EUR", b"EURO"))
    assert "invalid_currency" in {e.code for e in bad.errors}


def test_soft_warnings_in_a_batch_keep_real_figures_per_document():
    sek = (INVOICE.replace(b"EUR", b"SEK").replace(b"CF-2026-0042", b"CF-SEK")
           .replace(b"+++090/9337/55493+++", b"Factuur SEK"))
    bad_vat = (INVOICE.replace(b"BE0403.170.701", b"BE0403.170.702")
               .replace(b"CF-2026-0042", b"CF-VAT").replace(b"+++090/9337/55493+++", b"vrij"))
    batch = PARSER.parse_many([("eur.xml", INVOICE), ("sek.xml", sek), ("vat.xml", bad_vat)],
                              source="dir")
    assert batch.errors == []
    assert batch.invoices["currency"].to_list() == ["EUR", "SEK", "EUR"]
    assert batch.invoices["debtor_vat"].to_list() == ["BE0403170701", "BE0403170701", None]
    assert {(w.source, w.code) for w in batch.warnings} == {
        ("dir!sek.xml", "unsupported_currency"), ("dir!vat.xml", "invalid_vat")}


def test_invalid_base64_attachment_is_dropped_with_a_warning_and_the_invoice_kept():
    """The creditor's PDF is optional (we render our own): a broken one must not cost the invoice."""
    good = (b"<cac:AdditionalDocumentReference><cbc:ID>bon</cbc:ID><cac:Attachment>"
            b'<cbc:EmbeddedDocumentBinaryObject mimeCode="text/plain" filename="bon.txt">'
            b"Ym9u</cbc:EmbeddedDocumentBinaryObject></cac:Attachment>"
            b"</cac:AdditionalDocumentReference>")
    data = INVOICE.replace(b"ZmxvdyB0ZXN0Cg==", b"ZmxvdyB0ZXN0Cg=!").replace(
        b"<cac:AdditionalDocumentReference>", good + b"<cac:AdditionalDocumentReference>", 1)
    batch = parse(data)
    assert only_row(batch)["invoice_number"] == "CF-2026-0042"
    # the valid attachment (first reference) is kept, the broken one (second) dropped
    assert batch.extra["attachments"]["content"].to_list() == [b"bon"]
    [warning] = batch.warnings
    assert warning.code == "invalid_base64"
    assert warning.location == ("/Invoice/cac:AdditionalDocumentReference[2]/cac:Attachment/"
                                "cbc:EmbeddedDocumentBinaryObject")
    assert "dropped" in warning.message


def test_parse_many_is_one_batch_and_a_bad_document_does_not_stop_it():
    broken = INVOICE.replace(b"CF-2026-0042", b"CF-2026-0043").replace(b">363.00<", b">36x<")
    items = [
        ("a/first.xml", INVOICE),
        ("b/broken.xml", broken),
        ("c/notxml.xml", b"this is not xml"),
        ("d/other.xml", b'<Order xmlns="urn:x"/>'),
        ("e/credit.xml", CREDIT_NOTE),
    ]
    batch = PARSER.parse_many(items, source="upload.zip")
    assert batch.rows_read == 5
    assert batch.invoices["source_row"].to_list() == [1, 5]
    assert batch.invoices["invoice_number"].to_list() == ["CF-2026-0042", "CN-77"]
    errors = {e.row: e for e in batch.errors}
    assert set(errors) == {2, 3, 4}
    assert errors[2].source == "upload.zip!b/broken.xml"
    assert errors[2].message.startswith("b/broken.xml: ")
    assert errors[2].field == PAYABLE and errors[2].invoice_number == "CF-2026-0043"
    assert errors[3].code == MALFORMED and errors[3].field.startswith("line 1, column")
    assert errors[4].code == NOT_THIS_FORMAT
    assert batch.extra["lines"]["source_row"].unique().sort().to_list() == [1, 5]


def test_duplicate_invoice_numbers_in_one_batch_are_rejected_by_the_shared_rule():
    batch = PARSER.parse_many([("1.xml", INVOICE), ("2.xml", INVOICE)], source="dir")
    assert batch.invoices["source_row"].to_list() == [1]
    assert {e.code for e in batch.errors} == {"duplicate_in_file"}


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            if name.endswith("/"):
                archive.writestr(zipfile.ZipInfo(name), b"")
            else:
                archive.writestr(name, content)
    return buffer.getvalue()


def test_zip_is_one_batch_members_are_labels_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _zip({
        "invoices/": b"",
        "invoices/one.xml": INVOICE,
        "../../escape.xml": CREDIT_NOTE,
        "readme.txt": b"hello",
    })
    assert PARSER.identify("batch.zip", data[:64])
    batch = parse(data, source="batch.zip")
    assert batch.invoices["invoice_number"].to_list() == ["CF-2026-0042", "CN-77"]
    assert batch.extra["documents"]["document"].to_list() == ["invoices/one.xml", "../../escape.xml"]
    assert [(w.location, w.code) for w in batch.warnings] == [("readme.txt", "skipped_member")]
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent.parent / "escape.xml").exists()


def test_zip_bomb_and_member_limits():
    bomb = _zip({"big.xml": b"<a>" + b" " * 5_000_000 + b"</a>"})
    assert len(bomb) < 50_000
    with pytest.raises(FileRejected) as caught:
        expand_zip(bomb, source="bomb.zip", max_total_bytes=1_000_000)
    assert caught.value.code == "zip_too_large"
    many = _zip({f"{i}.xml": INVOICE for i in range(5)})
    with pytest.raises(FileRejected) as caught:
        expand_zip(many, source="many.zip", max_members=4)
    assert caught.value.code == "zip_too_many_members"
    with pytest.raises(FileRejected) as caught:
        expand_zip(b"PK\x03\x04 not really a zip", source="bad.zip")
    assert caught.value.code == MALFORMED


def test_identify_and_whole_file_rejections():
    assert PARSER.identify("x.xml", INVOICE[:600]) and PARSER.identify("y.xml", CREDIT_NOTE[:600])
    assert not PARSER.identify("x.csv", b"invoice_number;amount\n")
    assert not PARSER.identify("x.zip", b"%PDF-1.4")
    with pytest.raises(FileRejected) as caught:
        parse(b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"/>')
    assert caught.value.code == NOT_THIS_FORMAT
    with pytest.raises(FileRejected) as caught:
        parse(INVOICE[:900])
    assert caught.value.code == MALFORMED and caught.value.location.startswith("line ")
    with pytest.raises(FileRejected) as caught:
        parse(b"  \n ")
    assert caught.value.code == "empty_file"


# -- entity attacks -------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Invoice [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">&lol9;</Invoice>"""


def _xxe(path: Path) -> bytes:
    return (b'<?xml version="1.0"?>\n<!-- quiet -->\n<!DOCTYPE Invoice [<!ENTITY xxe SYSTEM "'
            + path.as_uri().encode() + b'">]>\n'
            + INVOICE[INVOICE.index(b"<Invoice"):].replace(b"Bakkerij Peeters", b"&xxe;"))


def test_billion_laughs_is_refused():
    with pytest.raises(FileRejected) as caught:
        parse(BILLION_LAUGHS)
    assert caught.value.code == FORBIDDEN_DTD
    batch = PARSER.parse_many([("lol.xml", BILLION_LAUGHS), ("ok.xml", INVOICE)], source="z")
    assert [e.code for e in batch.errors] == [FORBIDDEN_DTD]
    assert batch.invoices.height == 1


def test_external_entity_is_refused_and_nothing_is_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    with pytest.raises(FileRejected) as caught:
        parse(_xxe(secret))
    assert caught.value.code == FORBIDDEN_DTD
    assert "TOP-SECRET-MARKER" not in str(caught.value)
    passwd = _xxe(Path("/etc/passwd"))
    with pytest.raises(FileRejected):
        parse(passwd)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_doctype_in_other_encodings_is_refused_after_a_safe_parse(tmp_path, encoding):
    """The byte scan cannot read UTF-16/32; the docinfo check after parsing still refuses, and the
    hardened parser has expanded nothing meanwhile."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    text = (f'<?xml version="1.0" encoding="{encoding.upper()}"?><!DOCTYPE a [<!ENTITY x SYSTEM '
            f'"{secret.as_uri()}">]><a>&x;</a>')
    data = text.encode(encoding)
    with pytest.raises(FileRejected) as caught:
        parse_xml(data, source="u16.xml")
    assert caught.value.code in (FORBIDDEN_DTD, MALFORMED)
    assert "TOP-SECRET-MARKER" not in str(caught.value)


def test_comment_mentioning_doctype_in_the_body_is_no_false_alarm():
    data = INVOICE.replace(b"<cbc:ProfileID>", b"<!-- <!DOCTYPE x> --><cbc:ProfileID>")
    assert parse(data).invoices.height == 1


# -- robustness -----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_documents_give_a_batch_or_a_parse_error(data):
    raw = bytearray(data.draw(st.sampled_from([INVOICE, CREDIT_NOTE])))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        batch = parse(bytes(raw))
    except ParseError:
        return
    assert isinstance(batch, InvoiceBatch)
    assert batch.invoices.height + len({e.row for e in batch.errors}) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_random_bytes_in_a_batch_are_row_errors(blobs):
    batch = PARSER.parse_many([(f"{i}.xml", b) for i, b in enumerate(blobs)], source="rnd")
    assert batch.invoices.height == 0
    assert {e.row for e in batch.errors} == set(range(1, len(blobs) + 1))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_give_a_parse_error_or_a_batch(raw):
    try:
        parse(raw)
    except ParseError:
        pass


def test_a_value_containing_the_field_separator_is_read_exactly():
    data = INVOICE.replace(b"Peeters &amp; Zonen BV", "Peeters \u241f Zonen".encode())
    assert only_row(parse(data))["debtor_name"] == "Peeters \u241f Zonen"


# -- the batch output is pinned: 200 generated documents against a snapshot ----------------------
#
# tests/fixtures/ubl/batch-200-snapshot.json was written by the XPath-based implementation (before
# the single tree walk replaced it), with `_batch_snapshot(PARSER.parse_many(_generated_items()))`.
# Every frame, error and warning of the rewritten parser must stay identical. The documents avoid
# non-EUR currencies and invalid buyer VAT numbers, whose treatment changed on purpose afterwards.
# Regenerated once on purpose after the sweep of real files: an attachment that is not base64 is
# now dropped with a warning (documents 2, 33, 64, 157 accepted; 188 now reaches the shared rules
# and is rejected as a duplicate reference), and a credit note without a due date no longer warns
# (35, 70, 105, 140, 175). Nothing else changed.

SNAPSHOT = FIXTURES / "batch-200-snapshot.json"


def _ogm(n: int) -> str:
    base = 1_000_000 + n * 7919
    digits = f"{base:010d}{base % 97 or 97:02d}"
    return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++"


def _generated_document(n: int) -> bytes:
    """Document `n`: one of the fixtures with a deterministic mix of variations (names, amounts,
    references, phones, dates, whitespace, broken values), so most code paths are crossed."""
    if n % 53 == 7:
        return b"this is not xml " + str(n).encode()
    if n % 59 == 8:
        return b'<Order xmlns="urn:x"><ID>' + str(n).encode() + b"</ID></Order>"
    if n % 5 == 0:
        data = CREDIT_NOTE.replace(b"CN-77", f"CN-{n}".encode())
        data = data.replace(b"Caf\xc3\xa9 De Hoek", f"Caf\u00e9 {n}".encode())
        if n % 3 == 0:
            data = data.replace(b">-121<", f">{n}.50<".encode())
        if n % 4 == 0:
            data = data.replace(b"RF18 5390 0754 7034", _ogm(n).encode())
        if n % 7 == 0:
            data = data.replace(b"Payable 14 days after the credit note date", b"end of month")
        if n % 9 == 0:
            data = data.replace(b"-1</cbc:CreditedQuantity>", b"x</cbc:CreditedQuantity>")
        return data
    number = n - 1 if n % 37 == 5 else n  # now and then a duplicate invoice number
    data = INVOICE.replace(b"CF-2026-0042", f"CF-2026-{number:04d}".encode())
    data = data.replace(b"Peeters &amp; Zonen BV", f"Klant {n} &amp; Zonen".encode())
    data = data.replace(b">363.00</cbc:PayableAmount>", f">{100 + n * 3}.{n % 100:02d}"
                        "</cbc:PayableAmount>".encode())
    data = data.replace(b"+++090/9337/55493+++", _ogm(n).encode())
    data = data.replace(b"0470 12 34 56", f"0470 {n // 100 % 100:02d} {n % 100:02d} 11".encode())
    data = data.replace(b"<cbc:StreetName>Kerkstraat 12", f"<cbc:StreetName>Straat {n}".encode())
    if n % 23 == 0:
        data = data.replace(b'"EUR">1', b'"EUR">-1', 1)  # the first amount with a leading 1
    if n % 41 == 0:
        data = data.replace(b"</cbc:PayableAmount>", b"x</cbc:PayableAmount>")
    if n % 43 == 0:
        data = data.replace(b'<cbc:PayableAmount currencyID="EUR">', b"<cbc:Note>")
        data = data.replace(b"</cbc:PayableAmount>", b"</cbc:Note>")
    if n % 7 == 3:
        data = data.replace(_ogm(n).encode(), b"+++123/4567/89012+++")
    elif n % 11 == 4:
        data = data.replace(_ogm(n).encode(), f"Factuur {n}".encode())
    elif n % 13 == 6:
        data = data.replace(_ogm(n).encode(), b"RF18 5390 0754 7034")
    if n % 6 == 1:
        data = data.replace(f"0470 {n // 100 % 100:02d}".encode(), b"bel ons")
    elif n % 6 == 2:
        data = data.replace(b"<cbc:Telephone>", b"<cbc:Note>").replace(b"</cbc:Telephone>",
                                                                       b"</cbc:Note>")
    if n % 4 == 1:
        data = data.replace(b"<cbc:DueDate>2026-04-01</cbc:DueDate>", b"")
    if n % 8 == 5:
        data = data.replace(b"Betaling binnen 30 dagen", b"einde van de maand")
    if n % 9 == 2:
        data = data.replace(b"<cbc:PaymentMeansCode>30</cbc:PaymentMeansCode>",
                            b"<cbc:PaymentMeansCode>30</cbc:PaymentMeansCode>"
                            b"<cbc:PaymentDueDate>2026-05-05</cbc:PaymentDueDate>")
    if n % 10 == 7:
        data = data.replace(b"BE71 0961 2345 6769", b"BE71 0961 2345 6760")
    if n % 12 == 0:
        data = data.replace(b"Klant ", b"  Klant \n\t  ").replace(b"<cbc:CityName>Antwerpen",
                                                                 b"<cbc:CityName>\n  Antwerpen  ")
    if n % 29 == 3:
        data = data.replace(b"<cbc:IssueDate>2026-03-02", b"<cbc:IssueDate>02-03-2026")
    if n % 31 == 2:
        data = data.replace(b"ZmxvdyB0ZXN0Cg==", b"ZmxvdyB0ZXN0Cg=!")
    if n % 47 == 9:
        data = data.replace(b">2.5</cbc:InvoicedQuantity>", b">2,5</cbc:InvoicedQuantity>")
    if n % 14 == 3:
        data = data.replace(b"<cbc:RegistrationName>Klant", b"<cbc:Name>Klant").replace(
            b"Zonen</cbc:RegistrationName>", b"Zonen</cbc:Name>")
    if n % 61 == 10:
        data = data.replace(b'<cbc:PayableAmount currencyID="EUR">',
                            b'<cbc:PayableAmount currencyID="USD">')
    if n % 67 == 11:
        data = data.replace(b"<cbc:CityName>Antwerpen", "<cbc:CityName>Ant\u241fwerpen".encode())
    if n % 19 == 4:
        data = data.replace(b"boekhouding@peeters.example", b"boekhouding at peeters")
    if n % 17 == 5:
        data = data.replace(b"<cbc:CompanyID>BE0403.170.701</cbc:CompanyID>", b"")
    if n % 15 == 8:
        data = data.replace(
            b"<cac:PaymentTerms>",
            b"<cac:PaymentMeans><cbc:PaymentMeansCode>59</cbc:PaymentMeansCode><cac:PaymentMandate>"
            b"<cbc:ID>MANDATE-" + str(n).encode() + b"</cbc:ID><cac:PayerFinancialAccount><cbc:ID>"
            b"BE54 0000 0000 0097</cbc:ID></cac:PayerFinancialAccount></cac:PaymentMandate>"
            b"</cac:PaymentMeans><cac:PaymentTerms>")
    return data


def _generated_items(count: int = 200) -> list[tuple[str, bytes]]:
    return [(f"gen/{n:03d}.xml", _generated_document(n)) for n in range(1, count + 1)]


def _plain(value):
    if isinstance(value, bytes):
        return "b64:" + base64.b64encode(value).decode()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _batch_snapshot(batch: InvoiceBatch) -> dict:
    """Everything a batch holds, as JSON-able values (frames as lists of rows)."""
    frames = {"invoices": batch.invoices, **batch.extra}
    return {
        "rows_read": batch.rows_read,
        "schemas": {name: {c: str(t) for c, t in frame.schema.items()}
                    for name, frame in frames.items()},
        "frames": {name: [[_plain(v) for v in row] for row in frame.iter_rows()]
                   for name, frame in frames.items()},
        "errors": [[e.source, e.row, e.invoice_number, e.field, e.code, e.message]
                   for e in batch.errors],
        "warnings": [[w.source, w.location, w.code, w.message] for w in batch.warnings],
    }


def test_200_generated_documents_give_the_snapshot_batch():
    batch = PARSER.parse_many(_generated_items(), source="gen.zip")
    got = json.loads(json.dumps(_batch_snapshot(batch)))
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert got["rows_read"] == expected["rows_read"] == 200
    assert got["schemas"] == expected["schemas"]
    for name, rows in expected["frames"].items():
        assert got["frames"][name] == rows, name
    assert got["errors"] == expected["errors"]
    assert got["warnings"] == expected["warnings"]
    # the mix really crosses the paths it is meant to
    assert len(expected["frames"]["invoices"]) >= 100
    assert {e[4] for e in expected["errors"]} >= {
        "malformed", "not_this_format", "invalid_amount", "missing", "invalid_date",
        "invalid_quantity", "currency_mismatch", "duplicate_in_file", "invalid_email"}
    assert {w[2] for w in expected["warnings"]} >= {
        "invalid_phone", "no_due_date", "invalid_reference", "no_payee_iban", "invalid_base64"}


# -- the fast field reader (lxml ObjectPath) against the XPath it replaces -----------------------

def _random_tree(rng: random.Random, trie: dict, attributes: list[str], tag: str = "{urn:x}Root"):
    """A random element tree shaped by the fields' paths (`trie`: tag -> subtrie): repeated
    containers, branches missing, distractor elements, empty and blank-padded values, attributes on
    some elements only, now and then mixed content."""
    element = etree.Element(tag)
    children = [tag for tag in trie for _ in range(rng.choice((0, 1, 1, 2)))]
    children += ["{urn:x}Other"] * (bool(trie) and rng.random() < 0.3)
    rng.shuffle(children)
    for child_tag in children:
        element.append(_random_tree(rng, trie.get(child_tag, {}), attributes, child_tag))
    if len(element) == 0 or rng.random() < 0.05:
        element.text = rng.choice(["", "VAT", " VAT", "a", " a  b ", "x\n\ty", "30", "\u00a0c",
                                   "EUR"])
    for attribute in attributes:
        if rng.random() < 0.5:
            element.set(attribute, rng.choice(["EUR", " S E K ", ""]))
    return element


@pytest.mark.parametrize("reader_name", ["_DOC_READER", "_CUSTOMER_READER", "_PM_READER",
                                         "_INVOICE_LINE_READER", "_CREDIT_NOTE_LINE_READER",
                                         "_SUBTOTAL_READER"])
def test_fast_field_reader_equals_xpath_normalize_space(reader_name):
    reader = getattr(ubl_module, reader_name)
    trie: dict = {}
    attributes = set()
    for field in reader.fields:
        xpath = field.exact.path[len("normalize-space("):-1]
        for alternative in xpath.split("|"):
            level = trie
            for step in re.split(r"/(?![^\[]*\])", alternative):
                if step.startswith("@"):
                    attributes.add(step[1:])
                    continue
                names = re.findall(r"c(?:ac|bc):\w+", step)  # the step, then its predicate's path
                tags = [f"{{{ubl_module.NS[n.split(':')[0]]}}}{n.split(':')[1]}" for n in names]
                level = level.setdefault(tags[0], {})
                branch = level
                for tag in tags[1:]:
                    branch = branch.setdefault(tag, {})
    rng = random.Random(20260323)
    checked = found = 0
    for _ in range(300):
        root = _random_tree(rng, trie, sorted(attributes))
        for field in reader.fields:
            expected = field.exact(root) or None
            assert field.read(root) == expected, (field.key, etree.tostring(root))
            checked += 1
            found += expected is not None
    assert found > checked // 10  # the random trees do reach the fields


@pytest.mark.parametrize("reader_name", ["_DOC_READER", "_CUSTOMER_READER", "_PM_READER",
                                         "_INVOICE_LINE_READER", "_CREDIT_NOTE_LINE_READER",
                                         "_SUBTOTAL_READER"])
def test_generated_group_reader_equals_xpath_normalize_space(reader_name):
    """The straight-line function `_Fields` generates (shared ObjectPath nodes for an element and
    its attribute) gives, as one dict, exactly what each field's XPath gives."""
    reader = getattr(ubl_module, reader_name)
    trie: dict = {}
    attributes = set()
    for field in reader.fields:
        for alternative in field.path.split("|"):
            level = trie
            for step in re.split(r"/(?![^\[]*\])", alternative):
                if step.startswith("@"):
                    attributes.add(step[1:])
                    continue
                names = re.findall(r"c(?:ac|bc):\w+", step)
                tags = [f"{{{ubl_module.NS[n.split(':')[0]]}}}{n.split(':')[1]}" for n in names]
                level = level.setdefault(tags[0], {})
                branch = level
                for tag in tags[1:]:
                    branch = branch.setdefault(tag, {})
    rng = random.Random(20261123)
    found = 0
    for _ in range(300):
        root = _random_tree(rng, trie, sorted(attributes))
        expected = {field.key: field.exact(root) or None for field in reader.fields}
        got = reader(root)
        if reader.record is not None:  # a named tuple, in field order
            assert type(got) is reader.record
            got = got._asdict()
        assert got == expected, etree.tostring(root)
        found += sum(value is not None for value in expected.values())
    assert found > 300 * len(reader.fields) // 10  # the random trees do reach the fields


def test_blank_removal_keeps_every_value_a_field_can_hold():
    """The hardened parser drops indentation between elements; a leaf's own blanks, text beside
    text and base64 with line breaks are content and stay."""
    root = parse_xml(b"<a>\n  <leaf>  </leaf>\n  <mixed>x <b>y</b> z</mixed>\n"
                     b"  <b64>QUJD\n  REVG</b64>\n</a>", source="blank.xml")
    assert root.text is None and all(child.tail is None for child in root)
    assert root.find("leaf").text == "  "
    assert etree.XPath("string(mixed)")(root) == "x y z"
    assert root.find("b64").text == "QUJD\n  REVG"


# -- what a sweep of real Peppol / UBL files found --------------------------------------------------

SBDH_NS = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"


def _payload(data: bytes) -> bytes:
    """A fixture without its XML declaration and comments, to be put inside an envelope."""
    return re.sub(rb"<\?xml[^>]*\?>|<!--.*?-->", b"", data, flags=re.S).strip()


def _sbd(*payloads: bytes, scopes: int = 60) -> bytes:
    """A Peppol StandardBusinessDocument around `payloads`; `scopes` pads the header so that the
    UBL namespace comes after the first 4 KiB (which is all `identify` is given)."""
    scope = (b"<Scope><Type>PROCESSID</Type><InstanceIdentifier>urn:fdc:peppol.eu:2017:poacc:"
             b"billing:01:1.0</InstanceIdentifier><Identifier>cenbii-procid-ubl</Identifier></Scope>")
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<StandardBusinessDocument xmlns="' + SBDH_NS.encode() + b'">'
            b"<StandardBusinessDocumentHeader><HeaderVersion>1.0</HeaderVersion>"
            b'<Sender><Identifier Authority="iso6523-actorid-upis">0208:0403170701</Identifier>'
            b"</Sender><BusinessScope>" + scope * scopes + b"</BusinessScope>"
            b"</StandardBusinessDocumentHeader><!-- routed by AP X -->"
            + b"".join(_payload(p) for p in payloads) + b"</StandardBusinessDocument>")


def _frames(batch: InvoiceBatch) -> dict:
    return {"invoices": batch.invoices.to_dicts(),
            **{name: frame.to_dicts() for name, frame in batch.extra.items()}}


def test_sbdh_envelope_is_read_as_its_invoice_or_credit_note():
    for fixture in (INVOICE, CREDIT_NOTE):
        wrapped = _sbd(fixture)
        head = wrapped[:4096]
        assert b"ubl:schema" not in head and PARSER.identify("peppol.xml", head)
        assert _frames(parse(wrapped)) == _frames(parse(fixture))
    # in a batch (a ZIP member) too
    batch = PARSER.parse_many([("a.xml", _sbd(INVOICE)), ("b.xml", CREDIT_NOTE)], source="in.zip")
    assert not batch.errors and batch.invoices["document_type"].to_list() == ["invoice",
                                                                              "credit_note"]


def test_sbdh_xpaths_name_the_element_inside_the_envelope():
    broken = _sbd(INVOICE.replace(b">363.00</cbc:PayableAmount>", b">36x</cbc:PayableAmount>"))
    [error] = parse(broken).errors
    assert error.field == "/StandardBusinessDocument/Invoice/cac:LegalMonetaryTotal/cbc:PayableAmount"
    [error] = PARSER.parse_many([("a.xml", broken)], source="in.zip").errors
    assert error.field.startswith("/StandardBusinessDocument/Invoice/")
    assert PARSER.extract(broken, source="x.xml").problems[0][0] == error.field
    # a warning, and a shared-validator error mapped back to its XPath, say the same
    phone = parse(_sbd(INVOICE.replace(b"0470 12 34 56", b"bel ons")))
    assert [w.location for w in phone.warnings] == [
        "/StandardBusinessDocument/Invoice/cac:AccountingCustomerParty/cac:Party/cac:Contact/"
        "cbc:Telephone"]
    email = parse(_sbd(INVOICE.replace(b"boekhouding@peeters.example", b"boekhouding at")))
    assert [e.field for e in email.errors] == [
        "/StandardBusinessDocument/Invoice/cac:AccountingCustomerParty/cac:Party/cac:Contact/"
        "cbc:ElectronicMail"]


@pytest.mark.parametrize(("payloads", "code", "location", "named"), [
    ((INVOICE, CREDIT_NOTE), "sbd_several_payloads", "/StandardBusinessDocument",
     "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote"),
    ((b'<Order xmlns="urn:x"><ID>1</ID></Order>',), NOT_THIS_FORMAT,
     "/StandardBusinessDocument/Order", "{urn:x}Order"),
    ((), NOT_THIS_FORMAT, "/StandardBusinessDocument", "no document"),
])
def test_sbdh_with_several_or_no_or_a_foreign_payload_is_refused(payloads, code, location, named):
    wrapped = _sbd(*payloads, scopes=1)
    with pytest.raises(FileRejected) as caught:
        parse(wrapped)
    assert (caught.value.code, caught.value.location) == (code, location)
    assert named in caught.value.message
    [error] = PARSER.parse_many([("m.xml", wrapped)], source="in.zip").errors
    assert (error.code, error.field) == (code, location) and named in error.message


def test_credit_note_without_due_date_is_not_warned_an_invoice_is():
    no_terms = CREDIT_NOTE.replace(b"Payable 14 days after the credit note date", b"end of month")
    batch = parse(no_terms)
    assert only_row(batch)["due_date"] is None
    assert batch.warnings == []  # a UBL 2.1 CreditNote has no root DueDate: nothing odd
    invoice = parse(INVOICE.replace(b"<cbc:DueDate>2026-04-01</cbc:DueDate>", b"")
                    .replace(b"Betaling binnen 30 dagen", b"einde van de maand"))
    assert [w.code for w in invoice.warnings] == ["no_due_date"]


@pytest.mark.parametrize(("scheme", "value", "expected"), [
    ("iso6523-actorid-upis", "0208:0705969661", ("0705969661", "0208")),
    ("iso6523-actorid-upis", " 9925:BE0202239951 ", ("BE0202239951", "9925")),
    ("iso6523-actorid-upis", "BE0202239951", ("BE0202239951", "iso6523-actorid-upis")),
    ("iso6523-actorid-upis", "208:0705969661", ("208:0705969661", "iso6523-actorid-upis")),
    ("iso6523-actorid-upis", "0208:", ("0208:", "iso6523-actorid-upis")),
    ("0208", "0208:0705969661", ("0208:0705969661", "0208")),  # only for that schemeID
])
def test_peppol_actor_id_endpoint_is_split_into_scheme_and_id(scheme, value, expected):
    data = INVOICE.replace(b'<cbc:EndpointID schemeID="9925">BE0202239951</cbc:EndpointID>',
                           f'<cbc:EndpointID schemeID="{scheme}">{value}</cbc:EndpointID>'.encode())
    [doc] = parse(data).extra["documents"].to_dicts()
    assert (doc["customer_endpoint_id"], doc["customer_endpoint_scheme"]) == expected


_PAYMENT_MEANS = re.compile(rb"<cac:PaymentMeans>.*?</cac:PaymentMeans>\s*", re.S)


def test_invoice_without_payment_means_warns_no_payee_iban_a_credit_note_does_not():
    invoice = parse(_PAYMENT_MEANS.sub(b"", INVOICE))
    row = only_row(invoice)
    assert row["structured_reference"] is None
    [warning] = invoice.warnings
    assert (warning.code, warning.location) == ("no_payee_iban", "/Invoice/cac:PaymentMeans")
    assert warning.message == "doc.xml: no PaymentMeans: no payee IBAN"
    [doc] = invoice.extra["documents"].to_dicts()
    assert doc["payee_iban"] is None and doc["payment_means_codes"] is None
    positive = CREDIT_NOTE.replace(b">-121<", b">121<").replace(b">-100<", b">100<")
    credit_note = parse(_PAYMENT_MEANS.sub(b"", positive))
    assert only_row(credit_note)["amount_cents"] == -12100
    assert credit_note.warnings == []  # the creditor pays it back: nothing to collect
