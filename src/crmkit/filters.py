"""A small declarative condition language, stored as data and compiled to SQL.

Lists, saved filters, smart groups and automation rules all describe "which records" the
same way: a JSON-able tree, never Python code or user text passed to ``eval``::

    {"all": [
        {"field": "stage", "op": "in", "value": ["firm", "account"]},
        {"field": "custom.region", "op": "eq", "value": "Москва"},
        {"any": [{"field": "tag", "op": "has", "value": "vip"},
                 {"field": "last_activity_at", "op": "older_than_days", "value": 30}]}
    ]}

:func:`compile_condition` turns a tree into a SQL predicate for an entity;
:func:`evaluate` checks a tree against a plain mapping of values (for automation on one
record already in memory).  Fields are checked against the entity: an unknown field or
operator is a :class:`~crmkit.errors.ValidationFailed` naming it.  Values are compiled as
the field's kind (``12`` compared with a text field is ``"12"``, ``"1 000"`` with a number
1000.0); one that is not of that kind is a ``ValidationFailed`` naming the field and rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
from sqlalchemy import Boolean, and_, exists, not_, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from crmkit.clock import utcnow
from crmkit.entities import EntityType
from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.i18n import Label, message

OPERATORS = (
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "in",
    "not_in",
    "contains",
    "startswith",
    "is_null",
    "not_null",
    "has",
    "older_than_days",
    "within_days",
)

Condition = Mapping[str, Any]

#: Compiles one comparison on a computed field: ``(entity, op, value) -> predicate``.
FieldCompiler = Callable[[EntityType, str, Any], ColumnElement[bool]]


@attrs.frozen
class FilterField:
    """A field computed in SQL rather than read from a column (``tag``, ``total_paid``...).

    Plugins return them from ``crmkit_register_filter_fields``; ``entity`` is the entity it
    applies to, or ``"*"`` for every entity.  ``permission`` (``(entity, action)``, such as
    ``("finance_payment", "read")``) is what a condition on the field takes: a field that
    tells what the rows themselves do not (what a client paid) would otherwise be read a
    threshold at a time by anyone who may list the rows.  An actor without it is refused
    (:class:`~crmkit.errors.PermissionDenied` naming the field) wherever a condition is
    compiled for them: lists, API filters, counts, exports, smart groups' members and rules.
    Automation conditions run as the system and are not checked.

    ``searched=True`` makes the field part of the entity's search: a list's, the API's or a
    screen's search text also finds the rows for which the field ``contains`` it (the car
    service finds orders by the car's plate so), for an actor who holds its permission.
    """

    name: str
    entity: str
    compile: FieldCompiler
    label: str = ""
    kind: str = "text"
    permission: tuple[str, str] | None = attrs.field(
        default=None, converter=lambda p: None if p is None else (str(p[0]), str(p[1]))
    )
    searched: bool = False


#: Whether the actor may ``action`` some ``entity`` records (``work.access.can``).
MayCheck = Callable[[str, str], bool]


def from_simple_filters(filters: Mapping[str, Any]) -> Condition:
    """``{"stage": "firm", "amount__gte": 100}`` -> an ``all`` condition (for query strings)."""
    items = []
    for key, value in filters.items():
        field, _, op = key.partition("__")
        if not op:
            op = "in" if isinstance(value, list | tuple) else "eq"
        items.append({"field": field, "op": op, "value": value})
    return {"all": items}


def filters_from_query(
    entity: EntityType, params: Mapping[str, Any], kinds: Mapping[str, str]
) -> dict[str, Any]:
    """A list's query string (``f.stage=firm&f.amount__gte=10``) as service filters.

    ``params`` is a multi-dict (``getlist``) or a plain mapping, such as a saved view's
    query.  Values stay text here: compiling the condition gives each the type of the
    column (or custom field) it filters, as for every other condition, and names the field
    of a value that is not one.
    """
    filters: dict[str, Any] = {}
    for key in params:
        if not key.startswith("f."):
            continue
        raw = params.getlist(key) if hasattr(params, "getlist") else params[key]
        values = [v for v in (raw if isinstance(raw, list | tuple) else [raw]) if v != ""]
        if not values:
            continue
        name = key[2:]
        field, _, op = name.partition("__")
        converted = [str(v) for v in values]
        if op:
            filters[name] = converted if op in ("in", "not_in") else converted[0]
        else:
            filters[field] = converted if len(converted) > 1 else converted[0]
    return filters


def compile_condition(
    entity: EntityType,
    condition: Condition | None,
    custom_kinds: Mapping[str, str] | None = None,
    fields: Mapping[str, FilterField] | None = None,
    may: MayCheck | None = None,
    *,
    internal: bool = False,
) -> ColumnElement[bool]:
    """The SQL predicate of ``condition`` over ``entity``'s model.

    ``custom_kinds`` maps custom field keys to their kinds (to cast JSON values);
    ``fields`` are the computed fields available for this entity.  ``may`` is the actor's
    permission check (``work.access.can``): a computed field with a ``permission`` the
    actor lacks is refused with :class:`~crmkit.errors.PermissionDenied`.  Without it (the
    system's own conditions) no field is checked.  ``internal``: the condition comes from
    code, not from a user, and may also name the entity's
    :attr:`~crmkit.entities.EntityType.placement_attrs` (party, owners, pipeline, stage).
    """
    if not condition:
        return true()
    available = dict(BUILTIN_FIELDS)
    available.update(fields or {})
    extra = frozenset(entity.placement_attrs) if internal else frozenset()
    return _compile(entity, condition, custom_kinds or {}, available, may, extra)


def _compile(
    entity: EntityType,
    node: Condition,
    kinds: Mapping[str, str],
    fields: Mapping[str, FilterField],
    may: MayCheck | None = None,
    extra: frozenset[str] = frozenset(),
) -> Any:
    if not isinstance(node, Mapping):
        refusal = message("a condition is a mapping, not {node}", node=repr(node))
        raise ValidationFailed({"filter": [refusal]})
    for combined in ("all", "any"):
        if combined in node and not isinstance(node[combined], list | tuple):
            refusal = message(
                "{combined} takes a list of conditions, not {node}",
                combined=repr(combined),
                node=repr(node[combined]),
            )
            raise ValidationFailed({"filter": [refusal]})
    if "all" in node:
        children = [_compile(entity, child, kinds, fields, may, extra) for child in node["all"]]
        return and_(true(), *children)
    if "any" in node:
        children = [_compile(entity, child, kinds, fields, may, extra) for child in node["any"]]
        return or_(*children) if children else true()
    if "not" in node:
        return not_(_compile(entity, node["not"], kinds, fields, may, extra))
    field = node.get("field")
    op = node.get("op", "eq")
    value = node.get("value")
    if not isinstance(field, str):
        raise ValidationFailed({"filter": [f"condition without a field: {dict(node)!r}"]})
    if op not in OPERATORS:
        raise ValidationFailed({field: [message("unknown operator {op}", op=repr(op))]})
    computed = fields.get(field)
    if computed is not None and computed.entity in ("*", entity.name):
        if computed.permission is not None and may is not None and not may(*computed.permission):
            raise _refused(computed)
        kind = _COMPUTED_KINDS.get(computed.kind, "")  # a plugin's "text" may be anything
        return computed.compile(entity, op, _coerced(kind, field, op, value))
    column = _column(entity, field, kinds, extra)
    return _apply(column, op, _coerced(_kind_of(entity, field, kinds), field, op, value), field)


def _refused(field: FilterField) -> PermissionDenied:
    """The refusal of a condition on a computed field the actor lacks the permission of."""
    entity, action = field.permission or ("", "")
    return PermissionDenied(
        entity,
        action,
        message(
            "filtering by “{field}” takes the permission “{action}” on “{entity}”",
            field=Label(field.label or field.name),
            action=Label(action),
            entity=Label(entity),
        ),
    )


#: Operators whose value (or, for ``in``, each item) is compared with the field's values.
_COMPARED = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "has")
#: How the values of computed fields are coerced, by the field's kind (others are left).
_COMPUTED_KINDS = {"number": "computed_number", "money": "computed_number", "group": "group"}
_TRUE, _FALSE = ("1", "true", "yes", "on", "да"), ("0", "false", "no", "off", "нет")


def _kind_of(entity: EntityType, field: str, kinds: Mapping[str, str]) -> str:
    """What a field's values are: a custom field's kind, else the column's Python type."""
    if field.startswith("custom."):
        kind = kinds.get(field[len("custom.") :], "text")
        # stored as text in the JSON and compared as text (see _column)
        return kind if kind in ("number", "money", "boolean", "date") else "text"
    from crmkit.schemas.output import column_python_type

    try:
        python_type = column_python_type(entity.column(field))
    except AttributeError:  # an expression without a column type
        return ""
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        Decimal: "decimal",
        dt.datetime: "datetime",
        dt.date: "calendar_date",
        str: "text",
    }.get(python_type, "")


