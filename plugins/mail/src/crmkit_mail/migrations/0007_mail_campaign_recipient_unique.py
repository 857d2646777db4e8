"""A client is a mailing's recipient once: a unique index on (campaign_id, party_id).

Two starts of one mailing at once used to fix its recipients twice (each client mailed
twice); the rows so doubled are removed first, the earliest of each kept.  Rows whose
client was deleted since (party_id NULL) are left alone: NULLs never clash.

Revision ID: mail_0007_one_recipient_row
Revises: mail_0006_sent_reading
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "mail_0007_one_recipient_row"
down_revision: str | Sequence[str] | None = "mail_0006_sent_reading"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM mail_campaign_recipient WHERE party_id IS NOT NULL AND id NOT IN ("
        "SELECT MIN(id) FROM mail_campaign_recipient WHERE party_id IS NOT NULL "
        "GROUP BY campaign_id, party_id)"
    )
    with op.batch_alter_table("mail_campaign_recipient", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mail_campaign_recipient_campaign_party", ["campaign_id", "party_id"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("mail_campaign_recipient", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_campaign_recipient_campaign_party")
