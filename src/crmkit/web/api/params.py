"""Reading list parameters from a query string: page, order, search and filters.

``?limit=50&after=<cursor>&order=-last_activity_at,name&q=ромашка&stage=new&amount__gte=100``

Every parameter not reserved here is a filter (``field`` or ``field__op``, the operators of
:mod:`crmkit.filters`); ``in`` and ``not_in`` take a comma-separated list or the parameter
repeated.  Values are converted to the column's type, so a bad value is a clear 422 naming
the parameter rather than a database error.

The HTML list screens read their query string with the same :func:`parse_list_query`
(``prefix="f."``: there filters are ``f.stage=new``, beside the page's own ``cols``), so
a parameter the API refuses is refused by the screen with the same message, naming it as
the API does (``amount__gte``); :func:`list_refusal` names the search ``q`` in both.
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
from crmkit.i18n import Label, message
from crmkit.schemas import NUL_REFUSED
from crmkit.schemas.output import column_python_type, is_private
from crmkit.web.i18n import lazy

RESERVED = ("limit", "after", "order", "q", "confirm_duplicates")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Largest id a database column holds (64-bit signed); larger ones are simply not found.
MAX_ID = 2**63 - 1
_LIST_OPERATORS = ("in", "not_in")
_VALUELESS = ("is_null", "not_null")
#: Largest number of days ``older_than_days`` / ``within_days`` take (a thousand years
#: either way): the moment they compare with must still be a date.
MAX_DAYS = 365_000


@attrs.frozen
class ListQuery:
    """The parsed parameters of a list request."""

    limit: int = DEFAULT_LIMIT
    after: str | None = None
    order: tuple[str, ...] | None = None
    search: str | None = None
    filters: Mapping[str, Any] = attrs.field(factory=dict)


#: How a refusal of ``limit`` names it to a reader: a page's size (the bare word is a
#: finance report's number of orders in the plugin's catalog).
PAGE_SIZE_LABEL = {"limit": message("page size")}


def parse_limit(params: QueryParams, default: int = DEFAULT_LIMIT) -> int:
    """``limit`` as an int in 1..500."""
    raw = params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        refusal = message("must be a whole number")
        raise ValidationFailed({"limit": [refusal]}, labels=PAGE_SIZE_LABEL) from None
    if not 1 <= value <= MAX_LIMIT:
        refusal = message("must be between 1 and {most}", most=MAX_LIMIT)
        raise ValidationFailed({"limit": [refusal]}, labels=PAGE_SIZE_LABEL)
    return value


def parse_list_query(
    params: QueryParams,
    entity: EntityType,
    custom_kinds: Mapping[str, str],
    *,
    prefix: str = "",
    limit: int | None = None,
) -> ListQuery:
    """The page, order, search text and filters of a list request on ``entity``.

    ``prefix``: only parameters starting with it are filters (``"f."`` on the HTML list
    screens, whose filter bar also sends empty fields: those are skipped there); a refusal
    names the parameter without it.  ``limit``: a fixed page size instead of ``?limit``.
    """
    order = None
    if params.get("order"):
        order = tuple(part.strip() for part in params["order"].split(",") if part.strip())
    search = text_param(params, "q")
    filters: dict[str, Any] = {}
    for name in dict.fromkeys(params.keys()):
        if prefix:
            if not name.startswith(prefix):
                continue
            key = name[len(prefix) :]
        elif name in RESERVED:
            continue
        else:
            key = name
        field, _, op = key.partition("__")
        if op and op not in OPERATORS:
            raise ValidationFailed({key: [message("unknown operator {op}", op=repr(op))]})
        values = params.getlist(name)
        if op in _VALUELESS:
            # ``?name__is_null`` or ``=true``; ``=false`` asks for the opposite
            answers = {v.strip().lower() for v in values}
            if not answers <= {"", "true", "1", "false", "0"} or len(answers) > 1:
                raise ValidationFailed({key: [message("takes no value, or true or false")]})
            if answers & {"false", "0"}:
                key = f"{field}__{'not_null' if op == 'is_null' else 'is_null'}"
            filters[key] = None
            continue
        if prefix:  # an empty field of the filter bar is no filter
            values = [v for v in values if v != ""]
            if not values:
                continue
        if op in _LIST_OPERATORS or len(values) > 1:
            items = [item for value in values for item in value.split(",")]
            filters[key] = [_convert(entity, field, key, item, custom_kinds) for item in items]
            if not op:
                filters[f"{field}__in"] = filters.pop(key)
        else:
            filters[key] = _convert(entity, field, key, values[0], custom_kinds)
    return ListQuery(
        limit=parse_limit(params) if limit is None else limit,
        after=params.get("after") or None,
        order=order,
        search=search,
        filters=filters,
    )


def text_param(params: QueryParams, name: str) -> str | None:
    """A text parameter (``q``, a screen's ``kind``), ``None`` when absent or empty; one
    holding a NUL character is refused naming it, as the database could not compare it
    (PostgreSQL refuses the statement)."""
    value = params.get(name) or None
    if value is not None and "\x00" in value:
        raise ValidationFailed({name: [message(NUL_REFUSED)]})
    return value


def list_refusal(exc: ValidationFailed, query: ListQuery, entity: str) -> ValidationFailed:
    """A list service's refusal as the list's parameters name it: ``q`` for ``search``."""
    if not query.search or "search" not in exc.errors:
        return exc
    errors = {("q" if k == "search" else k): v for k, v in exc.errors.items()}
    return ValidationFailed(errors, entity=entity, labels=exc.labels)


def timeline_kinds(work: Any, params: QueryParams) -> list[str]:
    """The timeline kinds a request asks for (``?kind=note,call`` or repeated), each a
    declared one (the core's, a plugin's through ``crmkit_register_timeline_kinds``, a
    channel's).  A typo is refused naming ``kind`` and listing the kinds there are, not
    answered with an empty page as if the client had no such entries; declared, so known
    without asking the database.  The API's timeline and the client card read it alike."""
    kinds = [k.strip() for value in params.getlist("kind") for k in value.split(",") if k.strip()]
    declared = work.crm.timeline_kinds
    unknown = [kind for kind in kinds if kind not in declared]
    if unknown:
        refusal = message(
            "unknown timeline kind {kind} (known: {known})",
            kind=repr(unknown[0]),
            known=", ".join(sorted(declared)),
        )
        raise ValidationFailed({"kind": [refusal]})
    return kinds


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
    days = op in ("older_than_days", "within_days")
    if days:
        python_type = float
    if raw == "" and python_type is not str:
        raise ValidationFailed({key: [message("give a value")]})
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
            if days and abs(value) > MAX_DAYS:
                raise ValidationFailed(
                    {key: [message("must be between -{most} and {most} days", most=MAX_DAYS)]}
                )
            return value
        if python_type is Decimal:
            number = Decimal(raw)
            if not number.is_finite() or abs(number) >= Decimal(10) ** 16:
                raise ValueError(raw)
            return number
        if python_type is dt.datetime:
            moment = dt.datetime.fromisoformat(raw)
            if moment.tzinfo is None:
                raise ValidationFailed(
                    {key: [message("give a time with its offset (…+03:00 or …Z)")]}
                )
            return in_utc(moment)  # OverflowError (not a valid date and time) if UTC can't
        if python_type is dt.date:
            return dt.date.fromisoformat(raw)
    except (ValueError, InvalidOperation, OverflowError):
        expected = getattr(python_type, "__name__", "value")
        what = Label(_NAMES.get(expected, expected))
        raise ValidationFailed({key: [message("not a valid {what}", what=what)]}) from None
    if "\x00" in raw:
        raise ValidationFailed({key: [message(NUL_REFUSED)]})
    return raw


#: What a value should have been, by the Python type it converts to (labels, translated).
_NAMES = {
    "int": lazy("whole number"),
    "float": lazy("number"),
    "Decimal": lazy("number"),
    "bool": lazy("boolean (true or false)"),
    "datetime": lazy("date and time (ISO 8601)"),
    "date": lazy("date (YYYY-MM-DD)"),
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