def _coerced(kind: str, field: str, op: str, value: Any) -> Any:
    """A condition's value as the field compares it: ``12`` for a text field is ``"12"``,
    ``"1 000"`` for a number ``1000.0``, ``"2025-01-31"`` for a timestamp a UTC datetime.
    A value that is not one is a :class:`ValidationFailed` naming the field and the rule
    (the database would refuse the comparison: PostgreSQL does not compare text with
    numbers)."""
    if op not in _COMPARED or value is None:
        return value
    if isinstance(value, list | tuple):
        if op not in ("in", "not_in", "has"):
            return value
        return [None if v is None else _coerce_one(kind, field, op, v) for v in value]
    return _coerce_one(kind, field, op, value)


def _coerce_one(kind: str, field: str, op: str, value: Any) -> Any:
    try:
        if kind == "text":
            if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
                raise ValueError(message("not a text"))
            if isinstance(value, float) and value.is_integer():
                return str(int(value))
            return str(value)
        if kind in ("number", "money", "decimal", "integer", "computed_number"):
            if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
                raise ValueError(message("not a number"))
            try:
                number = Decimal(
                    str(value).replace("\u00a0", "").replace(" ", "").replace(",", ".")
                )
            except InvalidOperation:
                raise ValueError(message("not a number")) from None
            if not number.is_finite():
                raise ValueError(message("not a number"))
            if kind == "computed_number":
                return value  # checked; compared by the plugin's SQL as it was given
            if kind == "decimal":
                return number
            if kind == "integer":
                if number != number.to_integral_value():
                    raise ValueError(message("not a whole number"))
                return int(number)
            return float(number)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValueError(message("not yes or no"))
        if kind in ("date", "datetime", "calendar_date"):
            return _moment(kind, value)
        if kind == "group":
            # ASCII digits within a column's range: "²" passes isdigit() but not int(), and
            # a number past 2^63-1 fails in the database instead of matching nothing
            text = "" if isinstance(value, bool) else str(value).strip()
            ascii_digits = text.isascii() and text.isdigit() and len(text) <= 19
            if not ascii_digits or not 1 <= int(text) <= 2**63 - 1:
                raise ValueError(message("not a group id"))
            return int(text)
    except ValueError as exc:
        refusal = message("{op} {value}: {problem}", op=op, value=repr(value), problem=exc.args[0])
        raise ValidationFailed({field: [refusal]}) from None
    return value


