"""Automation rules defined by admins; failures of rule runs.

Revision ID: 0009_automation
Revises: 0008_reminders
Create Date: 2026-11-22 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "0009_automation"
down_revision: str | Sequence[str] | None = "0008_reminders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
WHEN = crmkit.model.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "automation_rule",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=300), nullable=False),
        sa.Column("trigger", JSON, nullable=False),
        sa.Column("condition", JSON, nullable=True),
        sa.Column("actions", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_rule")),
        sa.UniqueConstraint("name", name=op.f("uq_automation_rule_name")),
    )
    op.create_table(
        "automation_failure",
        sa.Column("id", ID, nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=True),
        sa.Column("record_id", ID, nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_failure")),
    )
    with op.batch_alter_table("automation_failure", schema=None) as batch_op:
        batch_op.create_index("ix_automation_failure_rule_at", ["rule", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("automation_failure", schema=None) as batch_op:
        batch_op.drop_index("ix_automation_failure_rule_at")
    op.drop_table("automation_failure")
    op.drop_table("automation_rule")
