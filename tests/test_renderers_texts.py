"""Email, SMS and post messages in all four languages."""

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from creditflow.config.profiles import load_profile
from creditflow.renderers.document import DocumentError, InvoiceDocument
from creditflow.renderers.labels import format_amount
from creditflow.renderers.links import sign_payment_link
from creditflow.renderers.messages import Message
from creditflow.renderers.texts import build_email, build_post, build_sms, gsm7_length, sms_text, to_gsm7

PROFILE = load_profile(Path(__file__).parent / "fixtures" / "renderers" / "creditor.yaml")
LANGUAGES = ("nl", "fr", "en", "de")
REFERENCE_WORDS = {"nl": "Gestructureerde mededeling", "fr": "Communication structurée",
                   "en": "Structured communication", "de": "Strukturierte Mitteilung"}


def make_doc(language="nl", **overrides) -> InvoiceDocument:
    invoice = dict(
        invoice_number="F2026-000123", issue_date=date(2026, 3, 1), due_date=date(2026, 3, 31),
        amount_cents=123456, currency="EUR", debtor_name="Brasserie L'Écluse SPRL", debtor_street="Rue de la Loi 16",
        debtor_postcode="1000", debtor_city="Bruxelles", debtor_country="BE", debtor_language=language,
        description="Abonnement maart 2026", structured_reference="+++090/9337/55493+++", reference_kind="ogm",
    )
    invoice.update(overrides)
    link = sign_payment_link("https://pay.creditflow.example/p/", invoice_id=123456,
                             invoice_number=invoice["invoice_number"], amount_cents=123456,
                             expires_at=datetime(2026, 7, 1, tzinfo=UTC), key=b"k" * 32)
    return InvoiceDocument.from_parts(PROFILE, invoice, link)


@pytest.mark.parametrize("language", LANGUAGES)
def test_email_in_every_language(language):
    doc = make_doc(language)
    message = build_email(doc, idempotency_key="demo:F2026-000123:invoice:email", to_email="klant@example.be",
                          pdf_bytes=b"%PDF-1.4 test", sender_email="facturen@demo-incasso.example")
    assert isinstance(message, Message) and message.channel == "email" and message.language == language
    amount = format_amount(123456, "EUR", language)
    assert "F2026-000123" in message.subject and amount in message.subject
    for body in (message.text, message.html):
        for expected in (amount, "+++090/9337/55493+++", "F2026-000123", "BE71 0961 2345 6769"):
            assert expected in body, (language, expected)
        assert REFERENCE_WORDS[language] in body
    assert doc.payment_link in message.text
    assert f'href="{doc.payment_link}"' in message.html
    if language in ("nl", "en"):  # fr/de open with "Madame, Monsieur" / "Sehr geehrte Damen und Herren"
        assert "L&#39;Écluse" in message.html or "L&#x27;Écluse" in message.html  # autoescaped
        assert "L'Écluse" in message.text  # plain text is not escaped
    assert "\n\n\n" not in message.text and "{{" not in message.text
    assert message.attachments[0].filename == "F2026-000123.pdf"
    assert message.attachments[0].data == b"%PDF-1.4 test"
    assert message.reference == "090933755493" and message.amount_cents == 123456
    assert message.to_email == "klant@example.be" and message.creditor_id == "demo-incasso"


def test_html_escapes_hostile_names():
    doc = make_doc("en", debtor_name="<script>alert(1)</script> & Co")
    message = build_email(doc, idempotency_key="k", to_email="a@b.be", pdf_bytes=b"", sender_email="x@y.be")
    assert "<script>" not in message.html and "&lt;script&gt;" in message.html
    assert "<script>alert(1)</script> & Co" in message.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_fits_one_gsm7_segment_with_link_amount_and_ogm(language):
    doc = make_doc(language)
    message = build_sms(doc, idempotency_key="k", to_phone="+32470123456", sender_email="x@y.be")
    assert gsm7_length(message.text) <= 160
    assert message.metadata["sms_units"] == str(gsm7_length(message.text))
    assert message.metadata["sms_segments"] == "1"
    assert doc.payment_link in message.text
    assert format_amount(123456, "EUR", language) in message.text
    assert "+++090/9337/55493+++" in message.text
    assert message.to_phone == "+32470123456"


def test_sms_prefers_the_longer_wording_when_it_fits():
    doc = replace(make_doc("nl"), payment_link="https://pay.example/p/abc")
    text = sms_text(doc)
    assert "F2026-000123" in text and "31/03/2026" in text and gsm7_length(text) <= 160


def test_gsm7_counting_and_folding():
    assert gsm7_length("€") == 2 and gsm7_length("[x]") == 5 and gsm7_length("é") == 1
    assert to_gsm7("Façade ‘Ł’ — ok") == "Facade 'L' - ok"
    assert to_gsm7("中") == "?"
    with pytest.raises(ValueError):
        gsm7_length("ç")


def test_post_message_has_address_and_pdf():
    doc = make_doc("de")
    message = build_post(doc, idempotency_key="k", pdf_bytes=b"%PDF", sender_email="x@y.be")
    assert message.channel == "post"
    assert message.to_address.name == "Brasserie L'Écluse SPRL"
    assert (message.to_address.street, message.to_address.postcode, message.to_address.city) == (
        "Rue de la Loi 16", "1000", "Bruxelles")
    assert message.attachments[0].content_type == "application/pdf"
    with pytest.raises(DocumentError) as err:
        build_post(replace(doc, debtor_street=None), idempotency_key="k", pdf_bytes=b"", sender_email="x@y.be")
    assert err.value.field == "debtor_street"


def test_credit_note_texts_say_nothing_to_pay():
    doc = make_doc("fr", document_type="credit_note", amount_cents=-5000)
    message = build_email(doc, idempotency_key="k", to_email="a@b.be", pdf_bytes=b"", sender_email="x@y.be")
    assert "note de crédit" in message.text and "rien à payer" in message.text
