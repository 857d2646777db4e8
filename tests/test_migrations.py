"""Migrations: a fresh database at head equals the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from crmkit import CRM, Config
from crmkit.testing import (
    new_postgres_schema,
    postgres_engine_for,
    postgres_reachable,
    require,
    schema_differences,
)


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


def test_fresh_database_at_head_matches_models(migrated_engine, tmp_path):
    crm = application(migrated_engine, tmp_path)
    crm.migrations.upgrade()
    with migrated_engine.connect() as connection:
        # tables of plugins imported by other tests in this process are not the core's
        diff = schema_differences(crm, connection)
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


def test_a_migrated_database_never_reuses_a_deleted_id(migrated_engine, tmp_path):
    crm = application(migrated_engine, tmp_path)
    crm.migrations.upgrade()
    crm.sync_access()
    with crm.system() as work:
        newest = work.parties.create(name="Newest")
    with crm.system() as work:
        work.parties.delete(newest.id)
    with crm.system() as work:
        assert work.parties.create(name="Next").id > newest.id


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


def test_moves_before_0011_are_marked_backward_from_the_pipeline_definitions(
    migrated_engine, tmp_path
):
    """History written before the column existed: a move whose declared transition is
    backward (Qualified -> New, Lost -> New in the sales pipeline) is marked so; forward
    moves, placements and moves of a pipeline the application does not know are not."""
    from alembic import command

    from crmkit.model import StageMove

    crm = application(migrated_engine, tmp_path)
    crm.migrations.upgrade()
    config = crm.migrations.config()
    with migrated_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0010_party_language")
    moves = [
        ("sales", None, "new"),
        ("sales", "new", "qualified"),
        ("sales", "qualified", "new"),
        ("sales", "new", "lost"),
        ("sales", "lost", "new"),
        ("sales", "new", "qualified"),
        ("gone", "qualified", "new"),  # a pipeline no plugin declares any more
    ]
    rows = [
        {"entity": "deal", "record_id": 1, "pipeline": p, "from_stage": a, "to_stage": b}
        for p, a, b in moves
    ]
    with migrated_engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO stage_move (entity, record_id, pipeline, from_stage, to_stage, at) "
                "VALUES (:entity, :record_id, :pipeline, :from_stage, :to_stage, "
                "CURRENT_TIMESTAMP)"
            ),
            rows,
        )
    crm.migrations.upgrade()
    with migrated_engine.connect() as connection:
        marked = connection.execute(
            sa.select(StageMove.pipeline, StageMove.from_stage, StageMove.to_stage).where(
                StageMove.backward.is_(True)
            )
        ).all()
        assert sorted(marked) == [("sales", "lost", "new"), ("sales", "qualified", "new")]
        assert connection.scalar(sa.select(sa.func.count()).select_from(StageMove)) == 7


def test_autogenerated_plugin_revision_holds_only_the_plugins_tables(migrated_engine, tmp_path):
    """`db revision` for a new plugin branch: its own table and nothing else; the core's
    full-text tables stay, no index for another database, no deployment's tables."""
    import crmkit_carservice.plugin  # noqa: F401  (a deployment imported but not loaded)

    from crmkit import MigrationBranch, hookimpl
    from crmkit.model import Base
    from tests.sample_plugin import plugin as sample  # noqa: F401  (its model: sample_visit)

    versions = tmp_path / "scratch_versions"
    versions.mkdir()

    class Scratch:
        @hookimpl
        def crmkit_register_migrations(self):
            return [MigrationBranch("scratch", versions)]

    config = Config.from_mapping(
        {"database.url": str(migrated_engine.url)}, root=tmp_path, environ={}
    )
    crm = CRM(config, engine=migrated_engine, plugins=[Scratch()], load_entry_points=False)
    crm.migrations.upgrade()
    path = crm.migrations.revision("scratch visits", "scratch")
    upgrade, downgrade = path.read_text().split("def downgrade")
    # the branch's package is the one of its hook (``tests``): the tables of the test
    # plugins this process has imported (sample_visit, maybe others), and nothing else
    ours = {
        mapper.local_table.name
        for mapper in Base.registry.mappers
        if mapper.class_.__module__.split(".")[0] == "tests"
    }
    assert "op.create_table('sample_visit'" in upgrade
    assert set(re.findall(r"op\.create_table\('(\w+)'", upgrade)) == ours
    for absent in ("drop_table", "match_word", "carservice", "op.add_column", "drop_index"):
        assert absent not in upgrade
    assert downgrade.count("op.drop_table(") == len(ours)
    crm.migrations.upgrade()


