"""The test kit for crmkit and its plugins: real databases, fresh applications, named roles.

``make_crm(plugins=[...], db="sqlite" | "postgresql")`` builds a new application with its
own empty database: a SQLite file in a temporary directory, or a PostgreSQL schema private
to the test process (so parallel runs and parallel sessions never see each other's rows).
The pytest plugin (:mod:`crmkit.testing.pytest_plugin`, registered through ``pytest11``)
runs every test that uses the ``crm`` or ``make_crm`` fixtures on both databases.

Services that cannot run here are never skipped silently under CI: :func:`require` fails
the test when ``CI`` is set and skips it, with the reason shown, otherwise.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.config import Config
from crmkit.model import User, metadata

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEMO_PASSWORD = "test-password-1"


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed; whether it held.

    For what another thread or process does in its own time (a worker, a watcher, a
    server): ``assert wait_until(lambda: ..., timeout=5)``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a test server, or one nothing listens on)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port`` now: with :func:`wait_until`,
    for a server a test started in another process or thread."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def in_ci() -> bool:
    """Whether we run under CI, where a missing service is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


class ServiceUnavailable(Exception):
    """A service a test needs (PostgreSQL, Redis, a browser, recordings) is not there."""


def require(available: bool, what: str) -> None:
    """Skip (outside CI) or fail (under CI) the current test when ``what`` is unavailable."""
    if available:
        return
    import pytest

    if in_ci():
        pytest.fail(f"{what} is required under CI but unavailable", pytrace=False)
    pytest.skip(f"{what} unavailable")


def postgres_url() -> str:
    """The PostgreSQL server tests use (``CRMKIT_TEST_PG_URL``)."""
    return os.environ.get("CRMKIT_TEST_PG_URL", DEFAULT_PG_URL)


def redis_url() -> str:
    """The Redis server tests use (``CRMKIT_TEST_REDIS_URL``)."""
    return os.environ.get("CRMKIT_TEST_REDIS_URL", DEFAULT_REDIS_URL)


_pg_state: dict[str, Any] = {}


def postgres_reachable() -> bool:
    """Whether the test PostgreSQL server answers (checked once per process)."""
    if "reachable" not in _pg_state:
        try:
            engine = sa.create_engine(postgres_url(), connect_args={"connect_timeout": 3})
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            engine.dispose()
            _pg_state["reachable"] = True
        except Exception as exc:  # any failure means "not reachable"; the reason is kept
            _pg_state["reachable"] = False
            _pg_state["error"] = str(exc).splitlines()[0]
    return bool(_pg_state["reachable"])


def postgres_error() -> str:
    """Why PostgreSQL was not reachable."""
    return str(_pg_state.get("error", ""))


def private_schema() -> str:
    """The PostgreSQL schema of this test process, created on first use, dropped at exit."""
    if "schema" not in _pg_state:
        name = f"crmkit_t{os.getpid()}_{secrets.token_hex(3)}"
        engine = sa.create_engine(postgres_url())
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        engine.dispose()
        _pg_state["schema"] = name
        _pg_state["tables"] = set()
        atexit.register(_drop_schema, name)
    return str(_pg_state["schema"])


def _drop_schema(name: str) -> None:
    try:
        engine = sa.create_engine(postgres_url())
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()
    except Exception:  # the server may be gone at exit; the schema name is unique anyway
        pass


def new_postgres_schema(prefix: str = "crmkit_m") -> tuple[str, Any]:
    """A separate empty schema and a function that drops it (for migration tests)."""
    name = f"{prefix}{os.getpid()}_{secrets.token_hex(3)}"
    engine = sa.create_engine(postgres_url())
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    return name, lambda: _drop_schema(name)


def postgres_engine_for(schema: str, **kwargs: Any) -> sa.Engine:
    """An engine whose connections work inside ``schema``."""
    from crmkit.db import make_engine

    return make_engine(
        postgres_url(), connect_args={"options": f"-csearch_path={schema}"}, **kwargs
    )


def postgres_resets() -> int:
    """How many times this process has emptied its private schema (a new application on
    PostgreSQL does): an application kept across tests is still intact while it is unchanged."""
    return int(_pg_state.get("resets", 0))


#: A table holding rows whose files (deleted rows included) have grown past this many bytes
#: makes the next reset truncate the whole schema (see _reset_postgres).
_TRUNCATE_ABOVE_BYTES = 2 * 1024 * 1024


def _superuser(connection: sa.Connection) -> bool:
    if "superuser" not in _pg_state:
        _pg_state["superuser"] = connection.exec_driver_sql("SHOW is_superuser").scalar() == "on"
    return bool(_pg_state["superuser"])


