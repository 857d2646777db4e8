"""Keyset pagination: stable pages of any size over any sort order, at any depth.

A cursor encodes the sort values of the last row shown; the next page asks for rows
strictly after it.  The id is always the last sort key, so ties never repeat or skip rows.
Offsets are never used: page 20,000 costs what page 1 costs.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from math import isfinite
from typing import Any

import attrs
from sqlalchemy import and_, bindparam, or_, tuple_

from crmkit.clock import in_utc
from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit.model.base import Amount

#: The largest integer a database column holds (64-bit signed).
MAX_INTEGER = 2**63 - 1
#: A cursor of another order, or an edited one whose values are not the columns' types
#: (a message: the list screens show it in the reader's language).
MISMATCH = message("the page cursor does not match the sort order")
#: A cursor that is no cursor at all (not base64 of JSON).
NOT_A_CURSOR = message("not a valid page cursor")
#: How a refusal of ``order`` names it to a reader: a list's sort order (the bare word
#: ``order`` is a finance order in the plugins' catalogs).
SORT_ORDER = {"order": message("sort order")}


@attrs.frozen
class Page:
    """One page of records and the cursor of the next one (``None`` on the last page)."""

    items: list[Any]
    next_cursor: str | None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@attrs.frozen
class SortKey:
    """One column of an ordering: the attribute name, its column, and the direction."""

    attr: str
    column: Any
    descending: bool
    nullable: bool = True
    #: the Python type of the column's values (``object`` when unknown): checks cursors
    value_type: Any = object

    def clause(self) -> Any:
        """``ORDER BY`` element (NULLs sort as the smallest values on both backends).

        A NOT NULL column gets no NULLS clause: PostgreSQL puts NULLs first in DESC order,
        and asking for anything else on a column would stop it from reading the order
        straight from an index.
        """
        if self.descending:
            ordered = self.column.desc()
            return ordered.nulls_last() if self.nullable else ordered
        ordered = self.column.asc()
        return ordered.nulls_first() if self.nullable else ordered


def _nullable(column: Any) -> bool:
    """Whether a column (or a mapped attribute) may hold NULL; unknown counts as yes."""
    expression = getattr(column, "expression", column)
    return bool(getattr(expression, "nullable", True))


def parse_order(order: Sequence[str], columns: dict[str, Any], id_column: Any) -> list[SortKey]:
    """``["-last_activity_at", "name"]`` -> sort keys, with the id appended as tie-breaker."""
    keys: list[SortKey] = []
    for item in order:
        descending = item.startswith("-")
        attr = item.lstrip("-+")
        if attr not in columns:
            allowed = ", ".join(sorted(columns))
            refusal = message(
                "cannot sort by {field} (allowed: {allowed})", field=repr(attr), allowed=allowed
            )
            raise ValidationFailed({"order": [refusal]}, labels=SORT_ORDER)
        if attr != "id":
            column = columns[attr]
            keys.append(SortKey(attr, column, descending, _nullable(column), _value_type(column)))
    last_descending = keys[-1].descending if keys else True
    id_item = next((i for i in order if i.lstrip("-+") == "id"), None)
    if id_item is not None:
        last_descending = id_item.startswith("-")
    keys.append(SortKey("id", id_column, last_descending, False, _value_type(id_column)))
    return keys


def _value_type(column: Any) -> Any:
    """The Python type of a sort column's values; ``object`` for an expression without one."""
    from crmkit.schemas.output import column_python_type

    try:
        return column_python_type(column)
    except AttributeError:  # a bare expression: no type to check cursors against
        return object


