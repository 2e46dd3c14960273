"""A tiny one-page PDF with one line of text, reproducible bytes, for channel tests' attachments."""

from __future__ import annotations

import io

from reportlab.pdfgen import canvas


def one_page_pdf(text: str) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, invariant=1)
    pdf.drawString(72, 770, text)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
