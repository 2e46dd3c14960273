"""The outbox: every message is a `deliveries` row, keyed and committed before it is sent.

The way through: `ensure_delivery` (pending) -> `begin_attempt` (sending, COMMIT) -> provider call ->
`mark_sent` or `mark_failed`. A crash during the provider call leaves the row in "sending"; after
`sending_timeout` (default: at once) it is due again and is retried with the same idempotency key,
which providers (and the local outbox folder) use to drop the duplicate. Callers record audit events themselves, in the
same transaction as the state change.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from creditflow.ledger.db import dialect_insert
from creditflow.ledger.models import (
    Delivery,
    DeliveryState,
    InvalidTransition,
    Invoice,
    InvoiceState,
    utcnow,
)

# How long a "sending" row waits before it counts as left by a crash. 0: every "sending" row is due,
# right for the single scheduled dispatcher we run (the row can only be a dead run's). Parallel
# dispatchers must pass a timeout longer than a provider call, or a live attempt is repeated (the
# provider's idempotency key then drops the duplicate, where the provider has one).
DEFAULT_SENDING_TIMEOUT = timedelta(0)
# Retry delays after a transient failure: 5 min, 10, 20 ... capped at 6 hours.
_FIRST_RETRY = timedelta(minutes=5)
_LAST_RETRY = timedelta(hours=6)
_MAX_FILENAME = 200

_STARTABLE = frozenset({DeliveryState.PENDING, DeliveryState.FAILED_TRANSIENT, DeliveryState.SENDING})
_FINAL_RECEIPTS = frozenset({DeliveryState.DELIVERED, DeliveryState.BOUNCED})


def delivery_key(creditor_id: str, invoice_number: str, purpose: str, channel: str) -> str:
    """`creditor/invoice/purpose/channel`, each part percent-encoded so a `/` in an invoice number
    cannot make two different deliveries share a key."""
    return "/".join(quote(str(part), safe="") for part in (creditor_id, invoice_number, purpose, channel))


def key_filename(key: str) -> str:
    """The key as one safe file name (no `/`, no `..`), stable; hashed when it would be too long."""
    name = quote(key, safe="")
    if len(name) > _MAX_FILENAME:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        name = f"{name[:_MAX_FILENAME - 17]}~{digest}"
    return name


def ensure_delivery(session: Session, *, invoice_id: int, creditor_id: str, invoice_number: str,
                    channel: str, purpose: str) -> Delivery:
    """The delivery for this (invoice, purpose, channel), created pending if it is not there yet."""
    key = delivery_key(creditor_id, invoice_number, purpose, channel)
    now = utcnow()
    insert = dialect_insert(session)
    session.execute(
        insert(Delivery)
        .values(invoice_id=invoice_id, creditor_id=creditor_id, channel=channel, purpose=purpose,
                idempotency_key=key, attempt=0, state=DeliveryState.PENDING.value,
                created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[Delivery.idempotency_key])
    )
    return session.scalars(select(Delivery).where(Delivery.idempotency_key == key)).one()


def _set_state(delivery: Delivery, state: DeliveryState) -> None:
    delivery.state = state.value
    delivery.updated_at = utcnow()


def begin_attempt(session: Session, delivery: Delivery) -> Delivery:
    """Mark the delivery as being sent; commit this before calling the provider."""
    if delivery.state not in _STARTABLE:
        raise InvalidTransition(
            f"delivery {delivery.idempotency_key} is {delivery.state}; it cannot be sent again"
        )
    _set_state(delivery, DeliveryState.SENDING)
    delivery.attempt += 1
    delivery.error = None
    delivery.next_attempt_at = None
    session.flush()
    return delivery


def mark_sent(session: Session, delivery: Delivery, provider_id: str) -> Delivery:
    _set_state(delivery, DeliveryState.SENT)
    delivery.provider_id = provider_id
    delivery.sent_at = delivery.updated_at
    delivery.error = None
    delivery.next_attempt_at = None
    session.flush()
    return delivery


def retry_delay(attempt: int) -> timedelta:
    """Exponential back-off after the `attempt`-th failed try."""
    return min(_FIRST_RETRY * 2 ** max(attempt - 1, 0), _LAST_RETRY)


def mark_failed(session: Session, delivery: Delivery, error: str, *, transient: bool,
                next_attempt_at: datetime | None = None) -> Delivery:
    """Record a failed try: transient ones come back at `next_attempt_at` (default: back-off);
    permanent ones stop here and the caller moves on to the next channel."""
    if transient:
        _set_state(delivery, DeliveryState.FAILED_TRANSIENT)
        delivery.next_attempt_at = next_attempt_at or delivery.updated_at + retry_delay(delivery.attempt)
    else:
        _set_state(delivery, DeliveryState.FAILED_PERMANENT)
        delivery.next_attempt_at = None
    delivery.error = error
    session.flush()
    return delivery


def mark_skipped(session: Session, delivery: Delivery, reason: str) -> Delivery:
    """Not to be sent at all (no address for this channel, invoice paid meanwhile)."""
    if delivery.state not in (DeliveryState.PENDING, DeliveryState.FAILED_TRANSIENT):
        raise InvalidTransition(f"delivery {delivery.idempotency_key} is {delivery.state}; cannot skip")
    _set_state(delivery, DeliveryState.SKIPPED)
    delivery.error = reason
    delivery.next_attempt_at = None
    session.flush()
    return delivery


def mark_receipt(session: Session, delivery: Delivery, state: str, *, error: str | None = None) -> Delivery:
    """A provider's later word on a sent message: delivered, or bounced."""
    receipt = DeliveryState(state)
    if receipt not in _FINAL_RECEIPTS:
        raise InvalidTransition(f"a receipt is delivered or bounced, not {state}")
    _set_state(delivery, receipt)
    delivery.error = error
    session.flush()
    return delivery


