"""Mailings keep the language versions of their template (each recipient gets theirs).

Revision ID: mail_0002_versions
Revises: 150798e71f33
Create Date: 2026-11-22 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "mail_0002_versions"
down_revision: str | Sequence[str] | None = "150798e71f33"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("mail_campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("versions", JSON, nullable=False, server_default="{}"))
    with op.batch_alter_table("mail_campaign", schema=None) as batch_op:
        batch_op.alter_column("versions", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("mail_campaign", schema=None) as batch_op:
        batch_op.drop_column("versions")
