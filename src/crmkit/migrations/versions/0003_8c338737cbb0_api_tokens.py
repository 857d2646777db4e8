"""API tokens; versions on tasks, reminders and events; the access generation counter.

Revision ID: 8c338737cbb0
Revises: d534eda57c81
Create Date: 2026-11-22 11:54:01.532339
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crmkit.model.base

revision: str = "8c338737cbb0"
down_revision: str | Sequence[str] | None = "d534eda57c81"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
VERSIONED = ("task", "reminder", "calendar_event")

# Writes to these tables bump access_generation (see crmkit.model.access_state); the
# statements are spelled out here so that this revision never changes with the models.
WATCHED = ("user_role", "team_member", "group_grant", "permission", "party_group")
PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION crmkit_bump_access_generation() RETURNS trigger AS $$ "
    "BEGIN INSERT INTO access_generation (id, value) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET value = access_generation.value + 1; "
    "RETURN NULL; END $$ LANGUAGE plpgsql"
)
SQLITE_BUMP = (
    "INSERT OR REPLACE INTO access_generation (id, value) VALUES "
    "(1, coalesce((SELECT value FROM access_generation WHERE id = 1), 0) + 1)"
)


def triggers(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [PG_FUNCTION] + [
            f"CREATE TRIGGER {table}_access_generation "
            f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION crmkit_bump_access_generation()"
            for table in WATCHED
        ]
    return [
        f"CREATE TRIGGER {table}_access_generation_{op.lower()} AFTER {op} ON {table} "
        f"BEGIN {SQLITE_BUMP}; END"
        for table in WATCHED
        for op in ("INSERT", "UPDATE", "DELETE")
    ]


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

    op.create_table(
        "access_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_generation")),
    )
    op.execute("INSERT INTO access_generation (id, value) VALUES (1, 0)")
    for statement in triggers(op.get_bind().dialect.name):
        op.execute(statement)

    # existing rows start at version 1, as new ones do
    for table in VERSIONED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("version", sa.Integer(), nullable=False, server_default="1")
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in WATCHED:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_access_generation ON {table}")
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_access_generation_{event}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS crmkit_bump_access_generation()")
    op.drop_table("access_generation")
    for table in VERSIONED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("version")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index("ix_api_token_user")
    op.drop_table("api_token")
