"""Conversations record the account they came in on, and the user owning it.

``conversation.account`` is the channel's account (a mailbox's name) of the latest message,
which replies go out from; ``conversation.owner_id`` the user whose own account it is (a
personal mailbox): such a conversation is theirs rather than everyone's triage.  Existing
conversations are left shared (their account unknown): their next message starts to tell.

Revision ID: 0012_conversation_account
Revises: 0011_stage_move_backward
Create Date: 2026-11-24 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_conversation_account"
down_revision: str | Sequence[str] | None = "0011_stage_move_backward"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column(
                "owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_conversation_owner_id_user"),
            "user",
            ["owner_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_conversation_owner_id_user"), type_="foreignkey")
        batch_op.drop_column("owner_id")
        batch_op.drop_column("account")
