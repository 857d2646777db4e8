"""Client base: screening keys (party_match_key, match_word + trigram index), contact domains.

Revision ID: c1b4e5a0d2f7
Revises: 8c338737cbb0
Create Date: 2026-11-22 14:58:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c1b4e5a0d2f7"
down_revision: str | Sequence[str] | None = "0004_background"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# spelled out so that this revision never changes with the models
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE match_word_fts USING fts5(word, content='match_word', "
    "content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER match_word_fts_insert AFTER INSERT ON match_word BEGIN "
    "INSERT INTO match_word_fts(rowid, word) VALUES (new.id, new.word); END",
    "CREATE TRIGGER match_word_fts_delete AFTER DELETE ON match_word BEGIN "
    "INSERT INTO match_word_fts(match_word_fts, rowid, word) "
    "VALUES ('delete', old.id, old.word); END",
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("SELECT pg_advisory_xact_lock(7741001)")
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    op.create_table(
        "match_word",
        sa.Column("id", ID, nullable=False),
        sa.Column("word", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_word")),
        sa.UniqueConstraint("word", name=op.f("uq_match_word_word")),
    )
    if dialect == "postgresql":
        op.create_index(
            "ix_match_word_trgm",
            "match_word",
            ["word"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"word": "public.gin_trgm_ops"},
        )
    elif dialect == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    op.create_table(
        "party_match_key",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("party_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["party_id"],
            ["party.id"],
            name=op.f("fk_party_match_key_party_id_party"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", "party_id", name=op.f("pk_party_match_key")),
    )
    op.create_index("ix_party_match_key_party", "party_match_key", ["party_id"], unique=False)
    with op.batch_alter_table("contact_point", schema=None) as batch_op:
        batch_op.add_column(sa.Column("domain", sa.String(length=253), nullable=True))
        batch_op.create_index("ix_contact_point_domain", ["domain"], unique=False)
    _backfill()


def _backfill() -> None:
    """Keys of the parties and contact points that exist already."""
    from crmkit.identity import domain_key
    from crmkit.services.screening import index_names

    connection = op.get_bind()
    points = connection.execute(
        sa.text("SELECT id, kind, key FROM contact_point WHERE kind IN ('email', 'website')")
    ).all()
    updates = [
        {"id": point_id, "domain": domain_key(kind, key)}
        for point_id, kind, key in points
        if domain_key(kind, key)
    ]
    if updates:
        connection.execute(
            sa.text("UPDATE contact_point SET domain = :domain WHERE id = :id"), updates
        )
    last = 0
    while True:
        rows = connection.execute(
            sa.text(
                "SELECT id, name, kind FROM party WHERE id > :last AND merged_into_id IS NULL "
                "ORDER BY id LIMIT 5000"
            ),
            {"last": last},
        ).all()
        if not rows:
            return
        index_names(connection, [tuple(r) for r in rows])
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("contact_point", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_point_domain")
        batch_op.drop_column("domain")
    op.drop_index("ix_party_match_key_party", table_name="party_match_key")
    op.drop_table("party_match_key")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS match_word_fts")
    op.drop_table("match_word")
