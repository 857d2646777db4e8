"""Money forms carry a one-time token: a second submission of the same form (a double
click) returns the first one's result instead of taking the money again.

Revision ID: finance_0003_form_token
Revises: finance_0002_transaction_shift
Create Date: 2026-11-25 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "finance_0003_form_token"
down_revision: str | Sequence[str] | None = "finance_0002_transaction_shift"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "finance_form_token",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("result", sa.String(length=2000), nullable=True),
        sa.Column("created_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finance_form_token")),
        sa.UniqueConstraint("token", name=op.f("uq_finance_form_token_token")),
    )


def downgrade() -> None:
    op.drop_table("finance_form_token")
