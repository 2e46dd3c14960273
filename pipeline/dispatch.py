"""Dispatch: the outbox. Each rendered invoice gets one initial message, never two.

For every message the idempotency key (creditor / invoice / purpose / channel) is written first,
then the attempt is committed as "sending", and only then is the provider called. A crash after the
call leaves "sending": the next run resolves it with the provider's own means where it has them
(the local outbox and the print spool recognise the key; CM.com reports and SendGrid events carry
it back, so for those an orphaned row first waits `report_grace` for a delivery report before it is
sent again). Transient failures are retried later with backoff (or the provider's Retry-After); a
permanent failure, or too many transient ones, moves on to the next possible channel. No channel
left is recorded as an event and reported to the operator, never skipped in silence.

Each channel has its own small thread pool (providers answer in tens of milliseconds; the GIL is
free meanwhile) and its own token bucket, because each provider has its own rate limit and one
slow provider must not hold the others up.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditflow.channels.base import Channel, PermanentSendError, SendError, SendResult
from creditflow.ledger import events, outbox
from creditflow.ledger.models import Delivery, DeliveryState, Invoice
from creditflow.pipeline import collections
from creditflow.pipeline.channel_choice import (
    bad_contacts,
    contact_failures_for,
    excluded_by_history,
    next_channel,
    record_no_channel,
)
from creditflow.pipeline.render import document_for, invoice_mapping
from creditflow.pipeline.runtime import Runtime
from creditflow.renderers import texts
from creditflow.renderers.messages import Message

INITIAL = collections.INITIAL
MAX_TRANSIENT_ATTEMPTS = 5
# Providers that report back with our key: an orphaned "sending" row waits for their report.
REPORTING_PROVIDERS = frozenset({"sendgrid", "sms-http"})
_STARTABLE = {DeliveryState.PENDING.value, DeliveryState.FAILED_TRANSIENT.value,
              DeliveryState.SENDING.value}


class DispatchLimits(BaseSettings):
    """`CREDITFLOW_DISPATCH_*`, per logical channel; JSON objects in the environment, e.g.
    CREDITFLOW_DISPATCH_RATE_PER_SECOND='{"sms": 20, "email": 50}'. No rate: unlimited."""

    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_DISPATCH_", extra="ignore")

    concurrency: dict[str, int] = Field(
        default_factory=lambda: {"email": 4, "sms": 4, "post": 1, "payment_request": 2})
    rate_per_second: dict[str, float] = Field(default_factory=dict)
    report_grace_seconds: float = Field(
        900.0, ge=0, description="How long an orphaned 'sending' row of a reporting provider "
        "waits for a delivery report before it is sent again.")

    def workers(self, channel: str) -> int:
        return max(1, int(self.concurrency.get(channel, 2)))


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `acquire()` blocks until one is free.

    Tokens are reserved under the lock and slept for outside it, so waiting threads queue up in
    order and the long-run rate holds exactly. `clock` and `sleep` are injectable for tests.
    """

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            wait_for = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait_for > 0:
            self._sleep(wait_for)
        return wait_for


@dataclass
class DispatchOutcome:
    planned: int = 0
    sent: int = 0
    duplicates: int = 0
    retry_later: int = 0
    fell_back: int = 0
    awaiting_report: int = 0
    skipped: int = 0  # reminders no longer due at send time (paid or held since planning)
    no_channel: list[str] = field(default_factory=list)
    by_channel: dict[str, int] = field(default_factory=dict)

    @property
    def progressed(self) -> bool:
        """Did this chunk move any delivery on? If not, another chunk would find the same."""
        return bool(self.sent or self.retry_later or self.fell_back or self.skipped)


def backoff(attempt: int) -> timedelta:
    """Exponential backoff with jitter: ~1, 2, 4, 8… minutes, capped at an hour."""
    base = min(60 * 2 ** max(attempt - 1, 0), 3600)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def plan_initial(rt: Runtime, *, limit: int) -> DispatchOutcome:
    """Create the first delivery row for rendered invoices that have none yet."""
    result = DispatchOutcome()
    available = set(rt.channels())
    with rt.sessions.begin() as session:
        pending = outbox.invoices_without_delivery(session, purpose=INITIAL, limit=limit)
        bad = bad_contacts(session, {invoice.creditor_id for invoice in pending})
        for invoice in pending:
            profile = rt.profiles[invoice.creditor_id]
            debtor = invoice_mapping(invoice)
            ruled_out = [c for c in profile.channels if c not in available]
            ruled_out += excluded_by_history(bad, invoice.creditor_id, debtor)
            channel = next_channel(profile.channels, debtor, tried=ruled_out)
            if channel is None:
                result.no_channel.append(
                    record_no_channel(session, invoice, purpose=INITIAL, ruled_out=ruled_out))
                continue
            outbox.ensure_delivery(session, invoice_id=invoice.id, creditor_id=invoice.creditor_id,
                                   invoice_number=invoice.invoice_number, channel=channel, purpose=INITIAL)
            result.planned += 1
    return result


