"""InvoiceDocument.from_parts: profile + canonical invoice row -> a validated document."""

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from creditflow.config.profiles import load_profile
from creditflow.renderers.document import DocumentError, InvoiceDocument, safe_name

PROFILE = load_profile(Path(__file__).parent / "fixtures" / "renderers" / "creditor.yaml")
ROW = dict(invoice_number="F1", issue_date=date(2026, 3, 1), due_date=date(2026, 3, 31), amount_cents=1000,
           currency="EUR", debtor_name="Jan", debtor_language=None, structured_reference="***090/9337/55493***",
           reference_kind="ogm")


def test_from_parts_fills_creditor_and_defaults():
    doc = InvoiceDocument.from_parts(PROFILE, ROW, "https://pay.example/p/x")
    assert doc.creditor_name == "Démo Incasso BV" and doc.creditor_iban == "BE71096123456769"
    assert doc.creditor_address_lines == ("Kerkstraat 12", "9000 Gent")
    assert doc.language == "nl" and doc.debtor_country == "BE" and doc.document_type == "invoice"
    assert doc.reference == "090933755493" and doc.formatted_reference == "+++090/9337/55493+++"
    assert doc.qr_reference_line == "structured" and doc.is_payable
    assert doc.document_id == InvoiceDocument.from_parts(PROFILE, ROW, None).document_id  # stable
    assert InvoiceDocument.from_parts(PROFILE, {**ROW, "invoice_id": 42}, None).document_id == "42"
    assert InvoiceDocument.from_parts(PROFILE, {**ROW, "id": 43}, None).document_id == "43"
    late = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)  # already 1 April in Brussels
    assert InvoiceDocument.from_parts(PROFILE, {**ROW, "due_date": late}, None).due_date == date(2026, 4, 1)


@pytest.mark.parametrize(
    ("override", "field"),
    [({"structured_reference": None}, "structured_reference"),
     ({"structured_reference": "+++123/4567/89012+++"}, "structured_reference"),
     ({"reference_kind": "rf"}, "reference_kind"),
     ({"amount_cents": 10.0}, "amount_cents"),
     ({"debtor_name": " "}, "debtor_name"),
     ({"due_date": "31/03/2026"}, "due_date"),
     ({"invoice_number": None}, "invoice_number")],
)
def test_bad_rows_raise_document_error_naming_the_field(override, field):
    with pytest.raises(DocumentError) as err:
        InvoiceDocument.from_parts(PROFILE, {**ROW, **override}, None)
    assert err.value.field == field


def test_safe_name():
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("F 2026/001") == "F_2026_001"
    assert safe_name("...") == "document"
    assert len(safe_name("x" * 500)) == 80
