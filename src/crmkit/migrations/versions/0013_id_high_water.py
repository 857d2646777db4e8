"""Ids are never reused on SQLite: the largest id ever deleted from each table.

SQLite gives a new row the table's largest id plus one, so the id of the newest record,
once deleted, went to the next one with the old record's notes, files and tasks still
linked to it.  ``id_high_water`` keeps the largest id deleted from each table (a trigger per
table with an integer ``id`` key) and new rows get ids above it (:mod:`crmkit.model.ids`).
On PostgreSQL the table stays empty: sequences never go back.

Revision ID: 0013_id_high_water
Revises: 0012_conversation_account
Create Date: 2026-11-24 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_id_high_water"
down_revision: str | Sequence[str] | None = "0012_conversation_account"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "id_high_water",
        sa.Column("table_name", sa.String(length=128), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", name=op.f("pk_id_high_water")),
    )
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        from crmkit.model.ids import ensure_triggers

        ensure_triggers(connection)


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        from crmkit.model.ids import id_tables

        for table in id_tables(connection):
            connection.exec_driver_sql(f'DROP TRIGGER IF EXISTS "{table}_id_high_water"')
    op.drop_table("id_high_water")
