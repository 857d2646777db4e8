"""Bulk writes that skip the ORM unit of work (imports, generators, merges).

Measured (see ``PERFORMANCE.md`` in the shared design notes): the ORM's ``add_all`` inserts
one row per statement, ~10x slower than a Core ``executemany``; on PostgreSQL ``COPY`` is
~6x faster than ``executemany`` and ``RETURNING`` on many rows is slow.  So bulk paths
allocate ids up front (a batch of sequence values, or the next free rowids while holding
SQLite's write lock), build plain rows, and write them with :func:`insert_rows`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import (
    ColumnElement,
    Enum,
    String,
    Table,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    cast,
    insert,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from crmkit import events
from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.filters import evaluate
from crmkit.identity import contact_key, domain_key, name_key
from crmkit.model import AuditEntry, ContactPoint, Party, StageMove, Tag
from crmkit.model.ids import high_water
from crmkit.schemas import LANGUAGE_CODE
from crmkit.services.limits import refusals
from crmkit.services.moves import require_placement

if TYPE_CHECKING:
    from crmkit.services.parties import PartyService


@attrs.frozen
class BulkResult:
    """How many records were created and their ids (allocated in order)."""

    count: int
    ids: list[int]


def one_of(column: Any, name: str, *, array: bool) -> ColumnElement[bool]:
    """``column`` is one of the values bound as ``name`` (a list).

    With ``array`` (PostgreSQL) this is ``column = ANY(:name)``, one array parameter: the
    statement's text is the same however many values come, so the driver parses and
    prepares it once.  An expanding ``IN`` (the other databases) is rendered again for
    each count, which cost a batch look-up of a few hundred values more than running it.
    Both use the column's index.  Text values travel as one array literal
    (:func:`text_array_literal`), which the server parses, instead of a list the driver
    dumps element by element in Python.
    """
    if array:
        if isinstance(column.type, String) and not isinstance(column.type, Enum):
            values = bindparam(name, type_=TextArrayLiteral())
            return column == any_(cast(values, ARRAY(Text)))
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def text_array_literal(values: Sequence[str]) -> str:
    """PostgreSQL's text form of a ``text[]`` holding ``values``: ``{"a","b"}``.

    Sent as one string and parsed by the server; psycopg's list dumper quotes each
    element in Python, three times slower for the 200,000 words of an import batch's
    look-up (measured: 550 vs 180 ms).  Every element is quoted, so commas, braces,
    spaces, an empty string or the word NULL stay plain text; backslashes and quotes are
    escaped.
    """
    if not values:
        return "{}"
    joined = '","'.join(values)
    if "\\" in joined or joined.count('"') != 2 * (len(values) - 1):  # a value has one
        joined = '","'.join(v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return '{"' + joined + '"}'


class TextArrayLiteral(TypeDecorator[Sequence[str]]):
    """A list of strings bound as :func:`text_array_literal` (cast to ``text[]`` in SQL)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Sequence[str] | None, dialect: Any) -> str | None:
        return None if value is None else text_array_literal(value)


def uses_arrays(connection_or_dialect: Any) -> bool:
    """Whether :func:`one_of` with ``array=True`` suits this connection's database."""
    dialect = getattr(connection_or_dialect, "dialect", connection_or_dialect)
    return dialect.name == "postgresql"


# one round trip: the sequence is looked up once, then drawn from ``n`` times
_NEXT_IDS = text(
    "SELECT nextval(s.seq) FROM (SELECT pg_get_serial_sequence(:table, 'id')::regclass AS seq) s, "
    "generate_series(1, :n)"
)