def _reset_postgres(engine: sa.Engine) -> None:
    """Empty every table of the private schema and restart the sequences of their ids.

    ``TRUNCATE`` of every table makes new files for each table and index: about a second
    for the whole schema on a busy machine, most of a new application's cost.  A test fills
    a few tables with a few rows, so those alone are emptied with ``DELETE`` (with triggers
    and foreign-key checks off: every table that holds a row is emptied in the same
    transaction) and every id sequence restarts with ``setval``.  Deleted rows stay behind
    as dead tuples until a ``TRUNCATE``: a table grown past ``_TRUNCATE_ABOVE_BYTES`` gets
    one, of the whole schema as before.  Without the right to switch triggers off (not a
    superuser) the whole schema is truncated each time.
    """
    _pg_state["resets"] = postgres_resets() + 1
    created: set[str] = _pg_state["tables"]
    tables = metadata.sorted_tables
    missing = [t for t in tables if t.name not in created]
    if missing:
        metadata.create_all(engine, tables=missing)
        created.update(t.name for t in missing)
    quote = engine.dialect.identifier_preparer.quote
    names = ", ".join(quote(t.name) for t in tables)
    with engine.begin() as connection:
        if not _superuser(connection):
            connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            return
        # no trigger fires (the access generation's on TRUNCATE, the audit log's refusal);
        # and no wait for the disk: a crash loses a test schema, nothing else
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        # what TRUNCATE waits for: nobody writes meanwhile, nobody reads half-emptied tables
        connection.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        filled = connection.exec_driver_sql(
            " UNION ALL ".join(
                f"SELECT '{t.name}', pg_total_relation_size('{quote(t.name)}') "
                f"WHERE EXISTS (SELECT FROM {quote(t.name)})"
                for t in tables
            )
        ).all()
        if any(size > _TRUNCATE_ABOVE_BYTES for _, size in filled):
            connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            return
        for name, _ in filled:
            connection.exec_driver_sql(f"DELETE FROM {quote(name)}")
        # what RESTART IDENTITY restarts: the sequences the tables own, at their start
        connection.execute(
            sa.text(
                "SELECT setval(d.objid::regclass, s.seqstart, false) FROM pg_depend d "
                "JOIN pg_sequence s ON s.seqrelid = d.objid "
                "JOIN pg_class t ON t.oid = d.refobjid "
                "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
                "AND d.deptype IN ('a', 'i') "
                "AND t.relnamespace = current_schema()::regnamespace "
                "AND t.relname = ANY(:names)"
            ),
            {"names": [t.name for t in tables]},
        )


def _sqlite_template() -> Path:
    """A SQLite file holding the tables of every model imported so far, made once per process
    (again when a plugin imported since adds tables): a new application's database is a copy
    of it, which takes a millisecond where creating the schema takes a tenth of a second."""
    from crmkit.db import make_engine

    key = tuple(t.name for t in metadata.sorted_tables)
    templates: dict[tuple[str, ...], Path] = _sqlite_state.setdefault("templates", {})
    if key not in templates:
        if "directory" not in _sqlite_state:
            _sqlite_state["directory"] = tempfile.mkdtemp(prefix="crmkit-schema-")
            atexit.register(shutil.rmtree, _sqlite_state["directory"], True)
        path = Path(_sqlite_state["directory"]) / f"schema{len(templates)}.sqlite3"
        engine = make_engine(f"sqlite:///{path}")
        try:
            metadata.create_all(engine)
            with engine.connect() as connection:  # everything in the file, no WAL beside it
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()
        templates[key] = path
    return templates[key]


_sqlite_state: dict[str, Any] = {}


def owned_tables(crm: CRM) -> set[str]:
    """Names of the tables whose models belong to the core or to a plugin loaded in ``crm``.

    Every model lives on one metadata, so a process that imported a plugin (a test run
    collecting plugin tests) sees its tables even in applications that do not load it.
    """
    import types

    from crmkit.model import Base

    packages = {"crmkit"}
    for plugin in crm.pm.get_plugins():
        module = (
            plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
        )
        packages.add(module.split(".")[0])
    return {
        mapper.local_table.name
        for mapper in Base.registry.mappers
        if mapper.class_.__module__.split(".")[0] in packages
    }


