"""Mailboxes' reading rules: the first reading limited to the mail of the last so many
days; senders whose mail is never recorded.

Revision ID: mail_0003_reading_rules
Revises: mail_0002_versions
Create Date: 2026-11-23 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "mail_0003_reading_rules"
down_revision: str | Sequence[str] | None = "mail_0002_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing mailboxes keep reading all their mail (NULL)
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("import_until_uid", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("ignore_senders", sa.Text(), nullable=False, server_default="")
        )
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.alter_column("ignore_senders", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.drop_column("ignore_senders")
        batch_op.drop_column("import_until_uid")
        batch_op.drop_column("import_days")