def _encode_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    if isinstance(value, dt.date):
        return {"d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"n": str(value)}
    return value


def _decode_value(value: Any, key: SortKey) -> Any:
    """A cursor's value for ``key`` as the column takes it; ``ValueError`` when it is not one.

    Cursors come back from clients: a value of another type (a cursor of another order, or
    an edited one) would otherwise reach the database and fail there.
    """
    if value is None:
        if not key.nullable:
            raise ValueError("NULL for a NOT NULL column")
        return None
    expected = key.value_type
    if expected is dt.datetime:
        return in_utc(dt.datetime.fromisoformat(_tagged(value, "t")))  # naive: ValueError
    if expected is dt.date:
        return dt.date.fromisoformat(_tagged(value, "d"))
    if expected is Decimal:
        number = Decimal(_tagged(value, "n"))
        if not number.is_finite():
            raise ValueError("not a number")
        column_type = getattr(key.column, "type", None)
        if isinstance(column_type, Amount):  # stored as an integer count of minor units
            minor = number.scaleb(column_type.scale)
            if minor != minor.to_integral_value() or abs(minor) > MAX_INTEGER:
                raise ValueError("not an amount the column holds")
        return number
    if expected is bool:
        if not isinstance(value, bool):
            raise ValueError("not a boolean")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INTEGER:
            raise ValueError("not a whole number")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise ValueError("not a number")
        return value
    if expected is str:
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError("not a text")
        value.encode()  # a lone surrogate (JSON allows "\ud800"): UnicodeEncodeError
        return value
    if isinstance(value, dict | list):  # a column of unknown type: scalars only
        raise ValueError("not a single value")
    return value


def _tagged(value: Any, tag: str) -> str:
    """The text of ``{"t": "..."}`` (how :func:`_encode_value` writes non-JSON values)."""
    if not isinstance(value, dict) or set(value) != {tag} or not isinstance(value[tag], str):
        raise ValueError("not a value of the column's type")
    return value[tag]


#: built once: ``json.dumps`` with options builds a new encoder on every call
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_cursor(keys: Sequence[SortKey], row: Any) -> str:
    """The cursor pointing just after ``row``."""
    values = [_encode_value(getattr(row, key.attr)) for key in keys]
    raw = _to_json(values).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, keys: Sequence[SortKey]) -> list[Any]:
    """The sort values stored in ``cursor``; a tampered cursor is a validation error."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, RecursionError):
        raise ValidationFailed({"after": [NOT_A_CURSOR]}) from None
    if not isinstance(values, list) or len(values) != len(keys):
        raise ValidationFailed({"after": [MISMATCH]})
    decoded = []
    for key, value in zip(keys, values, strict=True):
        try:
            decoded.append(_decode_value(value, key))
        except (ValueError, ArithmeticError):  # InvalidOperation, OverflowError
            raise ValidationFailed({"after": [MISMATCH]}) from None
    return decoded


def cursor_binds(keys: Sequence[SortKey], shape: Sequence[bool]) -> list[Any]:
    """Bound parameters standing for a cursor's values (``None`` where the value is NULL).

    A statement built with them serves every cursor of the same shape; run it with
    :func:`cursor_params` of the decoded values.
    """
    return [
        None
        if is_null
        else bindparam(f"crmkit_after_{index}", type_=getattr(key.column, "type", None))
        for index, (key, is_null) in enumerate(zip(keys, shape, strict=True))
    ]


def cursor_params(values: Sequence[Any] | None) -> dict[str, Any]:
    """The parameters of :func:`cursor_binds` for decoded cursor ``values``."""
    if values is None:
        return {}
    return {f"crmkit_after_{i}": value for i, value in enumerate(values) if value is not None}


def after_clause(keys: Sequence[SortKey], values: Sequence[Any]) -> Any:
    """Rows strictly after ``values`` in the order of ``keys``.

    When every key runs the same way and no value is NULL, this is a row-value comparison
    ``(a, b, id) < (:a, :b, :id)`` that an index on those columns answers directly.  Not
    when descending over a nullable column: its NULL rows sort last, after the cursor, but
    compare as NULL and would drop out (ascending puts them first, before any value).
    """
    if _row_comparison_holds(keys, values):
        left = tuple_(*(k.column for k in keys))
        right = tuple_(*values)
        return left < right if keys[0].descending else left > right
    alternatives = []
    for index, key in enumerate(keys):
        equal = [_equals(k.column, v) for k, v in zip(keys[:index], values[:index], strict=True)]
        step = _beyond(key, values[index])
        if step is None:
            continue
        alternatives.append(and_(*equal, step))
    return or_(*alternatives)


def _row_comparison_holds(keys: Sequence[SortKey], values: Sequence[Any]) -> bool:
    """Whether ``(a, b, id) > (:a, :b, :id)`` selects exactly the rows after the cursor."""
    if len({k.descending for k in keys}) != 1 or any(v is None for v in values):
        return False
    return not keys[0].descending or not any(k.nullable for k in keys)


def _equals(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def _beyond(key: SortKey, value: Any) -> Any:
    # descending puts NULLs last; ascending puts them first (see SortKey.clause)
    if key.descending:
        if value is None:
            return None
        if not key.nullable:
            return key.column < value
        return or_(key.column < value, key.column.is_(None))
    if value is None:
        return key.column.is_not(None)
    return key.column > value
