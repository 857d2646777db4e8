"""Create, read, update, delete, list and search any entity, with access rules applied.

:class:`EntityService` is the generic service every entity gets (a plugin's too); entity
types may name a subclass in ``EntityType.service`` for extra behaviour (contact points of
parties, assignment notifications of tasks...).  Every read goes through :meth:`query`,
which carries the actor's scope predicate; every write checks the action, validates input
with the entity's schema, writes an audit entry and raises a domain event, all in the unit
of work's transaction.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from marshmallow import ValidationError
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from crmkit import events
from crmkit.clock import utcnow
from crmkit.entities import EntityType
from crmkit.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from crmkit.filters import Condition, compile_condition, from_simple_filters
from crmkit.model import PipelineMixin, StageMove, Tag, Tagging
from crmkit.schemas.output import public_values
from crmkit.services.limits import refusals
from crmkit.services.paging import (
    Page,
    after_clause,
    cursor_binds,
    cursor_params,
    decode_cursor,
    encode_cursor,
    parse_order,
)

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

MAX_PAGE = 500

#: Fields that only the pipeline engine may change.
PIPELINE_FIELDS = ("pipeline", "stage", "stage_entered_at", "version")


def jsonable(value: Any) -> Any:
    """A JSON-safe form of a column value (for audit entries and event data)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def service_class_for(entity: EntityType) -> type[EntityService] | None:
    """The service class an entity type asks for (``EntityType.service``), if any."""
    return entity.service


