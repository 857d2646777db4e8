"""Reminders and overdue tasks raised by the workers; notification forwarding preferences.

Revision ID: 0008_reminders
Revises: 07ca17593b37
Create Date: 2026-11-22 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "0008_reminders"
down_revision: str | Sequence[str] | None = "07ca17593b37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
WHEN = crmkit.model.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overdue_notified_at", WHEN, nullable=True))
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("escalated_at", WHEN, nullable=True))
    op.create_table(
        "notification_preference",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("kinds", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_notification_preference_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_preference")),
        sa.UniqueConstraint(
            "user_id", "channel", name=op.f("uq_notification_preference_user_id_channel")
        ),
    )
    with op.batch_alter_table("notification_preference", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_preference_user_id"), ["user_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notification_preference", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_preference_user_id"))
    op.drop_table("notification_preference")
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.drop_column("escalated_at")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("overdue_notified_at")
