"""Client base, continued: one-letter word variants for screening; duplicate reports.

Revision ID: d2e7f1a9c3b4
Revises: c1b4e5a0d2f7
Create Date: 2026-11-22 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import crmkit.model.base

revision: str = "d2e7f1a9c3b4"
down_revision: str | Sequence[str] | None = "c1b4e5a0d2f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = crmkit.model.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "match_word_variant",
        sa.Column("variant", sa.String(length=120), nullable=False),
        sa.Column("word", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("variant", "word", name=op.f("pk_match_word_variant")),
    )
    _backfill_variants()
    user = dict(ondelete="SET NULL")
    op.create_table(
        "duplicate_report",
        sa.Column("requested_by_id", ID, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("scanned", sa.Integer(), nullable=False),
        sa.Column("groups", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["user.id"],
            name=op.f("fk_duplicate_report_requested_by_id_user"),
            **user,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_report")),
    )
    op.create_table(
        "import_run",
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("on_duplicate", sa.String(length=16), nullable=False),
        sa.Column("mapping", JSON, nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("done_rows", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("errors", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user.id"], name=op.f("fk_import_run_created_by_id_user"), **user
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_run")),
    )
    op.create_table(
        "import_mapping",
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("mapping", JSON, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_import_mapping")),
    )


def _backfill_variants() -> None:
    """Variants of the words already known (spelled out: the rule is in the docstring of
    ``crmkit.identity.one_letter_variants``: the word and each spelling without one letter,
    for words of four letters or more)."""
    connection = op.get_bind()
    table = sa.table("match_word_variant", sa.column("variant"), sa.column("word"))
    last = ""
    while True:
        words = (
            connection.execute(
                sa.text("SELECT word FROM match_word WHERE word > :last ORDER BY word LIMIT 5000"),
                {"last": last},
            )
            .scalars()
            .all()
        )
        if not words:
            return
        rows = []
        for word in words:
            variants = [word]
            if len(word) >= 4:
                variants += [word[:i] + word[i + 1 :] for i in range(len(word))]
            rows += [{"variant": v, "word": word} for v in dict.fromkeys(variants)]
        connection.execute(sa.insert(table), rows)
        last = words[-1]


def downgrade() -> None:
    op.drop_table("import_mapping")
    op.drop_table("import_run")
    op.drop_table("duplicate_report")
    op.drop_table("match_word_variant")
