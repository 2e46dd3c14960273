"""The ledger's tables as typed SQLAlchemy models; the hand-written migration must match them.

States are plain strings guarded by CHECK constraints (not database ENUM types) so that adding a
state later is a one-line constraint change on SQLite and PostgreSQL alike. Every constraint and
index has an explicit name (naming convention below) so that migrations can address it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class FileState(StrEnum):
    CLAIMED = "claimed"
    PROCESSED = "processed"
    REJECTED = "rejected"
    FAILED = "failed"


class InvoiceState(StrEnum):
    OPEN = "open"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    OVERPAID = "overpaid"
    CANCELLED = "cancelled"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED_TRANSIENT = "failed_transient"
    FAILED_PERMANENT = "failed_permanent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    SKIPPED = "skipped"


class ReferenceKind(StrEnum):
    OGM = "ogm"
    RF = "rf"


class InvalidTransition(ValueError):
    """A state change the ledger refuses (finishing a processed file, re-sending a sent message)."""


DOCUMENT_TYPES = ("invoice", "credit_note")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type and hands back naive values; PostgreSQL hands back values in the
    session time zone. Both are normalised to UTC here, and a naive value is refused on the way in
    because its meaning (local? UTC?) cannot be known.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the ledger stores only timezone-aware times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments an `INTEGER PRIMARY KEY`; PostgreSQL gets a 64-bit identity.
IdType = BigInteger().with_variant(Integer(), "sqlite")
JsonType = JSON().with_variant(JSONB(), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _one_of(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JsonType}


class Creditor(Base):
    __tablename__ = "creditors"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)  # the profile id
    legal_name: Mapped[str] = mapped_column(String(70))
    vat: Mapped[str] = mapped_column(String(20))
    iban: Mapped[str] = mapped_column(String(34))
    bic: Mapped[str] = mapped_column(String(11))
    language: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SourceFile(Base):
    """One billing or bank file as received; a second drop of the same bytes is refused by UNIQUE."""

    __tablename__ = "source_files"
    __table_args__ = (
        UniqueConstraint("creditor_id", "sha256"),
        CheckConstraint(_one_of("state", FileState), name="state"),
        CheckConstraint("size >= 0", name="size"),
        CheckConstraint(
            "rows_total >= 0 AND rows_accepted >= 0 AND rows_rejected >= 0", name="row_counts"
        ),
        Index(None, "state", "creditor_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    creditor_id: Mapped[str] = mapped_column(ForeignKey("creditors.id"))
    store: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default=FileState.CLAIMED.value)
    format: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_accepted: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    archive_path: Mapped[str | None] = mapped_column(Text)
    error_report_path: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class Invoice(Base):
    """An invoice or credit note; money in integer cents, `open_cents` what is still owed."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("creditor_id", "invoice_number"),
        UniqueConstraint("structured_reference"),
        CheckConstraint(_one_of("state", InvoiceState), name="state"),
        CheckConstraint(_one_of("document_type", DOCUMENT_TYPES), name="document_type"),
        CheckConstraint(
            f"reference_kind IS NULL OR {_one_of('reference_kind', ReferenceKind)}",
            name="reference_kind",
        ),
        Index(None, "source_file_id"),
        Index(None, "creditor_id", "state"),
        # The render queue: only the few not-yet-rendered rows are in this index.
        Index(
            "ix_invoices_unrendered",
            "id",
            sqlite_where=text("rendered_at IS NULL"),
            postgresql_where=text("rendered_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    creditor_id: Mapped[str] = mapped_column(ForeignKey("creditors.id"))
    source_file_id: Mapped[int | None] = mapped_column(ForeignKey("source_files.id"))
    source_row: Mapped[int | None] = mapped_column(Integer)
    invoice_number: Mapped[str] = mapped_column(String(100))
    document_type: Mapped[str] = mapped_column(String(20), default="invoice")
    debtor_name: Mapped[str] = mapped_column(String(200))
    debtor_street: Mapped[str | None] = mapped_column(String(200))
    debtor_postcode: Mapped[str | None] = mapped_column(String(20))
    debtor_city: Mapped[str | None] = mapped_column(String(100))
    debtor_country: Mapped[str | None] = mapped_column(String(2))
    debtor_email: Mapped[str | None] = mapped_column(String(254))
    debtor_phone: Mapped[str | None] = mapped_column(String(20))
    debtor_language: Mapped[str | None] = mapped_column(String(2))
    debtor_vat: Mapped[str | None] = mapped_column(String(20))
    debtor_iban: Mapped[str | None] = mapped_column(String(34))
    customer_number: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    preceding_invoice: Mapped[str | None] = mapped_column(String(100))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    structured_reference: Mapped[str | None] = mapped_column(String(35))
    reference_kind: Mapped[str | None] = mapped_column(String(3))
    reference_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(20), default=InvoiceState.OPEN.value)
    open_cents: Mapped[int] = mapped_column(BigInteger)
    paid_at: Mapped[datetime | None]
    payment_link: Mapped[str | None] = mapped_column(Text)
    pdf_path: Mapped[str | None] = mapped_column(Text)
    rendered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """The outbox: one row per (invoice, purpose, channel), keyed before anything is sent."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        CheckConstraint(_one_of("state", DeliveryState), name="state"),
        CheckConstraint("attempt >= 0", name="attempt"),
        Index(None, "invoice_id"),
        Index(None, "state", "next_attempt_at"),
        Index(None, "creditor_id", "state"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    creditor_id: Mapped[str] = mapped_column(ForeignKey("creditors.id"))
    channel: Mapped[str] = mapped_column(String(30))
    purpose: Mapped[str] = mapped_column(String(30))
    idempotency_key: Mapped[str] = mapped_column(String(400))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.PENDING.value)
    provider_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None]


class Event(Base):
    """Audit trail: append-only; no foreign keys so it outlives whatever it describes."""

    __tablename__ = "events"
    __table_args__ = (
        Index(None, "entity", "entity_id"),
        Index(None, "creditor_id", "occurred_at"),
        Index(None, "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    creditor_id: Mapped[str | None] = mapped_column(String(63))
    entity: Mapped[str] = mapped_column(String(30))
    entity_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


# -- reconciliation (issue 6) ---------------------------------------------------------------------

ALLOCATION_KINDS = ("invoice", "unapplied", "undo")
MOVEMENT_STATUSES = (
    "matched", "ambiguous", "no_match", "debit", "reversal", "globalised", "not_eur",
)


class BankStatement(Base):
    """One bank statement as imported; its stable key makes a second import of it a no-op.

    Balances stay in thousandths as the bank wrote them (CODA has three decimals); the previous
    statement of the same account is found by (account, new balance date, sequence) for the
    continuity check.
    """

    __tablename__ = "bank_statements"
    __table_args__ = (
        UniqueConstraint("statement_key"),
        Index(None, "account_number", "new_balance_date"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    statement_key: Mapped[str] = mapped_column(String(200))
    creditor_id: Mapped[str | None] = mapped_column(ForeignKey("creditors.id"))
    format: Mapped[str] = mapped_column(String(20))
    account_iban: Mapped[str | None] = mapped_column(String(34))
    account_number: Mapped[str] = mapped_column(String(70))
    currency: Mapped[str | None] = mapped_column(String(3))
    sequence_number: Mapped[str | None] = mapped_column(String(35))
    statement_id: Mapped[str | None] = mapped_column(String(140))
    creation_date: Mapped[date | None] = mapped_column(Date)
    old_balance_date: Mapped[date | None] = mapped_column(Date)
    old_balance_milli: Mapped[int | None] = mapped_column(BigInteger)
    new_balance_date: Mapped[date | None] = mapped_column(Date)
    new_balance_milli: Mapped[int | None] = mapped_column(BigInteger)
    movement_count: Mapped[int] = mapped_column(Integer, default=0)
    credit_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    debit_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    source_file_id: Mapped[int | None] = mapped_column(ForeignKey("source_files.id"))
    source_name: Mapped[str | None] = mapped_column(String(255))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class BankMovement(Base):
    """One movement (booking or globalisation detail) with what matching concluded about it.

    The canonical movement columns are all kept so that an unmatched line can be matched again on a
    later night (when its invoice has arrived) without the statement file.
    """

    __tablename__ = "movements"
    __table_args__ = (
        UniqueConstraint("movement_key"),
        CheckConstraint(
            f"match_status IS NULL OR {_one_of('match_status', MOVEMENT_STATUSES)}", name="match_status"
        ),
        Index(None, "statement_key"),
        Index(None, "match_status", "creditor_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    movement_key: Mapped[str] = mapped_column(String(200))
    statement_key: Mapped[str] = mapped_column(ForeignKey("bank_statements.statement_key"))
    creditor_id: Mapped[str | None] = mapped_column(ForeignKey("creditors.id"))
    format: Mapped[str] = mapped_column(String(20))
    account_iban: Mapped[str | None] = mapped_column(String(34))
    sequence: Mapped[int | None] = mapped_column(Integer)
    detail_number: Mapped[int] = mapped_column(Integer, default=0)
    parent_key: Mapped[str | None] = mapped_column(String(200))
    is_booking: Mapped[bool] = mapped_column(Boolean, default=True)
    has_details: Mapped[bool] = mapped_column(Boolean, default=False)
    booking_date: Mapped[date | None] = mapped_column(Date)
    value_date: Mapped[date | None] = mapped_column(Date)
    amount_milli: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    is_reversal: Mapped[bool] = mapped_column(Boolean, default=False)
    transaction_code: Mapped[str | None] = mapped_column(String(35))
    communication_type: Mapped[str | None] = mapped_column(String(10))
    structured_reference: Mapped[str | None] = mapped_column(String(35))
    reference_valid: Mapped[bool | None] = mapped_column(Boolean)
    communication: Mapped[str | None] = mapped_column(Text)
    counterparty_name: Mapped[str | None] = mapped_column(String(140))
    counterparty_account: Mapped[str | None] = mapped_column(String(70))
    counterparty_bic: Mapped[str | None] = mapped_column(String(11))
    end_to_end_id: Mapped[str | None] = mapped_column(String(140))
    bank_reference: Mapped[str | None] = mapped_column(String(140))
    customer_reference: Mapped[str | None] = mapped_column(String(140))
    return_reason: Mapped[str | None] = mapped_column(String(35))
    source_line: Mapped[int | None] = mapped_column(Integer)
    match_status: Mapped[str | None] = mapped_column(String(20))
    match_stage: Mapped[int | None] = mapped_column(Integer)
    match_confidence: Mapped[float | None] = mapped_column(Float)  # a score, not money
    match_reason: Mapped[str | None] = mapped_column(Text)
    suggested_invoice_ids: Mapped[list[int] | None] = mapped_column(JsonType)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    matched_at: Mapped[datetime | None]


class Allocation(Base):
    """Money from one movement on one invoice: `invoice` lowers its open balance, `unapplied` is a
    surplus held for the debtor, `undo` (negative) gives back what a reversal took away.

    UNIQUE(movement_key, invoice_id, kind) with ON CONFLICT DO NOTHING is what makes booking the
    same night twice a no-op.
    """

    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint("movement_key", "invoice_id", "kind"),
        CheckConstraint(_one_of("kind", ALLOCATION_KINDS), name="kind"),
        Index(None, "invoice_id"),
        Index(None, "creditor_id", "booked_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    movement_key: Mapped[str] = mapped_column(ForeignKey("movements.movement_key"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))
    creditor_id: Mapped[str | None] = mapped_column(ForeignKey("creditors.id"))
    debtor_key: Mapped[str | None] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    paid_on: Mapped[date | None] = mapped_column(Date)
    stage: Mapped[int | None] = mapped_column(Integer)
    undoes_movement_key: Mapped[str | None] = mapped_column(String(200))
    reversed_by: Mapped[str | None] = mapped_column(String(200))
    booked_at: Mapped[datetime] = mapped_column(default=utcnow)