def allocate_ids(connection: Connection, table: Table, count: int) -> list[int]:
    """``count`` fresh primary-key values for ``table``, reserved for this transaction.

    PostgreSQL draws them from the column's sequence in one round trip; SQLite takes the
    write lock first (so nobody else can insert meanwhile) and continues after the
    current maximum or the largest id ever deleted, whichever is larger (ids are never
    reused: :mod:`crmkit.model.ids`).
    """
    if count <= 0:
        return []
    if connection.dialect.name == "postgresql":
        rows = connection.execute(_NEXT_IDS, {"table": table.name, "n": count})
        return [r[0] for r in rows]
    connection.execute(table.delete().where(table.c.id == -1))  # takes SQLite's write lock
    start = high_water(connection, table.name) + 1  # above any id ever deleted, too
    return list(range(start, start + count))


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert plain rows: ``COPY`` on PostgreSQL, Core ``executemany`` elsewhere.

    Every row must have the same keys.  Values are Python values as the columns' types
    take them (aware datetimes, dicts for JSON).
    """
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        _copy_rows(connection, table, rows)
    elif connection.dialect.name == "sqlite":
        _executemany_rows(connection, table, rows)
    else:
        connection.execute(insert(table), list(rows))


#: ``(dialect, table, columns)`` -> the INSERT and each column's bind processor
_PLANS: dict[tuple[str, str, tuple[str, ...]], tuple[str, list[Any]]] = {}


def _executemany_rows(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """The driver's ``executemany`` with the columns' own bind processors applied here.

    What ``connection.execute(insert(table), rows)`` sends, without SQLAlchemy's per-row
    parameter handling (about half the cost of a bulk insert on SQLite).  Like ``COPY``, it
    fills no Python-side column defaults: rows carry every value.
    """
    dialect = connection.dialect
    columns = tuple(rows[0].keys())
    key = (dialect.name, table.name, columns)
    plan = _PLANS.get(key)
    if plan is None:
        quote = dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(c) for c in columns)}) VALUES ({', '.join('?' * len(columns))})"
        )
        processors = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
        ]
        plan = _PLANS[key] = (sql, processors)
    sql, processors = plan
    converted = [(i, p) for i, p in enumerate(processors) if p is not None]
    if len(columns) == 1:
        values = [[row[columns[0]]] for row in rows]
    else:
        values = list(map(list, map(itemgetter(*columns), rows)))
    for value in values:
        for i, process in converted:
            value[i] = process(value[i])
    connection.exec_driver_sql(sql, list(map(tuple, values)))


def _copy_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    from psycopg.types.json import Jsonb

    columns = list(rows[0].keys())
    processors = []
    for name in columns:
        column = table.c[name]
        type_name = type(column.type).__name__
        impl_name = type(getattr(column.type, "impl", column.type)).__name__
        if "JSON" in type_name or "JSON" in impl_name or _is_json_variant(column):
            processors.append(lambda v: None if v is None else Jsonb(v))
        elif hasattr(column.type, "process_bind_param"):
            bind = column.type.process_bind_param
            processors.append(lambda v, bind=bind: bind(v, connection.dialect))
        else:
            processors.append(None)
    driver = connection.connection.driver_connection
    quoted = ", ".join(f'"{c}"' for c in columns)
    with (
        driver.cursor() as cursor,
        cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy,
    ):
        for row in rows:
            copy.write_row(
                [p(row[c]) if p else row[c] for p, c in zip(processors, columns, strict=True)]
            )


def _is_json_variant(column: Any) -> bool:
    variants = getattr(column.type, "_variant_mapping", {})
    return any("JSON" in type(v).__name__ for v in variants.values())


#: The tables bulk writes grow and later look-ups (duplicate keys, vocabulary) read.
GROWN_TABLES = ("party", "contact_point", "party_match_key", "match_word", "match_word_variant")
#: ``bulk_create`` refreshes statistics once it has written this many parties in one call
#: (and again each time it has doubled them).
ANALYZE_FROM = 10_000


def refresh_statistics(connection: Connection, tables: Sequence[str] = GROWN_TABLES) -> None:
    """``ANALYZE`` the tables on PostgreSQL (nothing elsewhere), in the caller's transaction.

    Autovacuum analyzes a table about once a minute; a bulk write grows tables by hundreds of
    thousands of rows in less, and until then the planner plans look-ups for the small
    tables it last saw and scans them whole.  ``ANALYZE`` counts the rows the current
    transaction inserted.  SQLite's planner uses the indexes without statistics.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("ANALYZE " + ", ".join(tables))


