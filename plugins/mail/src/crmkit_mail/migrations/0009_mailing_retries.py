"""Mailings never re-send silently and retry what a server refused for now: a recipient's
tries and the moment of the next one; a mailbox's next sending moment (its rate limit is
shared by all its mailings).

Revision ID: mail_0009_mailing_retries
Revises: mail_0008_last_success
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "mail_0009_mailing_retries"
down_revision: str | Sequence[str] | None = "mail_0008_last_success"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mail_campaign_recipient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("retry_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_slot", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.drop_column("send_slot")
    with op.batch_alter_table("mail_campaign_recipient", schema=None) as batch_op:
        batch_op.drop_column("retry_at")
        batch_op.drop_column("attempts")
