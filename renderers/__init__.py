"""Renderers: payment references, EPC QR codes, signed payment links, invoice PDFs and message texts.

Modules, one job each: references (OGM/RF), epc (QR payload), qr (symbol + drawing), links (signed
URLs), document (InvoiceDocument), labels (words per language), pdf (one A4 page), texts (email, SMS,
post messages), batch (many PDFs on all cores). Nothing is imported here on purpose: channels import
`creditflow.renderers.messages` and must not pay for reportlab, numpy and segno on the way.
"""
