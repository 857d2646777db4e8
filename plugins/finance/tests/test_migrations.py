"""The finance branch: applied after the core's, equal to the models, append-only triggers."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from crmkit_finance import plugin as finance_plugin

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
        schema, drop = new_postgres_schema("crmkit_fin")
        engine = postgres_engine_for(schema)
    config = Config.from_mapping({"database.url": str(engine.url)}, root=tmp_path, environ={})
    crm = CRM(config, engine=engine, plugins=[finance_plugin], load_entry_points=False)
    crm.migrations.upgrade()
    yield crm
    engine.dispose()
    if drop:
        drop()


def test_finance_branch_matches_the_models(migrated):
    assert set(migrated.migrations.current()) == {"crmkit", "finance"}
    assert migrated.migrations.current() == migrated.migrations.heads()
    # the finance head stands on the core's, and each branch reports its own revision
    current = migrated.migrations.current()
    assert current["finance"] == "finance_0003_form_token"
    assert current["crmkit"] != current["finance"]
    with migrated.engine.connect() as connection:
        assert schema_differences(migrated, connection) == []


def test_ledger_is_append_only_after_migration(migrated):
    from crmkit_finance import finance

    migrated.sync_access()
    with migrated.system() as work:
        fin = finance(work)
        fin.expenses.expense("expense:rent", "100.00")
    for statement in ("UPDATE finance_entry SET amount = 1", "DELETE FROM finance_transaction"):
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            migrated.engine.begin() as connection,
        ):
            connection.execute(sa.text(statement))
