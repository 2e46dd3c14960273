"""The audit trail: one append-only row per thing that happened, written in the same transaction
as the change it describes, so the trail can never claim what the ledger did not do (or miss it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from creditflow.ledger.models import Event, utcnow


def record_event(session: Session, *, kind: str, entity: str, entity_id: int | str,
                 creditor_id: str | None = None, **detail: Any) -> Event:
    """Add an event, e.g. kind="file.claimed", entity="file", entity_id=12, name="jan.csv".

    `detail` must be JSON-serialisable; dates, Decimals and paths are stored as text.
    """
    event = Event(occurred_at=utcnow(), creditor_id=creditor_id, entity=entity,
                  entity_id=str(entity_id), kind=kind, detail=detail)
    session.add(event)
    session.flush()
    return event


def events_for(session: Session, entity: str, entity_id: int | str) -> list[Event]:
    """The trail of one file, invoice or delivery, oldest first."""
    return list(session.scalars(
        select(Event).where(Event.entity == entity, Event.entity_id == str(entity_id)).order_by(Event.id)
    ))