def deliveries_due(session: Session, *, now: datetime, limit: int = 1000, channel: str | None = None,
                   creditor_id: str | None = None,
                   sending_timeout: timedelta = DEFAULT_SENDING_TIMEOUT) -> list[Delivery]:
    """What to send now: pending rows, transient failures whose time has come, and "sending" rows
    left behind by a crashed worker. On PostgreSQL the rows are locked (SKIP LOCKED) until the
    caller commits, so parallel dispatchers take disjoint batches."""
    due = or_(
        Delivery.state == DeliveryState.PENDING.value,
        and_(Delivery.state == DeliveryState.FAILED_TRANSIENT.value, Delivery.next_attempt_at <= now),
        and_(Delivery.state == DeliveryState.SENDING.value, Delivery.updated_at <= now - sending_timeout),
    )
    query = select(Delivery).where(due)
    if channel is not None:
        query = query.where(Delivery.channel == channel)
    if creditor_id is not None:
        query = query.where(Delivery.creditor_id == creditor_id)
    query = query.order_by(Delivery.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def deliveries_for_invoice(session: Session, invoice_id: int) -> list[Delivery]:
    return list(session.scalars(
        select(Delivery).where(Delivery.invoice_id == invoice_id).order_by(Delivery.id)
    ))


def invoices_without_delivery(session: Session, *, purpose: str, limit: int = 1000,
                              creditor_id: str | None = None) -> list[Invoice]:
    """Rendered, not cancelled invoices with no delivery for `purpose` yet, oldest first."""
    has_delivery = exists().where(Delivery.invoice_id == Invoice.id, Delivery.purpose == purpose)
    query = select(Invoice).where(
        Invoice.rendered_at.is_not(None),
        Invoice.state != InvoiceState.CANCELLED.value,
        ~has_delivery,
    )
    if creditor_id is not None:
        query = query.where(Invoice.creditor_id == creditor_id)
    return list(session.scalars(query.order_by(Invoice.id).limit(limit)))
