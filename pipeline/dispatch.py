"""Dispatch: the outbox. Each rendered invoice gets one initial message, never two.

For every message the idempotency key (creditor / invoice / purpose / channel) is written first,
then the attempt is committed as "sending", and only then is the provider called. A crash after the
call leaves "sending": the next run sends again with the same key, and the adapter (or provider)
recognises it. Transient failures are retried later with backoff; a permanent failure, or too many
transient ones, moves on to the next possible channel. No channel left is recorded as an event and
reported to the operator, never skipped in silence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from creditflow.channels.base import PermanentSendError, SendError
from creditflow.ledger import events, outbox
from creditflow.ledger.models import Delivery, Invoice
from creditflow.pipeline.channel_choice import next_channel
from creditflow.pipeline.render import document_for, invoice_mapping
from creditflow.pipeline.runtime import Runtime
from creditflow.renderers import texts

INITIAL = "initial"
MAX_TRANSIENT_ATTEMPTS = 5


@dataclass
class DispatchOutcome:
    planned: int = 0
    sent: int = 0
    duplicates: int = 0
    retry_later: int = 0
    fell_back: int = 0
    no_channel: list[str] = field(default_factory=list)
    by_channel: dict[str, int] = field(default_factory=dict)


def backoff(attempt: int) -> timedelta:
    """Exponential backoff with jitter: ~1, 2, 4, 8… minutes, capped at an hour."""
    base = min(60 * 2 ** max(attempt - 1, 0), 3600)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def plan_initial(rt: Runtime, *, limit: int) -> DispatchOutcome:
    """Create the first delivery row for rendered invoices that have none yet."""
    result = DispatchOutcome()
    with rt.sessions.begin() as session:
        for invoice in outbox.invoices_without_delivery(session, purpose=INITIAL, limit=limit):
            profile = rt.profiles[invoice.creditor_id]
            channel = next_channel(profile.channels, invoice_mapping(invoice), tried=())
            if channel is None:
                _no_channel(session, invoice, result, tried=[])
                continue
            outbox.ensure_delivery(session, invoice_id=invoice.id, creditor_id=invoice.creditor_id,
                                   invoice_number=invoice.invoice_number, channel=channel, purpose=INITIAL)
            result.planned += 1
    return result


def dispatch_due(rt: Runtime, *, limit: int, now: datetime | None = None) -> DispatchOutcome:
    now = now or datetime.now(UTC)
    result = DispatchOutcome()
    channels = rt.channels()
    with rt.sessions() as session:
        due_ids = [d.id for d in outbox.deliveries_due(session, now=now, limit=limit)]
    for delivery_id in due_ids:
        try:
            with rt.sessions.begin() as session:
                delivery = session.get(Delivery, delivery_id)
                channel = channels.get(delivery.channel)
                if channel is None:
                    raise PermanentSendError(f"no adapter is configured for channel {delivery.channel!r}")
                message = _build_message(rt, session.get(Invoice, delivery.invoice_id), delivery)
                outbox.begin_attempt(session, delivery)
                events.record_event(session, kind="delivery.attempt", entity="delivery",
                                    entity_id=delivery.id, creditor_id=delivery.creditor_id,
                                    channel=delivery.channel, attempt=delivery.attempt,
                                    key=delivery.idempotency_key)
            # The attempt is committed: only now may the provider be called.
            receipt = channel.send(message)
        except SendError as exc:
            _record_failure(rt, delivery_id, exc, now, result)
            continue
        with rt.sessions.begin() as session:
            delivery = session.get(Delivery, delivery_id)
            outbox.mark_sent(session, delivery, receipt.provider_id)
            events.record_event(session, kind="delivery.sent", entity="delivery", entity_id=delivery.id,
                                creditor_id=delivery.creditor_id, channel=delivery.channel,
                                provider_id=receipt.provider_id, duplicate=receipt.duplicate)
        result.sent += 1
        result.duplicates += int(receipt.duplicate)
        result.by_channel[delivery.channel] = result.by_channel.get(delivery.channel, 0) + 1
    return result


def _build_message(rt: Runtime, invoice, delivery):
    doc = document_for(rt, invoice)
    profile = rt.profiles[invoice.creditor_id]
    key = delivery.idempotency_key
    if delivery.channel == "email":
        return texts.build_email(doc, idempotency_key=key, to_email=invoice.debtor_email,
                                 pdf_bytes=Path(invoice.pdf_path).read_bytes(), sender_email=profile.email_from)
    if delivery.channel == "sms":
        return texts.build_sms(doc, idempotency_key=key, to_phone=invoice.debtor_phone,
                               sender_email=profile.email_from)
    if delivery.channel == "post":
        return texts.build_post(doc, idempotency_key=key, pdf_bytes=Path(invoice.pdf_path).read_bytes(),
                                sender_email=profile.email_from)
    raise PermanentSendError(f"channel {delivery.channel!r} has no message builder yet")


def _record_failure(rt: Runtime, delivery_id: int, exc: SendError, now: datetime, result: DispatchOutcome) -> None:
    with rt.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        give_up = not exc.transient or delivery.attempt >= MAX_TRANSIENT_ATTEMPTS
        retry_at = None
        if not give_up:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after else backoff(delivery.attempt)
            retry_at = now + delay
        outbox.mark_failed(session, delivery, str(exc), transient=not give_up, next_attempt_at=retry_at)
        events.record_event(session, kind="delivery.failed", entity="delivery", entity_id=delivery.id,
                            creditor_id=delivery.creditor_id, channel=delivery.channel,
                            transient=not give_up, error=str(exc))
        if not give_up:
            result.retry_later += 1
            return
        invoice = session.get(Invoice, delivery.invoice_id)
        tried = [d.channel for d in outbox.deliveries_for_invoice(session, invoice.id) if d.purpose == delivery.purpose]
        profile = rt.profiles[invoice.creditor_id]
        following = next_channel(profile.channels, invoice_mapping(invoice), tried=tried)
        if following is None:
            _no_channel(session, invoice, result, tried=tried)
            return
        outbox.ensure_delivery(session, invoice_id=invoice.id, creditor_id=invoice.creditor_id,
                               invoice_number=invoice.invoice_number, channel=following, purpose=delivery.purpose)
        result.fell_back += 1


def _no_channel(session, invoice, result: DispatchOutcome, *, tried: list[str]) -> None:
    """Record, as a failed delivery the operator sees, that no channel can reach this debtor."""
    marker = outbox.ensure_delivery(session, invoice_id=invoice.id, creditor_id=invoice.creditor_id,
                                    invoice_number=invoice.invoice_number, channel="none", purpose=INITIAL)
    outbox.mark_failed(session, marker, "no channel can reach this debtor"
                       + (f" (tried: {', '.join(tried)})" if tried else ""), transient=False)
    events.record_event(session, kind="delivery.no_channel", entity="invoice", entity_id=invoice.id,
                        creditor_id=invoice.creditor_id, tried=tried)
    result.no_channel.append(f"{invoice.creditor_id}/{invoice.invoice_number}")
