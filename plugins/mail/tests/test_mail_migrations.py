"""The mail branch: applied after the core's, equal to the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from crmkit_mail import plugin as mail_plugin

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
        schema, drop = new_postgres_schema("crmkit_mail")
        engine = postgres_engine_for(schema)
    config = Config.from_mapping({"database.url": str(engine.url)}, root=tmp_path, environ={})
    crm = CRM(config, engine=engine, plugins=[mail_plugin], load_entry_points=False)
    crm.migrations.upgrade()
    yield crm
    engine.dispose()
    if drop:
        drop()


def test_mail_branch_matches_the_models(migrated):
    assert set(migrated.migrations.current()) == {"crmkit", "mail"}
    assert migrated.migrations.current() == migrated.migrations.heads()
    with migrated.engine.connect() as connection:
        assert schema_differences(migrated, connection) == []
