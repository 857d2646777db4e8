"""The application object: configuration, plugin manager, database and registries.

One :class:`CRM` per deployment (or per test); nothing is global.  Work is done in units of
work opened on it: ``with crm.acting_as(user) as work: work.parties.create(...)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

import attrs
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from crmkit.access.rules import Permission, Role
from crmkit.channels import Channel
from crmkit.config import Config
from crmkit.db import (
    SPARE_CONNECTIONS,
    MigrationBranch,
    Migrations,
    joined_transaction,
    make_engine,
    one_transaction,
)
from crmkit.demo import Demo
from crmkit.entities import EntityRegistry, EntityType
from crmkit.errors import ConfigError, CrmkitError, NotFound, PluginError
from crmkit.filters import FilterField
from crmkit.jobs import Job, OutboxHandler, Schedule
from crmkit.jobs.watchers import Watcher
from crmkit.model import ids
from crmkit.pipeline.definition import Pipeline
from crmkit.plugins import CrmkitPluginManager, installed_plugins, make_plugin_manager
from crmkit.reports import Report
from crmkit.services.timeline import TimelineKind
from crmkit.services.users import password_hasher
from crmkit.storage import FileStorage, Storage
from crmkit.web.contributions import CardPanel, ListColumn, MenuItem, Route, Screen

log = logging.getLogger(__name__)


@attrs.frozen
class Actor:
    """Who is acting in a unit of work, with everything access rules need, loaded once.

    ``teammate_ids`` are the users of the actor's teams (the actor included);
    ``group_paths`` the materialized paths of groups granted to the actor or their roles;
    ``scopes`` the widest scope per (entity, action) over the actor's roles, read from the
    permission table when the actor was loaded (so a unit of work needs no query for it).
    The system actor (``system=True``) passes every check: it is used by the CLI, workers
    and the automation assistant, and its writes are signed with ``label``.  ``scopes`` is
    the actor's row of the permission table when already loaded (a cached actor, see
    :mod:`crmkit.access.cache`); otherwise each unit of work reads it.
    """

    user_id: int | None
    label: str
    roles: frozenset[str] = frozenset()
    team_ids: frozenset[int] = frozenset()
    teammate_ids: frozenset[int] = frozenset()
    group_paths: tuple[str, ...] = ()
    system: bool = False
    assistant: bool = False
    locale: str | None = None
    timezone: str | None = None
    session_epoch: int = 0
    scopes: Mapping[tuple[str, str], Any] | None = attrs.field(default=None, eq=False)
    #: everything above that access rules read, as one hashable value made once (list pages
    #: key their cached statements on it, several times a request)
    access_key: tuple[Any, ...] = attrs.field(init=False, eq=False, repr=False)

    @access_key.default
    def _access_key(self) -> tuple[Any, ...]:
        scopes = None if self.scopes is None else frozenset(self.scopes.items())
        return (
            self.user_id,
            self.system,
            self.roles,
            self.team_ids,
            self.teammate_ids,
            self.group_paths,
            scopes,
        )


SYSTEM = Actor(user_id=None, label="system", system=True)
ASSISTANT = Actor(user_id=None, label="assistant", system=True, assistant=True)


class CRM:
    """One crmkit application: settings, plugins, database, and what the plugins registered.

    ``plugins`` are extra plugin objects (modules, classes, instances) registered after the
    built-ins and the installed entry points; ``load_entry_points=False`` loads none of the
    installed plugins (the test kit's default, so tests choose exactly what they run with).
    """

    def __init__(
        self,
        config: Config,
        *,
        plugins: Sequence[Any] = (),
        load_entry_points: bool = True,
        engine: Engine | None = None,
    ) -> None:
        self.config = config
        self.pm: CrmkitPluginManager = make_plugin_manager(
            allow=config["plugins.allow"],
            block=config["plugins.block"],
            extra=plugins,
            load_entry_points=load_entry_points,
        )
        self.config.declare(item for _, item in self._collect("crmkit_register_settings"))
        self.config.validate(dormant=self._dormant_plugins)
        self.engine = engine or make_engine(
            config.database_url,
            echo=config["database.echo"],
            pool_size=config["database.pool_size"],
            max_overflow=config["database.pool_size"] + SPARE_CONNECTIONS,
        )
        self.session_factory: sessionmaker[Session] = sessionmaker(
            self.engine, expire_on_commit=False
        )
        ids.install(self.session_factory, self.engine.dialect.name)  # never reused on SQLite
        self.storage: Storage = FileStorage(config.path("storage.path"))
        self.password_hasher = password_hasher(config["security.argon2_profile"])
        self.entities = EntityRegistry()
        self.pipelines: dict[str, Pipeline] = {}
        self.roles: dict[str, Role] = {}
        self.permissions: list[Permission] = []
        self._cells_by_plugin: list[tuple[str, Permission]] = []
        self.channels: dict[str, Channel] = {}
        #: Kinds of timeline entries declared by the core, plugins and channels, by name.
        self.timeline_kinds: dict[str, TimelineKind] = {}
        self.reports: dict[str, Report] = {}
        self.jobs: dict[str, Job] = {}
        self.schedules: dict[str, Schedule] = {}
        self.outbox_handlers: dict[str, OutboxHandler] = {}
        #: Long-lived connections the workers keep running (see crmkit.jobs.watchers).
        self.watchers: dict[str, Watcher] = {}
        self.automations: dict[str, Any] = {}
        #: Quick checks every worker's ticker runs often (``func(crm)``; see crmkit.jobs.worker).
        self.tickers: list[Callable[[CRM], Any]] = []
        self.routes: list[Route] = []
        self.screens: dict[str, Screen] = {}
        self.menu_items: list[MenuItem] = []
        self.card_panels: list[CardPanel] = []
        self.list_columns: list[ListColumn] = []
        self.migration_branches: list[MigrationBranch] = []
        #: branch label -> top-level package of the plugin that registered it (its models)
        self.migration_packages: dict[str, str] = {}
        self.demos: dict[str, Demo] = {}
        self.starter_templates: list[Any] = []
        self.starter_fields: list[Any] = []
        self.filter_fields: list[FilterField] = []
        #: (table, column) of party references that plugins merge themselves
        self.party_merge_columns: set[tuple[str, str]] = set()
        self._collect_registries()
        self._configure()
        self._warn_of_unknown_cells()

    # -- construction ----------------------------------------------------------------

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> CRM:
        """Load the deployment at ``path`` (its ``crmkit.toml``)."""
        return cls(Config.load(path), **kwargs)

    def _configure(self) -> None:
        """Call ``crmkit_configure``; a plugin's failure becomes one line naming it."""
        hook = self.pm.hook.crmkit_configure
        try:
            hook.call_historic(kwargs={"crm": self})
        except PluginError:
            raise
        except CrmkitError as exc:  # a refusal the plugin worded itself: keep its words
            raise PluginError(_failed_plugin(self.pm, hook, exc), str(exc)) from exc
        except Exception as exc:
            raise PluginError(
                _failed_plugin(self.pm, hook, exc), f"crmkit_configure failed: {_reason(exc)}"
            ) from exc

    def _warn_of_unknown_cells(self) -> None:
        """Log a warning for each permission cell naming a role or an entity nothing
        registers (a typo in a ``grant``: "agnet", "dael"), naming its plugin and the cell.

        Not refused: the cell is seeded as declared, since a deployment may grant a role or
        entity of an optional plugin that is not loaded here (the car service's cells on
        the booking plugin's ``resource``); it applies to nobody until that plugin is."""
        cells, self._cells_by_plugin = self._cells_by_plugin, []
        absent = (
            f" (installed but not loaded: {', '.join(self.pm.left_out)})"
            if self.pm.left_out
            else ""
        )
        for plugin, cell in cells:
            where = f"{cell.role} / {cell.entity} / {cell.action}"
            if cell.role not in self.roles:
                log.warning(
                    "plugin %r: permission cell %s names unknown role %r: no loaded plugin "
                    "registers it, so the cell applies to nobody%s",
                    plugin,
                    where,
                    cell.role,
                    absent,
                )
            if cell.entity != "*" and cell.entity not in self.entities:
                log.warning(
                    "plugin %r: permission cell %s names unknown entity %r: no loaded plugin "
                    "registers it, so the cell applies to nothing%s",
                    plugin,
                    where,
                    cell.entity,
                    absent,
                )

    def _dormant_plugins(self) -> set[str]:
        """Installed plugins this application did not load (blocked, not allowed, or the
        test kit's): their settings sections are kept, unchecked, for when they are."""
        return set(installed_plugins()) - set(self.pm.infos)

    def _collect(self, hook_name: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Call a collecting hook implementation by implementation, yielding (plugin, item)."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):
            plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                result = impl.function(**args)
            except Exception as exc:
                raise PluginError(plugin_name, f"{hook_name} failed: {exc}") from exc
            if result is None:
                continue
            if not isinstance(result, Iterable):
                raise PluginError(plugin_name, f"{hook_name} must return a list, got {result!r}")
            for item in result:
                yield plugin_name, item

    def _collect_registries(self) -> None:
        for plugin, entity in self._collect("crmkit_register_entities"):
            try:
                self.entities.add(entity, plugin)
            except ValueError as exc:
                raise PluginError(plugin, str(exc)) from None
        pipelines = list(self._collect("crmkit_register_pipelines"))
        _fill_unique(self.pipelines, pipelines, "pipeline")
        for plugin, pipeline in pipelines:
            if pipeline.entity not in self.entities:
                refusal = f"pipeline {pipeline.name!r} drives unknown entity {pipeline.entity!r}"
                if self.pm.left_out:  # its plugin may be installed and not allowed
                    refusal += (
                        " (installed but not loaded, by plugins.allow or plugins.block: "
                        f"{', '.join(self.pm.left_out)})"
                    )
                raise PluginError(plugin, refusal)
        for _, role in self._collect("crmkit_register_roles"):
            self.roles.setdefault(role.name, role)
        # a plugin's cell replaces the built-in one for the same role, entity and action
        # (seeding keeps the last declaration of each cell): built-ins go first
        cells = list(self._collect("crmkit_register_permissions"))
        self._cells_by_plugin = cells  # checked once every plugin is configured
        builtin = {name for name, info in self.pm.infos.items() if info.builtin}
        self.permissions = [p for n, p in cells if n in builtin] + [
            p for n, p in cells if n not in builtin
        ]
        _fill_unique(self.channels, self._collect("crmkit_register_channels"), "channel")
        _fill_unique(
            self.timeline_kinds,
            _timeline_kinds(self._collect("crmkit_register_timeline_kinds")),
            "timeline kind",
        )
        for channel in self.channels.values():  # a channel declares the kind it writes
            self.timeline_kinds.setdefault(
                channel.activity_kind, TimelineKind(channel.activity_kind)
            )
        _fill_unique(self.reports, self._collect("crmkit_register_reports"), "report")
        _fill_unique(self.jobs, self._collect("crmkit_register_jobs"), "job")
        schedules = list(self._collect("crmkit_register_schedules"))
        _fill_unique(self.schedules, schedules, "schedule")
        for plugin, schedule in schedules:
            if schedule.job not in self.jobs:
                raise PluginError(
                    plugin, f"schedule {schedule.name!r} runs unknown job {schedule.job!r}"
                )
        _fill_unique(
            self.outbox_handlers,
            self._collect("crmkit_register_outbox_handlers"),
            "outbox handler",
        )
        _fill_unique(self.watchers, self._collect("crmkit_register_watchers"), "watcher")
        _fill_unique(self.automations, self._collect("crmkit_register_automations"), "automation")
        self.routes = [r for _, r in self._collect("crmkit_register_routes")]
        _fill_unique(self.screens, self._collect("crmkit_register_screens"), "screen")
        self.menu_items = sorted(
            (m for _, m in self._collect("crmkit_register_menu_items")),
            key=lambda m: (m.order, m.label),
        )
        self.card_panels = sorted(
            (p for _, p in self._collect("crmkit_register_card_panels")),
            key=lambda p: (p.order, p.name),
        )
        self.list_columns = [c for _, c in self._collect("crmkit_register_list_columns")]
        seen_labels: set[str] = set()
        for plugin, branch in self._collect("crmkit_register_migrations"):
            if branch.label in seen_labels:
                raise PluginError(plugin, f"migration branch {branch.label!r} registered twice")
            seen_labels.add(branch.label)
            self.migration_branches.append(branch)
            self.migration_packages[branch.label] = _top_package(self.pm.get_plugin(plugin))
        _fill_unique(self.demos, self._collect("crmkit_register_demos"), "demo")
        self.filter_fields = [f for _, f in self._collect("crmkit_register_filter_fields")]
        self.starter_templates = [t for _, t in self._collect("crmkit_register_message_templates")]
        self.starter_fields = [f for _, f in self._collect("crmkit_register_custom_fields")]
        for plugin, item in self._collect("crmkit_register_party_merge_columns"):
            column = getattr(item, "expression", item)
            table = getattr(column, "table", None)
            loose_link = (
                table is not None and column.name == "record_id" and "record_entity" in table.c
            )
            if table is None or not (
                loose_link
                or any(
                    fk.column.table.name == "party" for fk in getattr(column, "foreign_keys", ())
                )
            ):
                raise PluginError(plugin, f"{item!r} is not a column referencing party.id")
            self.party_merge_columns.add((table.name, column.name))

    # -- units of work ---------------------------------------------------------------

    def acting_as(self, who: Any) -> Any:
        """A unit of work acting as a user (a ``User``, its id, its username, or an ``Actor``).

        Use it as a context manager: the transaction commits when the block ends and rolls
        back, leaving nothing written, when it raises.
        """
        from crmkit.services.unit import UnitOfWork

        actor = who if isinstance(who, Actor) else self.load_actor(who)
        return UnitOfWork(self, actor)

    @contextlib.contextmanager
    def one_transaction(self) -> Iterator[Any]:
        """Make the block one transaction: every unit of work begun in it (as any actor)
        joins it, each in a savepoint, and the block commits as a whole or, when it raises,
        leaves nothing written (files its units stored included).  See
        :func:`crmkit.db.one_transaction`: on SQLite the block holds the database's write
        lock throughout, so keep it for work nobody waits on (``crmkit demo``).
        """

        def same_ids(sessions: Any) -> None:
            ids.install(sessions, self.engine.dialect.name)

        with one_transaction(self.engine, configure=same_ids) as shared:
            yield shared

    def system(self) -> Any:
        """A unit of work as the system actor (CLI, workers): every permission, no scope."""
        return self.acting_as(SYSTEM)

    def assistant(self) -> Any:
        """A unit of work as the automation assistant (its writes are signed as such)."""
        return self.acting_as(ASSISTANT)

    @cached_property
    def actors(self) -> Any:
        """Actors loaded once and reused while nothing about their access changed."""
        from crmkit.access.cache import ActorCache

        return ActorCache(self)

    @cached_property
    def page_statements(self) -> Any:
        """List queries already built, reused for the same actor access and arguments."""
        from crmkit.services.records import StatementCache

        return StatementCache()

    def load_actor(self, who: Any) -> Actor:
        """Build the :class:`Actor` of a user: roles, teams, teammates, granted groups."""
        from crmkit.access.policy import load_actor

        shared = joined_transaction(self.engine)
        with (shared.sessions if shared else self.session_factory)() as session:
            return load_actor(session, who)

    # -- schema and seeding ------------------------------------------------------------

    @property
    def migrations(self) -> Migrations:
        """Alembic over the core branch and every plugin branch."""
        return Migrations(
            self.engine,
            self.migration_branches,
            tuple(self.pipelines.values()),
            packages=self.migration_packages,
        )

    def create_schema(self) -> None:
        """Create every table directly from the models (tests and throwaway databases).

        Deployments use ``crmkit db upgrade`` instead, which applies the migrations.
        """
        from crmkit.model import metadata

        metadata.create_all(self.engine)
        self.sync_access()

    def sync_access(self, connection: Connection | None = None) -> None:
        """Seed roles, permission cells, starter message templates and custom fields declared
        by plugins; keep what an admin changed.

        With ``connection`` (in a transaction: the migrations', say) the rows are written
        in that transaction and committed or rolled back with it.
        """
        from crmkit.access.seeding import seed_roles_and_permissions
        from crmkit.services.custom_fields import seed_fields
        from crmkit.services.message_templates import seed_templates

        if connection is None:
            with self.session_factory.begin() as session:
                seed_roles_and_permissions(session, self.roles.values(), self.permissions)
                seed_templates(session, self.starter_templates)
                seed_fields(session, self.starter_fields)
            return
        with Session(bind=connection) as session:
            seed_roles_and_permissions(session, self.roles.values(), self.permissions)
            seed_templates(session, self.starter_templates)
            seed_fields(session, self.starter_fields)
            session.flush()

    # -- lookups -----------------------------------------------------------------------

    def pipeline(self, name: str) -> Pipeline:
        """The pipeline called ``name``."""
        try:
            return self.pipelines[name]
        except KeyError:
            raise NotFound("pipeline", name) from None

    def pipelines_for(self, entity: str) -> list[Pipeline]:
        """Pipelines driving ``entity``, in registration order."""
        return [p for p in self.pipelines.values() if p.entity == entity]

    def actions_of(self, entity: str) -> tuple[str, ...]:
        """The actions of ``entity`` the permission table holds cells for: those it declares
        (``EntityType.actions``), then those its pipelines' transitions take as their
        ``permission`` and those a plugin seeds a cell of (the booking plugin's ``book`` on
        ``resource``), so the admin screen offers them and an admin can hand them out."""
        found = dict.fromkeys(self.entities[entity].actions)
        for pipeline in self.pipelines_for(entity):
            found.update(dict.fromkeys(pipeline.permissions()))
        found.update(
            dict.fromkeys(
                p.action for p in self.permissions if p.entity == entity and p.action != "*"
            )
        )
        return tuple(found)

    def filter_fields_for(self, entity: str) -> dict[str, FilterField]:
        """Computed filter fields that apply to ``entity`` (by name)."""
        return {f.name: f for f in self.filter_fields if f.entity in ("*", entity)}

    def entity(self, name: str) -> EntityType:
        """The entity type called ``name``."""
        return self.entities[name]

    # -- shared services outside the database -------------------------------------------

    @cached_property
    def namespace(self) -> str:
        """A name private to this deployment (from its secret key) for keys in shared servers.

        Every process of a deployment computes the same one; two deployments sharing a Redis
        or a PostgreSQL server get different ones.
        """
        digest = hashlib.sha256(("crmkit:" + self.config["secret_key"]).encode()).hexdigest()
        return f"crmkit-{digest[:12]}"

    @cached_property
    def sealing(self) -> Any:
        """Encrypts integration secrets at rest (:class:`crmkit.sealing.Sealing`)."""
        from crmkit.sealing import Sealing

        return Sealing(self.config["security.secrets_key"] or "", self.config["secret_key"])

    @cached_property
    def redis(self) -> Any:
        """A Redis client when ``queue.url`` names a Redis server, else ``None``."""
        url = self.config["queue.url"] or ""
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return None
        import redis

        return redis.Redis.from_url(url)

    def check_ready(self) -> None:
        """What ``crmkit serve`` and ``crmkit worker`` check before they start, each failure
        a :class:`ConfigError` in one line: the database is at every branch's head, and the
        queue's Redis server (when ``queue.url`` names one) answers."""
        self.migrations.check_current()
        self.check_queue()

    def check_queue(self) -> None:
        """Ping the Redis server ``queue.url`` names (nothing to do for the embedded queue);
        a :class:`ConfigError` naming the URL when it does not answer within 5 seconds."""
        from crmkit.jobs.queue import is_redis_url

        url = self.config["queue.url"] or ""
        if not is_redis_url(url):
            return
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"cannot connect to the queue {_without_password(url)}: {reason}"
            ) from None
        finally:
            client.close()

    @cached_property
    def live(self) -> Any:
        """The :mod:`crmkit.live` hub delivering messages to users' browsers."""
        from crmkit.live import make_hub

        return make_hub(self)

    @cached_property
    def queue(self) -> Any:
        """The task queue (:class:`crmkit.jobs.queue.TaskQueue`): Huey on SQLite or Redis."""
        from crmkit.jobs.queue import TaskQueue

        return TaskQueue(self)

    @cached_property
    def http(self) -> Any:
        """A shared keep-alive httpx client for calls to outside services (webhooks)."""
        import httpx

        return httpx.Client(
            timeout=float(self.config["webhook.timeout_seconds"]), follow_redirects=False
        )

    def outbox_wakeup(self, *item_ids: int) -> None:
        """Ask a worker to deliver these outbox items now (called after their commit; the
        message is sent from a background thread, so the caller never waits for it)."""
        self.queue.wakeup_soon(list(item_ids))

    def publish_notification(self, user_id: int, notification_id: int) -> None:
        """Tell ``user_id``'s browsers about a new notification (called after commit)."""
        self.live.publish(user_id, {"type": "notification", "id": notification_id})

    def close(self) -> None:
        """Release database connections and connections to Redis or the live hub."""
        if "live" in self.__dict__:
            self.live.close()
        if "queue" in self.__dict__:
            self.queue.close()
        if "http" in self.__dict__:
            self.http.close()
        if "redis" in self.__dict__ and self.redis is not None:
            self.redis.close()
        self.engine.dispose()

    def __enter__(self) -> CRM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fill_unique(target: dict[str, Any], items: Iterable[tuple[str, Any]], what: str) -> None:
    for plugin, item in items:
        existing = target.get(item.name)
        if existing is not None and existing is not item and existing != item:
            raise PluginError(plugin, f"{what} {item.name!r} is already registered")
        target[item.name] = item


def _timeline_kinds(items: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, TimelineKind]]:
    """Each declared kind as a :class:`TimelineKind` (a plain name is one without a label);
    anything else, or a malformed name, stops the start naming the plugin."""
    for plugin, item in items:
        if isinstance(item, TimelineKind):
            yield plugin, item
            continue
        if not isinstance(item, str):
            raise PluginError(
                plugin, f"crmkit_register_timeline_kinds: {item!r} is not a TimelineKind or a name"
            )
        try:
            yield plugin, TimelineKind(item)
        except ValueError as exc:
            raise PluginError(plugin, str(exc)) from None


def _top_package(plugin: Any) -> str:
    """The top-level package a plugin (a module or an object) is defined in."""
    import types

    module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
    return module.split(".")[0]


def _failed_plugin(pm: CrmkitPluginManager, hook: Any, exc: BaseException) -> str:
    """The plugin whose implementation of ``hook`` raised ``exc`` (read from its traceback:
    the innermost implementation the exception passed through)."""
    codes = {impl.function.__code__: impl.plugin for impl in hook.get_hookimpls()}
    found: Any = None
    traceback = exc.__traceback__
    while traceback is not None:
        found = codes.get(traceback.tb_frame.f_code, found)
        traceback = traceback.tb_next
    return (pm.get_name(found) or repr(found)) if found is not None else "unknown"


def _reason(exc: BaseException) -> str:
    """An exception in a line: its message, or its type when it has none."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _without_password(url: str) -> str:
    """``url`` with its password, if any (``redis://:pw@host``, ``unix://...?password=pw``),
    shown as ``***``."""
    import re
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    return re.sub(r"([?&])password=[^&]*", r"\1password=***", url)
