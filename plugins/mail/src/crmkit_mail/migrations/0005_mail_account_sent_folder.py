"""Mailboxes' folder for copies of the mail sent from them.

Revision ID: mail_0005_sent_folder
Revises: mail_0004_signatures
Create Date: 2026-11-23 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "mail_0005_sent_folder"
down_revision: str | Sequence[str] | None = "mail_0004_signatures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing mailboxes keep no copies (""), as before
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sent_folder", sa.String(length=200), nullable=False, server_default="")
        )
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.alter_column("sent_folder", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.drop_column("sent_folder")
