"""Finance reports of a night, pipeline side: read the frames from the ledger, deliver the files.

The report covers the night's statements (new or seen before), read back from the ledger, so a
re-run of the night rebuilds the same report and its delivery key says it was sent already. Building
and rendering the report is pure and lives in `creditflow.reconciliation.reports`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl
from sqlalchemy import func, select

from creditflow.ledger import payments
from creditflow.ledger.events import record_event
from creditflow.ledger.models import Delivery, Event, Invoice
from creditflow.reconciliation.reports import LABELS, build_report, report_files
from creditflow.renderers.messages import Attachment, Message
from creditflow.stores.base import REPORTS


# -- gathering (ledger) -----------------------------------------------------------------------------


def gather(session, creditor_id: str, movement_keys: list[str], as_of: date) -> dict[str, pl.DataFrame]:
    """The frames a report is built from: the night's movements of this creditor, their allocations,
    the creditor's invoices and the first time each was sent."""
    moves = payments.movements_frame(session, keys=movement_keys)
    allocs = payments.allocations_frame(session, movement_keys=movement_keys)
    mine = allocs.filter(pl.col("creditor_id") == creditor_id)["movement_key"].unique()
    moves = moves.filter((pl.col("creditor_id") == creditor_id) | pl.col("movement_key").is_in(mine.implode()))
    allocs = allocs.filter(pl.col("movement_key").is_in(moves["movement_key"].implode()))
    cols = ["id", "invoice_number", "debtor_name", "amount_cents", "open_cents", "state", "issue_date",
            "due_date", "paid_at"]
    rows = session.execute(select(*(getattr(Invoice, c) for c in cols)).where(
        Invoice.creditor_id == creditor_id, Invoice.document_type == "invoice", Invoice.state != "cancelled")).all()
    invoices = pl.DataFrame([tuple(r) for r in rows], orient="row", schema={
        "invoice_id": pl.Int64, "invoice_number": pl.String, "debtor_name": pl.String, "amount_cents": pl.Int64,
        "open_cents": pl.Int64, "state": pl.String, "issue_date": pl.Date, "due_date": pl.Date,
        "paid_at": pl.Datetime("us", "UTC")})
    sent = session.execute(select(Delivery.invoice_id, func.min(Delivery.sent_at)).where(
        Delivery.creditor_id == creditor_id, Delivery.sent_at.is_not(None)).group_by(Delivery.invoice_id)).all()
    sent = pl.DataFrame([tuple(r) for r in sent], orient="row",
                        schema={"invoice_id": pl.Int64, "sent_at": pl.Datetime("us", "UTC")})
    return {"movements": moves, "allocations": allocs, "invoices": invoices, "sent": sent}


# -- delivery ---------------------------------------------------------------------------------------


@dataclass
class DeliveredReport:
    creditor_id: str
    key: str
    paths: list[str] = field(default_factory=list)
    emailed: bool = False
    already_sent: bool = False
    figures: dict = field(default_factory=dict)


_CONTENT_TYPES = {".csv": "text/csv", ".pdf": "application/pdf",
                  ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def deliver_report(rt, creditor_id: str, imported, *, as_of: date) -> DeliveredReport:
    """Write the creditor's report files to its reports/ folder and, when the profile names a
    finance e-mail, send them once: the `report.sent` event keyed by the report's idempotency key
    is checked before and written after the send (the channel de-duplicates on the same key too)."""
    profile = rt.profiles[creditor_id]
    with rt.sessions() as session:
        frames = gather(session, creditor_id, imported.movement_keys, as_of)
    keys = [s.statement_key for s in imported.statements
            if s.creditor_id == creditor_id or s.creditor_id is None]
    report = build_report(creditor_id, profile.language, as_of, keys, frames)
    files = report_files(report, profile.legal_name)
    store = rt.store_for(creditor_id)
    out = DeliveredReport(creditor_id, report.key, figures=report.figures)
    for name, data in files.items():
        out.paths.append(store.write(REPORTS, name, data))
    if not profile.finance_email:
        return out
    with rt.sessions() as session:
        sent_before = session.scalar(select(func.count()).select_from(Event).where(
            Event.kind == "report.sent", Event.entity == "report", Event.entity_id == report.key[:100]))
    if sent_before:
        out.already_sent = True
        return out
    channel = rt.channels().get("email")
    if channel is None:
        return out
    L = LABELS.get(profile.language, LABELS["en"])
    message = Message(
        idempotency_key=report.key, channel="email", creditor_id=creditor_id, invoice_number="",
        language=profile.language, sender_name=profile.legal_name, sender_email=profile.email_from,
        subject=f"{L['title']} {as_of.isoformat()}",
        text="\n".join(f"{label}: {value}" for label, value in report.sections["figures"][1]),
        to_email=profile.finance_email, to_name=profile.legal_name,
        attachments=tuple(Attachment(name, _CONTENT_TYPES[name[name.rfind("."):]], data)
                          for name, data in files.items()),
        metadata={"purpose": "reconciliation_report"},
    )
    result = channel.send(message)
    with rt.sessions.begin() as session:
        record_event(session, kind="report.sent", entity="report", entity_id=report.key[:100],
                     creditor_id=creditor_id, provider_id=result.provider_id, files=sorted(files))
    out.emailed = True
    return out