class EntityService:
    """Generic, access-scoped CRUD and listing for one entity type."""

    #: Input keys handled by the service itself rather than written to a column.
    extra_fields: tuple[str, ...] = ("tags",)

    #: Reuse built page statements (lists without filters) for the same actor access.  A
    #: subclass whose ``base_query``/``visible``/``search_clause`` depend on anything but the
    #: actor, the arguments and the configuration (the current time, say) sets it false.
    cache_page_statements: bool = True

    def __init__(self, work: UnitOfWork, entity: EntityType) -> None:
        self.work = work
        self.entity = entity
        self.model = entity.model
        # records already found visible in this unit of work: a card asks "may I see this
        # client?" once per panel; the answer cannot change until the record is edited
        self._visible: dict[int, Any] = {}

    @property
    def session(self) -> Any:
        """The unit of work's SQLAlchemy session."""
        return self.work.session

    # -- reading -------------------------------------------------------------------------

    def base_query(self) -> Select[Any]:
        """All rows of the entity before access rules (subclasses hide merged rows, etc.)."""
        return select(self.model)

    def query(self, action: str = "read") -> Select[Any]:
        """Rows the actor may ``action``: the base query with the scope predicate."""
        self.work.access.require(self.entity.name, action)
        return self.base_query().where(self.visible(action))

    def visible(self, action: str = "read") -> Any:
        """The scope predicate for ``action`` (subclasses widen it: a reminder's recipients)."""
        return self.work.access.where(self.entity, action)

    @classmethod
    def widens_reading(cls) -> bool:
        """Whether :meth:`visible` is the service's own (it may show rows beyond the access
        rules, as a reminder to its recipients): then :meth:`get` checks each row against
        the access rules for every other action, since reading it proves nothing."""
        return cls.visible is not EntityService.visible

    def reads_past_clients(self) -> bool:
        """Whether the actor may read rows naming a client they may not read: a
        conversation of their own mailbox, its messages and files
        (:meth:`~crmkit.access.policy.AccessPolicy.reads_past_clients`), or a row this
        service shows beyond the access rules (:meth:`widens_reading`: an event to its
        invited colleagues, a reminder to its recipients), or one they own (a task
        assigned to them, a deal given to them with a colleague's client)."""
        return self.work.access.reads_past_clients(self.entity, widened=self.widens_reading())

    def client_attrs(self) -> tuple[str, ...]:
        """The fields of this entity's rows that name a client the actor may not read
        although they read the row (:meth:`reads_past_clients`): its ``party_attr``; a
        client's own service names its organisation instead."""
        attr = self.entity.party_attr
        return (attr,) if attr else ()

    def readable_clients(self, ids: Iterable[int | None]) -> set[int]:
        """The clients among ``ids`` (of this entity's rows the actor read) that the actor
        may read.  What shows a row names its client only if it is one of them: the API
        gives ``party_id`` as ``null``, the calendar and its feed give no link to the
        card.  No query unless :meth:`reads_past_clients` (every client is then readable)."""
        named = {int(i) for i in ids if i is not None}
        if not named or not self.reads_past_clients():
            return named
        return set(self.work.parties.find_many(named))

    def find(self, record_id: int) -> Any | None:
        """The record if it exists and the actor may read it, else ``None``."""
        found = self._visible.get(record_id)
        if found is None:
            found = self.session.scalar(self._find_statement(), {"crmkit_record_id": record_id})
            if found is not None:
                self._visible[record_id] = found
        return found

    def _find_statement(self) -> Select[Any]:
        """``query()`` for one id, built once per actor access (like list pages)."""
        key = self._statement_key(None, ("<find>",), None, 1)
        if key is None:
            return self.query().where(self.model.id == bindparam("crmkit_record_id"))
        self.work.access.require(self.entity.name, "read")  # the check a cached query skips
        return self.work.crm.page_statements.get_or_build(
            key, lambda: self.query().where(self.model.id == bindparam("crmkit_record_id"))
        )

    def forget(self, record_id: int | None = None) -> None:
        """Drop remembered visibility (of one record, or all) after a change of ownership."""
        if record_id is None:
            self._visible.clear()
        else:
            self._visible.pop(record_id, None)

    def get(self, record: Any, action: str = "read") -> Any:
        """The record (an instance or an id) checked for ``action``.

        A record the actor may not read is :class:`NotFound`, exactly like a missing one;
        one they may read but not ``action`` is :class:`PermissionDenied`.
        """
        record_id = record.id if isinstance(record, self.model) else record
        if record_id is None:
            raise NotFound(self.entity.name, None)
        try:
            record_id = int(record_id)
        except (TypeError, ValueError):
            raise NotFound(self.entity.name, record_id) from None
        found = self.find(record_id)
        if found is None:
            raise NotFound(self.entity.name, record_id)
        if action != "read":
            self.work.access.check_record(
                self.session,
                self.entity,
                record_id,
                action,
                read_by_scope=not self.widens_reading(),
            )
        return found

    def find_many(self, ids: Iterable[int]) -> dict[int, Any]:
        """Visible records among ``ids``, by id (hidden and missing ones are left out).

        Lists use it to show the names of linked records with one query per page.  An
        actor who may not read the entity at all sees none of them: ``{}``, not
        :class:`PermissionDenied` (an order's page names no client to a worker who may not
        read clients, rather than refusing the whole page).
        """
        wanted = sorted({int(i) for i in ids if i is not None})
        if not wanted or not self.work.access.can(self.entity.name, "read"):
            return {}
        found: dict[int, Any] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for row in self.session.scalars(self.query().where(self.model.id.in_(chunk))):
                found[row.id] = row
        self._visible.update(found)  # a later get() of one of them needs no query
        return found

    def custom_kinds(self) -> dict[str, str]:
        """Custom field key -> kind for this entity (casts JSON values in filters)."""
        if not self.entity.custom_fields:
            return {}
        return {k: d.kind for k, d in self.work.custom_fields.definitions(self.entity.name).items()}

    def filtered(
        self,
        *,
        where: Condition | None = None,
        filters: Mapping[str, Any] | None = None,
        search: str | None = None,
        action: str = "read",
        internal: bool = False,
    ) -> Select[Any]:
        """The scoped query narrowed by a condition, simple filters and a search text.

        ``internal``: the condition and filters come from code, not from a user, and may
        also narrow by the entity's :attr:`~crmkit.entities.EntityType.placement_attrs`
        (its party, owners, pipeline and stage) when its ``filter_attrs`` leave them out.
        """
        statement = self.query(action)
        fields = self.work.crm.filter_fields_for(self.entity.name)
        # custom field definitions are read only when a condition may need them
        kinds = self.custom_kinds() if where or filters else {}
        may = self.work.access.can  # a computed field may take a permission of its own
        if where:
            statement = statement.where(
                compile_condition(self.entity, where, kinds, fields, may, internal=internal)
            )
        if filters:
            condition = from_simple_filters(filters)
            statement = statement.where(
                compile_condition(self.entity, condition, kinds, fields, may, internal=internal)
            )
        if not internal:
            for attr in self._asks_about_hidden_clients(where, filters):
                statement = statement.where(self._client_shown(attr))
        if search and search.strip():
            statement = statement.where(self.search_clause(search.strip()))
        return statement

    def _asks_about_hidden_clients(
        self, where: Condition | None, filters: Mapping[str, Any] | None
    ) -> list[str]:
        """The fields naming a client (:meth:`client_attrs`) that a user's condition asks
        about (its id, or for the row's own client its ``group``), on rows the actor may
        read without reading that client (:meth:`reads_past_clients`: a conversation of
        their own mailbox, its messages and files, an event they are invited to, a
        reminder they are a recipient of, a person whose organisation is hidden)."""
        if not (where or filters):
            return []
        named = []
        for attr in self.client_attrs():
            # its id, or the groups the row's client is in
            about = (attr, "group") if attr == self.entity.party_attr else (attr,)
            if any(key.partition("__")[0] in about for key in filters or ()) or (
                where is not None and any(_names_field(where, f) for f in about)
            ):
                named.append(attr)
        return named if named and self.reads_past_clients() else []

    def _client_shown(self, attr: str) -> Any:
        """Rows whose client in ``attr`` the actor may read, or with none.  A condition on
        the client leaves out the rows whose client is hidden (the API shows their
        ``party_id`` as ``null``), whatever it asks: their client's id is never told by
        what matches."""
        from crmkit.model import Party

        column = self.entity.column(attr)
        readable = select(Party.id).where(self.work.access.where("party"))
        return or_(column.is_(None), column.in_(readable))

    def search_clause(self, text: str) -> Any:
        """Rows matching a search text: a case-insensitive substring of the search
        attributes, or a computed field registered as ``searched`` that contains it."""
        may = self.work.access.can
        searched = [
            field.compile(self.entity, "contains", text)
            for field in self.work.crm.filter_fields_for(self.entity.name).values()
            if field.searched and (field.permission is None or may(*field.permission))
        ]
        if not self.entity.search_attrs and not searched:
            raise ValidationFailed({"search": [f"{self.entity.name} cannot be searched"]})
        pattern = f"%{_escape(text.casefold())}%"
        return or_(
            *(
                func.lower(self.entity.column(attr)).like(pattern, escape="\\")
                for attr in self.entity.search_attrs
            ),
            *searched,
        )

    def sort_columns(self) -> dict[str, Any]:
        """Attribute name -> column, for every attribute lists may sort by."""
        columns = {attr: self.entity.column(attr) for attr in self.entity.sort_attrs}
        columns["id"] = self.model.id
        return columns

    def list(
        self,
        *,
        where: Condition | None = None,
        filters: Mapping[str, Any] | None = None,
        search: str | None = None,
        order: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = 50,
        internal: bool = False,
    ) -> Page:
        """A page of visible records, keyset-paginated (``after`` is the previous page's cursor).

        ``internal``: see :meth:`filtered` (code's own lists: a card's, a board's).
        """
        statement, params, keys, limit = self._page_statement(
            where, filters, search, order, after, limit, internal=internal
        )
        rows = list(self.session.scalars(statement, params))
        next_cursor = encode_cursor(keys, rows[limit - 1]) if len(rows) > limit else None
        return Page(rows[:limit], next_cursor)

    def list_rows(
        self,
        columns: Sequence[str],
        *,
        where: Condition | None = None,
        filters: Mapping[str, Any] | None = None,
        search: str | None = None,
        order: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Like :meth:`list`, but only ``columns`` of each record, as plain rows.

        The same query, access predicate and cursor as :meth:`list`, without building ORM
        objects: the fast path for API lists and exports that only show columns.
        """
        statement, params, keys, limit = self._page_statement(
            where, filters, search, order, after, limit, tuple(columns)
        )
        # plain columns need none of the ORM's loading machinery: run it as Core
        fetched = self.work.read_connection().execute(statement, params).all()
        next_cursor = encode_cursor(keys, fetched[limit - 1]) if len(fetched) > limit else None
        return Page(fetched[:limit], next_cursor)

    def _page_statement(
        self,
        where: Condition | None,
        filters: Mapping[str, Any] | None,
        search: str | None,
        order: Sequence[str] | None,
        after: str | None,
        limit: int,
        columns: tuple[str, ...] | None = None,
        *,
        internal: bool = False,
    ) -> tuple[Select[Any], dict[str, Any], list[Any], int]:
        """The page query, its parameters (the cursor's values), its sort keys and limit.

        The cursor's values are bound parameters, so the statement of page 2 is the one of
        page 200: it is built once per actor access, order and search and then only run.
        """
        limit = max(1, min(int(limit), MAX_PAGE))
        # sort keys depend on the entity and the order only: parsed once per application
        wanted = tuple(order or self.entity.default_sort)
        keys = self.work.crm.page_statements.get_or_build(
            ("<order>", type(self), self.entity.name, wanted),
            lambda: parse_order(wanted, self.sort_columns(), self.model.id),
        )
        values = decode_cursor(after, keys) if after else None
        params = cursor_params(values)
        shape = None if values is None else tuple(v is None for v in values)
        key = None if where or filters else self._statement_key(search, order, shape, limit)
        if key is None:
            statement = self._build_page_statement(
                keys, where, filters, search, shape, limit, columns, internal=internal
            )
            return statement, params, keys, limit
        key += (columns,)
        self.work.access.require(self.entity.name, "read")  # the check a cached query skips
        statement = self.work.crm.page_statements.get_or_build(
            key,
            lambda: self._build_page_statement(keys, where, filters, search, shape, limit, columns),
        )
        return statement, params, keys, limit

    def _statement_key(
        self, search: str | None, order: Sequence[str] | None, shape: Any, limit: int
    ) -> tuple[Any, ...] | None:
        """What a page query without conditions depends on, when all of it is known.

        Building a statement costs about as much as running it; a list read again and
        again reuses the one built for the same actor's access, order, search and cursor
        shape (which of the cursor's values are NULL: that changes the SQL, the values do
        not).  Conditions (filters) are never cached: they may depend on the time
        (``older_than_days``) and on custom field definitions.
        """
        actor = self.work.actor
        if not self.cache_page_statements:
            return None
        if actor.scopes is None and not actor.system:
            return None  # the scopes are read per unit of work: nothing to key on
        return (
            type(self),
            self.entity.name,
            actor.access_key,
            search,
            tuple(order or ()),
            shape,
            limit,
        )

    def _build_page_statement(
        self,
        keys: list[Any],
        where: Condition | None,
        filters: Mapping[str, Any] | None,
        search: str | None,
        shape: tuple[bool, ...] | None,
        limit: int,
        columns: tuple[str, ...] | None = None,
        *,
        internal: bool = False,
    ) -> Select[Any]:
        statement = self.filtered(where=where, filters=filters, search=search, internal=internal)
        if shape is not None:
            statement = statement.where(after_clause(keys, cursor_binds(keys, shape)))
        statement = statement.order_by(*(k.clause() for k in keys)).limit(limit + 1)
        if columns is not None:
            wanted = list(dict.fromkeys([*columns, *(k.attr for k in keys)]))
            table = self.model.__table__
            unknown = [c for c in wanted if c not in table.c]
            if unknown:
                raise ValueError(f"{self.entity.name} has no column {unknown[0]!r}")
            statement = statement.with_only_columns(*(table.c[c] for c in wanted))
        return statement

    def count(
        self,
        *,
        where: Condition | None = None,
        filters: Mapping[str, Any] | None = None,
        search: str | None = None,
        internal: bool = False,
    ) -> int:
        """How many visible records match (``internal``: see :meth:`filtered`)."""
        inner = self.filtered(where=where, filters=filters, search=search, internal=internal)
        statement = select(func.count()).select_from(
            inner.with_only_columns(self.model.id).subquery()
        )
        return int(self.session.scalar(statement) or 0)

    def iterate(
        self,
        *,
        where: Condition | None = None,
        filters: Mapping[str, Any] | None = None,
        search: str | None = None,
        batch: int = 1000,
        action: str = "read",
    ) -> Iterable[Any]:
        """Every visible matching record, in id order, fetched in batches (exports);
        ``action``: only those the actor may also ``action`` (``"export"``)."""
        if action != "read":
            self.work.access.require(self.entity.name, action)
        after_id = 0
        while True:
            statement = (
                self.filtered(where=where, filters=filters, search=search)
                .where(self.visible(action))
                .where(self.model.id > after_id)
                .order_by(self.model.id)
                .limit(batch)
            )
            rows = list(self.session.scalars(statement))
            if not rows:
                return
            yield from rows
            after_id = rows[-1].id

    # -- input --------------------------------------------------------------------------

    def load(self, data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """Validate input with the entity's schema (and custom field definitions)."""
        schema_class = self.entity.schema
        if schema_class is None:
            raise ValidationFailed({"_schema": [f"{self.entity.name} has no input schema"]})
        try:
            values = schema_class().load(dict(data), partial=partial)
        except ValidationError as exc:
            raise ValidationFailed(_messages(exc), entity=self.entity.name) from None
        # what the columns hold, whatever fields the schema declares (a plugin's plain
        # marshmallow ones): refused here, naming the field, the same on both databases
        refused = refusals(self.model, values)
        if refused:
            raise ValidationFailed(refused, entity=self.entity.name)
        if "custom" in values:
            values["custom"] = self.work.custom_fields.validate(
                self.entity.name, values["custom"] or {}, partial=partial
            )
        elif not partial and self.entity.custom_fields:
            values["custom"] = self.work.custom_fields.validate(self.entity.name, {}, partial=False)
        return values

    # -- writing ------------------------------------------------------------------------

    def create(self, data: Mapping[str, Any] | None = None, **values: Any) -> Any:
        """Validate and insert one record owned by the actor (unless an owner is given).

        A failure leaves nothing behind, even if the caller goes on with the unit of work.
        """
        with self.work.savepoint():
            return self._create(data, values)

    def _create(self, data: Mapping[str, Any] | None, values: Mapping[str, Any]) -> Any:
        self.work.access.require(self.entity.name, "create")
        loaded = self.load({**(data or {}), **values})
        self.follow_merged_links(loaded)
        extra = {k: loaded.pop(k) for k in self.extra_fields if k in loaded}
        record = self.build(loaded)
        self.session.add(record)
        self.work.flush()
        if isinstance(record, PipelineMixin) and record.pipeline:
            self.work.moves.record_placement(record, self.entity)
        self.after_create(record, loaded, extra)
        if "tags" in extra:
            self.set_tags(record, extra["tags"])
        if self.entity.audited:
            self.work.audit(
                self.entity.name,
                record.id,
                "create",
                {k: [None, jsonable(v)] for k, v in loaded.items()},
            )
        self.work.emit(
            events.RECORD_CREATED, self.entity.name, record.id, party_id=self.party_id_of(record)
        )
        return record

    def build(self, values: dict[str, Any]) -> Any:
        """A new model instance from validated values, with ownership and pipeline defaults."""
        actor = self.work.actor
        if "owner_id" in self.entity.owner_attrs and "owner_id" not in values:
            values["owner_id"] = actor.user_id
        if values.get("owner_id") not in (None, actor.user_id):
            self.check_assignable(values["owner_id"])
        if hasattr(self.model, "created_by_id") and "created_by_id" not in values:
            values["created_by_id"] = actor.user_id
        self.check_references(values)
        pipeline_name = values.pop("pipeline", None)
        stage = values.pop("stage", None)
        record = self.model(**values)
        if isinstance(record, PipelineMixin):
            self.work.moves.place(record, self.entity, pipeline_name, stage)
        elif pipeline_name or stage:
            raise ValidationFailed({"pipeline": [f"{self.entity.name} has no pipeline"]})
        return record

    def after_create(
        self, record: Any, values: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        """Subclasses add related rows here (contact points, attendees...)."""

    def check_assignable(self, owner_id: int) -> None:
        """Giving a record to someone else needs the ``assign`` permission and a live user."""
        from crmkit.model import User

        self.work.access.require(self.entity.name, "assign")
        user = self.session.get(User, owner_id)
        if user is None:
            raise ValidationFailed({"owner_id": [f"no user {owner_id}"]})
        if user.blocked:
            raise ValidationFailed({"owner_id": [f"user {user.username} is blocked"]})

    def check_references(self, values: Mapping[str, Any]) -> None:
        """Linked records must exist and be readable by the actor.

        Every foreign key given is checked, so a wrong id is a ``ValidationFailed`` naming
        the field rather than a database integrity error.  A key to a registered entity's
        record (a party, a team, a parent task, a plugin's order...) must name one the actor
        may read (:meth:`find`, through that entity's own service): a hidden record counts
        as missing, with the same words, so links cannot probe what exists.  Users are
        people, not records: a key to one must exist (giving a record to someone is checked
        by :meth:`check_assignable`).  The system actor reads everything, so its writes are
        checked for existence only.
        """
        if values.get("record_entity"):
            self.linked_record(values["record_entity"], values.get("record_id"))
        columns = self.model.__table__.columns
        for attr, value in values.items():
            column = columns.get(attr)
            if value is None or column is None or not column.foreign_keys:
                continue
            target = next(iter(column.foreign_keys)).column
            entity = self._referenced_entity(target)
            if entity is not None:
                reachable = self.work.access.can(entity.name, "read")
                if not reachable or self.work.records(entity).find(value) is None:
                    raise ValidationFailed({attr: [f"no {target.table.name} {value}"]})
            elif self.session.execute(select(target).where(target == value)).first() is None:
                raise ValidationFailed({attr: [f"no {target.table.name} {value}"]})

    def _referenced_entity(self, target: Any) -> EntityType | None:
        """The entity whose records a foreign key's ``target`` column identifies, if it is a
        registered entity's primary key (and not a user's: see :meth:`check_references`)."""
        for entity in self.work.crm.entities:
            table = entity.model.__table__
            if table is target.table and target.primary_key and entity.name != "user":
                return entity
        return None

    def follow_merged_links(self, values: dict[str, Any]) -> None:
        """Links to a merged-away party become links to the party it was merged into.

        Adding a record to a client through its old id (a task, a deal, a person of an
        organisation) lands on the survivor, as a note or a file does; stored as given, it
        would hang off a party no list or card shows any more.  Hidden and missing ids are
        left for :meth:`check_references` to refuse.
        """
        columns = self.model.__table__.columns
        party_links = [
            attr
            for attr, value in values.items()
            if isinstance(value, int)
            and (column := columns.get(attr)) is not None
            and any(key.column.table.name == "party" for key in column.foreign_keys)
        ]
        if values.get("record_entity") == "party" and isinstance(values.get("record_id"), int):
            party_links.append("record_id")
        if not party_links:
            return
        parties = self.work.records("party")
        for attr in party_links:
            found = parties.find(values[attr])
            if found is not None and found.id != values[attr]:
                values[attr] = found.id

    def _check_exists(self, model: type[Any], record_id: Any, field: str, what: str) -> None:
        """``ValidationFailed`` on ``field`` unless ``record_id`` is ``None`` or exists."""
        if record_id is not None and self.session.get(model, record_id) is None:
            raise ValidationFailed({field: [f"no {what} {record_id}"]})

    def linked_record(self, entity: str, record_id: int | None) -> Any:
        """The record a loose link (``record_entity``/``record_id``) points at, if visible."""
        if entity not in self.work.crm.entities:
            raise ValidationFailed({"record_entity": [f"no entity {entity!r}"]})
        if record_id is None:
            raise ValidationFailed({"record_id": ["give the id of the linked record"]})
        try:
            return self.work.records(entity).get(record_id)
        except NotFound:
            raise ValidationFailed({"record_id": [f"no {entity} {record_id}"]}) from None

    def update(
        self,
        record: Any,
        data: Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        **values: Any,
    ) -> Any:
        """Change fields of a record; the audit entry lists each changed field's old and new value.

        ``expected_version`` (the version the user loaded, from an ``If-Match`` header) turns
        a stale write into :class:`Conflict` instead of overwriting someone's change.
        """
        record = self.get(record, action="update")
        if expected_version is not None and getattr(record, "version", None) != expected_version:
            raise Conflict(self.entity.name, record.id)
        raw = {**(data or {}), **values}
        blocked = [f for f in PIPELINE_FIELDS if f in raw]
        if blocked:
            # the version is the record's own count of changes, not a pipeline's field
            refusal = (
                "the version is kept by the system, not edited (send the one you read as If-Match)"
                if blocked[0] == "version"
                else "change the stage with a move, not an edit"
            )
            raise ValidationFailed({blocked[0]: [refusal]}, entity=self.entity.name)
        with self.work.savepoint():
            changes = self.stage_changes(record, raw)
            if changes and isinstance(record, PipelineMixin):
                # a new kind (say) may take it into or out of a default pipeline
                changes.update(self.work.moves.follow_applies_to(record, self.entity, changes))
            self.record_update(record, changes)
        return record

    def stage_changes(self, record: Any, data: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``data`` and set it on the record in memory; ``{field: [old, new]}``.

        Nothing is written until :meth:`record_update` (or a flush); the move service
        uses the gap to check a move against the new values and discard them if refused.
        """
        loaded = self.load(data, partial=True)
        self.follow_merged_links(loaded)
        self.keep_hidden_client(record, loaded)
        extra = {k: loaded.pop(k) for k in self.extra_fields if k in loaded}
        if "custom" in loaded:
            merged = dict(record.custom or {})
            merged.update(loaded["custom"])
            loaded["custom"] = {k: v for k, v in merged.items() if v is not None}
        changes = self.apply_changes(record, loaded)
        self.after_update(record, loaded, extra, changes)
        if "tags" in extra:
            before = self.tags_of(record)
            self.set_tags(record, extra["tags"])
            if set(before) != set(extra["tags"]):
                changes["tags"] = [sorted(before), sorted(extra["tags"])]
        return changes

    def keep_hidden_client(self, record: Any, values: dict[str, Any]) -> None:
        """Leave out of ``values`` a ``null`` client (:meth:`client_attrs`: a row's client,
        a person's organisation) for a record whose client there the actor may not read:
        they were shown it as ``null`` (:meth:`readable_clients`), so sending the record
        back as read changes nothing, rather than clearing a link they never saw.
        Another client (one they may read) still replaces it; one query, only then."""
        for attr in self.client_attrs():
            if attr not in values or values[attr] is not None:
                continue
            current = getattr(record, attr, None)
            if current is not None and current not in self.readable_clients([current]):
                del values[attr]

    def record_update(self, record: Any, changes: dict[str, Any]) -> None:
        """Write staged changes: flush, audit entry and ``record.updated`` event."""
        if not changes:
            return
        if hasattr(record, "updated_at"):
            record.updated_at = utcnow()
        self.work.flush()
        if self.entity.audited:
            self.work.audit(self.entity.name, record.id, "update", changes)
        self.work.emit(
            events.RECORD_UPDATED,
            self.entity.name,
            record.id,
            party_id=self.party_id_of(record),
            changes=changes,
        )

    def apply_changes(self, record: Any, values: Mapping[str, Any]) -> dict[str, Any]:
        """Set attributes that differ; returns ``{field: [old, new]}`` of what changed."""
        changes: dict[str, Any] = {}
        owner_change = None
        for key, new in values.items():
            old = getattr(record, key)
            if old == new:
                continue
            if key in self.entity.owner_attrs and key == "owner_id":
                if new is not None:
                    self.check_assignable(new)
                else:
                    self.work.access.require(self.entity.name, "assign")
                owner_change = (old, new)
            changes[key] = [jsonable(old), jsonable(new)]
            setattr(record, key, new)
        if changes:
            # checked before the change is flushed: a missing id is refused by name, not
            # by the database's foreign key when the check's own query flushes the session
            with self.session.no_autoflush:
                self.check_references({k: values[k] for k in changes if k in values})
        if owner_change is not None:
            self.work.flush()
            self.work.emit(
                events.OWNER_CHANGED,
                self.entity.name,
                record.id,
                party_id=self.party_id_of(record),
                old=owner_change[0],
                new=owner_change[1],
            )
        return changes

    def after_update(
        self,
        record: Any,
        values: Mapping[str, Any],
        extra: Mapping[str, Any],
        changes: dict[str, Any],
    ) -> None:
        """Subclasses update related rows here and add to ``changes``."""

    def delete(self, record: Any) -> None:
        """Delete a record (audit keeps its last values), its taggings and stage history.

        A record other records still depend on (a client with orders and payments) is not
        deleted: :class:`ValidationFailed` says so and nothing changes.
        """
        record = self.get(record, action="delete")
        record_id = record.id
        # what the audit log keeps of it: never a private column (a hash, a storage key)
        snapshot = {k: jsonable(v) for k, v in public_values(record).items()}
        party_id = self.party_id_of(record)
        try:
            with self.work.savepoint():
                # its own taggings and stage history go with it (the audit log keeps it)
                self.session.execute(
                    Tagging.__table__.delete().where(
                        Tagging.entity == self.entity.name, Tagging.record_id == record_id
                    )
                )
                self.session.execute(
                    StageMove.__table__.delete().where(
                        StageMove.entity == self.entity.name, StageMove.record_id == record_id
                    )
                )
                self.session.delete(record)
                self.work.flush()
        except IntegrityError:
            raise ValidationFailed(
                {
                    "_schema": [
                        f"this {self.entity.label or self.entity.name} is still referenced "
                        "by other records (orders, payments...) and cannot be deleted"
                    ]
                },
                entity=self.entity.name,
            ) from None
        self.forget(record_id)
        if self.entity.audited:
            self.work.audit(
                self.entity.name, record.id, "delete", {k: [v, None] for k, v in snapshot.items()}
            )
        self.work.emit(events.RECORD_DELETED, self.entity.name, record.id, party_id=party_id)

    def assign(self, records: Iterable[Any], owner_id: int | None) -> int:
        """Give many records to one owner (admin reassignment); returns how many changed.

        Each record changed gets an audit entry and an ``owner.changed`` event; records the
        actor may not assign make the whole call fail, changing nothing.
        """
        if "owner_id" not in self.entity.owner_attrs:
            raise ValidationFailed({"owner_id": [f"{self.entity.name} has no owner"]})
        self.work.access.require(self.entity.name, "assign")
        if owner_id is not None:
            self.check_assignable(owner_id)
        ids = sorted({r.id if isinstance(r, self.model) else int(r) for r in records})
        if not ids:
            return 0
        self.forget()
        changed = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = list(self.session.scalars(self.query("assign").where(self.model.id.in_(chunk))))
            if len(rows) != len(chunk):
                visible = {
                    r.id for r in self.session.scalars(self.query().where(self.model.id.in_(chunk)))
                }
                missing = [i for i in chunk if i not in visible]
                if missing:
                    raise NotFound(self.entity.name, missing[0])
                raise PermissionDenied(self.entity.name, "assign")
            for row in rows:
                if row.owner_id == owner_id:
                    continue
                old = row.owner_id
                row.owner_id = owner_id
                changed += 1
                self.work.audit(self.entity.name, row.id, "assign", {"owner_id": [old, owner_id]})
                self.work.emit(
                    events.OWNER_CHANGED,
                    self.entity.name,
                    row.id,
                    party_id=self.party_id_of(row),
                    old=old,
                    new=owner_id,
                )
            self.work.flush()
        return changed

    # -- tags ---------------------------------------------------------------------------

    def tags_of(self, record: Any) -> list[str]:
        """Tag names on a record, sorted."""
        return list(
            self.session.scalars(
                select(Tag.name)
                .join(Tagging, Tagging.tag_id == Tag.id)
                .where(Tagging.entity == self.entity.name, Tagging.record_id == record.id)
                .order_by(Tag.name)
            )
        )

    def tags_for(self, record_ids: Iterable[int]) -> dict[int, list[str]]:
        """Tag names of many records at once (a list page), by record id."""
        ids = sorted({int(i) for i in record_ids})
        found: dict[int, list[str]] = {}
        if not ids:
            return found
        rows = self.session.execute(
            select(Tagging.record_id, Tag.name)
            .join(Tag, Tag.id == Tagging.tag_id)
            .where(Tagging.entity == self.entity.name, Tagging.record_id.in_(ids))
            .order_by(Tag.name)
        )
        for record_id, name in rows:
            found.setdefault(record_id, []).append(name)
        return found

    def set_tags(self, record: Any, names: Iterable[str]) -> None:
        """Replace the record's tags (creating unknown tag names)."""
        wanted = {n.strip() for n in names if n and n.strip()}
        tag_ids = self.work.groups.tag_ids(wanted)
        self.session.execute(
            Tagging.__table__.delete().where(
                Tagging.entity == self.entity.name,
                Tagging.record_id == record.id,
                Tagging.tag_id.not_in(list(tag_ids.values()) or [0]),
            )
        )
        existing = set(
            self.session.scalars(
                select(Tagging.tag_id).where(
                    Tagging.entity == self.entity.name, Tagging.record_id == record.id
                )
            )
        )
        for tag_id in tag_ids.values():
            if tag_id not in existing:
                self.session.add(
                    Tagging(tag_id=tag_id, entity=self.entity.name, record_id=record.id)
                )
        self.work.flush()

    def add_tags(self, records: Iterable[Any], names: Iterable[str]) -> int:
        """Tag many records at once (bulk action); returns the number of taggings added."""
        tag_ids = self.work.groups.tag_ids(names)
        added = 0
        for record in records:
            record = self.get(record, action="update")
            existing = set(
                self.session.scalars(
                    select(Tagging.tag_id).where(
                        Tagging.entity == self.entity.name, Tagging.record_id == record.id
                    )
                )
            )
            for name, tag_id in tag_ids.items():
                if tag_id not in existing:
                    self.session.add(
                        Tagging(tag_id=tag_id, entity=self.entity.name, record_id=record.id)
                    )
                    self.work.audit(self.entity.name, record.id, "tag", {"tags": [None, name]})
                    added += 1
        self.work.flush()
        return added

    # -- helpers ---------------------------------------------------------------------------

    def party_id_of(self, record: Any) -> int | None:
        """The party a record belongs to (for timeline and automation), if any."""
        if self.entity.name == "party":
            return record.id
        if self.entity.party_attr:
            return getattr(record, self.entity.party_attr, None)
        return None


@attrs.define
class StatementCache:
    """Built page statements by everything they depend on (``EntityService._statement_key``).

    One per application (``crm.page_statements``); statements are immutable, so threads
    share them freely.
    """

    capacity: int = 2000
    entries: OrderedDict[tuple[Any, ...], Any] = attrs.field(factory=OrderedDict)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def get_or_build(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """The entry for ``key``, built (outside the lock) and kept when missing."""
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
                return found
        built = build()
        with self.lock:
            self.entries[key] = built
            while len(self.entries) > self.capacity:
                self.entries.popitem(last=False)
        return built


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _messages(exc: ValidationError) -> dict[str, Any]:
    messages = exc.messages
    if isinstance(messages, dict):
        return messages
    return {"_schema": messages}


def _names_field(condition: Any, field: str) -> bool:
    """Whether a condition tree (``all``/``any``/``not`` of ``field`` rules) names ``field``."""
    if isinstance(condition, Mapping):
        if condition.get("field") == field:
            return True
        return any(_names_field(v, field) for v in condition.values())
    if isinstance(condition, list | tuple):
        return any(_names_field(v, field) for v in condition)
    return False
