"""Finance reports of a reconciliation night, per creditor, in the creditor's language.

Sections (one CSV each, one XLSX sheet each): matched payments, partial and over payments, unmatched
bank lines with the best suggestion, aging of open invoices, key figures (totals that tie out with
the statements, DSO, collection rate, speed of payment after sending, auto-match rate per stage);
plus a one-page PDF summary with an aging chart and the creditor payment feed CSV for its own books.

One CSV per section rather than one file with sections: each opens straight in a spreadsheet and
loads into the creditor's tools without cutting. Every text cell goes through `spreadsheet_safe`, so a
payer who types `=HYPERLINK(...)` into a communication cannot plant a formula in finance's Excel.

Everything here is pure: frames in, bytes out. Reading the frames from the ledger and delivering the
files (reports folder, e-mail) is `creditflow.pipeline.finance_reports`.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import polars as pl

from creditflow.renderers.spreadsheet import spreadsheet_safe
from creditflow.reconciliation.match import STAGE_NAMES

BRUSSELS = ZoneInfo("Europe/Brussels")  # paid dates are Brussels dates; reconciliation imports no config

SECTIONS = ("matched", "partial_over", "unmatched", "aging", "figures")
AGING_BUCKETS = ("not_due", "1_30", "31_60", "61_90", "over_90")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Reconciliation report", "matched": "Matched payments", "partial_over": "Partial and over payments",
        "unmatched": "Unmatched bank lines", "aging": "Aging of open invoices", "figures": "Key figures",
        "feed": "Payment feed", "date": "Date", "counterparty": "Counterparty", "amount": "Amount",
        "invoice": "Invoice", "applied": "Applied", "kind": "Kind", "stage": "Stage", "confidence": "Confidence",
        "reason": "Reason", "debtor": "Debtor", "total": "Invoice total", "paid": "Paid", "open": "Open",
        "unapplied": "Unapplied", "state": "State", "communication": "Communication", "status": "Status",
        "suggestion": "Best suggestion", "bucket": "Bucket", "count": "Invoices", "figure": "Figure",
        "value": "Value", "not_due": "Not due", "1_30": "1-30 days", "31_60": "31-60 days",
        "61_90": "61-90 days", "over_90": "Over 90 days", "credits": "Credits on the statements",
        "matched_amount": "Matched", "unmatched_amount": "Unmatched", "dso": "DSO (days)",
        "collection_rate": "Collection rate", "paid_24h": "Paid within 24 h of sending",
        "paid_10d": "Paid within 10 days of sending", "auto_rate": "Auto-match rate",
        "movement": "Bank line", "as_of": "As of", "amount_paid": "Amount paid", "paid_date": "Paid on",
    },
    "nl": {
        "title": "Afletteringsrapport", "matched": "Afgeletterde betalingen",
        "partial_over": "Gedeeltelijke en te hoge betalingen", "unmatched": "Niet-afgeletterde banklijnen",
        "aging": "Ouderdom openstaande facturen", "figures": "Kerncijfers", "feed": "Betalingsfeed",
        "date": "Datum", "counterparty": "Tegenpartij", "amount": "Bedrag", "invoice": "Factuur",
        "applied": "Toegewezen", "kind": "Soort", "stage": "Stap", "confidence": "Zekerheid", "reason": "Reden",
        "debtor": "Klant", "total": "Factuurbedrag", "paid": "Betaald", "open": "Open", "unapplied": "Niet toegewezen",
        "state": "Status", "communication": "Mededeling", "status": "Toestand", "suggestion": "Beste voorstel",
        "bucket": "Periode", "count": "Facturen", "figure": "Cijfer", "value": "Waarde", "not_due": "Niet vervallen",
        "1_30": "1-30 dagen", "31_60": "31-60 dagen", "61_90": "61-90 dagen", "over_90": "Meer dan 90 dagen",
        "credits": "Ontvangsten op de uittreksels", "matched_amount": "Afgeletterd",
        "unmatched_amount": "Niet afgeletterd", "dso": "DSO (dagen)", "collection_rate": "Inningsgraad",
        "paid_24h": "Betaald binnen 24 u na verzending", "paid_10d": "Betaald binnen 10 dagen na verzending",
        "auto_rate": "Automatische aflettering", "movement": "Banklijn", "as_of": "Op datum",
        "amount_paid": "Betaald bedrag", "paid_date": "Betaald op",
    },
    "fr": {
        "title": "Rapport de lettrage", "matched": "Paiements lettrés", "partial_over": "Paiements partiels et excédentaires",
        "unmatched": "Lignes bancaires non lettrées", "aging": "Balance âgée des factures ouvertes",
        "figures": "Chiffres clés", "feed": "Flux de paiements", "date": "Date", "counterparty": "Contrepartie",
        "amount": "Montant", "invoice": "Facture", "applied": "Imputé", "kind": "Type", "stage": "Étape",
        "confidence": "Confiance", "reason": "Motif", "debtor": "Client", "total": "Montant facture",
        "paid": "Payé", "open": "Ouvert", "unapplied": "Non imputé", "state": "État", "communication": "Communication",
        "status": "Statut", "suggestion": "Meilleure suggestion", "bucket": "Tranche", "count": "Factures",
        "figure": "Indicateur", "value": "Valeur", "not_due": "Non échu", "1_30": "1-30 jours",
        "31_60": "31-60 jours", "61_90": "61-90 jours", "over_90": "Plus de 90 jours",
        "credits": "Crédits des extraits", "matched_amount": "Lettré", "unmatched_amount": "Non lettré",
        "dso": "DSO (jours)", "collection_rate": "Taux d'encaissement", "paid_24h": "Payé dans les 24 h après envoi",
        "paid_10d": "Payé dans les 10 jours après envoi", "auto_rate": "Taux de lettrage automatique",
        "movement": "Ligne bancaire", "as_of": "Au", "amount_paid": "Montant payé", "paid_date": "Payé le",
    },
    "de": {
        "title": "Abstimmungsbericht", "matched": "Zugeordnete Zahlungen", "partial_over": "Teil- und Überzahlungen",
        "unmatched": "Nicht zugeordnete Bankzeilen", "aging": "Altersstruktur offener Rechnungen",
        "figures": "Kennzahlen", "feed": "Zahlungsfeed", "date": "Datum", "counterparty": "Gegenpartei",
        "amount": "Betrag", "invoice": "Rechnung", "applied": "Zugeordnet", "kind": "Art", "stage": "Stufe",
        "confidence": "Sicherheit", "reason": "Grund", "debtor": "Kunde", "total": "Rechnungsbetrag",
        "paid": "Bezahlt", "open": "Offen", "unapplied": "Nicht zugeordnet", "state": "Status",
        "communication": "Verwendungszweck", "status": "Zustand", "suggestion": "Bester Vorschlag",
        "bucket": "Zeitraum", "count": "Rechnungen", "figure": "Kennzahl", "value": "Wert",
        "not_due": "Nicht fällig", "1_30": "1-30 Tage", "31_60": "31-60 Tage", "61_90": "61-90 Tage",
        "over_90": "Über 90 Tage", "credits": "Gutschriften der Auszüge", "matched_amount": "Zugeordnet",
        "unmatched_amount": "Nicht zugeordnet", "dso": "DSO (Tage)", "collection_rate": "Einzugsquote",
        "paid_24h": "Bezahlt binnen 24 Std. nach Versand", "paid_10d": "Bezahlt binnen 10 Tagen nach Versand",
        "auto_rate": "Automatische Zuordnung", "movement": "Bankzeile", "as_of": "Stand",
        "amount_paid": "Bezahlter Betrag", "paid_date": "Bezahlt am",
    },
}


def money(cents: int | None) -> str:
    """Cents as a plain decimal string (123.45), exact: never through float."""
    if cents is None:
        return ""
    return str((Decimal(int(cents)) / 100).quantize(Decimal("0.01")))


@dataclass
class Report:
    creditor_id: str
    language: str
    as_of: date
    statement_keys: list[str]
    sections: dict[str, tuple[list[str], list[list]]]  # name -> (header labels, rows)
    feed: tuple[list[str], list[list]]
    figures: dict[str, object]  # raw values (cents, ratios) for tests and the PDF
    aging_cents: dict[str, int]

    @property
    def key(self) -> str:
        """Delivery idempotency key: creditor, day and the statements covered."""
        digest = hashlib.sha256("\n".join(sorted(self.statement_keys)).encode()).hexdigest()[:16]
        return f"report:{self.creditor_id}:{self.as_of.isoformat()}:{digest}"


# -- building (pure) --------------------------------------------------------------------------------


def build_report(creditor_id: str, language: str, as_of: date, statement_keys: list[str],
                 frames: dict[str, pl.DataFrame]) -> Report:
    L = LABELS.get(language, LABELS["en"])
    moves, allocs, invoices = frames["movements"], frames["allocations"], frames["invoices"]
    numbers = dict(zip(invoices["invoice_id"].to_list(), invoices["invoice_number"].to_list(), strict=True))
    day = pl.coalesce("value_date", "booking_date")
    credits = moves.filter((pl.col("amount_milli") > 0) & ~pl.col("has_details") & ~pl.col("is_reversal"))
    credits = credits.with_columns(cents=pl.col("amount_milli") // 10, day=day)

    matched_rows = []
    live = allocs.filter(pl.col("kind") != "undo").join(
        credits.select("movement_key", "day", "counterparty_name", "cents", "match_stage", "match_confidence",
                       "match_reason"), on="movement_key", how="inner").sort("movement_key", "invoice_id")
    for a in live.iter_rows(named=True):
        matched_rows.append([a["day"], a["counterparty_name"], money(a["cents"]), numbers.get(a["invoice_id"]),
                             money(a["amount_cents"]), a["kind"], STAGE_NAMES.get(a["stage"] or 0, ""),
                             a["match_confidence"], a["match_reason"]])

    touched = set(allocs["invoice_id"].drop_nulls().to_list())
    partial = invoices.filter(pl.col("invoice_id").is_in(list(touched))
                              & pl.col("state").is_in(["partially_paid", "overpaid"])).sort("invoice_number")
    unapplied = allocs.filter((pl.col("kind") == "unapplied") & pl.col("reversed_by").is_null()).group_by(
        "invoice_id").agg(pl.col("amount_cents").sum())
    unapplied = dict(unapplied.iter_rows())
    partial_rows = [[r["invoice_number"], r["debtor_name"], money(r["amount_cents"]),
                     money(r["amount_cents"] - r["open_cents"]), money(r["open_cents"]),
                     money(unapplied.get(r["invoice_id"], 0)), r["state"]] for r in partial.iter_rows(named=True)]

    unmatched = credits.filter(pl.col("match_status").is_in(["ambiguous", "no_match"])).sort("movement_key")
    unmatched_rows = [[u["day"], u["counterparty_name"], money(u["cents"]), u["communication"], u["match_status"],
                       _suggested(u, numbers), u["match_reason"]] for u in unmatched.iter_rows(named=True)]

    open_inv = invoices.filter(pl.col("state").is_in(["open", "partially_paid"]) & (pl.col("open_cents") > 0))
    overdue = (pl.lit(as_of) - pl.col("due_date")).dt.total_days()
    bucket = (pl.when(overdue <= 0).then(pl.lit("not_due")).when(overdue <= 30).then(pl.lit("1_30"))
              .when(overdue <= 60).then(pl.lit("31_60")).when(overdue <= 90).then(pl.lit("61_90"))
              .otherwise(pl.lit("over_90")))
    aged = open_inv.with_columns(bucket=bucket).group_by("bucket").agg(n=pl.len(), cents=pl.col("open_cents").sum())
    aged = {b: (n, c) for b, n, c in aged.iter_rows()}
    aging_cents = {b: int(aged.get(b, (0, 0))[1]) for b in AGING_BUCKETS}
    aging_rows = [[L[b], aged.get(b, (0, 0))[0], money(aging_cents[b])] for b in AGING_BUCKETS]

    figures = _figures(credits, invoices, frames["sent"], as_of)
    figure_rows = [[L["as_of"], as_of.isoformat()], [L["credits"], money(figures["credits_cents"])],
                   [L["matched_amount"], money(figures["matched_cents"])],
                   [L["unmatched_amount"], money(figures["unmatched_cents"])],
                   [L["dso"], _fmt(figures["dso_days"])], [L["collection_rate"], _pct(figures["collection_rate"])],
                   [L["paid_24h"], _pct(figures["paid_within_24h"])], [L["paid_10d"], _pct(figures["paid_within_10d"])],
                   [L["auto_rate"], _pct(figures["auto_rate"])]]
    figure_rows += [[f"{L['auto_rate']}: {L['stage']} {s} ({name})", _pct(figures["stage_rates"].get(name))]
                    for s, name in STAGE_NAMES.items()]

    feed_inv = invoices.filter(pl.col("invoice_id").is_in(list(touched))).sort("invoice_number")
    feed_rows = [[r["invoice_number"], money(r["amount_cents"] - r["open_cents"]),
                  r["paid_at"].astimezone(BRUSSELS).date() if r["paid_at"] else "", r["state"]]
                 for r in feed_inv.iter_rows(named=True)]

    sections = {
        "matched": ([L["date"], L["counterparty"], L["amount"], L["invoice"], L["applied"], L["kind"], L["stage"],
                     L["confidence"], L["reason"]], matched_rows),
        "partial_over": ([L["invoice"], L["debtor"], L["total"], L["paid"], L["open"], L["unapplied"], L["state"]],
                         partial_rows),
        "unmatched": ([L["date"], L["counterparty"], L["amount"], L["communication"], L["status"], L["suggestion"],
                       L["reason"]], unmatched_rows),
        "aging": ([L["bucket"], L["count"], L["open"]], aging_rows),
        "figures": ([L["figure"], L["value"]], figure_rows),
    }
    feed = (["invoice_number", "amount_paid", "paid_date", "state"], feed_rows)
    return Report(creditor_id, language, as_of, list(statement_keys), sections, feed, figures, aging_cents)


def _suggested(row: dict, numbers: dict) -> str:
    ids = row.get("suggested_invoice_ids") or []
    return ", ".join(str(numbers.get(i, i)) for i in ids)


def _figures(credits: pl.DataFrame, invoices: pl.DataFrame, sent: pl.DataFrame, as_of: date) -> dict:
    """Totals that tie out with the statements, and the portfolio ratios.

    DSO: open receivables / amount billed in the last 90 days x 90. Collection rate: share of the
    amount of invoices due by `as_of` that is paid. Paid within 24 h / 10 days: among invoices sent
    (first delivery sent_at) and paid, the paid business day is at most 1 / 10 days after the sending
    day (a statement knows the day of payment, not the hour).
    """
    matched = credits.filter(pl.col("match_status") == "matched")
    total = credits.height
    stage_counts = dict(matched.group_by("match_stage").len().iter_rows())
    billed = invoices.filter(pl.col("issue_date") > as_of - timedelta(days=90))["amount_cents"].sum()
    open_now = invoices.filter(pl.col("state").is_in(["open", "partially_paid"]))["open_cents"].sum()
    due = invoices.filter(pl.col("due_date") <= as_of)
    due_total = due["amount_cents"].sum()
    # Only the report's invoices count as sent: the sendings of credit notes and cancelled invoices
    # (which gather() reads along) can never be paid and would dilute the share.
    sent = sent.filter(pl.col("invoice_id").is_in(invoices["invoice_id"].implode()))
    paid = invoices.join(sent, on="invoice_id").filter(pl.col("paid_at").is_not_null())
    delay = (pl.col("paid_at").dt.convert_time_zone("Europe/Brussels").dt.date()
             - pl.col("sent_at").dt.convert_time_zone("Europe/Brussels").dt.date()).dt.total_days()
    delays = paid.select(delay.alias("d"))["d"]
    n_sent = sent.height
    return {
        "credits_cents": int(credits["cents"].sum()),
        "matched_cents": int(matched["cents"].sum()),
        "unmatched_cents": int(credits.filter(pl.col("match_status") != "matched")["cents"].sum()),
        "matched_count": matched.height,
        "credit_count": total,
        "dso_days": (Decimal(int(open_now)) * 90 / Decimal(int(billed))).quantize(Decimal("0.1")) if billed else None,
        "collection_rate": (Decimal(int(due_total - due["open_cents"].sum())) / Decimal(int(due_total))
                            if due_total else None),
        "paid_within_24h": Decimal(int((delays <= 1).sum())) / n_sent if n_sent else None,
        "paid_within_10d": Decimal(int((delays <= 10).sum())) / n_sent if n_sent else None,
        "auto_rate": Decimal(matched.height) / total if total else None,
        # A stage that matched nothing has a rate of 0, not an unknown one (blank only without credits).
        "stage_rates": {name: Decimal(stage_counts.get(s, 0)) / total for s, name in STAGE_NAMES.items()}
        if total else {},
    }


def _pct(value) -> str:
    return "" if value is None else f"{(Decimal(value) * 100).quantize(Decimal('0.1'))}%"


def _fmt(value) -> str:
    return "" if value is None else str(value)


# -- rendering --------------------------------------------------------------------------------------


def _cell(value) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.2f}"
    return spreadsheet_safe(value)


def to_csv(header: list[str], rows: list[list], *, delimiter: str = ";") -> bytes:
    """UTF-8 with BOM and `;` like the error reports: what Belgian Excel opens right."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([spreadsheet_safe(h) for h in header])
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def to_xlsx(report: Report) -> bytes:
    """One sheet per section; every cell written as a string (`write_string`), so nothing is ever
    turned into a formula, and escaped like the CSV besides."""
    import xlsxwriter

    L = LABELS.get(report.language, LABELS["en"])
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False,
                                        "strings_to_urls": False})
    bold = book.add_format({"bold": True})
    for name in SECTIONS:
        header, rows = report.sections[name]
        sheet = book.add_worksheet(L[name][:31])
        for col, text in enumerate(header):
            sheet.write_string(0, col, spreadsheet_safe(text), bold)
            sheet.set_column(col, col, max(12, min(60, len(text) + 4)))
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                sheet.write_string(r, c, _cell(value))
    book.close()
    return buffer.getvalue()