def test_a_revision_finding_no_change_writes_nothing_and_says_so(migrated_engine, tmp_path):
    """A second `db revision` with the models unchanged (run twice by mistake, or before
    `db upgrade` applied the first) writes no empty file to delete; `--empty` still does."""
    from crmkit import MigrationBranch, hookimpl
    from crmkit.errors import ConfigError
    from tests.sample_plugin import plugin as sample  # noqa: F401  (its model: sample_visit)

    versions = tmp_path / "scratch_versions"
    versions.mkdir()

    class Scratch:
        @hookimpl
        def crmkit_register_migrations(self):
            return [MigrationBranch("scratch", versions)]

    config = Config.from_mapping(
        {"database.url": str(migrated_engine.url)}, root=tmp_path, environ={}
    )
    crm = CRM(config, engine=migrated_engine, plugins=[Scratch()], load_entry_points=False)
    crm.migrations.upgrade()
    first = crm.migrations.revision("scratch visits", "scratch")
    crm.migrations.upgrade()
    with pytest.raises(ConfigError) as refused:
        crm.migrations.revision("again", "scratch")
    assert str(refused.value) == (
        "no change in the models of branch 'scratch' since its last revision: nothing "
        "written (db revision --empty writes a revision to fill in by hand)"
    )
    assert list(versions.glob("*.py")) == [first]
    by_hand = crm.migrations.revision("by hand", "scratch", autogenerate=False)
    assert sorted(versions.glob("*.py")) == sorted([first, by_hand])
    with migrated_engine.connect() as connection:
        names = set(sa.inspect(connection).get_table_names())
    assert "sample_visit" in names
    if migrated_engine.dialect.name == "sqlite":
        assert "match_word_fts" in names


def test_serve_and_worker_refuse_a_database_not_at_the_heads(migrated_engine, tmp_path):
    """`crmkit serve` and `crmkit worker` run ``check_ready`` first: a database never migrated,
    or whose plugin branch is behind, is refused in one line telling what to run."""
    from crmkit.errors import ConfigError
    from tests.sample_plugin import plugin as sample

    config = Config.from_mapping(
        {"database.url": str(migrated_engine.url)}, root=tmp_path, environ={}
    )
    crm = CRM(config, engine=migrated_engine, plugins=[sample], load_entry_points=False)
    heads = crm.migrations.heads()
    with pytest.raises(ConfigError) as info:
        crm.check_ready()
    assert str(info.value).endswith(
        f"is not migrated (crmkit not applied, newest {heads['crmkit']}; sample not applied, "
        f"newest {heads['sample']}): run `crmkit db upgrade` first"
    )
    crm.migrations.upgrade("crmkit@head")  # the core migrated, a plugin added since
    with pytest.raises(ConfigError) as info:
        crm.check_ready()
    assert str(info.value).endswith(
        f"is behind the code (sample not applied, newest {heads['sample']}): "
        "run `crmkit db upgrade` first"
    )
    crm.migrations.upgrade()
    crm.check_ready()  # at every head: starts


BROKEN_REVISION = '''"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down!r}
branch_labels = {labels!r}
depends_on = {depends!r}


def upgrade() -> None:
    op.create_table({table!r}, sa.Column("id", sa.Integer, primary_key=True))
    {then}


def downgrade() -> None:
    op.drop_table({table!r})
'''


def broken_plugin(directory):
    """A plugin whose branch has a good first revision and a second one that creates a
    table, then fails on a statement the database refuses."""
    from crmkit import MigrationBranch, hookimpl

    directory.mkdir()
    (directory / "broken_0001.py").write_text(
        BROKEN_REVISION.format(
            message="a good one",
            revision="broken_0001",
            down=None,
            labels=("broken",),
            depends=("crmkit",),
            table="broken_kept",
            then="pass",
        )
    )
    (directory / "broken_0002.py").write_text(
        BROKEN_REVISION.format(
            message="creates a table, then fails",
            revision="broken_0002",
            down="broken_0001",
            labels=None,
            depends=None,
            table="broken_half",
            then='op.execute("INSERT INTO no_such_table VALUES (1)")',
        )
    )

    class Broken:
        @hookimpl
        def crmkit_register_migrations(self):
            return [MigrationBranch("broken", directory)]

    return Broken()


