"""Reading HTML form values into what the services take (times, amounts, lists)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from crmkit.errors import ValidationFailed
from crmkit.i18n import Message, message
from crmkit.schemas import MAX_ID, NUL_REFUSED, has_nul
from crmkit.web.i18n import Locale

#: The refusal of a value that should name a record and cannot (the API's words too).
NOT_AN_ID = "not an id (1 to 2^63-1)"

#: The highest ``version`` a record's ``Integer`` column holds (32 bits on PostgreSQL).
MAX_VERSION = 2**31 - 1

#: The refusal of an uploaded file whose name holds a NUL character.
NUL_IN_FILE_NAME = "the file name contains a NUL character"


def refuse_nul(form: Any) -> None:
    """Refuse a submitted form in which a field's name, a text or an uploaded file's name
    holds a NUL character, naming the field (:class:`ValidationFailed`, a 422).

    PostgreSQL cannot store a NUL (the insert fails with a 500) and SQLite would keep it,
    so every form is checked here, before anything is written:
    :func:`crmkit.web.pages.form_data` does it for the screens, and a screen that reads
    ``request.form()`` itself (an upload, a list of lines) calls this.  ``form`` is
    Starlette's ``FormData`` (or any mapping; repeated fields may be lists).
    """
    items: Iterable[tuple[Any, Any]]
    if hasattr(form, "multi_items"):
        items = form.multi_items()
    else:
        items = ((k, v) for k, values in form.items() for v in _each(values))
    for key, value in items:
        field = str(key).replace("\x00", "\\x00")
        if has_nul(key) or (isinstance(value, str) and has_nul(value)):
            raise ValidationFailed({field: [NUL_REFUSED]})
        filename = getattr(value, "filename", None)
        if isinstance(filename, str) and has_nul(filename):
            raise ValidationFailed({field: [NUL_IN_FILE_NAME]})


def _each(values: Any) -> list[Any]:
    return list(values) if isinstance(values, list | tuple) else [values]


def local_time(value: Any, locale: Locale, field: str) -> str | None:
    """A ``datetime-local`` input (the user's wall clock) as an aware ISO time, or ``None``."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        naive = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed({field: ["not a valid date and time"]}) from None
    if naive.tzinfo is not None:
        return naive.astimezone(dt.UTC).isoformat()
    return naive.replace(tzinfo=locale.zone).astimezone(dt.UTC).isoformat()


def input_time(value: dt.datetime | None, locale: Locale) -> str:
    """An aware time as a ``datetime-local`` input value in the user's zone."""
    if value is None:
        return ""
    return locale.local(value).strftime("%Y-%m-%dT%H:%M")


def optional_int(value: Any, field: str, *, low: int, high: int) -> int | None:
    """A form's plain-number field: ``None`` when empty, else a whole number from ``low``
    to ``high``; anything else is refused naming ``field`` (a 422).

    The bounds are the field's own (snooze hours, a priority): without them a 25-digit
    number reached ``timedelta`` or the database and failed there (a 500).
    """
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    if not re.fullmatch(r"[+-]?[0-9]+", text):  # ASCII digits: int() reads "١" too
        raise ValidationFailed({field: [message("must be a whole number")]})
    if len(text) > 40 or not low <= int(text) <= high:  # int() of 5000 digits raises
        raise ValidationFailed({field: [out_of_bounds(low, high)]})
    return int(text)


def optional_version(value: Any) -> int | None:
    """The ``version`` a form was shown at (optimistic locking): ``None`` when empty, else
    a number its ``Integer`` column holds (:func:`optional_int`)."""
    return optional_int(value, "version", low=1, high=MAX_VERSION)


def out_of_bounds(low: int, high: int) -> Message:
    """The refusal of a plain number outside ``low``..``high``."""
    return message("must be between {low} and {high}", low=low, high=high)


def as_id(value: Any) -> int | None:
    """A record id from a form, a query or a path: ASCII digits from 1 to 2^63-1 (what a
    database column holds), else ``None``.

    ``str.isdigit`` would let ``²`` or ``١`` through to ``int`` (a 500), and a huge number
    fails in the database (an ``OverflowError``): every screen reading an id goes through
    this, or through :func:`optional_id` and :func:`id_list` which refuse, naming the field.
    """
    text = str(value if value is not None else "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


def optional_id(value: Any, field: str) -> int | None:
    """A form's id field: ``None`` when empty, else the id (:func:`as_id`); a value that is
    not one is refused naming ``field`` (a 422)."""
    if value is None or not str(value).strip():
        return None
    found = as_id(value)
    if found is None:
        raise ValidationFailed({field: [NOT_AN_ID]})
    return found


def required_id(value: Any, field: str) -> int:
    """A form's or a JSON body's id that must be given: the id (:func:`as_id`), else the
    value (empty included) is refused naming ``field`` (a 422)."""
    found = as_id(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    if found is None:
        raise ValidationFailed({field: [NOT_AN_ID]})
    return found


def id_list(value: Any, field: str) -> list[int]:
    """A repeated id field (checked rows): every value given must be an id, else the whole
    form is refused naming ``field`` (an empty list means none was given, never "all")."""
    found = [optional_id(item, field) for item in as_list(value)]
    return [item for item in found if item is not None]


def as_list(value: Any) -> list[str]:
    """A form value that may be repeated, as a list of non-empty strings."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(v) for v in items if str(v).strip()]


def address_list(value: Any) -> list[str]:
    """Addresses typed into one field, separated by commas, semicolons, spaces or lines;
    ``Name <address>`` (pasted from a mail client) gives the address."""
    found: list[str] = []
    for part in re.split(r"[,;\n]+", str(value or "")):
        bracketed = re.search(r"<([^<>]*)>", part)
        found.extend([bracketed.group(1).strip()] if bracketed else part.split())
    return [address for address in found if address]


def custom_values(data: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """``custom.<key>`` form fields -> the ``custom`` mapping (only fields that were sent)."""
    values: dict[str, Any] = {}
    for key, definition in definitions.items():
        name = f"custom.{key}"
        if name not in data:
            if definition.kind == "boolean" and f"{name}.present" in data:
                values[key] = False
            continue
        raw = data[name]
        if definition.kind == "multi_choice":
            values[key] = as_list(raw)
        elif definition.kind == "boolean":
            values[key] = str(raw) in ("1", "on", "true")
        else:
            values[key] = raw if raw != "" else None
    return values
