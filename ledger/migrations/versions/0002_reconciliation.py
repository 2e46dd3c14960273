"""Reconciliation: bank statements, their movements and the allocations of money to invoices.

Hand-written like 0001 and free of model imports; tests/test_ledger.py checks it against the models.

Revision ID: 0002_reconciliation
Revises: 0001_initial
Create Date: 2026-05-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_reconciliation"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

ALLOCATION_KINDS = ("invoice", "unapplied", "undo")
MOVEMENT_STATUSES = ("matched", "ambiguous", "no_match", "debit", "reversal", "globalised", "not_eur")


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "bank_statements",
        sa.Column("id", ID, nullable=False),
        sa.Column("statement_key", sa.String(200), nullable=False),
        sa.Column("creditor_id", sa.String(63), nullable=True),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("account_iban", sa.String(34), nullable=True),
        sa.Column("account_number", sa.String(70), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("sequence_number", sa.String(35), nullable=True),
        sa.Column("statement_id", sa.String(140), nullable=True),
        sa.Column("creation_date", sa.Date(), nullable=True),
        sa.Column("old_balance_date", sa.Date(), nullable=True),
        sa.Column("old_balance_milli", sa.BigInteger(), nullable=True),
        sa.Column("new_balance_date", sa.Date(), nullable=True),
        sa.Column("new_balance_milli", sa.BigInteger(), nullable=True),
        sa.Column("movement_count", sa.Integer(), nullable=False),
        sa.Column("credit_milli", sa.BigInteger(), nullable=False),
        sa.Column("debit_milli", sa.BigInteger(), nullable=False),
        sa.Column("source_file_id", ID, nullable=True),
        sa.Column("source_name", sa.String(255), nullable=True),
        sa.Column("imported_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bank_statements"),
        sa.UniqueConstraint("statement_key", name="uq_bank_statements_statement_key"),
        sa.ForeignKeyConstraint(
            ["creditor_id"], ["creditors.id"], name="fk_bank_statements_creditor_id_creditors"
        ),
        sa.ForeignKeyConstraint(
            ["source_file_id"], ["source_files.id"], name="fk_bank_statements_source_file_id_source_files"
        ),
    )
    op.create_index(
        "ix_bank_statements_account_number_new_balance_date", "bank_statements",
        ["account_number", "new_balance_date"],
    )

    op.create_table(
        "movements",
        sa.Column("id", ID, nullable=False),
        sa.Column("movement_key", sa.String(200), nullable=False),
        sa.Column("statement_key", sa.String(200), nullable=False),
        sa.Column("creditor_id", sa.String(63), nullable=True),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("account_iban", sa.String(34), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("detail_number", sa.Integer(), nullable=False),
        sa.Column("parent_key", sa.String(200), nullable=True),
        sa.Column("is_booking", sa.Boolean(), nullable=False),
        sa.Column("has_details", sa.Boolean(), nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=True),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("amount_milli", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("is_reversal", sa.Boolean(), nullable=False),
        sa.Column("transaction_code", sa.String(35), nullable=True),
        sa.Column("communication_type", sa.String(10), nullable=True),
        sa.Column("structured_reference", sa.String(35), nullable=True),
        sa.Column("reference_valid", sa.Boolean(), nullable=True),
        sa.Column("communication", sa.Text(), nullable=True),
        sa.Column("counterparty_name", sa.String(140), nullable=True),
        sa.Column("counterparty_account", sa.String(70), nullable=True),
        sa.Column("counterparty_bic", sa.String(11), nullable=True),
        sa.Column("end_to_end_id", sa.String(140), nullable=True),
        sa.Column("bank_reference", sa.String(140), nullable=True),
        sa.Column("customer_reference", sa.String(140), nullable=True),
        sa.Column("return_reason", sa.String(35), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.Column("match_status", sa.String(20), nullable=True),
        sa.Column("match_stage", sa.Integer(), nullable=True),
        sa.Column("match_confidence", sa.Float(), nullable=True),
        sa.Column("match_reason", sa.Text(), nullable=True),
        sa.Column("suggested_invoice_ids", JSON, nullable=True),
        sa.Column("imported_at", TIMESTAMP, nullable=False),
        sa.Column("matched_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_movements"),
        sa.UniqueConstraint("movement_key", name="uq_movements_movement_key"),
        sa.ForeignKeyConstraint(
            ["statement_key"], ["bank_statements.statement_key"],
            name="fk_movements_statement_key_bank_statements",
        ),
        sa.ForeignKeyConstraint(["creditor_id"], ["creditors.id"], name="fk_movements_creditor_id_creditors"),
        sa.CheckConstraint(
            f"match_status IS NULL OR {_one_of('match_status', MOVEMENT_STATUSES)}",
            name="ck_movements_match_status",
        ),
    )
    op.create_index("ix_movements_statement_key", "movements", ["statement_key"])
    op.create_index("ix_movements_match_status_creditor_id", "movements", ["match_status", "creditor_id"])

    op.create_table(
        "allocations",
        sa.Column("id", ID, nullable=False),
        sa.Column("movement_key", sa.String(200), nullable=False),
        sa.Column("invoice_id", ID, nullable=True),
        sa.Column("creditor_id", sa.String(63), nullable=True),
        sa.Column("debtor_key", sa.String(300), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("stage", sa.Integer(), nullable=True),
        sa.Column("undoes_movement_key", sa.String(200), nullable=True),
        sa.Column("reversed_by", sa.String(200), nullable=True),
        sa.Column("booked_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_allocations"),
        sa.UniqueConstraint(
            "movement_key", "invoice_id", "kind", name="uq_allocations_movement_key_invoice_id_kind"
        ),
        sa.ForeignKeyConstraint(
            ["movement_key"], ["movements.movement_key"], name="fk_allocations_movement_key_movements"
        ),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name="fk_allocations_invoice_id_invoices"),
        sa.ForeignKeyConstraint(
            ["creditor_id"], ["creditors.id"], name="fk_allocations_creditor_id_creditors"
        ),
        sa.CheckConstraint(_one_of("kind", ALLOCATION_KINDS), name="ck_allocations_kind"),
    )
    op.create_index("ix_allocations_invoice_id", "allocations", ["invoice_id"])
    op.create_index("ix_allocations_creditor_id_booked_at", "allocations", ["creditor_id", "booked_at"])


def downgrade() -> None:
    op.drop_table("allocations")
    op.drop_table("movements")
    op.drop_table("bank_statements")
