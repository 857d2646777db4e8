"""Background work: outbox claims, periodic schedule states.

Revision ID: 0004_background
Revises: 8c338737cbb0
Create Date: 2026-11-22 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "0004_background"
down_revision: str | Sequence[str] | None = "8c338737cbb0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
    op.create_table(
        "job_schedule",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("last_slot", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("lease_until", crmkit.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_finished_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_schedule")),
    )


def downgrade() -> None:
    op.drop_table("job_schedule")
    with op.batch_alter_table("outbox_item", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
