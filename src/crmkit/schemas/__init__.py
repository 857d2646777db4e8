"""marshmallow schemas: the one place where input to core entities is validated.

Services load input through these schemas (API, forms, CLI and imports alike), so a field's
rules live here only.  Unknown fields are refused, naming the field.  Custom fields arrive
under ``custom`` and are checked against their definitions by the custom field service.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from crmkit.clock import in_utc
from crmkit.model.party import ContactKind, CustomerType, PartyKind
from crmkit.services.limits import MAX_WRITTEN_TEXT

TASK_STATUSES = ("open", "in_progress", "waiting", "done", "cancelled")
#: The longest hint of a custom field (``FieldDefinition.help_text``, a ``Text`` column):
#: a few sentences shown under the field on every form.
MAX_HELP_TEXT = 1000
#: A task's priority runs from 0 (none) to this.
MOST_PRIORITY = 3
EVENT_STATUSES = ("tentative", "confirmed", "cancelled")


#: The refusal of a text holding a NUL character (``\x00``).
NUL_REFUSED = "contains a NUL character"


def has_nul(value: Any) -> bool:
    """Whether a text, or any text (key or value) inside lists and mappings, holds NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


_DIGITS = re.compile(r"^\s*[+-]?\d+\s*$")

#: The refusal of a fraction (``2.9``) for a whole-number field (an id, a count).
NOT_WHOLE = "not a whole number"
#: The refusal of a whole number no database column holds (beyond 64 bits).
TOO_LARGE = "too large (at most 2^63-1)"


def _whole_number_problem(value: Any) -> str | None:
    """What is wrong with ``value`` for an integer field, if a number can say so: a
    fraction (marshmallow would cut ``2.9`` to ``2``) or a number beyond 64 bits (the
    databases refuse it: PostgreSQL's "bigint out of range", SQLite's overflow)."""
    if isinstance(value, str) and _DIGITS.match(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None  # the rest: the field itself refuses what it cannot read
    fraction = isinstance(value, float | Decimal)
    if fraction and (not math.isfinite(value) or value != int(value)):
        return NOT_WHOLE
    if abs(int(value)) > MAX_ID:
        return TOO_LARGE
    return None


class StrictSchema(Schema):
    """Base: unknown fields raise, naming the field; so does a text holding NUL, and a
    fraction or a number beyond 64 bits given for an integer field.

    PostgreSQL cannot store a NUL character in a text and SQLite would keep it, so a NUL is
    refused here, at the input, the same way on both (a nested schema names its own field).
    marshmallow's ``Integer`` would store ``2.9`` as ``2`` (a deal linked to the wrong
    client), and a number beyond 64 bits fails in the database, differently on each: both
    are refused here naming the field (a list of integers names the field too).  Whole
    numbers given as text (``"7"``, as forms send them) are still read.
    """

    class Meta:
        unknown = RAISE

    @pre_load
    def _refuse_nul(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        errors = {}
        for key, value in data.items():
            field = self.fields.get(key) if isinstance(key, str) else None
            inner = getattr(field, "inner", None)
            if isinstance(field, fields.Nested) or isinstance(inner, fields.Nested):
                continue  # the nested schema names the field inside
            if has_nul(key) or has_nul(value):
                errors[str(key).replace("\x00", "\\x00")] = [NUL_REFUSED]
                continue
            integer = isinstance(field, fields.Integer)
            if integer or isinstance(inner, fields.Integer):
                items = value if not integer and isinstance(value, list | tuple) else [value]
                problem = next(filter(None, map(_whole_number_problem, items)), None)
                if problem:
                    errors[str(key)] = [problem]
        if errors:
            raise ValidationError(errors)
        return data


#: A language as parties and message templates name it: "ru", "en", "pt-br" (16 at most).
LANGUAGE_CODE = r"^[a-z]{2,3}(-[a-z0-9]{2,8}){0,2}$"

#: The largest id a database column holds (64-bit signed integers).
MAX_ID = 2**63 - 1


class Moment(fields.AwareDateTime):
    """A date and time given with its offset, loaded as UTC (how crmkit stores times).

    A moment UTC cannot hold (``0001-01-01T00:00+14:00`` is still year 0 there) is refused
    as invalid, naming the field, instead of failing later when it is written or compared.
    """

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return in_utc(moment)
        except OverflowError:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None


def _record_id(**kwargs: Any) -> fields.Integer:
    """A reference to a record by id: a positive 64-bit integer (or null)."""
    kwargs.setdefault("allow_none", True)
    return fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID, error="not an id (1 to 2^63-1)"), **kwargs
    )