@dataclass
class _Done:
    """What one delivery attempt came to, reported back to the coordinating thread."""

    channel: str
    kind: str  # sent | retry | fell_back | no_channel | gave_up | skipped
    duplicate: bool = False
    invoice: str = ""
    following: str | None = None  # the channel planned next, after a fall-back


def dispatch_due(rt: Runtime, *, limit: int, now: datetime | None = None,
                 limits: DispatchLimits | None = None,
                 buckets: dict[str, TokenBucket] | None = None) -> DispatchOutcome:
    """Send what is due, each channel through its own pool and rate limit.

    An exception that is not a SendError (a bug, a lost database) stops the run: no new attempt
    starts, the ones in flight finish, and the exception is raised. Rows left "sending" are picked
    up by the next run.
    """
    now = now or datetime.now(UTC)
    limits = limits or DispatchLimits()
    channels = rt.channels()
    buckets = dict(buckets or {})
    for name, rate in limits.rate_per_second.items():
        if rate and name not in buckets:
            buckets[name] = TokenBucket(rate)
    result = DispatchOutcome()
    grace = timedelta(seconds=limits.report_grace_seconds)
    by_channel: dict[str, list[int]] = {}
    with rt.sessions() as session:
        for delivery in outbox.deliveries_due(session, now=now, limit=limit):
            adapter = channels.get(delivery.channel)
            if (delivery.state == DeliveryState.SENDING.value and adapter is not None
                    and getattr(adapter, "name", "") in REPORTING_PROVIDERS
                    and delivery.updated_at > now - grace):
                result.awaiting_report += 1  # its delivery report may still come: not yet
                continue
            by_channel.setdefault(delivery.channel, []).append(delivery.id)
    if not by_channel:
        return result

    stop = threading.Event()
    pools = {name: ThreadPoolExecutor(max_workers=min(limits.workers(name), len(ids)),
                                      thread_name_prefix=f"dispatch-{name}")
             for name, ids in by_channel.items()}
    futures: list[Future[_Done | None]] = []
    try:
        for name, ids in by_channel.items():
            for delivery_id in ids:
                futures.append(pools[name].submit(
                    _deliver_one, rt, channels.get(name), delivery_id, now, buckets.get(name), stop))
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            stop.set()
            for future in futures:
                future.cancel()
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True)
    for future in futures:
        if future.cancelled():
            continue
        if future.exception() is not None:
            raise future.exception()
        _count(result, future.result())
    return result


def _count(result: DispatchOutcome, done: _Done | None) -> None:
    if done is None:
        return
    if done.kind == "sent":
        result.sent += 1
        result.duplicates += int(done.duplicate)
        result.by_channel[done.channel] = result.by_channel.get(done.channel, 0) + 1
    elif done.kind == "retry":
        result.retry_later += 1
    elif done.kind == "fell_back":
        result.fell_back += 1
    elif done.kind == "no_channel":
        result.no_channel.append(done.invoice)
    elif done.kind == "skipped":
        result.skipped += 1


