"""A recognized order line keeps the order's assignee of the day it was recognized
(``finance_order_line.assignee_id``), so a salary on basis ``orders`` pays the worker of
record of the revenue, not whoever holds the order when the payroll is calculated.

Lines recognized before keep the column empty and are read, as before, as the order's
assignee of now: who held the order then was not written down.

Revision ID: finance_0005_line_assignee
Revises: finance_0004_payment_messages
Create Date: 2026-11-24 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "finance_0005_line_assignee"
down_revision: str | Sequence[str] | None = "finance_0004_payment_messages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ADD COLUMN, no foreign key: SQLite adds no constraint in place, and batch
    # mode would rebuild a table other tables point at
    op.add_column(
        "finance_order_line",
        sa.Column(
            "assignee_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
    )
    op.create_index(
        "ix_finance_order_line_assignee",
        "finance_order_line",
        ["assignee_id", "recognized_on"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_finance_order_line_assignee", table_name="finance_order_line")
    op.drop_column("finance_order_line", "assignee_id")