def test_a_revision_failing_half_way_leaves_the_database_at_the_prior_revision(
    migrated_engine, tmp_path
):
    """The failing revision's table is not left behind and `alembic_version` still names
    the revision before it, on SQLite as on PostgreSQL."""
    config = Config.from_mapping(
        {"database.url": str(migrated_engine.url)}, root=tmp_path, environ={}
    )
    plugin = broken_plugin(tmp_path / "broken_versions")
    crm = CRM(config, engine=migrated_engine, plugins=[plugin], load_entry_points=False)
    crm.migrations.upgrade("broken_0001")
    with migrated_engine.connect() as connection:
        before = set(sa.inspect(connection).get_table_names())
        versions_before = set(
            connection.scalars(sa.text("SELECT version_num FROM alembic_version"))
        )

    with pytest.raises(sa.exc.DBAPIError, match="no_such_table"):
        crm.migrations.upgrade()

    with migrated_engine.connect() as connection:
        after = set(sa.inspect(connection).get_table_names())
        versions_after = set(connection.scalars(sa.text("SELECT version_num FROM alembic_version")))
    assert "broken_half" not in after
    assert after == before
    assert versions_after == versions_before == {"broken_0001"}
    assert crm.migrations.current()["broken"] == "broken_0001"


def test_a_first_upgrade_failing_leaves_an_empty_database(migrated_engine, tmp_path):
    """Every revision of the run is undone with the failing one: the core's tables, its
    full-text virtual tables and triggers included, so the next upgrade starts afresh."""
    config = Config.from_mapping(
        {"database.url": str(migrated_engine.url)}, root=tmp_path, environ={}
    )
    plugin = broken_plugin(tmp_path / "broken_versions")
    crm = CRM(config, engine=migrated_engine, plugins=[plugin], load_entry_points=False)
    with pytest.raises(sa.exc.DBAPIError, match="no_such_table"):
        crm.migrations.upgrade()
    with migrated_engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == []
        if migrated_engine.dialect.name == "sqlite":
            left = connection.scalars(sa.text("SELECT name FROM sqlite_master")).all()
            assert left == []

    crm = application(migrated_engine, tmp_path)
    crm.migrations.upgrade()
    with migrated_engine.connect() as connection:
        assert schema_differences(crm, connection) == []
        if migrated_engine.dialect.name == "sqlite":
            assert "match_word_fts" in sa.inspect(connection).get_table_names()
            # the pooled connection is handed back with the driver's own transactions
            assert connection.connection.driver_connection.isolation_level == ""


def test_no_revision_is_written_into_an_installed_package(migrated_engine, tmp_path):
    """A branch whose folder is in site-packages (a plugin installed from a wheel) is
    refused, naming the branch and the way out; nothing is written there."""
    import sysconfig

    from crmkit import MigrationBranch, hookimpl
    from crmkit.errors import ConfigError

    site_packages = Path(sysconfig.get_paths()["purelib"])
    versions = site_packages / "crmkit_wheel_plugin" / "migrations"

    class FromWheel:
        @hookimpl
        def crmkit_register_migrations(self):
            return [MigrationBranch("wheel", versions)]

    config = Config.from_mapping(
        {"database.url": str(migrated_engine.url)}, root=tmp_path, environ={}
    )
    crm = CRM(config, engine=migrated_engine, plugins=[FromWheel()], load_entry_points=False)
    crm.migrations.upgrade()
    with pytest.raises(ConfigError) as refused:
        crm.migrations.revision("x", "wheel")
    assert str(refused.value) == (
        f"migration branch 'wheel' is in an installed package ({site_packages}): write "
        "revisions in its source checkout, installed editable (pip install -e PATH)"
    )
    assert not versions.parent.exists()


def test_upgrading_keeps_every_row_linked_to_a_rebuilt_table(db_backend, tmp_path):
    """0012 rebuilds `conversation` on SQLite (copy, drop, rename): with the deployment's
    own connections (foreign keys on), the drop acted as a delete and cut every message
    from its conversation (ON DELETE SET NULL)."""
    from crmkit.db import make_engine

    if db_backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'kept.sqlite3'}")
    else:
        require(postgres_reachable(), "PostgreSQL")
        schema, drop = new_postgres_schema()
        engine = postgres_engine_for(schema)
    try:
        crm = application(engine, tmp_path)
        crm.migrations.upgrade("0011_stage_move_backward")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO conversation (id, channel, address, address_key, subject, "
                    "status, unread, last_message_at, created_at) VALUES (1, 'mail', "
                    "'a@kedr.ru', 'a@kedr.ru', 'Заявка', 'open', 1, CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO activity (id, kind, occurred_at, by_assistant, body, data, "
                    "pinned, conversation_id, channel, direction) VALUES (1, 'mail', "
                    "CURRENT_TIMESTAMP, false, 'Добрый день', '{}', false, 1, 'mail', 'in')"
                )
            )
        crm.migrations.upgrade()
        with engine.connect() as connection:
            linked = connection.execute(sa.text("SELECT id, conversation_id FROM activity"))
            assert linked.all() == [(1, 1)]
            assert connection.execute(sa.text("SELECT count(*) FROM conversation")).scalar() == 1
    finally:
        engine.dispose()
        if db_backend != "sqlite":
            drop()
