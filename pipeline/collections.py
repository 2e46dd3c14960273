"""Collections, level 1: the first (free) reminder for an overdue invoice, once, and never when paid.

An invoice is reminded when, on the Brussels business date `today`:

* it is an invoice (not a credit note), open or partially paid, with something still open;
* its due date is at least the creditor's `reminder_after_days` (default 7) calendar days past;
* its initial message went out (an "initial" delivery that is sent or delivered): a debtor is not
  reminded of an invoice nobody told them about (pain 3);
* it is not on hold (see below);
* it has no "reminder-1" delivery yet, whatever its state. The delivery's idempotency key
  (creditor/invoice/reminder-1/channel) is written before anything is sent, so a second run the
  same day, an overlapping run, or tomorrow's run plans nothing new (pain 1).

The nightly reconciliation must have booked the night's payments BEFORE this runs (pain 2): the
daily-collections deployment is scheduled after it (docs/collections.md). Planning is not the last
guard: at send time dispatch asks `still_to_remind` again and skips a reminder whose invoice was
paid, cancelled or put on hold since it was planned.

Holds are events, not a column: "invoice.hold" and "invoice.hold_released" on the invoice's trail,
with who and why. The latest of the two decides. No schema change, and the audit log the law
wants (who stopped collection, when, why) is the hold itself.

The channel is chosen as for the initial message (pipeline.channel_choice: the creditor's order of
preference, what the debtor row allows, contacts known to bounce left out). The text is rendered at
send time (pipeline.dispatch) with the open balance of that moment and a new payment deadline
(`payment_deadline`) of at least 14 days, as Book XIX asks of a first reminder.

One day's run, planning then sending chunk by chunk, is pipeline.collections_day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from creditflow.config.settings import BRUSSELS
from creditflow.ledger import events, outbox
from creditflow.ledger.invoices import find_invoices
from creditflow.ledger.models import Delivery, DeliveryState, Event, Invoice, InvoiceState
from creditflow.pipeline.channel_choice import (
    bad_contacts, excluded_by_history, next_channel, record_no_channel,
)
from creditflow.pipeline.render import invoice_mapping
from creditflow.pipeline.runtime import Runtime
from creditflow.renderers.links import sign_payment_link

INITIAL = "initial"
REMINDER_1 = "reminder-1"
REMINDER_PURPOSES = frozenset({REMINDER_1})
HOLD = "invoice.hold"
HOLD_RELEASED = "invoice.hold_released"
WAITING_DAYS = 14
"""Book XIX: costs only after 14 calendar days, counted from the day after an electronic reminder
or from the third working day after a postal one."""
POSTAL_WORKING_DAYS = 3

_REMINDABLE_STATES = (InvoiceState.OPEN.value, InvoiceState.PARTIALLY_PAID.value)
_INITIAL_WENT_OUT = (DeliveryState.SENT.value, DeliveryState.DELIVERED.value)


@dataclass
class ReminderPlan:
    planned: int = 0
    held: list[str] = field(default_factory=list)  # creditor/invoice kept back by a hold
    no_channel: list[str] = field(default_factory=list)
    by_channel: dict[str, int] = field(default_factory=dict)


def business_today(now: datetime | None = None) -> date:
    return (now or datetime.now(BRUSSELS)).astimezone(BRUSSELS).date()


def payment_deadline(sent_on: date, channel: str) -> date:
    """The last day the debtor can pay without costs; at least 14 days after `sent_on`.

    Electronic: the 14 days start the day after sending, so the deadline is sent_on + 14. Post: they
    start on the third working day after posting; weekends are skipped and one day is added as a
    margin for a public holiday (no Belgian holiday calendar is kept here), so never too early.
    """
    if channel != "post":
        return sent_on + timedelta(days=WAITING_DAYS)
    day, working = sent_on, 0
    while working < POSTAL_WORKING_DAYS:
        day += timedelta(days=1)
        if day.weekday() < 5:
            working += 1
    return day + timedelta(days=WAITING_DAYS)


def reminder_link(rt: Runtime, invoice: Invoice, deadline: date) -> str:
    """A payment link for the open balance, valid `link_valid_days` past the new deadline (the
    invoice's own link asks for the full amount and may expire sooner)."""
    expires = datetime.combine(deadline + timedelta(days=rt.settings.link_valid_days),
                               time(23, 59, 59), BRUSSELS)
    return sign_payment_link(rt.settings.payment_base_url, invoice_id=invoice.id,
                             invoice_number=invoice.invoice_number, amount_cents=invoice.open_cents,
                             expires_at=expires, key=rt.settings.link_key())


# -- holds ----------------------------------------------------------------------------------------

def held_invoice_ids(session: Session, invoice_ids: Iterable[int]) -> set[int]:
    """Which of these invoices are on hold now: their latest hold event is a hold, not a release."""
    ids = [str(i) for i in invoice_ids]
    if not ids:
        return set()
    latest: dict[str, str] = {}
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(Event.entity_id, Event.kind)
            .where(Event.entity == "invoice", Event.entity_id.in_(ids[start:start + 1000]),
                   Event.kind.in_((HOLD, HOLD_RELEASED)))
            .order_by(Event.id)
        )
        for entity_id, kind in rows:
            latest[entity_id] = kind
    return {int(entity_id) for entity_id, kind in latest.items() if kind == HOLD}


