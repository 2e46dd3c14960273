"""Which channels can reach a debtor, in the order we try them.

The creditor's profile gives the order of preference; a channel is only possible when the debtor
row gives what it needs (an e-mail address, a mobile number, a full postal address), when a
provider serves it in this installation, and when the debtor's history does not rule it out: an
address that bounced, or a number the provider refused as invalid, is not tried again for the
creditor's later invoices (it would only delay the letter that does arrive). History is kept per
creditor: one creditor's bounce is not shared with another (their debtors' data stay apart).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from creditflow.ledger import events, outbox
from creditflow.ledger.models import Delivery, DeliveryState, Invoice

NEEDS: dict[str, tuple[str, ...]] = {
    "email": ("debtor_email",),
    "sms": ("debtor_phone",),
    "post": ("debtor_street", "debtor_postcode", "debtor_city"),
    "payment_request": ("debtor_phone",),
}

# Which invoice field holds the contact a channel uses; a failure of that contact is remembered.
CONTACT_FIELD: dict[str, str] = {"email": "debtor_email", "sms": "debtor_phone"}

# Error codes (the "[code]" prefix dispatch writes into deliveries.error) that condemn the
# contact itself, not the message or our configuration.
CONTACT_ERROR_CODES = ("invalid-address", "invalid-phone")

BadContacts = set[tuple[str, str, str]]  # (creditor_id, channel, normalised contact)


def possible_channels(preference: Iterable[str], debtor: Mapping[str, Any],
                      exclude: Iterable[str] = ()) -> list[str]:
    excluded = set(exclude)
    return [
        channel for channel in preference
        if channel not in excluded and all(debtor.get(f) for f in NEEDS.get(channel, ("_never_",)))
    ]


def next_channel(preference: Iterable[str], debtor: Mapping[str, Any], tried: Iterable[str]) -> str | None:
    options = possible_channels(preference, debtor, exclude=tried)
    return options[0] if options else None


def _normalised(value: str | None) -> str | None:
    return value.strip().lower() if value else None


def bad_contacts(session: Session, creditor_ids: Iterable[str]) -> BadContacts:
    """Every (creditor, channel, contact) that bounced or was refused as invalid, in one query.

    Read once per planning batch: the failures are few, the invoices many.
    """
    creditor_ids = list(creditor_ids)
    if not creditor_ids:
        return set()
    contact_failure = or_(
        Delivery.state == DeliveryState.BOUNCED.value,
        *[(Delivery.state == DeliveryState.FAILED_PERMANENT.value)
          & Delivery.error.like(f"[{code}]%") for code in CONTACT_ERROR_CODES],
    )
    rows = session.execute(
        select(Delivery.creditor_id, Delivery.channel, Invoice.debtor_email, Invoice.debtor_phone)
        .join(Invoice, Invoice.id == Delivery.invoice_id)
        .where(Delivery.creditor_id.in_(creditor_ids), Delivery.channel.in_(list(CONTACT_FIELD)),
               contact_failure)
    )
    bad: BadContacts = set()
    for creditor_id, channel, email, phone in rows:
        contact = _normalised(email if CONTACT_FIELD[channel] == "debtor_email" else phone)
        if contact:
            bad.add((creditor_id, channel, contact))
    return bad


def excluded_by_history(bad: BadContacts, creditor_id: str, debtor: Mapping[str, Any]) -> set[str]:
    """The channels whose contact for this debtor is known not to work."""
    return {
        channel for channel, field in CONTACT_FIELD.items()
        if (creditor_id, channel, _normalised(debtor.get(field))) in bad
    }


def contact_failures_for(session: Session, invoice: Invoice) -> set[str]:
    """excluded_by_history for one invoice (one indexed query on the creditor's failures)."""
    bad = bad_contacts(session, [invoice.creditor_id])
    return excluded_by_history(bad, invoice.creditor_id, {
        "debtor_email": invoice.debtor_email, "debtor_phone": invoice.debtor_phone})


def record_no_channel(session: Session, invoice: Invoice, *, purpose: str, tried: Iterable[str] = (),
                      ruled_out: Iterable[str] = ()) -> str:
    """Record, as a failed delivery the operator sees, that no channel can reach this debtor;
    returns "creditor/invoice" for the run's summary."""
    marker = outbox.ensure_delivery(session, invoice_id=invoice.id, creditor_id=invoice.creditor_id,
                                    invoice_number=invoice.invoice_number, channel="none", purpose=purpose)
    tried = list(tried)
    reason = "no channel can reach this debtor"
    if tried:
        reason += f" (tried: {', '.join(tried)})"
    ruled = sorted(set(ruled_out) - set(tried))
    if ruled:
        reason += f" (unavailable or known not to work: {', '.join(ruled)})"
    outbox.mark_failed(session, marker, reason, transient=False)
    events.record_event(session, kind="delivery.no_channel", entity="invoice", entity_id=invoice.id,
                        creditor_id=invoice.creditor_id, tried=tried, ruled_out=ruled)
    return f"{invoice.creditor_id}/{invoice.invoice_number}"
