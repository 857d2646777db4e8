"""Stage history: whether a move went backward (``stage_move.backward``).

Funnels count backward moves apart, so the history row says whether the move took a
transition declared ``backward``.  Existing rows are marked from the pipeline definitions
of the application running the upgrade (``crmkit db upgrade`` passes them): a move from A
to B is backward when the transition the engine takes from A to B is declared so today.
Rows of a pipeline that application does not load, and moves whose pair of stages no
transition allows any more, stay forward: nothing tells otherwise.

Revision ID: 0011_stage_move_backward
Revises: 0010_party_language
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0011_stage_move_backward"
down_revision: str | Sequence[str] | None = "0010_party_language"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGE_MOVE = sa.table(
    "stage_move",
    sa.column("entity", sa.String),
    sa.column("pipeline", sa.String),
    sa.column("from_stage", sa.String),
    sa.column("to_stage", sa.String),
    sa.column("backward", sa.Boolean),
)


def upgrade() -> None:
    with op.batch_alter_table("stage_move", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("backward", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    for pipeline in context.config.attributes.get("pipelines", ()):
        pairs = pipeline.backward_moves()
        if not pairs:
            continue
        op.execute(
            STAGE_MOVE.update()
            .where(
                STAGE_MOVE.c.pipeline == pipeline.name,
                STAGE_MOVE.c.entity == pipeline.entity,
                sa.or_(
                    *(
                        (STAGE_MOVE.c.from_stage == source) & (STAGE_MOVE.c.to_stage == target)
                        for source, target in pairs
                    )
                ),
            )
            .values(backward=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("stage_move", schema=None) as batch_op:
        batch_op.drop_column("backward")