def schema_differences(crm: CRM, connection: sa.Connection) -> list[Any]:
    """Alembic's differences between the database and the models of ``crm``'s plugins.

    An empty list means the migrations of the core and of every loaded plugin create
    exactly what the models describe.  Tables of plugins not loaded are ignored.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from crmkit.model.party import MATCH_WORD_FTS

    tables = owned_tables(crm)

    dialect = connection.dialect.name

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "index" and not reflected:
            ddl_if = getattr(obj, "_ddl_if", None)  # an index declared for another database
            if ddl_if is not None and ddl_if.dialect not in (None, dialect):
                return False
        table = obj if type_ == "table" else getattr(obj, "table", None)
        table_name = getattr(table, "name", name)
        if table_name and table_name.startswith(MATCH_WORD_FTS):
            return False  # SQLite's full-text table and its shadow tables: no model
        return (reflected and compare_to is None) or table_name in tables

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": include}
    )
    return list(compare_metadata(context, metadata))


def make_crm(
    plugins: Sequence[Any] = (),
    *,
    db: str = "sqlite",
    directory: str | os.PathLike[str] | None = None,
    settings: dict[str, Any] | None = None,
    load_entry_points: bool = False,
    **engine_options: Any,
) -> CRM:
    """A new application with an empty database and the given plugins.

    ``db`` is ``"sqlite"`` (a file in ``directory`` or a new temporary directory) or
    ``"postgresql"`` (this process's private schema, emptied).  ``settings`` are config
    values in dotted or nested form.  Installed plugins are not loaded unless
    ``load_entry_points`` is true: a test states what it runs with.
    """
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="crmkit-test-"))
    root.mkdir(parents=True, exist_ok=True)
    tree: dict[str, Any] = {
        "secret_key": "test-secret-" + secrets.token_hex(8),
        "security.argon2_profile": "CHEAPEST",
    }
    tree.update(settings or {})
    engine = None
    database = root / "crm.sqlite3"
    if db == "sqlite":
        tree.setdefault("database.url", f"sqlite:///{database}")
    elif db == "postgresql":
        if not postgres_reachable():
            raise ServiceUnavailable(f"PostgreSQL at {postgres_url()}: {postgres_error()}")
        tree.setdefault("database.url", postgres_url())
        engine = postgres_engine_for(private_schema(), **engine_options)
    else:
        raise ValueError(f"unknown test database {db!r} (sqlite or postgresql)")
    config = Config.from_mapping(tree, root=root, environ={})
    default_file = config["database.url"] == f"sqlite:///{database}"
    copied = db == "sqlite" and default_file and not database.exists()
    if copied:  # the tables create_schema would make, made once per process
        shutil.copyfile(_sqlite_template(), database)
    crm = CRM(config, plugins=plugins, load_entry_points=load_entry_points, engine=engine)
    if db == "postgresql":
        _reset_postgres(crm.engine)
        crm.sync_access()
    elif copied:
        crm.sync_access()
    else:
        crm.create_schema()
    return crm


def add_user(
    crm: CRM,
    username: str,
    roles: Iterable[str] = ("agent",),
    *,
    password: str = DEMO_PASSWORD,
    **values: Any,
) -> User:
    """Create a user holding ``roles`` (as the system), with a known password."""
    with crm.system() as work:
        return work.users.create(username=username, roles=list(roles), password=password, **values)


class Factories:
    """Quick builders of valid records, acting as whoever the unit of work acts as."""

    counter = 0

    @classmethod
    def _next(cls) -> int:
        cls.counter += 1
        return cls.counter

    @classmethod
    def organisation(cls, work: Any, **values: Any) -> Any:
        """An organisation with a phone and an email unless given."""
        n = cls._next()
        data: dict[str, Any] = {
            "kind": "organisation",
            "name": f"ООО «Тест {n}»",
            "contact_points": [
                {"kind": "phone", "value": f"+7 916 {n % 1000:03d}-{n % 100:02d}-01"},
                {"kind": "email", "value": f"org{n}@example.ru"},
            ],
        }
        data.update(values)
        # test data may repeat names on purpose; screening has its own tests
        return work.parties.create(data, confirm_duplicates=True)

    @classmethod
    def person(cls, work: Any, **values: Any) -> Any:
        """A person."""
        n = cls._next()
        data: dict[str, Any] = {"kind": "person", "first_name": "Иван", "last_name": f"Тестов{n}"}
        data.update(values)
        return work.parties.create(data, confirm_duplicates=True)

    @classmethod
    def deal(cls, work: Any, **values: Any) -> Any:
        """A deal (on a new organisation unless ``party_id`` is given)."""
        if "party_id" not in values:
            values["party_id"] = cls.organisation(work).id
        data: dict[str, Any] = {"title": f"Сделка {cls._next()}"}
        data.update(values)
        return work.deals.create(data)

    @classmethod
    def task(cls, work: Any, **values: Any) -> Any:
        """A task assigned to the actor."""
        data: dict[str, Any] = {"title": f"Задача {cls._next()}", "assignee_id": work.actor.user_id}
        data.update(values)
        return work.tasks.create(data)


factories = Factories

__all__ = [
    "DEMO_PASSWORD",
    "ServiceUnavailable",
    "add_user",
    "factories",
    "free_port",
    "in_ci",
    "make_crm",
    "new_postgres_schema",
    "owned_tables",
    "postgres_engine_for",
    "postgres_reachable",
    "postgres_url",
    "redis_url",
    "require",
    "schema_differences",
]