def to_pdf(report: Report, legal_name: str) -> bytes:
    """One A4 page: the key figures and a bar chart of the open amounts by age."""
    from reportlab.graphics import renderPDF
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    L = LABELS.get(report.language, LABELS["en"])
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    page.setTitle(f"{L['title']} {report.creditor_id} {report.as_of.isoformat()}")
    width, height = A4
    y = height - 25 * mm
    page.setFont("Helvetica-Bold", 16)
    page.drawString(20 * mm, y, f"{L['title']}: {legal_name}")
    y -= 8 * mm
    page.setFont("Helvetica", 10)
    page.drawString(20 * mm, y, f"{L['as_of']} {report.as_of.isoformat()}")
    y -= 10 * mm
    for label, value in report.sections["figures"][1]:
        page.drawString(20 * mm, y, str(label))
        page.drawRightString(width - 20 * mm, y, str(value))
        y -= 5.5 * mm
    for name in ("matched", "partial_over", "unmatched"):
        page.drawString(20 * mm, y, L[name])
        page.drawRightString(width - 20 * mm, y, str(len(report.sections[name][1])))
        y -= 5.5 * mm
    drawing = Drawing(170 * mm, 70 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 15 * mm, 10 * mm, 150 * mm, 50 * mm
    chart.data = [[report.aging_cents[b] / 100 for b in AGING_BUCKETS]]  # chart geometry only
    chart.categoryAxis.categoryNames = [L[b] for b in AGING_BUCKETS]
    chart.valueAxis.valueMin = 0
    chart.bars[0].fillColor = None
    from reportlab.lib import colors

    chart.bars[0].fillColor = colors.HexColor("#2f6f9f")
    drawing.add(chart)
    page.setFont("Helvetica-Bold", 11)
    page.drawString(20 * mm, y - 6 * mm, L["aging"])
    renderPDF.draw(drawing, page, 20 * mm, y - 80 * mm)
    y -= 86 * mm
    page.setFont("Helvetica", 10)
    for label, count, amount in report.sections["aging"][1]:  # the exact figures behind the bars
        page.drawString(20 * mm, y, str(label))
        page.drawRightString(width - 60 * mm, y, str(count))
        page.drawRightString(width - 20 * mm, y, amount)
        y -= 5.5 * mm
    page.showPage()
    page.save()
    return buffer.getvalue()


def report_files(report: Report, legal_name: str) -> dict[str, bytes]:
    """File name -> bytes, all of a night's report for one creditor."""
    stem = f"reconciliation-{report.as_of.isoformat()}"
    files = {f"{stem}-{name}.csv": to_csv(*report.sections[name]) for name in SECTIONS}
    files[f"{stem}.xlsx"] = to_xlsx(report)
    files[f"{stem}-summary.pdf"] = to_pdf(report, legal_name)
    files[f"payment-feed-{report.as_of.isoformat()}.csv"] = to_csv(*report.feed)
    return files
