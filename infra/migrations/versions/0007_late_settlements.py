"""usage keys a run settled as late usage of a closed period

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 11:35:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "late_settlements",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["billing_runs.run_id"]),
        sa.PrimaryKeyConstraint("run_id", "period", "account_id", "currency", "key"),
    )


def downgrade() -> None:
    op.drop_table("late_settlements")