def _moment(kind: str, value: Any) -> Any:
    """A date (``YYYY-MM-DD`` or ``DD.MM.YYYY``) or timestamp as a ``date`` custom field
    stores it (ISO text), or as the column takes it (a ``date``, an aware UTC datetime)."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            try:
                moment = dt.datetime.strptime(text, "%d.%m.%Y")
            except ValueError:
                raise ValueError(message("not a date (YYYY-MM-DD or DD.MM.YYYY)")) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    else:
        raise ValueError(message("not a date (YYYY-MM-DD or DD.MM.YYYY)"))
    if kind == "date":
        return moment.date().isoformat()
    if kind == "calendar_date":
        return moment.date()
    return moment


def _entity_label(entity: EntityType) -> Label:
    """How a refusal names ``entity``: by its label (``Deal``, translated for the reader),
    its code only when it declares none."""
    return Label(entity.label or entity.name)


def _column(
    entity: EntityType, field: str, kinds: Mapping[str, str], extra: frozenset[str] = frozenset()
) -> Any:
    if field.startswith("custom."):
        if not entity.custom_fields:
            raise ValidationFailed(
                {field: [message("{entity} has no custom fields", entity=_entity_label(entity))]}
            )
        key = field[len("custom.") :]
        kind = kinds.get(key)
        if kind is None:
            refusal = message(
                "no custom field {key} on {entity}", key=repr(key), entity=_entity_label(entity)
            )
            raise ValidationFailed({field: [refusal]})
        element = entity.model.custom[key]
        if kind in ("number", "money"):
            return element.as_float()
        if kind == "boolean":
            return element.as_boolean()
        return element.as_string()
    allowed = set(entity.filter_attrs) | set(entity.sort_attrs) | extra
    if field not in allowed:
        refusal = message(
            "{entity} cannot be filtered by {field}",
            entity=_entity_label(entity),
            field=repr(field),
        )
        raise ValidationFailed({field: [refusal]})
    return entity.column(field)


def _apply(column: Any, op: str, value: Any, field: str) -> Any:
    if op == "eq":
        return column.is_(None) if value is None else column == value
    if op == "ne":
        return column.is_not(None) if value is None else or_(column != value, column.is_(None))
    if op in ("lt", "lte", "gt", "gte"):
        if value is None:
            raise ValidationFailed({field: [message("operator {op} needs a value", op=op)]})
        return {
            "lt": column < value,
            "lte": column <= value,
            "gt": column > value,
            "gte": column >= value,
        }[op]
    if op in ("in", "not_in"):
        if not isinstance(value, list | tuple):
            raise ValidationFailed({field: [message("operator {op} needs a list", op=op)]})
        return column.in_(list(value)) if op == "in" else column.not_in(list(value))
    if op == "contains":
        return text_matches(column, str(value))
    if op == "startswith":
        return text_matches(column, str(value), anywhere=False)
    if op == "is_null":
        return column.is_(None)
    if op == "not_null":
        return column.is_not(None)
    if op in ("older_than_days", "within_days"):
        try:
            edge = utcnow() - dt.timedelta(days=float(value))
        except (TypeError, ValueError, OverflowError):  # not a number, NaN, beyond the calendar
            refusal = message("operator {op} needs a number of days", op=op)
            raise ValidationFailed({field: [refusal]}) from None
        return or_(column < edge, column.is_(None)) if op == "older_than_days" else column >= edge
    refusal = message("operator {op} does not apply to {field}", op=op, field=field)
    raise ValidationFailed({field: [refusal]})


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _TextMatch(ColumnElement[bool]):
    """Case-insensitive substring (or prefix) match of a text column: ``ILIKE`` on
    PostgreSQL; on SQLite a ``GLOB`` whose letters are classes of their cases
    (``*[Сс][Тт][Рр][Оо][Йй]*``).

    SQLite's own ``LIKE`` folds ASCII only, so ``ILIKE`` there compiles to
    ``lower(x) LIKE lower(y)`` with a Python ``lower`` (see :mod:`crmkit.db`): a Python call
    per row, four times the cost of the scan on a million clients (1.9 s against 0.45 s for
    a smart group "name contains Строй").
    """

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison: no "= 1" around it where booleans are ints
    _traverse_internals = [
        ("like", InternalTraversal.dp_clauseelement),
        ("glob", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, like: ColumnElement[bool], glob: ColumnElement[bool]) -> None:
        self.like = like
        self.glob = glob


@compiles(_TextMatch)
def _text_match_default(element: _TextMatch, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.like, **kw))


@compiles(_TextMatch, "sqlite")
def _text_match_sqlite(element: _TextMatch, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.glob, **kw))


def text_matches(column: Any, text: str, *, anywhere: bool = True) -> ColumnElement[bool]:
    """``column`` contains ``text`` (or starts with it, ``anywhere=False``), ignoring case."""
    like = f"{_escape_like(text)}%"
    glob = glob_pattern(text) + "*"
    if anywhere:
        like, glob = "%" + like, "*" + glob
    return _TextMatch(column.ilike(like, escape="\\"), column.op("GLOB", is_comparison=True)(glob))


def glob_pattern(text: str) -> str:
    """``text`` as a case-insensitive SQLite ``GLOB`` pattern (without wildcards): each
    letter a class of its cases, ``*``, ``?`` and ``[`` taken literally."""
    parts = []
    for char in text:
        cases = sorted({c for c in (char, char.lower(), char.upper()) if len(c) == 1})
        if len(cases) > 1:
            parts.append("[" + "".join(cases) + "]")
        elif char in "*?[":
            parts.append(f"[{char}]")
        else:
            parts.append(char)
    return "".join(parts)


# -- evaluation in memory -------------------------------------------------------------------


#: Decides one comparison on a computed field for the record being evaluated:
#: ``check(op, value) -> bool`` (a query about that one record, see
#: :mod:`crmkit.automation.engine`).
ComputedCheck = Callable[[str, Any], bool]


def evaluate(
    condition: Condition | None,
    values: Mapping[str, Any],
    computed: Mapping[str, ComputedCheck] | None = None,
) -> bool:
    """Whether ``values`` (field -> value; ``custom.x`` keys for custom fields; ``tags`` as a
    list) satisfy ``condition``.  Same operators and meaning as in SQL.

    ``computed`` decides the comparisons on computed fields (``tag``, ``group``, a plugin's
    :class:`FilterField`) by field name; a branch of ``all``/``any`` already decided is not
    asked, so cheap fields placed first spare the queries."""
    if not condition:
        return True
    if "all" in condition:
        return all(evaluate(child, values, computed) for child in condition["all"])
    if "any" in condition:
        children = condition["any"]
        return any(evaluate(child, values, computed) for child in children) if children else True
    if "not" in condition:
        return not evaluate(condition["not"], values, computed)
    field = condition["field"]
    op = condition.get("op", "eq")
    expected = condition.get("value")
    if op not in OPERATORS:
        raise ValidationFailed({field: [message("unknown operator {op}", op=repr(op))]})
    check = (computed or {}).get(field)
    if check is not None:
        return check(op, expected)
    if field == "tag":
        tags = set(values.get("tags") or ())
        wanted = set(expected if isinstance(expected, list | tuple) else [expected])
        return bool(tags & wanted) if op in ("has", "in", "eq") else not (tags & wanted)
    actual = values.get(field)
    return _compare(op, actual, expected)


def _number(value: Any) -> Any:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return value
    return value


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return _number(actual) == _number(expected)
    if op == "ne":
        return _number(actual) != _number(expected)
    if op in ("lt", "lte", "gt", "gte"):
        if actual is None or expected is None:
            return False
        a, b = _number(actual), _number(expected)
        try:
            return {"lt": a < b, "lte": a <= b, "gt": a > b, "gte": a >= b}[op]
        except TypeError:
            return False
    if op == "in":
        return actual in (expected or ())
    if op == "not_in":
        return actual not in (expected or ())
    if op == "contains":
        return actual is not None and str(expected).casefold() in str(actual).casefold()
    if op == "startswith":
        return actual is not None and str(actual).casefold().startswith(str(expected).casefold())
    if op == "is_null":
        return actual is None
    if op == "not_null":
        return actual is not None
    if op in ("older_than_days", "within_days"):
        edge = utcnow() - dt.timedelta(days=float(expected))
        if actual is None:
            return op == "older_than_days"
        return actual < edge if op == "older_than_days" else actual >= edge
    if op == "has":
        return expected in (actual or ())
    return False


# -- built-in virtual fields ----------------------------------------------------------------


def _tag_field(entity: EntityType, op: str, value: Any) -> Any:
    from crmkit.model import Tag, Tagging

    names = list(value) if isinstance(value, list | tuple) else [value]
    found = exists(
        select(Tagging.record_id)
        .join(Tag, Tag.id == Tagging.tag_id)
        .where(
            Tagging.entity == entity.name, Tagging.record_id == entity.model.id, Tag.name.in_(names)
        )
    )
    if op in ("has", "eq", "in"):
        return found
    if op in ("ne", "not_in"):
        return not_(found)
    raise ValidationFailed({"tag": [message("operator {op} does not apply to tags", op=op)]})


def _group_field(entity: EntityType, op: str, value: Any) -> Any:
    from crmkit.model import GroupMembership, PartyGroup

    if not entity.party_attr:
        refusal = message("{entity} is not linked to parties", entity=_entity_label(entity))
        raise ValidationFailed({"group": [refusal]})
    ids = [int(v) for v in (value if isinstance(value, list | tuple) else [value])]
    party_column = entity.model.id if entity.name == "party" else entity.column(entity.party_attr)
    members = (
        select(GroupMembership.party_id)
        .join(PartyGroup, PartyGroup.id == GroupMembership.group_id)
        .where(
            or_(
                PartyGroup.id.in_(ids),
                *(
                    PartyGroup.path.startswith(
                        select(PartyGroup.path).where(PartyGroup.id == i).scalar_subquery()
                    )
                    for i in ids
                ),
            )
        )
    )
    inside = party_column.in_(members)
    if op in ("in", "eq", "has"):
        return inside
    if op in ("not_in", "ne"):
        return not_(inside)
    raise ValidationFailed({"group": [message("operator {op} does not apply to groups", op=op)]})


BUILTIN_FIELDS: Mapping[str, FilterField] = {
    "tag": FilterField("tag", "*", _tag_field, label="Tag"),
    "group": FilterField("group", "*", _group_field, label="Group", kind="group"),
}
