"""Output schemas: what the API returns for a record of any entity.

An entity may name its own (``EntityType.output_schema``); otherwise one is derived from the
model's columns, so a plugin's entity is served without writing a schema.  Columns marked
``info={"private": True}`` (password hashes, storage keys, token digests) never appear.

Serializing a page of rows through ``Schema.dump`` costs tens of microseconds per row;
:class:`RowEncoder` gives the same result for "flat" schemas (every field a column of a
JSON-native type) by picking the values straight from database rows, and a test keeps the
two in agreement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields
from sqlalchemy import JSON, TypeDecorator

from crmkit.model.base import Amount

if TYPE_CHECKING:
    from crmkit.entities import EntityType


def is_private(column: Any) -> bool:
    """Whether a table column is private (``info={"private": True}``: a password hash, a
    sealed secret, a storage key).

    The one rule for every place that shows columns: the API, lists, record pages,
    filters, exports and template variables leave such a column out.
    """
    return bool(column.info.get("private"))


def public_columns(model: type[Any]) -> list[Any]:
    """The table columns of ``model`` that may be shown (private ones left out)."""
    shown = [c for c in model.__table__.columns if not is_private(c)]
    return sorted(shown, key=lambda c: c.key != "id")  # the id first, then table order


def public_values(record: Any) -> dict[str, Any]:
    """A record's column values by key, private columns left out (template variables,
    automation payloads)."""
    return {c.key: getattr(record, c.key, None) for c in public_columns(type(record))}


#: What the audit log and domain events (webhooks, outbox payloads) keep of a private
#: column's value: that it changed, never the value.
PRIVATE_MASK = "***"


def mask_private(model: type[Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` (``{field: [old, new]}`` or ``{field: value}``) with the values of
    ``model``'s private columns replaced by :data:`PRIVATE_MASK`.

    The field's name stays (a reader sees that a password or a secret changed, and a rule
    on ``field.changed`` still fires); an empty side (``None`` or ``""``) stays as it is,
    so "set", "changed" and "cleared" can be told apart without the value.  The one rule
    for audit entries and events: :meth:`UnitOfWork.audit` and :meth:`UnitOfWork.emit`
    apply it to every entry and event of a registered entity.
    """
    if model is None or not hasattr(model, "__table__"):
        return dict(changes)
    columns = model.__table__.columns
    shown: dict[str, Any] = {}
    for key, value in changes.items():
        column = columns.get(key)
        if column is not None and is_private(column):
            if isinstance(value, list | tuple):
                value = [_masked(side) for side in value]
            else:
                value = _masked(value)
        shown[key] = value
    return shown


def _masked(value: Any) -> Any:
    return value if value is None or value == "" else PRIVATE_MASK


def column_python_type(column: Any) -> type[Any]:
    """The Python type of a column's values (``Decimal`` for amounts, ``object`` for JSON).

    Looks through type decorators (``UTCDateTime`` is a ``datetime``) and treats JSON as
    "anything", since a JSON column may hold a list as well as a mapping.
    """
    column_type = column.type
    if isinstance(column_type, Amount):
        return Decimal
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, JSON):
        return object
    try:
        return column_type.python_type  # type: ignore[no-any-return]
    except NotImplementedError:
        return object


def _field_for(column: Any) -> fields.Field:
    options: dict[str, Any] = {"dump_only": True, "allow_none": bool(column.nullable)}
    python_type = column_python_type(column)
    if python_type is bool:
        return fields.Boolean(**options)
    if python_type is int:
        return fields.Integer(**options)
    if python_type is float:
        return fields.Float(**options)
    if python_type is Decimal:
        return fields.Decimal(as_string=True, **options)
    if python_type is dt.datetime:
        return fields.AwareDateTime(**options)
    if python_type is dt.date:
        return fields.Date(**options)
    if python_type is str:
        return fields.String(**options)
    return fields.Raw(**options)


@cache
def _derived(model: type[Any], name: str) -> type[Schema]:
    declared = {column.key: _field_for(column) for column in public_columns(model)}
    schema = Schema.from_dict(declared, name=name)
    schema.__doc__ = f"A {name} as the API returns it."
    return schema


def output_schema(entity: EntityType) -> type[Schema]:
    """The marshmallow schema of a record of ``entity`` as the API returns it."""
    if entity.output_schema is not None:
        return entity.output_schema
    return _derived(entity.model, schema_name(entity))


