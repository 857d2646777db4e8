"""Personal API tokens; versions (optimistic locking) on tasks, reminders and events.

Revision ID: 8c338737cbb0
Revises: 7aada6315ef3
Create Date: 2026-11-22 11:54:01.532339
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "8c338737cbb0"
down_revision: str | Sequence[str] | None = "7aada6315ef3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
VERSIONED = ("task", "reminder", "calendar_event")


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", crmkit.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user.id"],
            name=op.f("fk_api_token_created_by_id_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_api_token_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_token_secret_hash")),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index("ix_api_token_user", ["user_id", "id"], unique=False)

    # existing rows start at version 1, as new ones do
    for table in VERSIONED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("version", sa.Integer(), nullable=False, server_default="1")
            )


def downgrade() -> None:
    for table in VERSIONED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("version")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index("ix_api_token_user")
    op.drop_table("api_token")