def _text(max_length: int, required: bool = False, **kwargs: Any) -> fields.String:
    if required:
        return fields.String(
            required=True, validate=validate.Length(min=1, max=max_length), **kwargs
        )
    return fields.String(validate=validate.Length(max=max_length), allow_none=True, **kwargs)


# -- fields for plugin schemas ------------------------------------------------------------
#
# A plugin's input schema declares its fields with these, and its model's limits come with
# them: what the core's own schemas refuse, naming the field, a plugin's refuses the same
# way, before anything reaches the database (whose refusals differ: SQLite keeps a text
# longer than its column, PostgreSQL refuses it without naming the column).


def RecordId(*, required: bool = False, **kwargs: Any) -> fields.Integer:
    """A reference to a record by its id: a whole number from 1 to 2^63-1.

    Null is accepted unless the field is ``required`` (give ``allow_none`` to say
    otherwise): ``party_id = RecordId(required=True)`` for a ``party_fk(nullable=False)``.
    Whether the record exists is checked by the record service, naming the field.
    """
    kwargs.setdefault("allow_none", not required)
    return _record_id(required=required, **kwargs)


def Text(max_length: int, *, required: bool = False, **kwargs: Any) -> fields.String:
    """A text of at most ``max_length`` characters: the ``n`` of its ``String(n)`` column.

    A ``required`` text is not empty.  Null is refused unless ``allow_none=True`` is given
    (for a column that is ``nullable``).  Further ``validate`` rules are added to the
    length's.
    """
    rules: list[Any] = [validate.Length(min=1 if required else None, max=max_length)]
    extra = kwargs.pop("validate", None)
    if extra is not None:
        rules.extend(extra if isinstance(extra, list | tuple) else [extra])
    return fields.String(required=required, validate=rules, **kwargs)


class ContactPointSchema(StrictSchema):
    """A phone, email, messenger handle or website as typed by a user."""

    id = _record_id(load_only=True)
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in ContactKind]))
    value = _text(320, required=True)
    service = _text(32)
    label = _text(100)
    is_primary = fields.Boolean()


class PartySchema(StrictSchema):
    """A person or an organisation."""

    kind = fields.String(validate=validate.OneOf([k.value for k in PartyKind]))
    customer_type = fields.String(
        validate=validate.OneOf([t.value for t in CustomerType]), allow_none=True
    )
    name = _text(300)
    first_name = _text(150)
    last_name = _text(150)
    organisation_id = _record_id()
    position = _text(200)
    source = _text(100)
    description = fields.String(validate=validate.Length(max=MAX_WRITTEN_TEXT))
    language = fields.String(
        allow_none=True,
        validate=validate.Regexp(
            LANGUAGE_CODE, error="a language code such as ru, en or pt-br (lower case)"
        ),
    )
    owner_id = _record_id()
    team_id = _record_id()
    pipeline = _text(64)
    stage = _text(64)
    custom = fields.Dict(keys=fields.String())
    contact_points = fields.List(fields.Nested(ContactPointSchema))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=100)))

    @validates_schema(skip_on_field_errors=False)
    def _named(self, data: dict[str, Any], partial: Any = None, **_: Any) -> None:
        if partial:
            if "name" in data and not (data["name"] or "").strip():
                raise ValidationError("a name is required", "name")
            return
        kind = data.get("kind", PartyKind.ORGANISATION)
        name = (data.get("name") or "").strip()
        if not name and kind == PartyKind.PERSON:
            name = " ".join(p for p in (data.get("first_name"), data.get("last_name")) if p)
        if not name.strip():
            raise ValidationError("a name is required", "name")


class DealSchema(StrictSchema):
    """An opportunity with a party."""

    title = _text(300, required=True)
    party_id = _record_id()
    amount = fields.Decimal(places=2, allow_none=True, as_string=True)
    currency = fields.String(validate=validate.Length(equal=3))
    owner_id = _record_id()
    team_id = _record_id()
    pipeline = _text(64)
    stage = _text(64)
    custom = fields.Dict(keys=fields.String())
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=100)))


