"""billing runs count events owed to and taken from neighbouring months

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("events_deferred", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("events_borrowed", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_runs", schema=None) as batch_op:
        batch_op.drop_column("events_borrowed")
        batch_op.drop_column("events_deferred")