def _deliver_one(rt: Runtime, channel: Channel | None, delivery_id: int, now: datetime,
                 bucket: TokenBucket | None, stop: threading.Event) -> _Done | None:
    if stop.is_set():
        return None
    if bucket is not None:
        bucket.acquire()
    try:
        with rt.sessions.begin() as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery.state not in _STARTABLE:
                return None  # another dispatcher finished it meanwhile
            invoice = session.get(Invoice, delivery.invoice_id)
            if delivery.purpose in collections.REMINDER_PURPOSES:
                why_not = collections.still_to_remind(session, invoice)
                if why_not and delivery.state != DeliveryState.SENDING.value:
                    outbox.mark_skipped(session, delivery, why_not)
                    events.record_event(session, kind="delivery.skipped", entity="delivery",
                                        entity_id=delivery.id, creditor_id=delivery.creditor_id,
                                        channel=delivery.channel, purpose=delivery.purpose, reason=why_not)
                    return _Done(delivery.channel, "skipped")
            if channel is None:
                raise PermanentSendError(f"no adapter is configured for channel {delivery.channel!r}",
                                         code="no-adapter")
            message = _build_message(rt, invoice, delivery, now=now)
            recovering = delivery.state == DeliveryState.SENDING.value
            outbox.begin_attempt(session, delivery)
            events.record_event(session, kind="delivery.attempt", entity="delivery",
                                entity_id=delivery.id, creditor_id=delivery.creditor_id,
                                channel=delivery.channel, provider=channel.name,
                                attempt=delivery.attempt, key=delivery.idempotency_key,
                                recovering=recovering,
                                **({"payment_deadline": message.metadata["payment_deadline"],
                                    "open_cents": message.amount_cents}
                                   if "payment_deadline" in message.metadata else {}))
            channel_name = delivery.channel
        # The attempt is committed: only now may the provider be called.
        receipt = channel.send(message)
    except SendError as exc:
        return _record_failure(rt, delivery_id, exc, now)
    with rt.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        outbox.mark_sent(session, delivery, receipt.provider_id)
        detail = _detail(receipt)
        events.record_event(session, kind="delivery.sent", entity="delivery", entity_id=delivery.id,
                            creditor_id=delivery.creditor_id, channel=delivery.channel,
                            provider=channel.name, provider_id=receipt.provider_id,
                            duplicate=receipt.duplicate, detail=detail)
        if channel_name == "payment_request" and isinstance(detail, dict):
            # Kept on the invoice's trail: the link and QR code the debtor pays with.
            events.record_event(session, kind="payment_request.created", entity="invoice",
                                entity_id=delivery.invoice_id, creditor_id=delivery.creditor_id,
                                delivery_id=delivery.id, payment_id=receipt.provider_id,
                                deeplink=detail.get("deeplink"), qrcode=detail.get("qrcode"),
                                expires_at=detail.get("expiresAt"))
    return _Done(channel_name, "sent", duplicate=receipt.duplicate)


def _detail(receipt: SendResult) -> object:
    if not receipt.detail:
        return None
    try:
        return json.loads(receipt.detail)
    except ValueError:
        return receipt.detail


def _build_message(rt: Runtime, invoice: Invoice, delivery: Delivery,
                   now: datetime | None = None) -> Message:
    profile = rt.profiles[invoice.creditor_id]
    key = delivery.idempotency_key
    if delivery.purpose in collections.REMINDER_PURPOSES:
        return _build_reminder(rt, invoice, delivery, now or datetime.now(UTC))
    doc = document_for(rt, invoice)
    if delivery.channel == "email":
        return texts.build_email(doc, idempotency_key=key, to_email=invoice.debtor_email,
                                 pdf_bytes=Path(invoice.pdf_path).read_bytes(), sender_email=profile.email_from)
    if delivery.channel == "sms":
        return texts.build_sms(doc, idempotency_key=key, to_phone=invoice.debtor_phone,
                               sender_email=profile.email_from)
    if delivery.channel == "post":
        return texts.build_post(doc, idempotency_key=key, pdf_bytes=Path(invoice.pdf_path).read_bytes(),
                                sender_email=profile.email_from)
    if delivery.channel == "payment_request":
        return Message(
            idempotency_key=key, channel="payment_request", creditor_id=invoice.creditor_id,
            invoice_number=invoice.invoice_number, language=doc.language,
            sender_name=profile.legal_name, sender_email=profile.email_from,
            subject=f"{profile.legal_name} {invoice.invoice_number}", to_phone=invoice.debtor_phone,
            to_name=invoice.debtor_name, amount_cents=invoice.open_cents, currency=invoice.currency,
            reference=invoice.structured_reference, payment_link=doc.payment_link,
        )
    raise PermanentSendError(f"channel {delivery.channel!r} has no message builder yet",
                             code="no-builder")


