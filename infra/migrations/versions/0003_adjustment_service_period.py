"""invoice lines record the closed period an adjustment serves

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 07:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_period", sa.String(length=7), nullable=True))
        batch_op.create_index("ix_invoice_lines_service_period", ["service_period"])


def downgrade() -> None:
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_lines_service_period")
        batch_op.drop_column("service_period")
