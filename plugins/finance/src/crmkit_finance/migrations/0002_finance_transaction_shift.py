"""A ledger transaction names the cash desk shift whose drawer it paid from (a salary, a
supplier or an expense paid in cash), so the shift report shows it.

Revision ID: finance_0002_transaction_shift
Revises: 4c938d01a710
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "finance_0002_transaction_shift"
down_revision: str | Sequence[str] | None = "4c938d01a710"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ADD COLUMN (no batch mode): rebuilding the append-only table on SQLite would
    # drop its triggers
    op.add_column(
        "finance_transaction",
        sa.Column("shift_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    )
    op.create_index(
        op.f("ix_finance_transaction_shift_id"), "finance_transaction", ["shift_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_finance_transaction_shift_id"), table_name="finance_transaction")
    op.drop_column("finance_transaction", "shift_id")
