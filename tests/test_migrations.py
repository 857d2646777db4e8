"""Migrations: a fresh database at head equals the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from crmkit import CRM, Config
from crmkit.model import Base, metadata
from crmkit.testing import new_postgres_schema, postgres_engine_for, postgres_reachable, require


@pytest.fixture
def migrated_engine(db_backend, tmp_path):
    if db_backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
        yield engine
        engine.dispose()
        return
    require(postgres_reachable(), "PostgreSQL")
    schema, drop = new_postgres_schema()
    engine = postgres_engine_for(schema)
    yield engine
    engine.dispose()
    drop()


def application(engine, tmp_path):
    config = Config.from_mapping({"database.url": str(engine.url)}, root=tmp_path, environ={})
    return CRM(config, engine=engine, load_entry_points=False)


def core_tables():
    """Tables of the core's models (plugins imported by other tests share the metadata)."""
    return {
        table.name
        for mapper in Base.registry.mappers
        if mapper.class_.__module__.startswith("crmkit.model")
        for table in mapper.tables
    }


def only_core(core, dialect):
    """Core tables only, and no index declared for another database (``ddl_if``)."""

    def include(obj, name, type_, reflected, compare_to):
        if type_ == "index" and not reflected:
            ddl_if = getattr(obj, "_ddl_if", None)
            if ddl_if is not None and ddl_if.dialect not in (None, dialect):
                return False
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in core

    return include


def test_fresh_database_at_head_matches_models(migrated_engine, tmp_path):
    crm = application(migrated_engine, tmp_path)
    crm.migrations.upgrade()
    dialect = migrated_engine.dialect.name
    options = {"compare_type": True, "include_object": only_core(core_tables(), dialect)}
    with migrated_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts=options), metadata)
    assert diff == []
    assert crm.migrations.current() == crm.migrations.heads()


def test_audit_log_is_append_only_after_migration(migrated_engine, tmp_path):
    crm = application(migrated_engine, tmp_path)
    crm.migrations.upgrade()
    crm.sync_access()
    with crm.system() as work:
        work.parties.create(name="Audited")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), migrated_engine.begin() as c:
        c.execute(sa.text("UPDATE audit_log SET action = 'forged'"))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), migrated_engine.begin() as c:
        c.execute(sa.text("DELETE FROM audit_log"))


def test_plugin_branch_is_applied_with_core(migrated_engine, tmp_path):
    """A plugin's own branch: a table of its own, created by `db upgrade` after the core's."""
    from tests.sample_plugin import plugin as sample

    config = Config.from_mapping(
        {"database.url": str(migrated_engine.url)}, root=tmp_path, environ={}
    )
    crm = CRM(config, engine=migrated_engine, plugins=[sample], load_entry_points=False)
    crm.migrations.upgrade()
    assert set(crm.migrations.current()) == {"crmkit", "sample"}
    assert crm.migrations.current() == crm.migrations.heads()
    with migrated_engine.connect() as connection:
        assert "sample_visit" in sa.inspect(connection).get_table_names()