def model_schema(model: type[Any]) -> type[Schema]:
    """The derived output schema of any model (related rows shown with a record)."""
    return _derived(model, model.__name__)


def related_lists(entity: EntityType) -> dict[str, type[Any]]:
    """Relationships shown with a single record: those its input schema also accepts
    (a party's ``contact_points``), by name, with the related model."""
    from sqlalchemy import inspect

    accepted = set(entity.schema().fields) if entity.schema is not None else set()
    return {
        rel.key: rel.mapper.class_
        for rel in inspect(entity.model).relationships
        if rel.key in accepted and rel.uselist
    }


def carries_tags(entity: EntityType) -> bool:
    """Whether records of ``entity`` take tags (their input schema has a ``tags`` field)."""
    return entity.schema is not None and "tags" in entity.schema().fields


@cache
def _detail(entity: EntityType) -> type[Schema]:
    base = output_schema(entity)
    declared: dict[str, fields.Field] = dict(base().fields)
    if carries_tags(entity):
        declared["tags"] = fields.List(fields.String(), dump_only=True)
    for key, model in related_lists(entity).items():
        related = model_schema(model)
        declared[key] = fields.List(fields.Nested(related), dump_only=True)
    schema = Schema.from_dict(declared, name=f"{schema_name(entity)}Detail")
    schema.__doc__ = f"One {entity.name} with its tags and related rows."
    return schema


def detail_schema(entity: EntityType) -> type[Schema]:
    """A single record as the API returns it: the output schema plus tags and related rows."""
    return _detail(entity)


def schema_name(entity: EntityType) -> str:
    """``calendar_event`` -> ``CalendarEvent`` (schema and OpenAPI component names)."""
    return "".join(part.capitalize() for part in entity.name.split("_"))


#: Field classes whose dumped value is the attribute's value itself (or ``str`` of a
#: Decimal, which the JSON encoder does): these can be read from rows directly.
_FLAT_FIELDS = (
    fields.Integer,
    fields.String,
    fields.Boolean,
    fields.AwareDateTime,
    fields.Date,
    fields.Decimal,
    fields.Dict,
    fields.Raw,
    fields.Float,
)


class RowEncoder:
    """Turns rows (or ORM records) into the mappings ``output_schema.dump`` would give.

    ``columns`` are the table columns to select; :meth:`rows` maps database rows to dicts
    with the schema's data keys.  ``flat`` is false when the schema has a field that is not a
    plain column (nested, computed): then callers must dump records through the schema.
    Dates, datetimes and Decimals are left for the JSON encoder (see
    :func:`crmkit.web.api.responses.dumps`), which writes them exactly as marshmallow does.
    """

    def __init__(self, schema: type[Schema], model: type[Any]) -> None:
        self.schema = schema()
        table_columns = {c.key for c in model.__table__.columns}
        self.flat = True
        keys: list[str] = []
        columns: list[str] = []
        for name, field in self.schema.dump_fields.items():
            attribute = field.attribute or name
            if type(field) not in _FLAT_FIELDS or attribute not in table_columns:
                self.flat = False
                break
            if isinstance(field, fields.Decimal) and not field.as_string:
                self.flat = False
                break
            keys.append(field.data_key or name)
            columns.append(attribute)
        self.keys: tuple[str, ...] = tuple(keys)
        self.columns: tuple[str, ...] = tuple(columns)

    def rows(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Dicts for database rows selected with :attr:`columns` first, in that order."""
        keys = self.keys
        width = len(keys)
        if rows and len(rows[0]) == width:  # only the columns: no slice of every row
            return [dict(zip(keys, row, strict=True)) for row in rows]
        return [dict(zip(keys, row[:width], strict=True)) for row in rows]

    def records(self, records: Sequence[Any]) -> list[Mapping[str, Any]]:
        """Dicts for ORM records (through the schema, whatever its fields)."""
        return list(self.schema.dump(records, many=True))

    def record(self, record: Any) -> Mapping[str, Any]:
        """The mapping of one ORM record."""
        return dict(self.schema.dump(record))


@cache
def encoder_for(schema: type[Schema], model: type[Any]) -> RowEncoder:
    """The (cached) encoder of ``schema`` over ``model``."""
    return RowEncoder(schema, model)


__all__ = [
    "RowEncoder",
    "carries_tags",
    "column_python_type",
    "detail_schema",
    "encoder_for",
    "is_private",
    "model_schema",
    "output_schema",
    "public_columns",
    "public_values",
    "related_lists",
    "schema_name",
]