def set_hold(rt: Runtime, invoice_number: str, *, reason: str, creditor_id: str | None = None,
             release: bool = False, by: str | None = None) -> tuple[Invoice, bool]:
    """Put an invoice on hold (or release it); returns (invoice, changed). Holding a held invoice
    changes nothing. LookupError when no invoice or several (name the creditor) match."""
    if not reason.strip():
        raise ValueError("a hold needs a reason")
    with rt.sessions.begin() as session:
        found = find_invoices(session, invoice_number, creditor_id=creditor_id)
        if not found:
            raise LookupError(f"no invoice {invoice_number}" + (f" of {creditor_id}" if creditor_id else ""))
        if len(found) > 1:
            raise LookupError(f"invoice {invoice_number} exists for several creditors "
                              f"({', '.join(i.creditor_id for i in found)}): name one with --creditor")
        invoice = found[0]
        held = invoice.id in held_invoice_ids(session, [invoice.id])
        if held != release:
            return invoice, False
        events.record_event(session, kind=HOLD_RELEASED if release else HOLD, entity="invoice",
                            entity_id=invoice.id, creditor_id=invoice.creditor_id,
                            reason=reason.strip(), by=by)
        return invoice, True


# -- planning -------------------------------------------------------------------------------------

def _candidates(session: Session, creditor_id: str, cutoff: date, limit: int) -> list[Invoice]:
    initial_out = exists().where(Delivery.invoice_id == Invoice.id, Delivery.purpose == INITIAL,
                                 Delivery.state.in_(_INITIAL_WENT_OUT))
    reminded = exists().where(Delivery.invoice_id == Invoice.id, Delivery.purpose == REMINDER_1)
    query = select(Invoice).where(
        Invoice.creditor_id == creditor_id,
        Invoice.document_type == "invoice",
        Invoice.state.in_(_REMINDABLE_STATES),
        Invoice.open_cents > 0,
        Invoice.due_date <= cutoff,
        initial_out,
        ~reminded,
    )
    return list(session.scalars(query.order_by(Invoice.id).limit(limit)))


def plan_reminders(rt: Runtime, *, today: date, limit: int = 10_000) -> ReminderPlan:
    """Create the "reminder-1" delivery (pending) of every invoice that is due for one `today`;
    dispatch.dispatch_due sends them. Held invoices are counted, not planned."""
    result = ReminderPlan()
    available = set(rt.channels())
    with rt.sessions.begin() as session:
        for creditor_id, profile in sorted(rt.profiles.items()):
            cutoff = today - timedelta(days=profile.reminder_after_days)
            candidates = _candidates(session, creditor_id, cutoff, limit)
            if not candidates:
                continue
            held = held_invoice_ids(session, [i.id for i in candidates])
            bad = bad_contacts(session, [creditor_id])
            for invoice in candidates:
                name = f"{creditor_id}/{invoice.invoice_number}"
                if invoice.id in held:
                    result.held.append(name)
                    continue
                debtor = invoice_mapping(invoice)
                ruled_out = [c for c in profile.channels if c not in available]
                ruled_out += excluded_by_history(bad, creditor_id, debtor)
                channel = next_channel(profile.channels, debtor, tried=ruled_out)
                if channel is None:
                    result.no_channel.append(
                        record_no_channel(session, invoice, purpose=REMINDER_1, ruled_out=ruled_out))
                    continue
                outbox.ensure_delivery(session, invoice_id=invoice.id, creditor_id=creditor_id,
                                       invoice_number=invoice.invoice_number, channel=channel,
                                       purpose=REMINDER_1)
                events.record_event(session, kind="reminder.planned", entity="invoice", entity_id=invoice.id,
                                    creditor_id=creditor_id, purpose=REMINDER_1, channel=channel,
                                    open_cents=invoice.open_cents, due_date=invoice.due_date.isoformat(),
                                    business_date=today.isoformat())
                result.planned += 1
                result.by_channel[channel] = result.by_channel.get(channel, 0) + 1
    return result


def still_to_remind(session: Session, invoice: Invoice) -> str | None:
    """None if the reminder may still go out; else why not (paid, cancelled, held since planning)."""
    if invoice.state not in _REMINDABLE_STATES or invoice.open_cents <= 0:
        return f"invoice is {invoice.state}"
    if invoice.id in held_invoice_ids(session, [invoice.id]):
        return "invoice is on hold"
    return None


# -- CLI ------------------------------------------------------------------------------------------

def add_cli(subparsers):
    """`creditflow hold INVOICE --reason TEXT [--creditor ID] [--release]`."""
    parser = subparsers.add_parser("hold", help="stop (or, with --release, resume) reminders for an invoice")
    parser.add_argument("invoice", metavar="INVOICE", help="invoice number")
    parser.add_argument("--reason", required=True, help="why: dispute, promise to pay, payment plan ...")
    parser.add_argument("--creditor", help="the creditor, when several have this invoice number")
    parser.add_argument("--release", action="store_true", help="lift the hold")
    parser.set_defaults(func=cmd_hold)
    return parser


def cmd_hold(args, settings) -> int:
    import getpass

    from creditflow.pipeline.runtime import open_runtime

    rt = open_runtime(settings)
    try:
        invoice, changed = set_hold(rt, args.invoice, reason=args.reason, creditor_id=args.creditor,
                                    release=args.release, by=getpass.getuser())
    except LookupError as exc:
        print(f"creditflow hold: {exc}")
        return 1
    finally:
        rt.close()
    what = "released" if args.release else "on hold"
    print(f"{invoice.creditor_id}/{invoice.invoice_number}: "
          f"{what}" + ("" if changed else f" already ({'not held' if args.release else 'held'})"))
    return 0
