"""Mailboxes' bookkeeping of their Sent folder, read for the mail sent from mail programs.

Revision ID: mail_0006_sent_reading
Revises: mail_0005_sent_folder
Create Date: 2026-11-23 22:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "mail_0006_sent_reading"
down_revision: str | Sequence[str] | None = "mail_0005_sent_folder"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # never read yet: the first reading starts from the folder's end
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_uidvalidity", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("sent_last_uid", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.alter_column("sent_last_uid", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.drop_column("sent_last_uid")
        batch_op.drop_column("sent_uidvalidity")
