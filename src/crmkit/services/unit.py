"""The unit of work: one transaction, one actor, every service, events and audit.

Everything that changes data goes through a unit of work::

    with crm.acting_as(user) as work:
        lead = work.parties.create({"kind": "organisation", "name": "ООО Ромашка"})
        work.moves.move(lead, "firm", comment="reached the director")

The block is one transaction.  Audit entries, stage history and outbox items are written in
it; domain events are handed to ``crmkit_handle_event`` just before commit; callbacks
registered with :meth:`UnitOfWork.after_commit` run only once the commit succeeded (a live
notification, say).  If anything raises, the transaction rolls back and nothing is kept,
files included.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from crmkit.access.policy import AccessPolicy, load_actor
from crmkit.automation import is_paused
from crmkit.clock import utcnow
from crmkit.db import SharedTransaction, joined_transaction, read_only_connection
from crmkit.errors import Conflict, CrmkitError, PermissionDenied
from crmkit.events import DomainEvent
from crmkit.model import AuditEntry
from crmkit.schemas.output import mask_private

if TYPE_CHECKING:
    from crmkit.app import CRM, Actor
    from crmkit.entities import EntityType
    from crmkit.services.records import EntityService

log = logging.getLogger(__name__)

_INSERT_AUDIT = insert(AuditEntry.__table__)

#: Event handlers may raise further events; past this many rounds something loops.
MAX_EVENT_ROUNDS = 50


class UnitOfWork:
    """One transaction acting as one actor.  Use as a context manager."""

    def __init__(self, crm: CRM, actor: Actor) -> None:
        self.crm = crm
        self.actor = actor
        self._open = False
        self._session: Session | None = None
        self._reader: Connection | None = None
        self._events: list[DomainEvent] = []
        self._after_commit: list[Callable[[], None]] = []
        self._before_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []
        self._services: dict[str, Any] = {}
        #: The :func:`crmkit.db.one_transaction` this unit joins (set when it is entered).
        self._shared: SharedTransaction | None = None

    # -- transaction ---------------------------------------------------------------------

    def __enter__(self) -> UnitOfWork:
        # the session is made on first use: a unit that only runs a Core query (a list
        # page's rows) needs no ORM session, whose set-up and commit
        # cost as much as the query (docs/decisions.md, "A unit of work takes its session
        # on first use")
        self._open = True
        self._shared = joined_transaction(self.crm.engine)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError(
                "use the unit of work as a context manager: `with crm.acting_as(...)`"
            )

    @property
    def session(self) -> Session:
        """The SQLAlchemy session of this unit of work (open only inside the ``with`` block).

        Made on first use, with the unit's transaction.
        """
        if self._session is None:
            self._require_open()
            factory = self._shared.sessions if self._shared else self.crm.session_factory
            self._session = factory()
            self._session.begin()  # joined: a savepoint of the shared transaction
        return self._session

    def connection(self) -> Connection:
        """The unit's database connection, inside its transaction, for Core statements."""
        return self.session.connection()

    def read_connection(self) -> Connection:
        """A connection for read-only Core statements (a list page's rows).

        Inside the unit's transaction when it has begun one, so that the reads see the
        unit's own writes.  Otherwise :func:`crmkit.db.read_only_connection`, outside a
        transaction block, which saves a one-query request the BEGIN and COMMIT round trips
        on a server database.  Never write through it.
        """
        if self._session is not None or self._shared is not None:
            return self.session.connection()  # joined: the shared transaction's writes too
        if self._reader is None:
            self._require_open()
            self._reader = read_only_connection(self.crm.engine)
        return self._reader

    def flush(self) -> None:
        """Send pending changes to the database; an optimistic-lock clash becomes ``Conflict``."""
        if self._session is None:
            self._require_open()
            return  # no session, nothing to send
        try:
            self._session.flush()
        except StaleDataError as exc:
            raise Conflict("record", None, _conflict_text(exc)) from None

    def commit(self) -> None:
        """Dispatch queued events, commit, then run after-commit callbacks."""
        self._require_open()
        try:
            self.flush()
            self.dispatch_events()
            while self._before_commit:  # e.g. the timeline's deferred last-activity updates
                self._before_commit.pop(0)()
            self.flush()
            if self._session is not None:
                self._session.commit()
        except BaseException:
            self.rollback()
            raise
        finally:
            self._close()
        callbacks, self._after_commit = self._after_commit, []
        if self._shared is not None:
            # only a savepoint was released: what waits for the commit, or undoes this
            # unit's files if it never comes, waits for the shared transaction
            self._shared.after_commit.extend(callbacks)
            self._shared.on_rollback.extend(self._on_rollback)
            self._on_rollback = []
            return
        self._on_rollback.clear()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the data is committed; a failed notification must not undo it
                log.exception("after-commit callback failed")

    def _close(self) -> None:
        self._open = False
        session, reader = self._session, self._reader
        self._session = self._reader = None
        try:
            if session is not None:
                session.close()
        finally:
            if reader is not None:
                reader.close()

    def rollback(self) -> None:
        """Undo everything done in this unit of work (files it stored included)."""
        try:
            if self._session is not None:
                self._session.rollback()
        finally:
            self._close()
        self._events.clear()
        self._after_commit.clear()
        self._before_commit.clear()
        callbacks, self._on_rollback = self._on_rollback, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("rollback cleanup failed")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[Any]:
        """A nested transaction: ``with work.savepoint(): ...`` undoes only its block on error.

        Events raised, after-commit callbacks registered and files stored inside a block that
        fails are dropped with it.
        """
        session = self.session
        if self.crm.engine.dialect.name == "sqlite":
            # pysqlite opens transactions lazily, before the first write; a SAVEPOINT opened
            # outside one would become the transaction and its RELEASE would commit.  The
            # block is about to write, so take the write lock now (IMMEDIATE) rather than
            # read a snapshot that a concurrent writer could make stale.
            connection = session.connection()
            if not connection.connection.driver_connection.in_transaction:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
        marks = (len(self._events), len(self._after_commit), len(self._on_rollback))
        nested = session.begin_nested()
        try:
            yield nested
        except BaseException:
            with contextlib.suppress(InvalidRequestError):  # already closed: nothing to undo
                nested.rollback()  # also after a failed flush, which leaves it inactive
            del self._events[marks[0] :]
            del self._after_commit[marks[1] :]
            undo, self._on_rollback = self._on_rollback[marks[2] :], self._on_rollback[: marks[2]]
            for callback in undo:
                try:
                    callback()
                except Exception:
                    log.exception("rollback cleanup failed")
            raise
        else:
            if nested.is_active:
                nested.commit()

    def before_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` just before this unit of work commits (after its events)."""
        self._before_commit.append(callback)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction committed (never if it rolled back)."""
        self._after_commit.append(callback)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if the transaction rolls back (to undo work outside the database)."""
        self._on_rollback.append(callback)

    # -- events and audit --------------------------------------------------------------

    def emit(
        self,
        name: str,
        entity: str,
        record_id: int | None,
        *,
        party_id: int | None = None,
        **data: Any,
    ) -> DomainEvent:
        """Queue a domain event; handlers see it before this transaction commits.

        A ``changes`` mapping never carries a private column's value (see
        :func:`~crmkit.schemas.output.mask_private`): events reach outbox payloads and
        webhooks.
        """
        if isinstance(data.get("changes"), Mapping):
            data["changes"] = mask_private(self._model_of(entity), data["changes"])
        event = DomainEvent(
            name=name,
            entity=entity,
            record_id=record_id,
            actor_id=self.actor.user_id,
            party_id=party_id,
            data=data,
            rules_paused=is_paused(),
        )
        self._events.append(event)
        return event

    def dispatch_events(self) -> None:
        """Hand queued events to their handlers now (bulk paths do it batch by batch)."""
        rounds = 0
        while self._events:
            rounds += 1
            if rounds > MAX_EVENT_ROUNDS:
                raise CrmkitError("event handlers keep raising events; giving up (a loop?)")
            batch, self._events = self._events, []
            for event in batch:
                self.crm.pm.hook.crmkit_handle_event(event=event, work=self)
            self.flush()

    @property
    def pending_events(self) -> list[DomainEvent]:
        """Events queued and not yet dispatched (for tests and wrappers)."""
        return list(self._events)

    def audit(
        self, entity: str, record_id: int | None, action: str, changes: dict[str, Any] | None = None
    ) -> None:
        """Append an audit entry (who, when, which record, what changed) to this transaction.

        Written with a plain Core INSERT on the unit of work's connection: audit rows are never
        read back as objects here, so they skip the ORM's bookkeeping (a third of a stage
        move's CPU time otherwise).  A private column of a registered entity is recorded
        as changed, its values masked (:func:`~crmkit.schemas.output.mask_private`).
        """
        if changes:
            changes = mask_private(self._model_of(entity), changes)
        self.session.connection().execute(
            _INSERT_AUDIT,
            {
                "at": utcnow(),
                "actor_id": self.actor.user_id,
                "actor_label": self.actor.label,
                "entity": entity,
                "record_id": record_id,
                "action": action,
                "changes": changes or {},
            },
        )

    def _model_of(self, entity: str) -> type[Any] | None:
        found = self.crm.entities.by_name.get(entity)
        return None if found is None else found.model

    # -- access ------------------------------------------------------------------------

    @cached_property
    def access(self) -> AccessPolicy:
        """The actor's permissions, loaded once for this unit of work."""
        # a kept actor carries its scopes: no session needed to read them again
        loaded = self.actor.system or self.actor.scopes is not None
        return AccessPolicy(self.actor, self.crm.entities, None if loaded else self.session)

    def user_may_read(self, user: Any, wanted: Iterable[tuple[str, int]]) -> bool:
        """Whether another ``user`` (a ``User`` or an id) may read each ``(entity, id)``,
        by their own access rules, asked in this unit's transaction (a record made or
        changed in it counts as it is now).  A blocked user may read nothing."""
        session = self.session
        try:
            actor = load_actor(session, user)
        except PermissionDenied:
            return False
        policy = AccessPolicy(actor, self.crm.entities, None)  # the actor carries its scopes
        for entity_name, record_id in wanted:
            model = self.crm.entities[entity_name].model
            seen = session.scalar(
                select(model.id).where(model.id == record_id, policy.where(entity_name, "read"))
            )
            if seen is None:
                return False
        return True

    # -- services ----------------------------------------------------------------------

    def records(self, entity: str | EntityType) -> EntityService:
        """The generic CRUD service of any registered entity (plugins' ones included)."""
        from crmkit.services.records import EntityService, service_class_for

        name = entity if isinstance(entity, str) else entity.name
        service = self._services.get(f"records:{name}")
        if service is None:
            entity_type = self.crm.entities[name]
            klass = service_class_for(entity_type) or EntityService
            service = klass(self, entity_type)
            self._services[f"records:{name}"] = service
        return service

    def service(self, key: str, factory: Callable[[UnitOfWork], Any]) -> Any:
        """A service object built once per unit of work by ``factory(work)``.

        Plugins reach their own services this way (``work.service("finance", Finance)``),
        so that a service keeps its caches for exactly one transaction.
        """
        service = self._services.get(key)
        if service is None:
            service = self._services[key] = factory(self)
        return service

    _service = service

    @property
    def parties(self) -> Any:
        """Persons and organisations: create, update, search, contact points, reassign."""
        return self.records("party")

    @property
    def deals(self) -> Any:
        """Generic pipelined records (opportunities)."""
        return self.records("deal")

    @property
    def tasks(self) -> Any:
        """Tasks: assign, complete, subtasks, my/team lists."""
        return self.records("task")

    @property
    def calendar(self) -> Any:
        """Calendar events and resource bookings."""
        return self.records("calendar_event")

    @property
    def reminders(self) -> Any:
        """Reminders with several recipients; snooze and done."""
        return self.records("reminder")

    @property
    def timeline(self) -> Any:
        """The one timeline per party: activities, notes with mentions."""
        from crmkit.services.timeline import TimelineService

        return self._service("timeline", TimelineService)

    @property
    def moves(self) -> Any:
        """Stage moves through pipelines, with guards, history and optimistic locking."""
        from crmkit.services.moves import MoveService

        return self._service("moves", MoveService)

    @property
    def attachments(self) -> Any:
        """Files on parties and records."""
        from crmkit.services.attachments import AttachmentService

        return self._service("attachments", AttachmentService)

    @property
    def notifications(self) -> Any:
        """What users should see: mentions, assignments, reminders."""
        from crmkit.services.notifications import NotificationService

        return self._service("notifications", NotificationService)

    @property
    def users(self) -> Any:
        """Users, roles, teams, blocking and passwords (admin work)."""
        from crmkit.services.users import UserService

        return self._service("users", UserService)

    @property
    def groups(self) -> Any:
        """Nested groups of parties and tags."""
        from crmkit.services.groups import GroupService

        return self._service("groups", GroupService)

    @property
    def screening(self) -> Any:
        """Duplicate screening: likely duplicates of a party before it is created."""
        from crmkit.services.screening import ScreeningService

        return self._service("screening", ScreeningService)

    @property
    def merges(self) -> Any:
        """Merging duplicate parties (fields chosen one by one, every linked row moved)."""
        from crmkit.services.merge import MergeService

        return self._service("merges", MergeService)

    @property
    def imports(self) -> Any:
        """Imports of contacts from CSV and XLSX files (preview, dry run, resumable job)."""
        from crmkit.services.imports import ImportService

        return self._service("imports", ImportService)

    @property
    def custom_fields(self) -> Any:
        """Admin-defined fields: definitions and validation."""
        from crmkit.services.custom_fields import CustomFieldService

        return self._service("custom_fields", CustomFieldService)

    @property
    def outbox(self) -> Any:
        """Side effects to deliver after commit (mail, messages, calls, webhooks)."""
        from crmkit.services.outbox import OutboxService

        return self._service("outbox", OutboxService)

    @property
    def conversations(self) -> Any:
        """The contact center: inbound conversations, assigned, answered, snoozed, closed."""
        from crmkit.services.conversations import ConversationService

        return self._service("conversations", ConversationService)

    @property
    def channels(self) -> Any:
        """Sending through channels, ingesting inbound messages and calls."""
        from crmkit.services.channels import ChannelService

        return self._service("channels", ChannelService)

    @property
    def api_tokens(self) -> Any:
        """Personal API tokens: create, list, revoke (one's own; an admin's for anyone)."""
        from crmkit.services.tokens import ApiTokenService

        return self._service("api_tokens", ApiTokenService)

    @property
    def permissions(self) -> Any:
        """The editable permission table (admin)."""
        from crmkit.services.permissions import PermissionService

        return self._service("permissions", PermissionService)

    @property
    def signin(self) -> Any:
        """Web sessions: sign in with throttling, resume, sign out (everywhere)."""
        from crmkit.services.signin import SignInService

        return self._service("signin", SignInService)

    @property
    def saved_views(self) -> Any:
        """Users' named list views (search, filters, sort, columns)."""
        from crmkit.services.views import SavedViewService

        return self._service("saved_views", SavedViewService)

    @property
    def message_templates(self) -> Any:
        """Reusable message texts rendered in Jinja's sandbox."""
        from crmkit.services.message_templates import MessageTemplateService

        return self._service("message_templates", MessageTemplateService)

    @property
    def calendar_feeds(self) -> Any:
        """Secret addresses of users' read-only iCalendar feeds."""
        from crmkit.services.feeds import CalendarFeedService

        return self._service("calendar_feeds", CalendarFeedService)

    @property
    def audit_log(self) -> Any:
        """Reading the audit log."""
        from crmkit.services.audit import AuditService

        return self._service("audit_log", AuditService)


def _conflict_text(exc: StaleDataError) -> str:
    return (
        "the record was changed by someone else since you loaded it; "
        f"reload and try again ({str(exc).splitlines()[0]})"
    )
