"""The orders completed and reopened, day by day (``finance_order_completion``), which the
director's reports count instead of the orders' current ``completed_on``: an order done in
March and reopened or cancelled in April stays in March's count, as its revenue stays in
March's, and April counts it off.

Each order completed now is written as completed on its ``completed_on`` with its
``base_total``; reopenings before this revision were not written down and are not guessed.

Revision ID: finance_0006_order_completions
Revises: finance_0005_line_assignee
Create Date: 2026-11-24 21:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "finance_0006_order_completions"
down_revision: str | Sequence[str] | None = "finance_0005_line_assignee"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "finance_order_completion",
        sa.Column("order_id", ID, nullable=False),
        sa.Column("completed_on", sa.Date(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("base_total", crmkit.model.base.Amount(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["finance_order.id"],
            name=op.f("fk_finance_order_completion_order_id_finance_order"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finance_order_completion")),
    )
    op.create_index(
        "ix_finance_order_completion_day",
        "finance_order_completion",
        ["completed_on", "orders", "base_total"],
        unique=False,
    )
    # the orders completed now, each once (ids from the table's own sequence)
    op.execute(
        "INSERT INTO finance_order_completion (order_id, completed_on, orders, base_total) "
        "SELECT id, completed_on, 1, base_total FROM finance_order "
        "WHERE completed_on IS NOT NULL ORDER BY id"
    )


def downgrade() -> None:
    op.drop_index("ix_finance_order_completion_day", table_name="finance_order_completion")
    op.drop_table("finance_order_completion")