def _build_reminder(rt: Runtime, invoice: Invoice, delivery: Delivery, now: datetime) -> Message:
    """The reminder as of the day it is sent: open balance now, deadline counted from today."""
    profile = rt.profiles[invoice.creditor_id]
    sent_on = collections.business_today(now)
    deadline = collections.payment_deadline(sent_on, delivery.channel)
    doc = document_for(rt, invoice, collections.reminder_link(rt, invoice, deadline))
    facts = texts.ReminderFacts(purpose=delivery.purpose, open_cents=invoice.open_cents,
                                deadline=deadline, sent_on=sent_on)
    if delivery.channel not in ("email", "sms", "post"):
        raise PermanentSendError(f"channel {delivery.channel!r} has no reminder text yet", code="no-builder")
    pdf = Path(invoice.pdf_path).read_bytes() if delivery.channel == "email" and invoice.pdf_path else None
    return texts.build_reminder(doc, facts, channel=delivery.channel, idempotency_key=delivery.idempotency_key,
                                sender_email=profile.email_from, to_email=invoice.debtor_email,
                                to_phone=invoice.debtor_phone, invoice_pdf=pdf)


def _record_failure(rt: Runtime, delivery_id: int, exc: SendError, now: datetime) -> _Done:
    code = exc.code or ("transient" if exc.transient else "rejected")
    with rt.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        give_up = not exc.transient or delivery.attempt >= MAX_TRANSIENT_ATTEMPTS
        retry_at = None
        if not give_up:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after is not None \
                else backoff(delivery.attempt)
            retry_at = now + delay
        # "[code] reason": the code lets channel choice tell a dead address from a config problem.
        outbox.mark_failed(session, delivery, f"[{code}] {exc}", transient=not give_up,
                           next_attempt_at=retry_at)
        events.record_event(session, kind="delivery.failed", entity="delivery", entity_id=delivery.id,
                            creditor_id=delivery.creditor_id, channel=delivery.channel,
                            transient=not give_up, code=code, error=str(exc),
                            retry_at=retry_at.isoformat() if retry_at else None)
        if not give_up:
            return _Done(delivery.channel, "retry")
        return _fall_back(rt, session, delivery)


def _fall_back(rt: Runtime, session, delivery: Delivery) -> _Done:
    """After a final failure (or a bounce): plan the next channel, or tell the operator."""
    invoice = session.get(Invoice, delivery.invoice_id)
    tried = [d.channel for d in outbox.deliveries_for_invoice(session, invoice.id)
             if d.purpose == delivery.purpose]
    profile = rt.profiles[invoice.creditor_id]
    available = set(rt.channels())
    ruled_out = [c for c in profile.channels if c not in available]
    ruled_out += contact_failures_for(session, invoice)
    following = next_channel(profile.channels, invoice_mapping(invoice), tried=tried + ruled_out)
    if following is None:
        lost = record_no_channel(session, invoice, purpose=delivery.purpose, tried=tried,
                                 ruled_out=ruled_out)
        return _Done(delivery.channel, "no_channel", invoice=lost)
    outbox.ensure_delivery(session, invoice_id=invoice.id, creditor_id=invoice.creditor_id,
                           invoice_number=invoice.invoice_number, channel=following,
                           purpose=delivery.purpose)
    events.record_event(session, kind="delivery.fallback", entity="invoice", entity_id=invoice.id,
                        creditor_id=invoice.creditor_id, failed=delivery.channel, next=following)
    return _Done(delivery.channel, "fell_back", following=following)


def fall_back_after_bounce(rt: Runtime, session, delivery: Delivery) -> str | None:
    """For delivery feedback: the next channel planned after a bounce (None: operator told)."""
    return _fall_back(rt, session, delivery).following


def flush_post(rt: Runtime, day: date) -> list:
    """Seal and upload `day`'s print batches when the post channel is a print shop; each upload is
    an event on the creditor's trail. The local post outbox has no batches: nothing to do."""
    channel = rt.channels().get("post")
    flush = getattr(channel, "flush_print_batch", None)
    if flush is None:
        return []
    batches = flush(day)
    with rt.sessions.begin() as session:
        for batch in batches:
            if not batch.uploaded:
                continue  # sealed and uploaded by an earlier run: already on the trail
            events.record_event(session, kind="print.batch.uploaded", entity="creditor",
                                entity_id=batch.creditor_id, creditor_id=batch.creditor_id,
                                day=day.isoformat(), letters=batch.letters, pages=batch.pages,
                                print_file=batch.print_file, manifest=batch.manifest_file,
                                uploaded=batch.uploaded, already_there=batch.already_there)
    return batches