def chunked(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of up to ``size`` items from ``rows``."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


# -- parties ------------------------------------------------------------------------------

_PARTY_KEYS = {
    "kind",
    "customer_type",
    "name",
    "first_name",
    "last_name",
    "organisation_id",
    "position",
    "source",
    "description",
    "language",
    "owner_id",
    "team_id",
    "pipeline",
    "stage",
    "custom",
    "contact_points",
    "tags",
}


def bulk_create_parties(
    service: PartyService,
    rows: Iterable[Mapping[str, Any]],
    *,
    batch_size: int,
    source: str | None,
    check_only: bool = False,
) -> BulkResult:
    """See :meth:`crmkit.services.parties.PartyService.bulk_create`.

    ``check_only``: check every row as a write would, and write nothing (an import's dry
    run: the same refusals, with their row numbers, as the real run's)."""
    from crmkit.services.screening import index_names

    work = service.work
    work.access.require("party", "create")
    work.flush()
    connection = work.session.connection()
    region = service.region
    actor_id = work.actor.user_id
    has_custom_definitions = bool(work.custom_fields.definitions("party"))
    pipelines = work.crm.pipelines_for("party")
    assignable: set[int | None] = {actor_id, None}
    may_place_anywhere = False
    checked_links: dict[tuple[Any, ...], dict[str, Any]] = {}
    all_ids: list[int] = []
    analyzed = 0
    row_number = 0
    for chunk in chunked(rows, batch_size):
        now = utcnow()
        if check_only:
            ids = [None] * len(chunk)
        else:
            ids = allocate_ids(connection, Party.__table__, len(chunk))
        parties, contacts, moves, audits = [], [], [], []
        for party_id, row in zip(ids, chunk, strict=True):
            row_number += 1
            unknown = set(row) - _PARTY_KEYS
            if unknown:
                raise ValidationFailed(
                    {sorted(unknown)[0]: ["Unknown field."]}, entity="party", row=row_number
                )
            kind = row.get("kind") or "organisation"
            if kind not in ("person", "organisation"):
                raise ValidationFailed(
                    {"kind": [f"must be person or organisation, not {kind!r}"]},
                    entity="party",
                    row=row_number,
                )
            name = (row.get("name") or "").strip()
            if not name and kind == "person":
                name = " ".join(p for p in (row.get("first_name"), row.get("last_name")) if p)
            if not name:
                raise ValidationFailed(
                    {"name": ["a name is required"]}, entity="party", row=row_number
                )
            if len(name) > 300:
                raise ValidationFailed(
                    {"name": ["longer than 300 characters"]}, entity="party", row=row_number
                )
            language = row.get("language") or None
            if language is not None and not re.fullmatch(LANGUAGE_CODE, str(language)):
                raise ValidationFailed(
                    {"language": [f"not a language code: {language!r}"]},
                    entity="party",
                    row=row_number,
                )
            links = {
                attr: row[attr]
                for attr in ("organisation_id", "team_id")
                if row.get(attr) is not None
            }
            if links:
                # linked like create links: a merged-away id lands on its survivor, a
                # hidden or missing one is refused with the same words, naming the field
                key = tuple(sorted(links.items()))
                if key not in checked_links:
                    resolved = dict(links)
                    try:
                        service.follow_merged_links(resolved)
                        service.check_references(resolved)
                    except ValidationFailed as exc:
                        raise ValidationFailed(
                            exc.errors, entity="party", row=row_number, labels=exc.labels
                        ) from None
                    checked_links[key] = resolved
                links = checked_links[key]
            owner_id = row.get("owner_id", actor_id)
            if owner_id not in assignable:
                service.check_assignable(owner_id)
                assignable.add(owner_id)
            custom = row.get("custom") or {}
            if custom or has_custom_definitions:
                try:
                    custom = work.custom_fields.validate("party", dict(custom), partial=False)
                except ValidationFailed as exc:
                    raise ValidationFailed(
                        exc.errors, entity="party", row=row_number, labels=exc.labels
                    ) from None
            party = {
                "id": party_id,
                "kind": kind,
                "customer_type": row.get("customer_type"),
                "name": name,
                "name_key": name_key(name, kind),
                "first_name": row.get("first_name"),
                "last_name": row.get("last_name"),
                "organisation_id": links.get("organisation_id"),
                "position": row.get("position"),
                "source": row.get("source") or source,
                "description": row.get("description") or "",
                "language": language,
                "owner_id": owner_id,
                "created_by_id": actor_id,
                "team_id": links.get("team_id"),
                "created_at": now,
                "updated_at": now,
                "last_activity_at": now,
                "custom": custom,
                "pipeline": None,
                "stage": None,
                "stage_entered_at": None,
                "version": 1,
                "merged_into_id": None,
            }
            refused = refusals(Party, party)  # PostgreSQL would fail the whole call
            if refused:
                raise ValidationFailed(refused, entity="party", row=row_number)
            later_stage = _place(party, row, pipelines, row_number)
            if later_stage is not None and not may_place_anywhere:
                # a row put straight into a later stage is placed there, as create does
                require_placement(work.access, "party", *later_stage, row=row_number)
                may_place_anywhere = True
            if party["pipeline"]:
                party["stage_entered_at"] = now
                moves.append(
                    {
                        "entity": "party",
                        "record_id": party_id,
                        "pipeline": party["pipeline"],
                        "from_stage": None,
                        "to_stage": party["stage"],
                        "actor_id": actor_id,
                        "at": now,
                        "comment": None,
                        "seconds_in_source": None,
                        "owner_id": owner_id,
                        "backward": False,
                    }
                )
            parties.append(party)
            for point in row.get("contact_points") or ():
                point_kind = point.get("kind")
                if point_kind not in ("phone", "email", "messenger", "website"):
                    raise ValidationFailed(
                        {"contact_points": [f"unknown kind {point_kind!r}"]},
                        entity="party",
                        row=row_number,
                    )
                normalized = contact_key(
                    point_kind,
                    str(point.get("value") or ""),
                    region=region,
                    service=point.get("service"),
                )
                if not normalized.value:
                    continue
                contact = {
                    "party_id": party_id,
                    "kind": point_kind,
                    "service": point.get("service"),
                    "value": normalized.value,
                    "key": normalized.key,
                    "label": point.get("label"),
                    "is_primary": bool(point.get("is_primary")),
                    "valid": normalized.valid,
                    "domain": domain_key(point_kind, normalized.key),
                }
                refused = refusals(ContactPoint, contact)
                if refused:
                    problem = next(iter(refused.values()))[0]
                    raise ValidationFailed(
                        {"contact_points": [f"{point_kind} {normalized.value[:20]!r}…: {problem}"]},
                        entity="party",
                        row=row_number,
                    )
                contacts.append(contact)
            audits.append(
                {
                    "at": now,
                    "actor_id": actor_id,
                    "actor_label": work.actor.label,
                    "entity": "party",
                    "record_id": party_id,
                    "action": "create",
                    "changes": {"name": [None, name], "bulk": [None, True]},
                }
            )
        if check_only:
            for number, row in enumerate(chunk, start=row_number - len(chunk) + 1):
                for name in row.get("tags") or ():  # what creating the tag would refuse
                    refused = refusals(Tag, {"name": str(name).strip()})
                    if refused:
                        raise ValidationFailed(
                            {"tags": refused["name"]}, entity="party", row=number
                        )
            continue
        insert_rows(connection, Party.__table__, parties)
        index_names(connection, [(p["id"], p["name"], p["kind"]) for p in parties], bulk=True)
        insert_rows(connection, ContactPoint.__table__, contacts)
        insert_rows(connection, StageMove.__table__, moves)
        insert_rows(connection, AuditEntry.__table__, audits)
        first_row = row_number - len(chunk) + 1
        tags = [
            (first_row + index, party_id, row.get("tags"))
            for index, (party_id, row) in enumerate(zip(ids, chunk, strict=True))
            if row.get("tags")
        ]
        for number, party_id, names in tags:
            try:
                _tag(work, party_id, names)
            except ValidationFailed as exc:  # a tag too long: named with its row
                raise ValidationFailed(
                    exc.errors, entity="party", row=number, labels=exc.labels
                ) from None
        for party_id in ids:
            work.emit(events.RECORD_CREATED, "party", party_id, party_id=party_id, bulk=True)
        work.dispatch_events()
        all_ids.extend(ids)
        if len(all_ids) >= ANALYZE_FROM and len(all_ids) >= 2 * analyzed:
            refresh_statistics(connection)
            analyzed = len(all_ids)
    return BulkResult(len(all_ids), all_ids)


def _place(
    party: dict[str, Any], row: Mapping[str, Any], pipelines: Sequence[Any], row_number: int
) -> tuple[str, str] | None:
    """Put the row's party in its pipeline and stage; the (first, target) stage titles
    when that is a later stage than the first."""
    name, stage = row.get("pipeline"), row.get("stage")
    pipeline = None
    if name:
        pipeline = next((p for p in pipelines if p.name == name), None)
        if pipeline is None:
            raise ValidationFailed(
                {"pipeline": [f"no pipeline {name!r} for parties"]}, entity="party", row=row_number
            )
    else:
        for candidate in pipelines:
            if candidate.default and (
                candidate.applies_to is None or evaluate(candidate.applies_to, party)
            ):
                pipeline = candidate
                break
    if pipeline is None:
        if stage:
            raise ValidationFailed(
                {"pipeline": ["give the pipeline of the stage"]}, entity="party", row=row_number
            )
        return None
    if stage and not pipeline.has_stage(stage):
        raise ValidationFailed(
            {"stage": [f"{pipeline.title} has no stage {stage!r}"]}, entity="party", row=row_number
        )
    party["pipeline"] = pipeline.name
    party["stage"] = stage or pipeline.initial_stage.name
    if party["stage"] == pipeline.initial_stage.name:
        return None
    return pipeline.initial_stage.title, pipeline.stage(party["stage"]).title


def _tag(work: Any, party_id: int, names: Iterable[str]) -> None:
    from crmkit.model import Tagging

    for tag_id in work.groups.tag_ids(names).values():
        work.session.add(Tagging(tag_id=tag_id, entity="party", record_id=party_id))
