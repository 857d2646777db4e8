"""Client base, continued: one-letter word variants for screening; duplicate reports.

Revision ID: d2e7f1a9c3b4
Revises: c1b4e5a0d2f7
Create Date: 2026-11-22 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d2e7f1a9c3b4"
down_revision: str | Sequence[str] | None = "c1b4e5a0d2f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "match_word_variant",
        sa.Column("variant", sa.String(length=120), nullable=False),
        sa.Column("word", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("variant", "word", name=op.f("pk_match_word_variant")),
    )
    _backfill_variants()


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
    op.drop_table("match_word_variant")
