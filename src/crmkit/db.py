"""Database engines and migrations.

:func:`make_engine` builds an engine with the settings crmkit relies on (SQLite: WAL,
foreign keys, a busy timeout; PostgreSQL: psycopg 3).  :class:`Migrations` runs Alembic with
one branch per plugin: the core's branch is labelled ``crmkit`` and each plugin registers
its own :class:`MigrationBranch` through ``crmkit_register_migrations``.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import sessionmaker

from crmkit.errors import ConfigError

if TYPE_CHECKING:
    from crmkit.pipeline.definition import Pipeline

CORE_MIGRATIONS = Path(__file__).parent / "migrations"

log = logging.getLogger(__name__)


@attrs.frozen
class MigrationBranch:
    """An Alembic branch: its label (the plugin name) and its ``versions`` directory."""

    label: str
    directory: Path = attrs.field(converter=Path)


#: Connections a server-database engine may open beyond ``database.pool_size`` for a
#: moment: as many again (the web's writes may be as many at once as its reads, see
#: :class:`crmkit.web.concurrency.Blocking`) plus these, for background work in the same
#: process (the embedded queue's workers, the ticker, the watchers).
SPARE_CONNECTIONS = 5

#: A pooled server connection idle for longer than this is pinged before it is handed out.
PING_IDLE_SECONDS = 5.0


def make_engine(
    url: str, *, echo: bool = False, ping_idle_seconds: float = PING_IDLE_SECONDS, **kwargs: Any
) -> Engine:
    """An engine for ``url`` configured for crmkit; a malformed URL raises ``ConfigError``.

    A server database's pooled connection is checked with a ping when it has been idle
    for ``ping_idle_seconds`` or more (a dropped one is replaced before anyone uses it);
    one used moments ago is handed out as it is (see :func:`ping_idle_connections`).
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database.url {url!r} is not a valid database URL") from None
    kwargs.setdefault("json_deserializer", _json_loads)
    try:
        if parsed.get_backend_name() == "sqlite":
            kwargs.pop("pool_size", None)  # SQLite's pool is SQLAlchemy's choice per file
            kwargs.pop("max_overflow", None)
            connect_args = kwargs.pop("connect_args", {})
            connect_args.setdefault("timeout", 30)
            connect_args.setdefault("check_same_thread", False)
            engine = sa.create_engine(parsed, echo=echo, connect_args=connect_args, **kwargs)
            sa.event.listen(engine, "connect", _sqlite_on_connect)
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            return engine
        engine = sa.create_engine(parsed, echo=echo, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            ping_idle_connections(engine, ping_idle_seconds)
        if parsed.get_driver_name() == "psycopg":
            from crmkit import cooperative

            sa.event.listen(engine, "do_connect", _sessions_in_utc)  # before the connecting one
            cooperative.enable(engine)  # waits can go to the event loop (crmkit.cooperative)
        return engine
    except NoSuchModuleError:
        raise ConfigError(
            f"database.url {url!r}: unknown database driver {parsed.drivername!r} "
            "(use sqlite:/// or postgresql+psycopg://)"
        ) from None
    except ModuleNotFoundError as exc:
        raise ConfigError(f"database.url {url!r}: driver not installed ({exc.name})") from None


def read_only_connection(engine: Engine) -> sa.Connection:
    """A pooled connection for read-only statements, outside a transaction block.

    On a server database it runs in AUTOCOMMIT: no BEGIN before the first statement and no
    COMMIT or ROLLBACK round trip when it is returned (under READ COMMITTED each statement
    sees the same committed data either way).  On SQLite a plain connection is already
    that (the driver begins transactions before writes only), and switching its isolation
    level there and back would cost more than a short query.  Never write through it.
    """
    connection = engine.connect()
    if engine.dialect.name != "sqlite":
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection on checkout only when it has been idle ``idle_seconds``.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip per unit of work,
    which on a request that runs one query is a third of its time with the database.  A
    connection returned moments ago is alive unless the server went away in those moments;
    then the failed statement is recognised as a disconnect, SQLAlchemy discards the whole
    pool and the next request connects afresh.  A connection idle for longer (the server
    may have restarted, a firewall may have cut it) is pinged first, and replaced if dead.
    """

    @sa.event.listens_for(engine, "connect")
    def connected(dbapi_connection: Any, record: Any) -> None:
        record.info["crmkit_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, record: Any) -> None:
        record.info["crmkit_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def handed_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("crmkit_idle_since")
        if since is not None and time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # the pool closes this connection and checks out another (a documented hook)
            raise sa.exc.DisconnectionError(f"pooled connection is dead: {exc}") from exc


def _sessions_in_utc(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    """Every PostgreSQL session of crmkit's in UTC, whatever the server's own time zone.

    crmkit stores and computes in UTC and converts only for display, so the session's zone
    changes no stored value; it decides what the driver hands back: ``timezone.utc`` values
    that need no conversion (list pages read four timestamps a row) instead of values in
    the server's zone (``Europe/Moscow`` on many a Russian server) converted one by one.
    Added to the URL's own ``options``; a later ``-c`` wins, so this one does.
    """
    cparams["options"] = f"{cparams.get('options', '')} -c TimeZone=UTC".strip()


def _json_loads(text: str | bytes | bytearray) -> Any:
    """JSON columns as :func:`json.loads` reads them, the common empty values without parsing.

    Most rows carry an empty ``custom`` object; list pages read one per row.  SQLite's
    driver gives text, psycopg gives bytes: both are recognised.  (orjson would be faster
    on the rest, but it reads integers wider than 64 bits as floats.)
    """
    if isinstance(text, str | bytes):  # not a bytearray: unhashable
        empty = _EMPTY_JSON.get(text)
        if empty is not None:
            return empty()
    return json.loads(text)


_EMPTY_JSON: dict[str | bytes, type] = {"{}": dict, b"{}": dict, "[]": list, b"[]": list}


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _unicode_upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLite's own lower()/upper() fold ASCII only; Russian text needs Unicode folding
    # for case-insensitive search (ILIKE compiles to lower(x) LIKE lower(y)).
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    dbapi_connection.create_function("upper", 1, _unicode_upper, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


@contextlib.contextmanager
def transactional_ddl(connection: sa.Connection) -> Iterator[None]:
    """Let ``connection`` run DDL inside its transaction, as PostgreSQL always does.

    Python's ``sqlite3`` begins a transaction only before INSERT/UPDATE/DELETE and runs
    ``CREATE TABLE`` and the like in autocommit, so a migration failing half-way would
    keep the tables it had created under the previous ``alembic_version``.  SQLite itself
    rolls DDL back (virtual full-text tables and triggers included): with the driver's
    transaction handling off, the caller emits ``BEGIN`` itself (SQLAlchemy's documented
    pysqlite recipe).  Only for this connection, restored when it goes back to the pool:
    everywhere else the driver's late BEGIN keeps reads out of write transactions.
    Nothing to do on other databases.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    before = raw.isolation_level
    raw.isolation_level = None
    # A revision that rebuilds a table (Alembic's batch mode on SQLite: copy, drop, rename)
    # must not let the drop act as a delete: with foreign keys on, ``ON DELETE SET NULL``
    # would cut every child row's link (every message from its conversation).  The pragma
    # is a no-op inside a transaction, so it is switched off here, before the BEGIN, and
    # the keys are checked as a whole before the commit (see Migrations._connection).
    keys_on = raw.execute("PRAGMA foreign_keys").fetchone()[0]
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA foreign_keys={'ON' if keys_on else 'OFF'}")
        raw.isolation_level = before


@attrs.define(eq=False)
class SharedTransaction:
    """The one transaction that every unit of work begun inside :func:`one_transaction`
    joins (each unit in a savepoint of it).

    ``after_commit`` and ``on_rollback`` collect what the joined units asked to run once
    their data is committed, or to undo outside the database if it is not: a unit's own
    "commit" only releases its savepoint, so those wait for the shared transaction.
    """

    engine: Engine
    connection: sa.Connection
    sessions: Any  # a sessionmaker bound to ``connection``
    after_commit: list[Callable[[], None]] = attrs.Factory(list)
    on_rollback: list[Callable[[], None]] = attrs.Factory(list)


_SHARED: contextvars.ContextVar[SharedTransaction | None] = contextvars.ContextVar(
    "crmkit_shared_transaction", default=None
)


def joined_transaction(engine: Engine) -> SharedTransaction | None:
    """The :func:`one_transaction` on ``engine`` the caller runs inside, if any."""
    shared = _SHARED.get()
    return shared if shared is not None and shared.engine is engine else None


@contextlib.contextmanager
def one_transaction(
    engine: Engine, configure: Callable[[Any], None] | None = None
) -> Iterator[SharedTransaction]:
    """Make the block one transaction: every unit of work on ``engine`` begun inside it (in
    this thread or task) joins it, so the block commits as a whole or leaves nothing.

    Each unit runs in a savepoint: a unit that fails undoes only its own work, as it
    would alone, and the caller decides whether the block goes on.  On SQLite the driver's
    own transaction handling is off for the connection and the block begins with
    ``BEGIN IMMEDIATE`` (as :meth:`Migrations._connection` does): the savepoints then nest
    in a real transaction, DDL included, and the write lock is held from the start, so
    nothing else writes to the database until the block ends.  On PostgreSQL the rows it
    writes are locked as usual until the end.  ``configure(sessionmaker)`` adds to the
    sessions' set-up (the application's id rule on SQLite).  Inside another block on the
    same engine it is simply part of that one.
    """
    current = joined_transaction(engine)
    if current is not None:
        yield current
        return
    with engine.connect() as connection:
        raw = connection.connection.driver_connection if engine.dialect.name == "sqlite" else None
        before = raw.isolation_level if raw is not None else None
        try:
            if raw is not None:
                raw.isolation_level = None
            transaction = connection.begin()
            if raw is not None:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            sessions = sessionmaker(
                bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
            )
            if configure is not None:
                configure(sessions)
            shared = SharedTransaction(engine, connection, sessions)
            token = _SHARED.set(shared)
            try:
                try:
                    yield shared
                finally:
                    _SHARED.reset(token)
                transaction.commit()
            except BaseException:
                if transaction.is_active:
                    transaction.rollback()
                _run_callbacks(shared.on_rollback, "rollback cleanup failed")
                raise
        finally:
            if raw is not None:
                raw.isolation_level = before
    _run_callbacks(shared.after_commit, "after-commit callback failed")


def _run_callbacks(callbacks: list[Callable[[], None]], failure: str) -> None:
    """Run each callback; one that fails is logged and the others still run."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception(failure)


def _check_foreign_keys(connection: sa.Connection) -> None:
    """Refuse (rolling the run back) when the migrations left a row whose foreign key
    names nothing: SQLite checked none while they ran."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise ConfigError(
            f"the migrations left {len(broken)} row(s) pointing at nothing "
            f"(first: {table} row {rowid} -> {parent}); nothing was applied"
        )


