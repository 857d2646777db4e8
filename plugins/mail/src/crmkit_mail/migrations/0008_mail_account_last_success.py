"""Mailboxes remember when their last successful sync began (a renumbered folder's import
window reaches back to it, not to the last sync, which may have failed).

Revision ID: mail_0008_last_success
Revises: mail_0007_one_recipient_row
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "mail_0008_last_success"
down_revision: str | Sequence[str] | None = "mail_0007_one_recipient_row"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_success_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=True
            )
        )
    # a sync that ended without an error succeeded; of the others nothing is known, and the
    # sync then reaches back to the mailbox's creation
    op.execute("UPDATE mail_account SET last_success_at = last_sync_at WHERE last_error IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.drop_column("last_success_at")