class TaskSchema(StrictSchema):
    """Work for someone, with a deadline."""

    title = _text(300, required=True)
    description = fields.String(validate=validate.Length(max=MAX_WRITTEN_TEXT))
    status = fields.String(validate=validate.OneOf(TASK_STATUSES))
    priority = fields.Integer(validate=validate.Range(min=0, max=MOST_PRIORITY))
    deadline = Moment(allow_none=True)
    assignee_id = _record_id()
    team_id = _record_id()
    party_id = _record_id()
    parent_id = _record_id()
    record_entity = _text(64)
    record_id = _record_id()
    custom = fields.Dict(keys=fields.String())
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=100)))


class RecipientSchema(StrictSchema):
    """A user or a team to remind."""

    user_id = _record_id()
    team_id = _record_id()

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("user_id")) == bool(data.get("team_id")):
            raise ValidationError("give a user_id or a team_id", "_schema")


class ReminderSchema(StrictSchema):
    """A reminder at a time, for several people."""

    remind_at = Moment(required=True)
    text = _text(5000, required=True)
    party_id = _record_id()
    record_entity = _text(64)
    record_id = _record_id()
    recipients = fields.List(fields.Nested(RecipientSchema))


class AttendeeSchema(StrictSchema):
    """Someone invited to an event."""

    user_id = _record_id()
    party_id = _record_id()
    email = fields.Email(allow_none=True)


class CalendarEventSchema(StrictSchema):
    """A meeting, call, follow-up or booking."""

    title = _text(300, required=True)
    description = fields.String(validate=validate.Length(max=MAX_WRITTEN_TEXT))
    starts_at = Moment(required=True)
    ends_at = Moment(required=True)
    all_day = fields.Boolean()
    location = _text(300)
    kind = _text(32)
    status = fields.String(validate=validate.OneOf(EVENT_STATUSES))
    owner_id = _record_id()
    party_id = _record_id()
    resource_id = _record_id()
    record_entity = _text(64)
    record_id = _record_id()
    attendees = fields.List(fields.Nested(AttendeeSchema))

    @validates_schema
    def _order(self, data: dict[str, Any], partial: Any = None, **_: Any) -> None:
        start, end = data.get("starts_at"), data.get("ends_at")
        if start and end and end <= start:
            raise ValidationError("must be after the start", "ends_at")


class UserSchema(StrictSchema):
    """A staff member (the password is set separately and never read back)."""

    username = fields.String(
        required=True,
        validate=[
            validate.Length(min=2, max=150),
            validate.Regexp(r"^[\w.@+-]+$", error="letters, digits and . @ + - _ only"),
        ],
    )
    display_name = _text(200)
    email = fields.Email(allow_none=True)
    phone = _text(32)
    locale = fields.String(validate=validate.OneOf(["ru", "en"]), allow_none=True)
    timezone = _text(64)
    manager_id = _record_id()
    roles = fields.List(fields.String(validate=validate.Length(min=1, max=64)))
    password = fields.String(load_only=True, validate=validate.Length(min=8, max=1000))


class FieldDefinitionSchema(StrictSchema):
    """An admin-defined field."""

    entity = fields.String(required=True)
    key = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[a-z][a-z0-9_]{0,63}$", error="lower-case letters, digits and _ only"
        ),
    )
    label = _text(200, required=True)
    kind = fields.String(
        required=True,
        validate=validate.OneOf(
            ["text", "number", "money", "date", "boolean", "choice", "multi_choice", "reference"]
        ),
    )
    required = fields.Boolean()
    choices = fields.List(fields.String(), allow_none=True)
    ref_entity = _text(64)
    currency = fields.String(validate=validate.Length(equal=3), allow_none=True)
    position = fields.Integer(validate=validate.Range(min=-(2**31), max=2**31 - 1))
    help_text = fields.String(validate=validate.Length(max=MAX_HELP_TEXT))

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("kind")
        if kind in ("choice", "multi_choice") and not data.get("choices"):
            raise ValidationError("a choice field needs choices", "choices")
        if kind == "reference" and not data.get("ref_entity"):
            raise ValidationError("a reference field needs ref_entity", "ref_entity")


__all__ = [
    "MAX_ID",
    "AttendeeSchema",
    "CalendarEventSchema",
    "ContactPointSchema",
    "DealSchema",
    "FieldDefinitionSchema",
    "Moment",
    "PartySchema",
    "RecipientSchema",
    "RecordId",
    "ReminderSchema",
    "StrictSchema",
    "TaskSchema",
    "Text",
    "UserSchema",
]
