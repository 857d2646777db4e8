"""The car service's migration branch stands on the finance branch and matches the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from service_fixtures import PLUGINS

from crmkit import CRM, Config
from crmkit.testing import (
    new_postgres_schema,
    postgres_engine_for,
    postgres_reachable,
    require,
    schema_differences,
)


@pytest.fixture
def migrated(db_backend, tmp_path):
    if db_backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
        drop = None
    else:
        require(postgres_reachable(), "PostgreSQL")
        schema, drop = new_postgres_schema("crmkit_cs")
        engine = postgres_engine_for(schema)
    config = Config.from_mapping({"database.url": str(engine.url)}, root=tmp_path, environ={})
    crm = CRM(config, engine=engine, plugins=PLUGINS, load_entry_points=False)
    crm.migrations.upgrade()
    yield crm
    engine.dispose()
    if drop:
        drop()


def test_carservice_branch_matches_the_models(migrated):
    assert set(migrated.migrations.current()) == {"crmkit", "finance", "carservice"}
    assert migrated.migrations.current() == migrated.migrations.heads()
    with migrated.engine.connect() as connection:
        assert schema_differences(migrated, connection) == []


@pytest.fixture
def before_unique_plates(db_backend, tmp_path):
    if db_backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'p.sqlite3'}")
        drop = None
    else:
        require(postgres_reachable(), "PostgreSQL")
        schema, drop = new_postgres_schema("crmkit_cs")
        engine = postgres_engine_for(schema)
    config = Config.from_mapping({"database.url": str(engine.url)}, root=tmp_path, environ={})
    crm = CRM(config, engine=engine, plugins=PLUGINS, load_entry_points=False)
    for target in ("crmkit@head", "finance@head", "carservice@744af71d2c16"):
        crm.migrations.upgrade(target)  # the car service before its plates were unique
    assert crm.migrations.current()["carservice"] == "744af71d2c16"
    yield crm
    engine.dispose()
    if drop:
        drop()


def _car(connection, party_id, plate, key):
    connection.execute(
        sa.text(
            "INSERT INTO carservice_car (party_id, plate, plate_key, make, model, note,"
            " created_at, updated_at) VALUES (:p, :plate, :key, '', '', '', :at, :at)"
        ),
        {"p": party_id, "plate": plate, "key": key, "at": "2026-11-01 10:00:00"},
    )


def test_plates_are_folded_anew_and_a_plate_of_two_cars_stops_the_upgrade(
    before_unique_plates,
):
    from crmkit.errors import ConfigError

    crm = before_unique_plates
    with crm.system() as work:
        party_id = work.parties.create(kind="person", name="Клиент").id
    with crm.engine.begin() as connection:
        # the keys as the old fold made them: "RUS" and "/" were kept
        _car(connection, party_id, "М225ТР 177 RUS", "M225TP177RUS")
        _car(connection, party_id, "м225тр/177", "M225TP/177")
        _car(connection, party_id, "В001ВВ 77 РУС", "B001BB77PYC")
    with pytest.raises(ConfigError, match=r"М225ТР 177 RUS: cars \d+, \d+"):
        crm.migrations.upgrade()
    with crm.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM carservice_car WHERE plate = 'м225тр/177'"))
    crm.migrations.upgrade()
    with crm.engine.connect() as connection:
        keys = connection.execute(
            sa.text("SELECT plate_key FROM carservice_car ORDER BY id")
        ).scalars()
        assert list(keys) == ["M225TP177", "B001BB77"]
        assert schema_differences(crm, connection) == []
