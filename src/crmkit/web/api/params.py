"""Reading list parameters from a query string: page, order, search and filters.

``?limit=50&after=<cursor>&order=-last_activity_at,name&q=ромашка&stage=new&amount__gte=100``

Every parameter not reserved here is a filter (``field`` or ``field__op``, the operators of
:mod:`crmkit.filters`); ``in`` and ``not_in`` take a comma-separated list or the parameter
repeated.  Values are converted to the column's type, so a bad value is a clear 422 naming
the parameter rather than a database error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote_plus

import attrs
from starlette.datastructures import QueryParams
from starlette.requests import Request

from crmkit.clock import in_utc
from crmkit.entities import EntityType
from crmkit.errors import ValidationFailed
from crmkit.filters import OPERATORS
from crmkit.schemas.output import column_python_type, is_private

RESERVED = ("limit", "after", "order", "q", "confirm_duplicates")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Largest id a database column holds (64-bit signed); larger ones are simply not found.
MAX_ID = 2**63 - 1
_LIST_OPERATORS = ("in", "not_in")
_VALUELESS = ("is_null", "not_null")


@attrs.frozen
class ListQuery:
    """The parsed parameters of a list request."""

    limit: int = DEFAULT_LIMIT
    after: str | None = None
    order: tuple[str, ...] | None = None
    search: str | None = None
    filters: Mapping[str, Any] = attrs.field(factory=dict)


def parse_limit(params: QueryParams, default: int = DEFAULT_LIMIT) -> int:
    """``limit`` as an int in 1..500."""
    raw = params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed({"limit": ["must be a whole number"]}) from None
    if not 1 <= value <= MAX_LIMIT:
        raise ValidationFailed({"limit": [f"must be between 1 and {MAX_LIMIT}"]})
    return value


def parse_list_query(
    params: QueryParams, entity: EntityType, custom_kinds: Mapping[str, str]
) -> ListQuery:
    """The page, order, search text and filters of a list request on ``entity``."""
    order = None
    if params.get("order"):
        order = tuple(part.strip() for part in params["order"].split(",") if part.strip())
    search = params.get("q") or None
    filters: dict[str, Any] = {}
    for key in dict.fromkeys(params.keys()):
        if key in RESERVED:
            continue
        field, _, op = key.partition("__")
        if op and op not in OPERATORS:
            raise ValidationFailed({key: [f"unknown operator {op!r}"]})
        values = params.getlist(key)
        if op in _VALUELESS:
            # ``?name__is_null`` or ``=true``; ``=false`` asks for the opposite
            answers = {v.strip().lower() for v in values}
            if not answers <= {"", "true", "1", "false", "0"} or len(answers) > 1:
                raise ValidationFailed({key: ["takes no value, or true or false"]})
            if answers & {"false", "0"}:
                key = f"{field}__{'not_null' if op == 'is_null' else 'is_null'}"
            filters[key] = None
            continue
        if op in _LIST_OPERATORS or len(values) > 1:
            items = [item for value in values for item in value.split(",")]
            filters[key] = [_convert(entity, field, key, item, custom_kinds) for item in items]
            if not op:
                filters[f"{field}__in"] = filters.pop(key)
        else:
            filters[key] = _convert(entity, field, key, values[0], custom_kinds)
    return ListQuery(
        limit=parse_limit(params),
        after=params.get("after") or None,
        order=order,
        search=search,
        filters=filters,
    )


def _python_type(entity: EntityType, field: str, custom_kinds: Mapping[str, str]) -> Any:
    if field.startswith("custom."):
        kind = custom_kinds.get(field[len("custom.") :])
        return {"number": float, "money": float, "boolean": bool}.get(kind or "", str)
    column = entity.model.__table__.columns.get(field)
    if column is None or is_private(column):
        return str  # a computed field (tag, group...) or an unknown one: compiling says which
    python_type = column_python_type(column)
    return str if python_type is object else python_type


def _convert(
    entity: EntityType, field: str, key: str, raw: str, custom_kinds: Mapping[str, str]
) -> Any:
    python_type = _python_type(entity, field, custom_kinds)
    op = key.partition("__")[2]
    if op in ("older_than_days", "within_days"):
        python_type = float
    if raw == "" and python_type is not str:
        raise ValidationFailed({key: ["give a value"]})
    try:
        if python_type is bool:
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return lowered in ("true", "1")
        if python_type is int:
            value = int(raw)
            if abs(value) > MAX_ID:
                raise ValueError(raw)
            return value
        if python_type is float:
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(raw)
            return value
        if python_type is Decimal:
            number = Decimal(raw)
            if not number.is_finite() or abs(number) >= Decimal(10) ** 16:
                raise ValueError(raw)
            return number
        if python_type is dt.datetime:
            moment = dt.datetime.fromisoformat(raw)
            if moment.tzinfo is None:
                raise ValidationFailed({key: ["give a time with its offset (…+03:00 or …Z)"]})
            return in_utc(moment)  # OverflowError (not a valid date and time) if UTC can't
        if python_type is dt.date:
            return dt.date.fromisoformat(raw)
    except (ValueError, InvalidOperation, OverflowError):
        expected = getattr(python_type, "__name__", "value")
        raise ValidationFailed({key: [f"not a valid {_NAMES.get(expected, expected)}"]}) from None
    if "\x00" in raw:
        raise ValidationFailed({key: ["contains a NUL character"]})
    return raw


_NAMES = {
    "int": "whole number",
    "float": "number",
    "Decimal": "number",
    "bool": "boolean (true or false)",
    "datetime": "date and time (ISO 8601)",
    "date": "date (YYYY-MM-DD)",
}


def parse_id(raw: Any) -> int | None:
    """A record id from a path, or ``None`` when it cannot be one (then: 404)."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= MAX_ID else None


def flag(params: QueryParams, name: str) -> bool:
    """A boolean query flag: ``?name=true`` (also 1/yes)."""
    return (params.get(name) or "").lower() in ("1", "true", "yes")


def next_link(request: Request, cursor: str) -> str:
    """The ``Link`` header of the next page: the request's own query, ``after`` replaced.

    Built from the raw query string (the client's own spelling of its other parameters is
    kept); the cursor is URL-safe base64, so it needs no escaping.
    """
    raw = request.scope.get("query_string", b"").decode("latin-1")
    kept = [p for p in raw.split("&") if p and unquote_plus(p.partition("=")[0]) != "after"]
    kept.append(f"after={cursor}")
    return f'<{request.scope["path"]}?{"&".join(kept)}>; rel="next"'
