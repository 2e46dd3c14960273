"""The initial ledger: creditors, source files, invoices, deliveries (outbox) and events.

Hand-written, and deliberately free of imports from `creditflow.ledger.models`: a migration must keep
describing the schema of its day when the models move on. tests/test_ledger.py checks that it still
matches the models (alembic `compare_metadata` finds nothing) on SQLite and PostgreSQL.

Revision ID: 0001_initial
Revises:
Create Date: 2026-05-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

FILE_STATES = ("claimed", "processed", "rejected", "failed")
INVOICE_STATES = ("open", "partially_paid", "paid", "overpaid", "cancelled")
DELIVERY_STATES = (
    "pending", "sending", "sent", "failed_transient", "failed_permanent", "delivered", "bounced",
    "skipped",
)


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "creditors",
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("legal_name", sa.String(70), nullable=False),
        sa.Column("vat", sa.String(20), nullable=False),
        sa.Column("iban", sa.String(34), nullable=False),
        sa.Column("bic", sa.String(11), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_creditors"),
    )

    op.create_table(
        "source_files",
        sa.Column("id", ID, nullable=False),
        sa.Column("creditor_id", sa.String(63), nullable=False),
        sa.Column("store", sa.String(20), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("format", sa.String(20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("rows_total", sa.Integer(), nullable=False),
        sa.Column("rows_accepted", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("archive_path", sa.Text(), nullable=True),
        sa.Column("error_report_path", sa.Text(), nullable=True),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("processed_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_source_files"),
        sa.ForeignKeyConstraint(
            ["creditor_id"], ["creditors.id"], name="fk_source_files_creditor_id_creditors"
        ),
        sa.UniqueConstraint("creditor_id", "sha256", name="uq_source_files_creditor_id_sha256"),
        sa.CheckConstraint(_one_of("state", FILE_STATES), name="ck_source_files_state"),
        sa.CheckConstraint("size >= 0", name="ck_source_files_size"),
        sa.CheckConstraint(
            "rows_total >= 0 AND rows_accepted >= 0 AND rows_rejected >= 0",
            name="ck_source_files_row_counts",
        ),
    )
    op.create_index("ix_source_files_state_creditor_id", "source_files", ["state", "creditor_id"])

    op.create_table(
        "invoices",
        sa.Column("id", ID, nullable=False),
        sa.Column("creditor_id", sa.String(63), nullable=False),
        sa.Column("source_file_id", ID, nullable=True),
        sa.Column("source_row", sa.Integer(), nullable=True),
        sa.Column("invoice_number", sa.String(100), nullable=False),
        sa.Column("document_type", sa.String(20), nullable=False),
        sa.Column("debtor_name", sa.String(200), nullable=False),
        sa.Column("debtor_street", sa.String(200), nullable=True),
        sa.Column("debtor_postcode", sa.String(20), nullable=True),
        sa.Column("debtor_city", sa.String(100), nullable=True),
        sa.Column("debtor_country", sa.String(2), nullable=True),
        sa.Column("debtor_email", sa.String(254), nullable=True),
        sa.Column("debtor_phone", sa.String(20), nullable=True),
        sa.Column("debtor_language", sa.String(2), nullable=True),
        sa.Column("debtor_vat", sa.String(20), nullable=True),
        sa.Column("debtor_iban", sa.String(34), nullable=True),
        sa.Column("customer_number", sa.String(100), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("preceding_invoice", sa.String(100), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("structured_reference", sa.String(35), nullable=True),
        sa.Column("reference_kind", sa.String(3), nullable=True),
        sa.Column("reference_generated", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("open_cents", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", TIMESTAMP, nullable=True),
        sa.Column("payment_link", sa.Text(), nullable=True),
        sa.Column("pdf_path", sa.Text(), nullable=True),
        sa.Column("rendered_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_invoices"),
        sa.ForeignKeyConstraint(
            ["creditor_id"], ["creditors.id"], name="fk_invoices_creditor_id_creditors"
        ),
        sa.ForeignKeyConstraint(
            ["source_file_id"], ["source_files.id"], name="fk_invoices_source_file_id_source_files"
        ),
        sa.UniqueConstraint(
            "creditor_id", "invoice_number", name="uq_invoices_creditor_id_invoice_number"
        ),
        sa.UniqueConstraint("structured_reference", name="uq_invoices_structured_reference"),
        sa.CheckConstraint(_one_of("state", INVOICE_STATES), name="ck_invoices_state"),
        sa.CheckConstraint(
            _one_of("document_type", ("invoice", "credit_note")), name="ck_invoices_document_type"
        ),
        sa.CheckConstraint(
            f"reference_kind IS NULL OR {_one_of('reference_kind', ('ogm', 'rf'))}",
            name="ck_invoices_reference_kind",
        ),
    )
    op.create_index("ix_invoices_source_file_id", "invoices", ["source_file_id"])
    op.create_index("ix_invoices_creditor_id_state", "invoices", ["creditor_id", "state"])
    op.create_index(
        "ix_invoices_unrendered",
        "invoices",
        ["id"],
        sqlite_where=sa.text("rendered_at IS NULL"),
        postgresql_where=sa.text("rendered_at IS NULL"),
    )

    op.create_table(
        "deliveries",
        sa.Column("id", ID, nullable=False),
        sa.Column("invoice_id", ID, nullable=False),
        sa.Column("creditor_id", sa.String(63), nullable=False),
        sa.Column("channel", sa.String(30), nullable=False),
        sa.Column("purpose", sa.String(30), nullable=False),
        sa.Column("idempotency_key", sa.String(400), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("provider_id", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name="fk_deliveries_invoice_id_invoices"
        ),
        sa.ForeignKeyConstraint(
            ["creditor_id"], ["creditors.id"], name="fk_deliveries_creditor_id_creditors"
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_deliveries_idempotency_key"),
        sa.CheckConstraint(_one_of("state", DELIVERY_STATES), name="ck_deliveries_state"),
        sa.CheckConstraint("attempt >= 0", name="ck_deliveries_attempt"),
    )
    op.create_index("ix_deliveries_invoice_id", "deliveries", ["invoice_id"])
    op.create_index("ix_deliveries_state_next_attempt_at", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_creditor_id_state", "deliveries", ["creditor_id", "state"])

    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("creditor_id", sa.String(63), nullable=True),
        sa.Column("entity", sa.String(30), nullable=False),
        sa.Column("entity_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_entity_entity_id", "events", ["entity", "entity_id"])
    op.create_index("ix_events_creditor_id_occurred_at", "events", ["creditor_id", "occurred_at"])
    op.create_index("ix_events_kind_occurred_at", "events", ["kind", "occurred_at"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("deliveries")
    op.drop_table("invoices")
    op.drop_table("source_files")
    op.drop_table("creditors")
