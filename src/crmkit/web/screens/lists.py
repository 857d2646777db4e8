"""Lists of any entity: search, filters (custom fields too), saved views, sort, keyset pages,
bulk actions and column choice.

Everything goes through the entity's service (``work.records(name).list``), so the access
predicate is part of every query and a page is one indexed keyset query however deep it is.
The query string is the state of a list (``q``, ``order``, ``after``, ``cols`` and
``f.<field>[__op]``), so a list can be bookmarked, shared and saved as a view.  It is read
by the API's reader (:func:`crmkit.web.api.params.parse_list_query`), so a parameter the
API refuses is refused here with the same message, shown on the list page (422).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import attrs
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import MoveRefused, NotFound, ValidationFailed
from crmkit.i18n import stage_context, translate
from crmkit.schemas.output import column_python_type, is_private, public_columns
from crmkit.web import i18n
from crmkit.web.api.params import ListQuery, list_refusal, parse_list_query
from crmkit.web.forms import id_list, optional_id
from crmkit.web.links import party_url, record_url
from crmkit.web.pages import error_text, posted, redirect, render, work

#: Columns shown when the user has chosen none.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "party": ("name", "kind", "stage", "owner_id", "tags", "last_activity_at"),
    "deal": ("title", "party_id", "stage", "amount", "owner_id", "updated_at"),
    "task": ("title", "status", "deadline", "assignee_id", "party_id"),
    "reminder": ("text", "remind_at", "status", "party_id"),
    "calendar_event": ("title", "starts_at", "ends_at", "owner_id", "party_id"),
    "activity": ("kind", "subject", "party_id", "actor_id", "occurred_at"),
    "attachment": ("filename", "document_type", "party_id", "created_at"),
    "message_template": ("name", "channel", "language", "updated_at"),
}
#: Columns never offered (big or internal); private ones (``is_private``) never are either.
HIDDEN_COLUMNS = {
    "custom",
    "data",
    "version",
    "name_key",
    "merged_into_id",
    "sha256",
}
USER_COLUMNS = {
    "owner_id",
    "assignee_id",
    "created_by_id",
    "actor_id",
    "uploaded_by_id",
    "manager_id",
}
PARTY_COLUMNS = {"party_id", "organisation_id"}
#: Loose links (:class:`~crmkit.model.RecordRefMixin`): an id column and the column naming
#: the entity of the record it refers to (a task's parent deal, order or client).
LOOSE_LINKS = {"record_id": "record_entity"}
PAGE_SIZE = 50


@attrs.frozen
class Cell:
    """One shown value, with an optional link."""

    text: str
    url: str | None = None
    css: str = ""


@attrs.frozen
class Row:
    """A record on the page and its cells."""

    id: int
    url: str
    cells: list[Cell]
    overdue: bool = False


@attrs.frozen
class FilterInput:
    """One filter control: the query-string name, its label, kind and current value."""

    name: str
    label: str
    kind: str  # select | text | date | number
    value: str
    choices: list[tuple[str, str]] = attrs.field(factory=list)


@attrs.frozen
class FilterChip:
    """A filter of the list the filter bar has no input for (a client, an organisation, a
    comparison typed in the address): the form carries its ``values`` as hidden fields,
    the page shows ``text`` with a link to the list without it (``remove_url``)."""

    name: str
    values: list[str]
    text: str
    remove_url: str


#: How a filter chip words an operator after the field's label: a sign before the value,
#: or a phrase (a msgid) saying it (``%(value)s``); ``=`` and ``in`` read ``label: value``.
FILTER_SIGNS = {"ne": "≠", "not_in": "≠", "lt": "<", "lte": "≤", "gt": ">", "gte": "≥"}
FILTER_PHRASES = {
    "contains": i18n.lazy("contains %(value)s"),
    "startswith": i18n.lazy("starts with %(value)s"),
    "has": i18n.lazy("has %(value)s"),
    "older_than_days": i18n.lazy("more than %(value)s days ago or never"),
    "within_days": i18n.lazy("in the last %(value)s days"),
    "is_null": i18n.lazy("is empty"),
    "not_null": i18n.lazy("is filled in"),
}
#: The operators taking no value (the chip says the phrase alone).
VALUELESS_OPS = ("is_null", "not_null")


def entity_or_404(crm: Any, name: str) -> Any:
    """The entity type of a URL, or a 404."""
    if name not in crm.entities:
        raise NotFound("entity", name)
    return crm.entities[name]


def shown_columns(entity: Any) -> list[str]:
    """The table columns of ``entity`` that lists and record pages show: the public ones
    (as the API's, see :func:`~crmkit.schemas.output.public_columns`) less the internal."""
    return [c.key for c in public_columns(entity.model) if c.key not in HIDDEN_COLUMNS]


def column_names(entity: Any, custom_keys: list[str]) -> list[str]:
    """Every column a list of ``entity`` may show."""
    names = shown_columns(entity)
    names += [f"custom.{k}" for k in custom_keys]
    names.append("tags")
    return names


def default_columns(
    unit: Any, entity: Any, available: list[str], added: Mapping[str, Any]
) -> list[str]:
    """The columns a list shows before the reader chooses: the entity's defaults (else its
    title and first filter fields), less a link to records the reader may not read (a
    worker's orders would show an empty client on every row), with the stage of a
    pipelined entity, and the plugins' added columns (:class:`ListColumn` ``default``)."""
    crm = unit.crm
    named = DEFAULT_COLUMNS.get(entity.name) or (entity.title_attr, *entity.filter_attrs[:4])
    columns = []
    for column in named:
        if column not in available and column != entity.title_attr:
            continue
        target = crm.entities["party"] if column in PARTY_COLUMNS else None
        target = target or reference_target(crm, entity, column)
        if (
            target is not None
            and target.name != "user"
            and not unit.access.can(target.name, "read")
        ):
            continue
        columns.append(column)
    if crm.pipelines_for(entity.name) and "stage" in available and "stage" not in columns:
        columns.insert(1, "stage")
    return columns + [key for key, column in added.items() if column.default]


def parse_filters(entity: Any, params: Mapping[str, Any], kinds: Mapping[str, str]) -> dict:
    """``f.stage=firm&f.amount__gte=10`` -> service filters, read as the API reads its own
    (:func:`~crmkit.web.api.params.parse_list_query`); a bad one is a ``ValidationFailed``
    naming it."""
    return dict(list_query(entity, params, kinds).filters)


def list_query(entity: Any, params: Mapping[str, Any], kinds: Mapping[str, str]) -> ListQuery:
    """The search, order, page and filters (``f.<field>[__op]``) of a list's query string."""
    if not isinstance(params, QueryParams):
        params = QueryParams(params)
    return parse_list_query(params, entity, kinds, prefix="f.", limit=PAGE_SIZE)


def choices_of(entity: Any, attr: str) -> list[str]:
    """Allowed values of an attribute, read from the entity's schema (``OneOf``)."""
    schema = entity.schema
    if schema is None:
        return []
    field = schema._declared_fields.get(attr)
    validators = getattr(field, "validators", []) if field is not None else []
    for validator in validators:
        allowed = getattr(validator, "choices", None)
        if allowed:
            return [str(c) for c in allowed]
    return []


def filter_inputs(
    unit: Any, entity: Any, params: Mapping[str, Any], users: list[Any], definitions: dict
) -> list[FilterInput]:
    """The filter bar of a list: user, pipeline and stage pickers, choices, custom fields."""
    crm = unit.crm
    gettext = i18n.gettext
    inputs: list[FilterInput] = []
    user_choices = [(str(u.id), u.label) for u in users]
    pipelines = crm.pipelines_for(entity.name)
    for attr in entity.filter_attrs:
        name = f"f.{attr}"
        value = params.get(name, "")
        if attr in USER_COLUMNS:
            inputs.append(FilterInput(name, gettext(attr), "select", value, user_choices))
        elif attr == "pipeline" and len(pipelines) > 1:
            options = [(p.name, gettext(p.title)) for p in pipelines]
            inputs.append(FilterInput(name, gettext("pipeline"), "select", value, options))
        elif attr == "stage" and pipelines:
            options = [
                (
                    s.name,
                    f"{i18n.pgettext(p.stage_context, s.title)}"
                    + (f" ({gettext(p.title)})" if len(pipelines) > 1 else ""),
                )
                for p in pipelines
                for s in p.stages
            ]
            inputs.append(FilterInput(name, gettext("stage"), "select", value, options))
        elif choices := choices_of(entity, attr):
            options = [(c, gettext(c)) for c in choices]
            inputs.append(FilterInput(name, gettext(attr), "select", value, options))
    if entity.name == "party" or entity.party_attr:
        groups = [(str(g.id), "· " * (g.path.count("/") - 2) + g.name) for g in unit.groups.tree()]
        if groups:
            inputs.append(
                FilterInput(
                    "f.group", gettext("group"), "select", params.get("f.group", ""), groups
                )
            )
    inputs.append(FilterInput("f.tag", gettext("tag"), "text", params.get("f.tag", "")))
    for key, definition in definitions.items():
        name = f"f.custom.{key}"
        label = definition.label
        if definition.kind in ("choice", "multi_choice"):
            options = [(c, c) for c in definition.choices or []]
            inputs.append(FilterInput(name, label, "select", params.get(name, ""), options))
        elif definition.kind == "boolean":
            options = [("1", gettext("yes")), ("0", gettext("no"))]
            inputs.append(FilterInput(name, label, "select", params.get(name, ""), options))
        elif definition.kind in ("number", "money"):
            inputs.append(
                FilterInput(f"{name}__gte", label + " ≥", "number", params.get(f"{name}__gte", ""))
            )
        elif definition.kind == "text":
            inputs.append(
                FilterInput(f"{name}__contains", label, "text", params.get(f"{name}__contains", ""))
            )
        else:
            inputs.append(FilterInput(name, label, "text", params.get(name, "")))
    return inputs


def filter_chips(
    unit: Any,
    entity: Any,
    params: Any,
    inputs: list[FilterInput],
    users: list[Any],
    definitions: dict,
    locale: i18n.Locale,
) -> list[FilterChip]:
    """The filters of ``params`` (``f.<field>[__op]``) that no input of the filter bar
    (``inputs``) holds, as chips: the field's label and the value, a referred record by
    its title as a list's cell names it (:func:`named_records`, a client by name, a user
    by label), or in the words for a record the reader may not open when they may not
    read it or it is gone (never its title or id); a date or a time as a cell shows it, in
    ``locale`` (:func:`moment_text`); an entity by its label.  Call in the reader's
    language."""
    gettext = i18n.gettext
    held = {i.name for i in inputs}
    chips = []
    for name in dict.fromkeys(params.keys()):
        if not name.startswith("f.") or name in held:
            continue
        field, _, op = name[2:].partition("__")
        values = params.getlist(name)
        if op not in VALUELESS_OPS:
            values = [v for v in values if v != ""]
            if not values:
                continue  # an empty field is no filter
        if field.startswith("custom."):
            definition = definitions.get(field[7:])
            label = definition.label if definition else field[7:]
        else:
            label = gettext(entity.field_label(field))
        shown = (
            ""
            if op in VALUELESS_OPS
            else ", ".join(_filter_values(unit, entity, field, op, values, params, users, locale))
        )
        if op in FILTER_SIGNS:
            text = f"{label} {FILTER_SIGNS[op]} {shown}"
        elif op in FILTER_PHRASES:
            text = f"{label} {gettext(FILTER_PHRASES[op]) % {'value': shown}}"
        else:
            text = f"{label}: {shown}"
        remove_url = f"/lists/{entity.name}"
        rest = _query(params, **{name: None, "after": None})
        chips.append(FilterChip(name, values, text, remove_url + (f"?{rest}" if rest else "")))
    return chips


def _filter_values(
    unit: Any,
    entity: Any,
    field: str,
    op: str,
    values: list[str],
    params: Any,
    users: list[Any],
    locale: i18n.Locale,
) -> list[str]:
    """The values of a filter on ``field`` as a chip shows them (see :func:`filter_chips`)."""
    crm = unit.crm
    gettext = i18n.gettext
    items = [item.strip() for value in values for item in value.split(",")]
    unavailable = gettext("unavailable record")
    if op not in ("older_than_days", "within_days") and not field.startswith("custom."):
        kind = _moment_type(entity, field)
        if kind is not None:
            return [_moment_value(locale, kind, item) for item in items]
    if loose_kind(entity, field):
        return [entity_label(crm.entities[i]) if i in crm.entities else i for i in items]
    if field in USER_COLUMNS:
        labels = {str(u.id): u.label for u in users}
        return [labels.get(item, unavailable) for item in items]
    if field == "group":
        groups = {str(g.id): g.name for g in unit.groups.tree()}
        return [groups.get(item, unavailable) for item in items]
    target = None
    if field in PARTY_COLUMNS:
        target = crm.entities["party"]
    elif loose_link(entity, field):
        named_by = params.getlist(f"f.{LOOSE_LINKS[field]}")
        if len(named_by) == 1 and named_by[0] in crm.entities:
            target = crm.entities[named_by[0]]
        else:  # any entity's record of that id: named by none
            return [unavailable] * len(items)
    elif not field.startswith("custom.") and field != "tag":
        target = reference_target(crm, entity, field)
    if target is not None:
        ids = {item: int(item) for item in items if item.isdigit()}
        named = named_records(unit, target, set(ids.values()))
        return [named[ids[item]].text if ids.get(item) in named else unavailable for item in items]
    if field == "stage":
        titles = {
            s.name: i18n.pgettext(p.stage_context, s.title)
            for p in crm.pipelines_for(entity.name)
            for s in p.stages
        }
        return [titles.get(v, v) for v in values]
    if not field.startswith("custom.") and choices_of(entity, field):
        return [gettext(v) for v in values]
    return values


def _moment_type(entity: Any, field: str) -> type[dt.date] | None:
    """``datetime`` or ``date`` when ``field`` is a public column of ``entity`` holding
    one, else ``None``."""
    table = getattr(entity.model, "__table__", None)
    column = table.columns.get(field) if table is not None else None
    if column is None or is_private(column):
        return None
    python_type = column_python_type(column)
    return python_type if python_type in (dt.datetime, dt.date) else None


def _moment_value(locale: i18n.Locale, kind: type[dt.date], raw: str) -> str:
    """A date or time typed in a list's address (ISO 8601) as a list's cell shows it; a
    time without its offset (refused by the list) as typed, a bare date as a date."""
    try:
        if kind is dt.datetime:
            moment = dt.datetime.fromisoformat(raw)
            if moment.tzinfo is not None:
                return moment_text(locale, moment)
        return moment_text(locale, dt.date.fromisoformat(raw))
    except (ValueError, OverflowError):
        return raw


def _is_percent(entity: Any, column: str) -> bool:
    """Whether a number column holds a percent (``info={"format": "percent"}``)."""
    attr = getattr(entity.model, column, None)
    info = getattr(getattr(attr, "property", None), "columns", [None])[0]
    return info is not None and getattr(info, "info", {}).get("format") == "percent"


def reference_target(crm: Any, entity: Any, column: str) -> Any:
    """The registered entity a column of ``entity`` refers to by foreign key, else ``None``."""
    table = getattr(entity.model, "__table__", None)
    if table is None or column not in table.columns:
        return None
    for key in table.columns[column].foreign_keys:
        target = key.column.table.name
        for other in crm.entities:
            if getattr(getattr(other.model, "__table__", None), "name", None) == target:
                return other
    return None


def user_columns(crm: Any, entity: Any, columns: list[str]) -> set[str]:
    """Columns shown as a user's name: the usual ones and any other referring to a user."""
    found = set()
    for column in columns:
        if column in USER_COLUMNS:
            found.add(column)
        elif column not in PARTY_COLUMNS:
            target = reference_target(crm, entity, column)
            if target is not None and target.name == "user":
                found.add(column)
    return found


def loose_link(entity: Any, column: str) -> str | None:
    """The column naming the entity that ``column`` of ``entity`` refers to loosely
    (``record_entity`` for ``record_id``, see :data:`LOOSE_LINKS`), else ``None``."""
    table = getattr(entity.model, "__table__", None)
    named_by = LOOSE_LINKS.get(column)
    if table is None or named_by is None:
        return None
    return named_by if column in table.columns and named_by in table.columns else None


def loose_kind(entity: Any, column: str) -> str | None:
    """The id column of the loose link whose entity ``column`` of ``entity`` names
    (``record_id`` for ``record_entity``, see :data:`LOOSE_LINKS`), else ``None``."""
    for id_column, named_by in LOOSE_LINKS.items():
        if named_by == column and loose_link(entity, id_column):
            return id_column
    return None


def entity_label(target: Any) -> str:
    """An entity's name for a reader (its label translated in the active language)."""
    return i18n.gettext(target.label or target.name)


def reference_key(entity: Any, column: str, record: Any) -> Any:
    """The key of ``record``'s ``column`` among :func:`reference_cells`' cells: its value,
    or for a loose link (its id column or the one naming its entity) ``(entity name, id)``."""
    id_column = loose_kind(entity, column)
    if id_column:
        return (getattr(record, column, None), getattr(record, id_column, None))
    named_by = loose_link(entity, column)
    value = getattr(record, column, None)
    return (getattr(record, named_by, None), value) if named_by else value


def reference_cells(
    unit: Any, entity: Any, columns: list[str], records: list[Any]
) -> dict[str, dict[Any, Cell]]:
    """The shown names of the records that ``columns`` of ``records`` refer to.

    ``{column: {id: Cell}}`` for every column with a foreign key to a registered entity
    other than users and clients (shown by :func:`format_value` as before): the referred
    record's title linked to its page.  Only records the reader may read are looked up
    (``find_many`` applies the access rules), so one they may not is missing here and its
    cell stays blank, as a hidden client's does: a page never names what its reader may not
    open.  A target whose title is its id is named by its label and number (``Shift #3``).
    A loose link (a task's ``record_id``, its entity in ``record_entity``) is named the same
    way, keyed by ``(entity name, id)`` (:func:`reference_key`); one to an entity no longer
    registered is blank too.  The column naming a loose link's entity (``record_entity``)
    shows the entity's label (:func:`entity_label`), under the same key and on the same
    terms: blank when the linked record is, so a hidden link tells not even its kind.
    """
    crm = unit.crm
    found: dict[str, dict[Any, Cell]] = {}
    linked: dict[str, dict[Any, Cell]] = {}  # a loose link's readable records, by id column
    for column in columns:
        if column in USER_COLUMNS or column in PARTY_COLUMNS or column.startswith("custom."):
            continue
        id_column = loose_kind(entity, column) or (column if loose_link(entity, column) else None)
        if id_column:
            if id_column not in linked:
                wanted: dict[str, set[Any]] = {}
                for record in records:
                    name, ref_id = reference_key(entity, id_column, record)
                    if name in crm.entities and ref_id is not None:
                        wanted.setdefault(name, set()).add(ref_id)
                linked[id_column] = {
                    (name, ref_id): cell
                    for name, ids in wanted.items()
                    for ref_id, cell in named_records(unit, crm.entities[name], ids).items()
                }
            found[column] = (
                linked[id_column]
                if column == id_column
                else {key: Cell(entity_label(crm.entities[key[0]])) for key in linked[id_column]}
            )
            continue
        target = reference_target(crm, entity, column)
        if target is None or target.name in ("user", "party"):
            continue
        found[column] = named_records(unit, target, {getattr(r, column, None) for r in records})
    return found


def named_records(unit: Any, target: Any, ids: Any) -> dict[int, Cell]:
    """``{id: Cell}`` naming the records of ``target`` among ``ids`` the reader may read:
    users by label, clients by name linked to their card, others by title linked to their
    page (see :func:`reference_cells`); the others are left out."""
    wanted = {i for i in ids if isinstance(i, int) and not isinstance(i, bool)}
    if not wanted:
        return {}
    if target.name == "user":
        return {u.id: Cell(u.label) for u in unit.users.list() if u.id in wanted}
    if target.name == "party":
        return {i: Cell(p.name, party_url(i)) for i, p in unit.parties.find_many(wanted).items()}
    cells = {}
    for ref_id, referred in unit.records(target.name).find_many(wanted).items():
        if target.title_attr == "id":
            text = f"{entity_label(target)} #{ref_id}"
        else:
            text = target.title_of(referred)
        cells[ref_id] = Cell(text, record_url(target.name, ref_id))
    return cells


def audit_references(unit: Any, rows: list[Any]) -> dict[str, dict[str, dict[int, Cell]]]:
    """``{entity: {field: {id: Cell}}}`` naming the records the audit ``rows``' changes
    refer to (an order's new branch, a deal's new owner), as :func:`named_records` does:
    a value the reader may not read is missing, and the log shows it blank.  The key ``""``
    names the changed records themselves; one missing there (deleted since, or one the
    reader may not read) keeps the number the log always showed."""
    crm = unit.crm
    wanted: dict[tuple[str, str], set[int]] = {}
    for row in rows:
        if row.entity not in crm.entities:
            continue
        for field, change in (row.changes or {}).items():
            pair = isinstance(change, list) and len(change) == 2
            ids = [
                v
                for v in (change if pair else [change])
                if isinstance(v, int) and not isinstance(v, bool)
            ]
            if ids:
                wanted.setdefault((row.entity, field), set()).update(ids)
    found: dict[str, dict[str, dict[int, Cell]]] = {}
    for name in {row.entity for row in rows if row.record_id and row.entity in crm.entities}:
        # the changed records themselves, under the key "" (a deleted one keeps its number)
        ids = {row.record_id for row in rows if row.entity == name}
        found.setdefault(name, {})[""] = named_records(unit, crm.entities[name], ids)
    for (name, field), ids in wanted.items():
        target = reference_target(crm, crm.entities[name], field)
        if target is not None:
            found.setdefault(name, {})[field] = named_records(unit, target, ids)
    return found


def format_value(
    locale: i18n.Locale,
    entity: Any,
    column: str,
    record: Any,
    users: dict[int, Any],
    parties: dict[int, Any],
    tags: dict[int, list[str]],
    stage_titles: dict[tuple[str, str], str],
    references: Mapping[str, Mapping[Any, Cell]] | None = None,
    user_attrs: Container[str] = USER_COLUMNS,
) -> Cell:
    """One cell: users and parties by name, stages by title, times in the user's zone.

    A column referring to another record shows that record's title from ``references``
    (:func:`reference_cells`), blank when the reader may not read it; ``user_attrs``
    are the columns naming a user (:func:`user_columns`).
    """
    if column == "tags":
        return Cell(", ".join(tags.get(record.id, [])))
    if column.startswith("custom."):
        value = (record.custom or {}).get(column[7:])
        if isinstance(value, list):
            return Cell(", ".join(map(str, value)))
        return Cell("" if value is None else str(value))
    value = getattr(record, column, None)
    if value is None:
        return Cell("")
    if column in user_attrs:
        user = users.get(value)
        return Cell(user.label if user else f"#{value}")
    if references is not None and column in references:
        return references[column].get(reference_key(entity, column, record)) or Cell("")
    if column in PARTY_COLUMNS:
        # ``parties`` holds the clients the reader may read: any other is blank, as the API
        # gives its id as ``null``, never a mark telling that a client is hidden there
        party = parties.get(value)
        return Cell(party.name, party_url(value)) if party else Cell("")
    if column == "stage":
        pipeline = getattr(record, "pipeline", None) or ""
        title = stage_titles.get((pipeline, value), value)
        # a title the pipeline declares reads in its context (an order «Новый», a deal «Новая»)
        context = stage_context(pipeline) if (pipeline, value) in stage_titles else ""
        return Cell(i18n.pgettext(context, title), css="stage")
    if column == "pipeline":
        return Cell(i18n.gettext(stage_titles.get((value, ""), value)))
    if isinstance(value, dt.date):
        return Cell(moment_text(locale, value))
    if isinstance(value, Decimal):
        if _is_percent(entity, column):  # a discount of 10 %, not 10,00 ₽
            return Cell(f"{locale.number(value)}\u00a0%")
        currency = getattr(record, "currency", None)
        return Cell(locale.money(value, currency))
    if isinstance(value, bool):
        return Cell("✓" if value else "")
    if column in ("kind", "status", "customer_type", "direction"):
        return Cell(i18n.gettext(str(value)))
    return Cell(str(value))


def moment_text(locale: i18n.Locale, value: dt.date) -> str:
    """A date, or a date and time (in the reader's zone), as a list's cell shows it."""
    if isinstance(value, dt.datetime):
        return locale.datetime(value)
    return locale.date(value)


def _query(params: Mapping[str, Any], **changes: Any) -> str:
    items = [(k, v) for k in params for v in params.getlist(k) if k not in changes]  # type: ignore[attr-defined]
    items += [(k, v) for k, v in changes.items() if v not in (None, "")]
    return urlencode(items)


def list_page(request: Request) -> Response:
    """A list of any entity (``/lists/{entity}``)."""
    crm = request.app.state.crm
    entity = entity_or_404(crm, request.path_params["entity"])
    params = request.query_params
    locale: i18n.Locale = request.state.locale
    with work(request) as unit:
        service = unit.records(entity.name)
        unit.access.require(entity.name, "read")
        definitions = unit.custom_fields.definitions(entity.name) if entity.custom_fields else {}
        kinds = {k: d.kind for k, d in definitions.items()}
        added = {
            c.key: c
            for c in crm.list_columns
            if c.entity == entity.name and (c.permission is None or unit.access.can(*c.permission))
        }
        available = column_names(entity, list(definitions)) + list(added)
        chosen = [c for c in params.get("cols", "").split(",") if c in available]
        columns = chosen or default_columns(unit, entity, available, added)
        order_param = params.get("order") or ""
        refusal = None
        query: ListQuery | None = None
        try:
            query = list_query(entity, params, kinds)
            # plain rows of the table's public columns: cells only read columns (custom
            # fields from the ``custom`` column), and rows cost a fraction of ORM records
            page = service.list_rows(
                [c.key for c in public_columns(entity.model)],
                search=query.search,
                filters=query.filters,
                order=query.order,
                after=query.after,
                limit=query.limit,
            )
        except ValidationFailed as exc:
            # the page with the refusal (as the API words it) instead of the rows, so the
            # filters can be corrected where they were chosen
            shown = list_refusal(exc, query, entity.name) if query else exc
            refusal = error_text(request, shown)
            page = None
        users = unit.users.list()
        users_by_id = {u.id: u for u in users}
        records = list(page) if page is not None else []
        party_ids = {getattr(r, c, None) for r in records for c in columns if c in PARTY_COLUMNS}
        parties = unit.parties.find_many(i for i in party_ids if i) if party_ids else {}
        tags = service.tags_for(r.id for r in records) if "tags" in columns else {}
        with i18n.activate(locale):  # a target titled by its id is named in the reader's words
            references = reference_cells(unit, entity, columns, records)
        user_attrs = user_columns(crm, entity, columns)
        added_cells = {
            c: added[c].cells(unit, records) if records else {} for c in columns if c in added
        }
        stage_titles: dict[tuple[str, str], str] = {}
        for pipeline in crm.pipelines_for(entity.name):
            stage_titles[(pipeline.name, "")] = pipeline.title
            for stage in pipeline.stages:
                stage_titles[(pipeline.name, stage.name)] = stage.title
        now = dt.datetime.now(dt.UTC)
        with i18n.activate(locale):  # kinds, statuses and stages in the reader's words
            rows = [
                Row(
                    id=record.id,
                    url=record_url(entity.name, record.id),
                    cells=[
                        Cell(str(added_cells[c].get(record.id) or ""))
                        if c in added_cells
                        else format_value(
                            locale,
                            entity,
                            c,
                            record,
                            users_by_id,
                            parties,
                            tags,
                            stage_titles,
                            references,
                            user_attrs,
                        )
                        for c in columns
                    ],
                    overdue=bool(
                        getattr(record, "deadline", None)
                        and record.deadline < now
                        and getattr(record, "status", "") not in ("done", "cancelled")
                    ),
                )
                for record in records
            ]
        views = unit.saved_views.list(entity.name)
        with i18n.activate(locale):
            inputs = filter_inputs(unit, entity, params, users, definitions)
            chips = filter_chips(unit, entity, params, inputs, users, definitions, locale)
        groups = unit.groups.tree() if entity.name == "party" else []
        may = {
            a: unit.access.can(entity.name, a)
            for a in ("create", "assign", "update", "move", "export")
        }
    sortable = set(service.sort_columns())
    stages = [(p, s) for p in crm.pipelines_for(entity.name) for s in p.stages]
    return render(
        request,
        "list.html",
        {
            "entity": entity,
            "title": entity.label_plural or entity.name,
            "columns": columns,
            "available": available,
            "labels": {
                c: added[c].label if c in added else _column_label(entity, c, definitions)
                for c in available
            },
            "rows": rows,
            "next_url": (
                f"?{_query(params, after=page.next_cursor)}" if page and page.next_cursor else None
            ),
            "first_url": f"?{_query(params, after=None)}" if params.get("after") else None,
            "sort_url": lambda c: (
                f"?{_query(params, after=None, order=_next_order(order_param, c))}"
            ),
            "sortable": sortable,
            "order": order_param,
            "params": params,
            "filtering": any(k.startswith("f.") for k in params),
            "inputs": inputs,
            "chips": chips,
            "views": views,
            "users": users,
            "groups": groups,
            "stages": stages,
            "may": may,
            "query_string": _query(params, after=None),
            "refusal": refusal,
        },
        status=422 if refusal else 200,
    )


def _next_order(current: str, column: str) -> str:
    return f"-{column}" if current == column else column


def _column_label(entity: Any, column: str, definitions: dict) -> str:
    if column.startswith("custom."):
        definition = definitions.get(column[7:])
        return definition.label if definition else column
    return i18n.lazy(entity.field_label(column))


def bulk(request: Request) -> Response:
    """Apply a bulk action to the checked rows: assign, tag, put in a group, change stage."""
    from crmkit.web.screens.records import move_fields  # records imports this module

    crm = request.app.state.crm
    entity = entity_or_404(crm, request.path_params["entity"])
    data = posted(request)
    back = f"/lists/{entity.name}?{data.get('back', '')}"
    ids = id_list(data.get("ids"), "ids")
    action = data.get("action", "")
    if not ids:
        return redirect(request, back, "Choose some rows first.", kind="error")
    with work(request) as unit:
        service = unit.records(entity.name)
        if action == "assign":
            changed = service.assign(ids, optional_id(data.get("owner_id"), "owner_id"))
            message = i18n.lazy("Assigned: %(count)s")
        elif action == "tag":
            names = [t.strip() for t in str(data.get("tag", "")).split(",") if t.strip()]
            if not names:
                raise ValidationFailed({"tag": ["give a tag"]})
            changed = service.add_tags(ids, names)
            message = i18n.lazy("Tagged: %(count)s")
        elif action == "group":
            changed = unit.groups.add_members(
                optional_id(data.get("group_id"), "group_id") or 0, ids
            )
            message = i18n.lazy("Added to the group: %(count)s")
        elif action == "stage":
            target = str(data.get("stage", ""))
            if not data.get("asked"):
                # a stage that requires fields some checked record leaves empty: asked once,
                # on a form of its own that sends the same bulk move back with them
                asked = _bulk_asks(crm, service, entity, ids, target)
                if asked is not None:
                    return _bulk_move_form(request, unit, entity, ids, target, data, *asked)
            result = unit.moves.move_many(
                ids,
                target,
                comment=str(data.get("comment", "")).strip() or None,
                fields=move_fields(data) or None,
                entity=entity.name,
            )
            changed = len(result.moved)
            if result.refused:
                found = service.find_many(result.refused)
                names = {i: entity.title_of(record) for i, record in found.items()}
                with i18n.activate(request.state.locale):
                    notes = [
                        {
                            "text": i18n.gettext("Moved: %(count)s") % {"count": changed},
                            "kind": "ok",
                        }
                    ]
                    for record_id, error in list(result.errors.items())[:REFUSALS_SHOWN]:
                        name = names.get(record_id) or f"#{record_id}"
                        notes.append(
                            {"text": f"{name}: {_reason(request, error)}", "kind": "error"}
                        )
                    more = len(result.refused) - REFUSALS_SHOWN
                    if more > 0:
                        text = i18n.gettext("… and %(count)s more refused") % {"count": more}
                        notes.append({"text": text, "kind": "error"})
                return _flash_raw(request, back, notes)
            message = i18n.lazy("Moved: %(count)s")
        else:
            raise ValidationFailed({"action": ["choose an action"]})
    with i18n.activate(request.state.locale):
        text = i18n.gettext(message) % {"count": changed}
    return _flash_raw(request, back, text)


def _bulk_asks(
    crm: Any, service: Any, entity: Any, ids: list[int], target: str
) -> tuple[Any, Any, list[str], bool] | None:
    """What a bulk move to ``target`` asks for before it is sent: the pipeline and stage,
    the required fields that some checked record leaves empty (the single move form's
    inputs) and whether a comment is required; ``None`` when no field is asked."""
    from crmkit.web.screens.records import move_asks  # the single move form's question

    asks: list[str] = []
    needs_comment = False
    found: tuple[Any, Any] | None = None
    for record in service.find_many(ids).values():
        pipeline = crm.pipelines.get(record.pipeline) if record.pipeline else None
        if pipeline is None or not pipeline.has_stage(target):
            continue
        stage = pipeline.stage(target)
        found = found or (pipeline, stage)
        for field in move_asks(stage, pipeline.transition(record.stage, target), record):
            if field == "comment":
                needs_comment = True
            elif field not in asks:
                asks.append(field)
    if not asks or found is None:
        return None
    return found[0], found[1], asks, needs_comment


def _bulk_move_form(
    request: Request,
    unit: Any,
    entity: Any,
    ids: list[int],
    target: str,
    data: Mapping[str, Any],
    pipeline: Any,
    stage: Any,
    asks: list[str],
    needs_comment: bool,
) -> Response:
    """The bulk move's small form: the required fields once, for every checked record."""
    from crmkit.web.screens.records import asked_definitions  # records imports this module

    return render(
        request,
        "bulk_move_form.html",
        {
            "entity": entity,
            "title": entity.label_plural or entity.name,
            "ids": ids,
            "target": target,
            "pipeline": pipeline,
            "stage": stage,
            "missing": asks,
            "definitions": asked_definitions(unit, entity, asks),
            "needs_comment": needs_comment,
            "values": data,
            "back_query": str(data.get("back", "")),
            "back": f"/lists/{entity.name}?{data.get('back', '')}",
        },
    )


#: How many refused records a bulk stage change names (the rest are counted).
REFUSALS_SHOWN = 10


def _reason(request: Request, error: Exception) -> str:
    """Why a record was not moved, in the user's language (every reason of a refusal)."""
    if isinstance(error, MoveRefused):
        return "; ".join(translate(m, i18n.gettext) for m in error.messages)
    return error_text(request, error)


def _flash_raw(request: Request, path: str, text: str | list[dict[str, str]]) -> Response:
    import json

    from starlette.responses import RedirectResponse

    from crmkit.web.pages import FLASH_COOKIE

    notes = [{"text": text, "kind": "ok"}] if isinstance(text, str) else text
    response = RedirectResponse(path, status_code=303)
    request.app.state.signer.set(response, FLASH_COOKIE, json.dumps(notes), max_age=60)
    return response


def save_view(request: Request) -> Response:
    """Save the list's current query string as a named view."""
    from urllib.parse import parse_qsl

    crm = request.app.state.crm
    entity = entity_or_404(crm, request.path_params["entity"])
    data = posted(request)
    query = dict(parse_qsl(str(data.get("query", ""))))
    with work(request) as unit:
        view = unit.saved_views.save(
            entity.name, str(data.get("name", "")), query, shared=bool(data.get("shared"))
        )
    return redirect(request, f"/lists/{entity.name}", "View saved.", **view.query)


def delete_view(request: Request) -> Response:
    """Delete one of the user's saved views."""
    entity = entity_or_404(request.app.state.crm, request.path_params["entity"])
    with work(request) as unit:
        unit.saved_views.delete(int(request.path_params["view_id"]))
    return redirect(request, f"/lists/{entity.name}", "View deleted.")


def view_url(entity: str, view: Any) -> str:
    """The list URL a saved view stands for."""
    return f"/lists/{entity}?{urlencode(view.query)}"
