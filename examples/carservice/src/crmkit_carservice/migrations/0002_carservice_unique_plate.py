"""A plate is one car: ``carservice_car.plate_key`` is unique, folded anew.

The keys are folded again first (``crmkit.identity.plate_key`` now also drops a region's
``RUS`` and the separators ``/`` and ``|``), then the index becomes unique.  Cars that share
a plate (the intake registered a known plate again before it checked) stop the upgrade,
named with their ids: give each its own plate or delete the extra one, then upgrade again.

Revision ID: carservice_0002_unique_plate
Revises: 744af71d2c16
Create Date: 2026-11-24 12:00:00
"""

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crmkit.errors import ConfigError
from crmkit.identity import plate_key

revision: str = "carservice_0002_unique_plate"
down_revision: str | Sequence[str] | None = "744af71d2c16"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CARS = sa.table(
    "carservice_car",
    sa.column("id", sa.Integer),
    sa.column("plate", sa.String),
    sa.column("plate_key", sa.String),
)


def upgrade() -> None:
    connection = op.get_bind()
    cars: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for car_id, plate, key in connection.execute(
        sa.select(CARS.c.id, CARS.c.plate, CARS.c.plate_key).order_by(CARS.c.id)
    ):
        folded = plate_key(plate)
        cars[folded].append((car_id, plate))
        if folded != key:
            connection.execute(CARS.update().where(CARS.c.id == car_id).values(plate_key=folded))
    shared = {key: rows for key, rows in cars.items() if len(rows) > 1}
    if shared:
        named = "; ".join(
            f"{rows[0][1]}: cars {', '.join(str(car_id) for car_id, _ in rows)}"
            for rows in shared.values()
        )
        raise ConfigError(
            f"carservice: a plate is registered to several cars ({named}); give each car its "
            "own plate or delete the extra one (crmkit shell, or the car list), then upgrade "
            "again"
        )
    op.drop_index("ix_carservice_car_plate_key", table_name="carservice_car")
    op.create_index("ix_carservice_car_plate_key", "carservice_car", ["plate_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_carservice_car_plate_key", table_name="carservice_car")
    op.create_index("ix_carservice_car_plate_key", "carservice_car", ["plate_key"], unique=False)
