"""What a model's columns can hold, checked before a value is written.

An entity's input schema should refuse a text longer than its column, or a moment UTC cannot
hold, naming the field (the core's schemas do, and plugins get the same helpers:
:func:`crmkit.schemas.Text`, :class:`crmkit.schemas.Moment`).  A plugin whose schema uses
plain marshmallow fields would otherwise meet the database's own answer, which differs:
SQLite keeps a text of any length in a ``VARCHAR(200)``, PostgreSQL refuses it without
naming the column, and a moment beyond the year 9999 in UTC fails in the driver on both.
The record service therefore checks every loaded value against its column with
:func:`refusals`, the same way on both databases; the checks are derived from the column
types once per model.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from crmkit.errors import ValidationFailed
from crmkit.i18n import Message, message
from crmkit.model.base import Amount, UTCDateTime

Check = Callable[[Any], Message | None]

#: The longest text a person writes into one field by hand: a note, what was said on a
#: call, a description.  Their columns are ``Text`` (no length of their own), so this is
#: the one limit the forms, the API's schemas and the services share.
MAX_WRITTEN_TEXT = 20_000

#: The longest text of a message sent to a client (mail, a messenger): a letter may quote
#: a thread or carry a long offer, so it is allowed ten times a note's length.
MAX_SENT_TEXT = 200_000

#: The longest comment given with a stage move (``StageMove.comment``, a ``Text`` column):
#: a reason in a few lines, not a note.
MAX_MOVE_COMMENT = 5_000

#: Whole numbers each integer column type holds on PostgreSQL (SQLite holds 64 bits in all:
#: the narrower limit is kept on both, so a value is accepted or refused the same way).
_INTEGER_BITS = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))

#: How the databases and drivers name a value they cannot hold, and the bits it was given.
_TOO_LONG = re.compile(r"too long for type character(?: varying)?\((\d+)\)")
_OUT_OF_RANGE = re.compile(r"\b(smallint|integer|bigint) out of range")
_BITS = {"smallint": 16, "integer": 32, "bigint": 64}


def refusals(model: type[Any], values: Mapping[str, Any]) -> dict[str, list[Message]]:
    """``{field: [why]}`` for each of ``values`` its column of ``model`` cannot hold."""
    checks = column_checks(model)
    errors: dict[str, list[Message]] = {}
    for key, value in values.items():
        check = checks.get(key)
        if check is None or value is None:
            continue
        problem = check(value)
        if problem is not None:
            errors[key] = [problem]
    return errors


@cache
def column_checks(model: type[Any]) -> dict[str, Check]:
    """The check of each of ``model``'s column attributes that has a limit, by attribute."""
    checks: dict[str, Check] = {}
    for attribute in sa.inspect(model).column_attrs:
        if len(attribute.columns) != 1:
            continue
        check = _check_for(attribute.columns[0].type)
        if check is not None:
            checks[attribute.key] = check
    return checks


def _check_for(column_type: Any) -> Check | None:
    if isinstance(column_type, UTCDateTime):
        return _aware_moment
    if isinstance(column_type, Amount):
        return _amount_check(column_type.scale)
    if isinstance(column_type, TypeDecorator):
        return None  # a type of its own: its values are not the column's
    if isinstance(column_type, sa.DateTime) and column_type.timezone:
        return _moment
    if isinstance(column_type, sa.Enum):
        return None
    if isinstance(column_type, sa.String) and column_type.length:
        return _length_check(column_type.length)
    for kind, bits in _INTEGER_BITS:
        if isinstance(column_type, kind):
            return _integer_check(bits)
    return None


def written_text_refusal(value: str, limit: int = MAX_WRITTEN_TEXT) -> Message | None:
    """Why ``value`` is too long for a hand-written text (``limit`` characters,
    :data:`MAX_WRITTEN_TEXT` unless told), or ``None``; the words are those of a column's
    length."""
    return _length_check(limit)(value)


def refuse_long_texts(model: type[Any] | None = None, /, **texts: str | None) -> None:
    """Refuse, naming each field, the hand-written ``texts`` that are too long: longer
    than their ``String(n)`` column of ``model``, or than :data:`MAX_WRITTEN_TEXT` for a
    ``Text`` column (or without a model).  For a service writing a form's free text past
    any schema; call it before writing anything.  Raises :class:`ValidationFailed`."""
    checks = column_checks(model) if model is not None else {}
    errors: dict[str, list[Message]] = {}
    for field, value in texts.items():
        if value is None:
            continue
        problem = checks.get(field, _length_check(MAX_WRITTEN_TEXT))(value)
        if problem is not None:
            errors[field] = [problem]
    if errors:
        raise ValidationFailed(errors)


def _length_check(limit: int) -> Check:
    def check(value: Any) -> Message | None:
        if isinstance(value, str) and len(value) > limit:
            return message("longer than {limit} characters", limit=limit)
        return None

    return check


def _integer_check(bits: int) -> Check:
    power = bits - 1
    low, high = -(2**power), 2**power - 1

    def check(value: Any) -> Message | None:
        if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
            return message("out of range (-2^{power} to 2^{power}-1)", power=power)
        return None

    return check


def _moment(value: Any) -> Message | None:
    """A moment with an offset that UTC cannot hold (the last hours of the year 9999 given
    west of Greenwich, the first of the year 1 east of it)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        try:
            value.astimezone(dt.UTC)
        except OverflowError:
            return message("out of range: in UTC, a moment falls within the years 1 to 9999")
    return None


def _aware_moment(value: Any) -> Message | None:
    """:func:`_moment`, and a moment without its offset (crmkit stores UTC, never guesses)."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return message("give the time with its offset (+03:00 or Z)")
    return _moment(value)


def _amount_check(scale: int) -> Check:
    """An amount is kept as a count of minor units in 64 bits (see :class:`Amount`)."""
    high = Decimal(2**63 - 1).scaleb(-scale)

    def check(value: Any) -> Message | None:
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            return None  # the schema's to read; the column refuses what it cannot
        if abs(value) > high:
            return message("out of range (at most {high})", high=high)
        return None

    return check


def database_refusals(exc: BaseException) -> dict[str, list[Message]]:
    """``{column: [why]}`` for a value the database (or its driver) refused to store.

    For what still reaches the database unchecked (a plugin writing its models itself):
    PostgreSQL says "value too long for type character varying(200)" or "bigint out of
    range" without naming the column, the drivers raise :class:`OverflowError` for a
    moment or a number they cannot convert.  The statement's parameters (named after the
    columns) tell which values those were; empty when they do not.
    """
    reason = str(getattr(exc, "orig", None) or exc)
    length = _TOO_LONG.search(reason)
    integer = _OUT_OF_RANGE.search(reason)
    if length:
        check = _length_check(int(length.group(1)))
    elif integer:
        check = _integer_check(_BITS[integer.group(1)])
    elif isinstance(getattr(exc, "orig", exc), OverflowError):
        integer_check = _integer_check(64)

        def check(value: Any) -> Message | None:
            return _moment(value) or integer_check(value)

    else:
        return {}
    params = getattr(exc, "params", None)
    rows = [params] if isinstance(params, Mapping) else list(params or ())
    errors: dict[str, list[Message]] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        for key, value in row.items():
            problem = None if value is None else check(value)
            if problem is not None and key not in errors:
                errors[str(key)] = [problem]
    return errors
