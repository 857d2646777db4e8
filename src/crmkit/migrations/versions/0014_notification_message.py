"""Notifications translated when shown: ``notification.message``.

A notification's text was written once, in English, when it was made (a Russian agent's
bell said "→ Client: …").  The new nullable JSON column keeps the text as a message
template with its parameters (:meth:`crmkit.i18n.Message.as_json`), which the bell and the
notifications page translate into the reader's language; ``text`` keeps the English.
Older rows have no message and are shown as they were written.

Revision ID: 0014_notification_message
Revises: 0013_id_high_water
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014_notification_message"
down_revision: str | Sequence[str] | None = "0013_id_high_water"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "message",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_column("message")
