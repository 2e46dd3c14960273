"""Invoice PDF: the QR code decodes to the exact EPC payload; text and window position are right."""

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pymupdf
import pytest
import zxingcpp
from reportlab.lib.units import mm
from stdnum.be import ogm_vcs

from creditflow.config.profiles import load_profile
from creditflow.renderers import pdf as pdf_module
from creditflow.renderers.document import InvoiceDocument
from creditflow.renderers.links import sign_payment_link
from creditflow.renderers.pdf import render_invoice_pdf

PROFILE = load_profile(Path(__file__).parent / "fixtures" / "renderers" / "creditor.yaml")
MM = 72 / 25.4


def make_doc(placement="structured", **invoice_overrides) -> InvoiceDocument:
    profile = PROFILE.model_copy(update={"qr_reference_line": placement})
    invoice = dict(
        invoice_number="F2026-000123", document_type="invoice", issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31), amount_cents=123456, currency="EUR", debtor_name="Zoë Dupont",
        debtor_street="Rue de la Loi 16", debtor_postcode="1000", debtor_city="Bruxelles", debtor_country="BE",
        debtor_language="fr", description="Abonnement mars 2026", structured_reference="090933755493",
        reference_kind="ogm", customer_number="C-42",
    )
    invoice.update(invoice_overrides)
    link = None
    if invoice["amount_cents"] > 0:
        link = sign_payment_link("https://pay.creditflow.example/p/", invoice_id=77,
                                 amount_cents=invoice["amount_cents"], invoice_number=invoice["invoice_number"],
                                 expires_at=datetime(2026, 7, 1, tzinfo=UTC), key=b"k" * 32)
    return InvoiceDocument.from_parts(profile, invoice, link)


def decode_qr(pdf: bytes) -> list[bytes]:
    """Rasterise only the QR area (grey, 200 dpi) and decode it: fast and faithful (performance.md 5)."""
    page = pymupdf.open(stream=pdf, filetype="pdf")[0]
    top = pdf_module.BOX_TOP / mm * MM
    right = pdf_module.RIGHT / mm * MM
    size = pdf_module.QR_SIZE / mm * MM
    clip = pymupdf.Rect(right - size - 6 * MM, top - 6 * MM, right + 6 * MM, top + size + 10 * MM)
    pix = page.get_pixmap(dpi=200, clip=clip, colorspace=pymupdf.csGRAY)
    image = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)[:, : pix.width]
    results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode, try_rotate=False,
                                     try_downscale=False, try_invert=False)
    return [bytes(r.bytes) for r in results]


@pytest.mark.parametrize(("placement", "line"), [("structured", 9), ("unstructured", 10)])
def test_qr_decodes_to_exact_payload_with_valid_ogm(placement, line):
    doc = make_doc(placement)
    decoded = decode_qr(render_invoice_pdf(doc))
    assert decoded == [doc.epc_payload()]
    lines = decoded[0].split(b"\n")
    assert lines[:4] == [b"BCD", b"002", b"1", b"SCT"]
    assert ogm_vcs.is_valid(lines[line].decode())
    assert len(lines) == line + 1  # nothing after the remittance element


def test_qr_with_rf_reference_and_non_latin_name():
    doc = make_doc(structured_reference="RF18539007547034", reference_kind="rf", debtor_name="Łukasz Ślęzak")
    assert decode_qr(render_invoice_pdf(doc)) == [doc.epc_payload()]
    assert doc.epc_payload().split(b"\n")[9] == b"RF18539007547034"


def test_text_and_debtor_in_window_position():
    doc = make_doc("unstructured", debtor_name="Zoë Dupont-Ślęzak")
    page = pymupdf.open(stream=render_invoice_pdf(doc), filetype="pdf")[0]
    text = page.get_text()
    for expected in ("+++090/9337/55493+++", "F2026-000123", "€ 1.234,56", "BE71 0961 2345 6769", "GKCCBEBB",
                     "Communication structurée", "Scannez avec votre app bancaire", "31/03/2026",
                     doc.payment_link, "Zoë Dupont-?l?zak"):
        assert expected in text, expected
    words = [w for w in page.get_text("words") if w[4] in ("Zoë", "Dupont-?l?zak", "Bruxelles", "1000")]
    assert len(words) == 4
    for x0, y0, x1, y1, *_ in words:
        assert 100 * MM <= x0 and x1 <= 195 * MM  # window: sheet x 95..195 mm
        assert 50 * MM <= y0 and y1 <= 95 * MM  # window: sheet y 50..95 mm
    links = [link["uri"] for link in page.get_links()]
    assert links == [doc.payment_link]


def test_labels_follow_debtor_language_and_amount_style():
    text = pymupdf.open(stream=render_invoice_pdf(make_doc(debtor_language="en")), filetype="pdf")[0].get_text()
    assert "€1,234.56" in text and "Structured communication" in text and "2026-03-31" in text
    text = pymupdf.open(stream=render_invoice_pdf(make_doc(debtor_language="nl")), filetype="pdf")[0].get_text()
    assert "Gestructureerde mededeling" in text and "Scan met je bank-app" in text


def test_pdf_is_reproducible_one_page_a4():
    doc = make_doc()
    first, second = render_invoice_pdf(doc), render_invoice_pdf(doc)
    assert first == second
    pdf = pymupdf.open(stream=first, filetype="pdf")
    assert pdf.page_count == 1
    assert round(pdf[0].rect.width) == 595 and round(pdf[0].rect.height) == 842


def test_credit_note_has_no_qr_and_says_nothing_to_pay():
    doc = make_doc(document_type="credit_note", amount_cents=-5000, debtor_language="nl")
    pdf = render_invoice_pdf(doc)
    assert decode_qr(pdf) == []
    text = pymupdf.open(stream=pdf, filetype="pdf")[0].get_text()
    assert "Creditnota" in text and "Je hoeft niets te betalen." in text and "-€ 50,00" in text
