"""Render: every stored invoice gets its payment link and its PDF, once.

Invoices are taken from the ledger in chunks (`rendered_at` is null), rendered in a process pool
when the chunk is large, and marked rendered in one transaction. A crash mid-chunk only means the
chunk is rendered again: PDFs are written atomically and are reproducible byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from creditflow.config.settings import BRUSSELS
from creditflow.ledger import events, invoices
from creditflow.parsers.schema import INVOICE_COLUMNS
from creditflow.pipeline.runtime import Runtime
from creditflow.renderers.batch import render_batch
from creditflow.renderers.document import InvoiceDocument
from creditflow.renderers.links import sign_payment_link


@dataclass
class RenderOutcome:
    rendered: int = 0
    creditors: dict[str, int] | None = None


def invoice_mapping(invoice: Any) -> dict[str, Any]:
    """A ledger invoice as the canonical column mapping the renderers read."""
    mapping = {column: getattr(invoice, column, None) for column in INVOICE_COLUMNS}
    mapping.update(
        id=invoice.id,
        structured_reference=invoice.structured_reference,
        reference_kind=invoice.reference_kind,
    )
    return mapping


def payment_link_for(rt: Runtime, invoice: Any) -> str:
    expires = datetime.combine(
        invoice.due_date + timedelta(days=rt.settings.link_valid_days), time(23, 59, 59), BRUSSELS
    )
    return sign_payment_link(
        rt.settings.payment_base_url,
        invoice_id=invoice.id,
        invoice_number=invoice.invoice_number,
        amount_cents=invoice.open_cents if invoice.open_cents is not None else invoice.amount_cents,
        expires_at=expires,
        key=rt.settings.link_key(),
    )


def _creditor_pdf(rt: Runtime, creditor_id: str, invoice_id: int):
    """The creditor's own PDF for this invoice, when its profile sends those and intake kept one."""
    if not rt.profiles[creditor_id].send_own_pdf:
        return None
    path = rt.creditor_pdf_path(creditor_id, invoice_id)
    return path if path.is_file() else None


def document_for(rt: Runtime, invoice: Any, payment_link: str | None = None) -> InvoiceDocument:
    profile = rt.profiles[invoice.creditor_id]
    link = payment_link or invoice.payment_link or payment_link_for(rt, invoice)
    return InvoiceDocument.from_parts(profile, invoice_mapping(invoice), link)


def render_pending(rt: Runtime, *, limit: int | None = None) -> RenderOutcome:
    """Render up to `limit` (default: one chunk) invoices that have no PDF yet."""
    limit = limit or rt.settings.render_chunk_size
    with rt.sessions() as session:
        pending = invoices.invoices_to_render(session, limit=limit)
        by_creditor: dict[str, list[tuple[int, InvoiceDocument, str]]] = {}
        for invoice in pending:
            link = payment_link_for(rt, invoice)
            by_creditor.setdefault(invoice.creditor_id, []).append(
                (invoice.id, document_for(rt, invoice, link), link)
            )
    done: dict[str, int] = {}
    for creditor_id, items in by_creditor.items():
        own = {inv_id: path for inv_id, _, _ in items
               if (path := _creditor_pdf(rt, creditor_id, inv_id)) is not None}
        ours = [item for item in items if item[0] not in own]
        paths = render_batch([doc for _, doc, _ in ours], rt.documents_dir(creditor_id),
                             workers=rt.settings.render_workers)
        paths_by_id = {**own, **{inv_id: path for (inv_id, _, _), path in zip(ours, paths)}}
        with rt.sessions.begin() as session:
            invoices.mark_rendered(
                session, [(inv_id, str(paths_by_id[inv_id]), link) for inv_id, _, link in items]
            )
            events.record_event(session, kind="invoices.rendered", entity="creditor",
                                entity_id=creditor_id, creditor_id=creditor_id, count=len(items))
        done[creditor_id] = len(items)
    return RenderOutcome(sum(done.values()), done)
