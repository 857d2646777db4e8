"""An order line tells a performer chosen by hand from one filled in from the order's
assignee (``finance_order_line.performer_chosen``), so a reopened order given to another
worker keeps a worker chosen by hand who happened to hold the order, and pays the new
assignee for the lines nobody chose a worker for.

The backfill cannot know how an existing performer came about; it assumes what the
reopening assumed until now, so existing orders behave as they did:

* an open line's performer was chosen (recognition is the only thing that fills one in,
  and a reopening copies only the performers it keeps);
* a recognized line's (or its negative twin's) performer was filled in when it equals the
  assignee written on the line at recognition (``assignee_id``), and chosen otherwise;
* a line recognized before ``finance_0005`` (no ``assignee_id``) keeps its performer, so
  it counts as chosen;
* a line without a performer chose none.

Revision ID: finance_0007_performer_chosen
Revises: finance_0006_order_completions
Create Date: 2026-11-24 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "finance_0007_performer_chosen"
down_revision: str | Sequence[str] | None = "finance_0006_order_completions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ADD COLUMN with a default (no batch mode: it would rebuild a table other
    # tables point at); the default stays, as the model declares it
    op.add_column(
        "finance_order_line",
        sa.Column("performer_chosen", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        sa.text(
            "UPDATE finance_order_line SET performer_chosen = :chosen "
            "WHERE performer_id IS NOT NULL AND (recognized_on IS NULL "
            "OR assignee_id IS NULL OR performer_id <> assignee_id)"
        ).bindparams(chosen=True)
    )


def downgrade() -> None:
    op.drop_column("finance_order_line", "performer_chosen")
