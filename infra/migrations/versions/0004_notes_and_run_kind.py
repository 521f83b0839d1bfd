"""credit and debit notes; runs say whether they bill or re-rate

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 07:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="billing", nullable=False)
        )
    op.create_table(
        "notes",
        sa.Column("note_id", sa.String(length=160), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("catalog_hash", sa.String(length=64), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("html_key", sa.String(length=1024), nullable=False),
        sa.Column("json_key", sa.String(length=1024), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("note_id"),
        sa.UniqueConstraint("run_id", "account_id", "currency"),
    )
    op.create_index("ix_notes_period", "notes", ["period"])
    op.create_table(
        "note_lines",
        sa.Column("note_id", sa.String(length=160), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.String(length=200), nullable=False),
        sa.Column("charge_id", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("unit_price", sa.String(length=64), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["note_id"], ["notes.note_id"]),
        sa.PrimaryKeyConstraint("note_id", "line_no"),
    )


def downgrade() -> None:
    op.drop_table("note_lines")
    op.drop_index("ix_notes_period", table_name="notes")
    op.drop_table("notes")
    with op.batch_alter_table("billing_runs", schema=None) as batch_op:
        batch_op.drop_column("kind")
