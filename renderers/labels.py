"""Words printed on the invoice, per debtor language, and the Belgian way of writing amounts and dates.

A dict per language rather than gettext catalogues: four languages, a few dozen short labels, and a
test keeps the four key sets identical so a missing translation fails in CI instead of on paper.
Wording follows Belgian usage (“gestructureerde mededeling”, “communication structurée”,
“strukturierte Mitteilung”).
"""

from __future__ import annotations

from datetime import date

LANGUAGES = ("nl", "fr", "en", "de")

LABELS: dict[str, dict[str, str]] = {
    "nl": {
        "invoice": "Factuur",
        "credit_note": "Creditnota",
        "invoice_number": "Factuurnummer",
        "issue_date": "Factuurdatum",
        "due_date": "Vervaldag",
        "customer_number": "Klantnummer",
        "description": "Omschrijving",
        "amount_due": "Te betalen",
        "amount_credit": "In uw voordeel",
        "payment_title": "Betaalgegevens",
        "beneficiary": "Begunstigde",
        "iban": "IBAN",
        "bic": "BIC",
        "amount": "Bedrag",
        "reference_ogm": "Gestructureerde mededeling",
        "reference_rf": "Referentie",
        "pay_before": "Te betalen vóór",
        "scan_caption": "Scan met je bank-app",
        "pay_online": "Online betalen",
        "vat": "BTW",
        "email": "E-mail",
        "phone": "Tel.",
        "nothing_to_pay": "Je hoeft niets te betalen.",
        "footer_reference": "Vermeld bij betaling altijd de gestructureerde mededeling.",
        "reference_phrase_ogm": "de gestructureerde mededeling",
        "reference_phrase_rf": "de referentie",
    },
    "fr": {
        "invoice": "Facture",
        "credit_note": "Note de crédit",
        "invoice_number": "Numéro de facture",
        "issue_date": "Date de facture",
        "due_date": "Date d'échéance",
        "customer_number": "Numéro de client",
        "description": "Description",
        "amount_due": "Montant à payer",
        "amount_credit": "En votre faveur",
        "payment_title": "Informations de paiement",
        "beneficiary": "Bénéficiaire",
        "iban": "IBAN",
        "bic": "BIC",
        "amount": "Montant",
        "reference_ogm": "Communication structurée",
        "reference_rf": "Référence",
        "pay_before": "À payer avant le",
        "scan_caption": "Scannez avec votre app bancaire",
        "pay_online": "Payer en ligne",
        "vat": "TVA",
        "email": "E-mail",
        "phone": "Tél.",
        "nothing_to_pay": "Vous n'avez rien à payer.",
        "footer_reference": "Mentionnez toujours la communication structurée lors du paiement.",
        "reference_phrase_ogm": "la communication structurée",
        "reference_phrase_rf": "la référence",
    },
    "en": {
        "invoice": "Invoice",
        "credit_note": "Credit note",
        "invoice_number": "Invoice number",
        "issue_date": "Invoice date",
        "due_date": "Due date",
        "customer_number": "Customer number",
        "description": "Description",
        "amount_due": "Amount due",
        "amount_credit": "In your favour",
        "payment_title": "Payment details",
        "beneficiary": "Beneficiary",
        "iban": "IBAN",
        "bic": "BIC",
        "amount": "Amount",
        "reference_ogm": "Structured communication",
        "reference_rf": "Reference",
        "pay_before": "Please pay by",
        "scan_caption": "Scan with your banking app",
        "pay_online": "Pay online",
        "vat": "VAT",
        "email": "Email",
        "phone": "Tel.",
        "nothing_to_pay": "There is nothing to pay.",
        "footer_reference": "Always quote the structured communication when you pay.",
        "reference_phrase_ogm": "the structured communication",
        "reference_phrase_rf": "the reference",
    },
    "de": {
        "invoice": "Rechnung",
        "credit_note": "Gutschrift",
        "invoice_number": "Rechnungsnummer",
        "issue_date": "Rechnungsdatum",
        "due_date": "Fälligkeitsdatum",
        "customer_number": "Kundennummer",
        "description": "Beschreibung",
        "amount_due": "Zu zahlen",
        "amount_credit": "Zu Ihren Gunsten",
        "payment_title": "Zahlungsinformationen",
        "beneficiary": "Empfänger",
        "iban": "IBAN",
        "bic": "BIC",
        "amount": "Betrag",
        "reference_ogm": "Strukturierte Mitteilung",
        "reference_rf": "Referenz",
        "pay_before": "Zahlbar bis",
        "scan_caption": "Mit Ihrer Banking-App scannen",
        "pay_online": "Online bezahlen",
        "vat": "MwSt.",
        "email": "E-Mail",
        "phone": "Tel.",
        "nothing_to_pay": "Sie müssen nichts bezahlen.",
        "footer_reference": "Geben Sie bei der Zahlung immer die strukturierte Mitteilung an.",
        "reference_phrase_ogm": "die strukturierte Mitteilung",
        "reference_phrase_rf": "die Referenz",
    },
}


def labels_for(language: str) -> dict[str, str]:
    """The label set of a language; an unknown language gets Dutch (the profiles' default)."""
    return LABELS.get(language, LABELS["nl"])


def format_amount(amount_cents: int, currency: str, language: str) -> str:
    """Belgian style '€ 1.234,56' for nl/fr/de, '€1,234.56' for en; integer arithmetic only."""
    sign = "-" if amount_cents < 0 else ""
    euros, cents = divmod(abs(amount_cents), 100)
    if language == "en":
        grouped = f"{euros:,}"
        number = f"{grouped}.{cents:02d}"
        symbol = "€" if currency == "EUR" else f"{currency} "
        return f"{sign}{symbol}{number}"
    grouped = f"{euros:,}".replace(",", ".")
    number = f"{grouped},{cents:02d}"
    symbol = "€" if currency == "EUR" else currency
    return f"{sign}{symbol} {number}"


def format_date(value: date, language: str) -> str:
    """dd/mm/yyyy as Belgian readers write it; ISO 8601 for English readers (unambiguous abroad)."""
    if language == "en":
        return value.isoformat()
    return value.strftime("%d/%m/%Y")


def format_iban(iban: str) -> str:
    """Groups of 4, as printed on Belgian invoices: 'BE68 5390 0754 7034'."""
    compact = "".join(iban.split()).upper()
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