def check_connection(engine: Engine) -> None:
    """Connect once; an unreachable database raises ``ConfigError`` with the reason in a line."""
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        safe = engine.url.render_as_string(hide_password=True)
        raise ConfigError(f"cannot connect to database {safe}: {reason}") from None


def is_postgres(bind: Engine | sa.Connection) -> bool:
    """Whether ``bind`` talks to PostgreSQL."""
    return bind.dialect.name == "postgresql"


def lock_row(session: Any, model: Any, row_id: int) -> None:
    """Hold the row ``row_id`` of ``model`` until the transaction ends, for a read-then-write
    step that must not interleave with another (two refunds of one payment, two bookings of
    one resource).

    PostgreSQL locks the row (``SELECT ... FOR UPDATE``): a second transaction wanting it
    waits until the first commits, then reads what it wrote.  SQLite has one writer at a
    time: an empty write takes its write lock now, before the reads, so a concurrent writer
    waits for this transaction as a whole.
    """
    table = model.__table__
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(table.c.id).where(table.c.id == row_id).with_for_update())
    else:
        # deletes nothing (ids are positive), so no row trigger fires; takes the write lock
        session.execute(table.delete().where(table.c.id == -1))


class Migrations:
    """Alembic for one application: every branch (core + plugins) in one script directory.

    ``pipelines`` are the application's pipeline definitions; a data migration that needs
    them (marking the backward moves of the stage history) reads them from
    ``config.attributes["pipelines"]``.
    """

    def __init__(
        self,
        engine: Engine,
        branches: Sequence[MigrationBranch],
        pipelines: Sequence[Pipeline] = (),
        packages: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.branches = list(branches)
        self.pipelines = tuple(pipelines)
        #: branch label -> top-level package of its models (``crmkit`` for the core)
        self.packages = dict(packages or {})

    def config(self, stdout: io.TextIOBase | None = None) -> Any:
        """An Alembic ``Config`` covering every branch's versions directory."""
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig(stdout=stdout) if stdout else AlembicConfig()
        config.set_main_option("script_location", str(CORE_MIGRATIONS))
        locations = [str(CORE_MIGRATIONS / "versions")]
        locations += [str(b.directory) for b in self.branches if b.label != "crmkit"]
        config.set_main_option("version_locations", " ".join(locations))
        config.set_main_option("path_separator", "space")
        config.attributes["engine"] = self.engine
        config.attributes["pipelines"] = self.pipelines
        return config

    def branch(self, label: str) -> MigrationBranch:
        """The branch labelled ``label``; a clear error naming the known ones."""
        for branch in self.branches:
            if branch.label == label:
                return branch
        known = ", ".join(b.label for b in self.branches)
        raise ConfigError(f"no migration branch {label!r} (known: {known})")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """One transaction for the whole run: a revision that fails leaves nothing behind
        (its tables, the earlier revisions of the run, ``alembic_version``) on either
        database; see :func:`transactional_ddl`."""
        with (
            self.engine.connect() as connection,
            transactional_ddl(connection),
            connection.begin(),
        ):
            if connection.dialect.name == "sqlite":
                # the driver no longer begins for us; IMMEDIATE: the write lock now,
                # so no other writer slips in between the checks and the DDL
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            self._check_applied(connection)
            yield connection
            if connection.dialect.name == "sqlite":
                _check_foreign_keys(connection)

    def _check_applied(self, connection: sa.Connection) -> None:
        """Refuse, naming it, an applied revision no loaded branch has (a removed plugin)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from alembic.script.revision import RevisionError
        from alembic.util import CommandError

        script = ScriptDirectory.from_config(self.config())
        for head in sorted(MigrationContext.configure(connection).get_current_heads()):
            try:
                found = script.get_revision(head)
            except (CommandError, RevisionError):
                found = None
            if found is None:
                raise ConfigError(
                    f"revision {head} is applied but belongs to no loaded plugin: reinstall "
                    "the plugin (or downgrade its branch before removing it)"
                )

    def upgrade(
        self, target: str = "heads", then: Callable[[sa.Connection], object] | None = None
    ) -> None:
        """Apply every branch up to its head (or to ``target``).

        ``then(connection)`` runs after the last revision, in the same transaction: what it
        writes is committed with the revisions, and if it fails they are all rolled back.
        """
        from alembic import command

        from crmkit.model.ids import ensure_triggers

        config = self.config()
        with self._connection() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, target)
            ensure_triggers(connection)  # ids never reused in tables plugins added since
            if then is not None:
                then(connection)

    def current(self) -> dict[str, str | None]:
        """The applied revision of each branch (``None`` when a branch was never applied).

        Alembic records only the heads of what was applied: a plugin's revision that depends
        on the core's stands for both.  So each branch's applied revision is its newest one
        among the applied heads and everything they stand on.
        """
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(self.config())
        with self.engine.connect() as connection:
            self._check_applied(connection)
            heads = set(MigrationContext.configure(connection).get_current_heads())
        newest = _newest_per_branch(script, heads)
        return {branch.label: newest.get(branch.label) for branch in self.branches}

    def stamp(self, target: str = "heads") -> None:
        """Record ``target`` as applied without running it: for a schema created straight
        from the models (:meth:`crmkit.app.CRM.create_schema`, as tests and benchmarks do)."""
        from alembic import command

        config = self.config()
        with self._connection() as connection:
            config.attributes["connection"] = connection
            command.stamp(config, target)

    def check_current(self) -> None:
        """Refuse, in one line telling what to run, a database behind any branch's head:
        never migrated, or migrated by an older version of the code or of a plugin."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(self.config())
        with self.engine.connect() as connection:
            applied = set(MigrationContext.configure(connection).get_current_heads())
        if applied == set(script.get_heads()):
            return  # the usual case, cheap: one read of the version table and of the scripts
        current = self.current()
        late = [
            f"{label} {current.get(label) or 'not applied'}, newest {head}"
            for label, head in sorted(self.heads().items())
            if current.get(label) != head
        ]
        if not late:
            return
        state = "not migrated" if not any(current.values()) else "behind the code"
        raise ConfigError(
            f"database {self.engine.url.render_as_string(hide_password=True)} is {state} "
            f"({'; '.join(late)}): run `crmkit db upgrade` first"
        )

    def heads(self) -> dict[str, str]:
        """The newest revision of each branch in the scripts."""
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(self.config())
        return _newest_per_branch(script, script.get_heads())

    def owned_tables(self, label: str) -> set[str]:
        """Names of the tables whose models belong to branch ``label``'s package."""
        from crmkit.model import Base

        package = self.packages.get(label, label)
        return {
            mapper.local_table.name
            for mapper in Base.registry.mappers
            if mapper.class_.__module__.split(".")[0] == package
        }

    def revision(self, message: str, label: str, autogenerate: bool = True) -> Path:
        """Write a new revision script on branch ``label`` (autogenerated from the models).

        Autogenerate compares only the tables of the branch's own models: tables of other
        branches, of plugins not loaded and without models (SQLite's full-text tables) are
        left alone, and indexes declared for another database are skipped.
        """
        from alembic import command

        branch = self.branch(label)
        installed = installed_under(branch.directory)
        if installed is not None:
            raise ConfigError(
                f"migration branch {label!r} is in an installed package ({installed}): write "
                "revisions in its source checkout, installed editable (pip install -e PATH)"
            )
        config = self.config()
        existing = self.heads().get(label)
        with self._connection() as connection:
            config.attributes["connection"] = connection
            config.attributes["tables"] = self.owned_tables(label)
            config.attributes["autogenerate"] = autogenerate
            kwargs: dict[str, Any] = {"message": message, "autogenerate": autogenerate}
            if existing:
                kwargs["head"] = f"{label}@head"
            else:
                kwargs.update(head="base", branch_label=label, version_path=str(branch.directory))
                if label != "crmkit":
                    kwargs["depends_on"] = "crmkit"  # plugin tables point at core tables
            script = command.revision(config, **kwargs)
        if config.attributes.get("nothing_changed"):  # the environment wrote no script
            raise ConfigError(
                f"no change in the models of branch {label!r} since its last revision: "
                "nothing written (db revision --empty writes a revision to fill in by hand)"
            )
        scripts = script if isinstance(script, list) else [script]
        return Path(scripts[0].path)  # type: ignore[union-attr]


def installed_under(directory: Path) -> Path | None:
    """The site-packages folder ``directory`` is in, if it is in one (``None`` otherwise).

    A revision written there would be lost with the next install of the package and never
    reach its source; a plugin (or crmkit itself) installed editable has its folders in
    its checkout instead.
    """
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    roots.update(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        roots.add(site.getusersitepackages())
    resolved = directory.resolve()
    for root in sorted(roots):
        if resolved.is_relative_to(Path(root).resolve()):
            return Path(root)
    return None


def _branch_of(script: Any, revision: Any) -> str | None:
    """The label of the branch a revision belongs to (found along ``down_revision`` only)."""
    while revision is not None:
        if revision.branch_labels:
            return sorted(revision.branch_labels)[0]
        down = revision.down_revision
        if not down:
            return None
        revision = script.get_revision(down if isinstance(down, str) else down[0])
    return None


def _newest_per_branch(script: Any, heads: Any) -> dict[str, str]:
    """Branch label -> its newest revision among ``heads`` and all they depend on."""
    newest: dict[str, str] = {}
    for head in sorted(heads):
        # newest first: the first revision met of each branch is its newest one
        for revision in script.iterate_revisions(head, "base"):
            label = _branch_of(script, revision)
            if label is not None and label not in newest:
                newest[label] = revision.revision
    return newest
