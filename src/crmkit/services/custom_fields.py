"""Admin-defined fields: definitions stored in the database, values validated on every write.

Kinds: ``text``, ``number``, ``money``, ``date``, ``boolean``, ``choice``, ``multi_choice``,
``reference``.  Values are kept in the record's ``custom`` JSON column in forms that sort
and filter correctly in SQL: numbers and money as JSON numbers (money rounded to cents),
dates as ISO strings, references as ids of records the user may see.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import attrs
from marshmallow import ValidationError
from sqlalchemy import select

from crmkit.errors import ValidationFailed
from crmkit.model import FieldDefinition
from crmkit.schemas import FieldDefinitionSchema

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


#: The magnitude a number or money value stays below (a float keeps 15 significant digits).
NUMBER_LIMIT = Decimal(10) ** 15


@attrs.frozen
class StarterField:
    """A custom field a plugin declares (``crmkit_register_custom_fields``): ``entity``,
    ``key``, ``label``, ``kind`` (one of the kinds above) and, for a choice, ``choices``."""

    entity: str
    key: str
    label: str
    kind: str = "text"
    choices: tuple[Any, ...] = attrs.field(default=(), converter=tuple)
    help_text: str = ""
    position: int = 0


def seed_fields(session: Any, fields: Iterable[StarterField]) -> int:
    """Create the declared custom fields that are missing and bring the kind and choices of
    the others to their declaration (label, position and help stay an admin's); returns how
    many were created or changed."""
    changed = 0
    for field in fields:
        row = session.scalar(
            select(FieldDefinition).where(
                FieldDefinition.entity == field.entity, FieldDefinition.key == field.key
            )
        )
        choices = list(field.choices) or None
        if row is None:
            session.add(
                FieldDefinition(
                    entity=field.entity,
                    key=field.key,
                    label=field.label,
                    kind=field.kind,
                    choices=choices,
                    help_text=field.help_text,
                    position=field.position,
                    required=False,
                )
            )
            changed += 1
        elif (row.kind, row.choices) != (field.kind, choices):
            row.kind, row.choices = field.kind, choices
            changed += 1
    return changed


class CustomFieldService:
    """Definitions per entity (cached for the unit of work) and value validation."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work
        self._cache: dict[str, dict[str, FieldDefinition]] = {}

    def definitions(self, entity: str) -> dict[str, FieldDefinition]:
        """Field key -> definition for ``entity``, in display order."""
        if entity not in self._cache:
            rows = self.work.session.scalars(
                select(FieldDefinition)
                .where(FieldDefinition.entity == entity)
                .order_by(FieldDefinition.position, FieldDefinition.id)
            )
            self._cache[entity] = {row.key: row for row in rows}
        return self._cache[entity]

    def define(self, data: dict[str, Any] | None = None, **values: Any) -> FieldDefinition:
        """Add a field to an entity (admin)."""
        self.work.access.require("field_definition", "create")
        try:
            loaded = FieldDefinitionSchema().load({**(data or {}), **values})
        except ValidationError as exc:
            raise ValidationFailed(exc.messages) from None  # type: ignore[arg-type]
        entity = self.work.crm.entities.by_name.get(loaded["entity"])
        if entity is None or not entity.custom_fields:
            raise ValidationFailed({"entity": [f"{loaded['entity']} has no custom fields"]})
        if loaded["key"] in self.definitions(loaded["entity"]):
            raise ValidationFailed({"key": [f"{loaded['entity']} already has {loaded['key']}"]})
        if loaded.get("ref_entity") and loaded["ref_entity"] not in self.work.crm.entities:
            raise ValidationFailed({"ref_entity": [f"unknown entity {loaded['ref_entity']}"]})
        definition = FieldDefinition(**loaded)
        self.work.session.add(definition)
        self.work.flush()
        self._cache.pop(loaded["entity"], None)
        self.work.audit(
            "field_definition", definition.id, "create", {k: [None, v] for k, v in loaded.items()}
        )
        return definition

    def validate(self, entity: str, values: dict[str, Any], *, partial: bool) -> dict[str, Any]:
        """Check custom values against their definitions; clean values or ValidationFailed.

        Unknown keys are refused, required fields must be present on create; ``None``
        clears a value on update.
        """
        definitions = self.definitions(entity)
        errors: dict[str, list[str]] = {}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            definition = definitions.get(key)
            if definition is None:
                errors[key] = ["unknown field"]
                continue
            if value is None or value == "" or value == []:
                if definition.required:
                    errors[key] = ["required"]
                else:
                    clean[key] = None
                continue
            try:
                clean[key] = self._convert(definition, value)
            except ValueError as exc:
                errors[key] = [str(exc)]
        if not partial:
            for key, definition in definitions.items():
                if definition.required and key not in values and key not in errors:
                    errors[key] = ["required"]
            clean = {k: v for k, v in clean.items() if v is not None}
        if errors:
            raise ValidationFailed({"custom": errors}, entity=entity)
        return clean

    def _convert(self, definition: FieldDefinition, value: Any) -> Any:
        kind = definition.kind
        if kind == "text":
            text = str(value).strip()
            if len(text) > 5000:
                raise ValueError("too long (5000 characters at most)")
            return text
        if kind in ("number", "money"):
            if isinstance(value, bool):
                raise ValueError("not a number")
            try:
                number = Decimal(str(value).replace(" ", "").replace(",", "."))
            except InvalidOperation:
                raise ValueError("not a number") from None
            if not number.is_finite():
                raise ValueError("not a number")
            if abs(number) >= NUMBER_LIMIT:
                # kept as a JSON number, compared as a float: and a money value is
                # rounded to cents, which a Decimal of 28 digits cannot do beyond that
                raise ValueError("out of range (less than 10^15)")
            if kind == "money":
                number = number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
                return float(number)
            return int(number) if number == number.to_integral_value() else float(number)
        if kind == "date":
            if isinstance(value, dt.datetime):
                return value.date().isoformat()
            if isinstance(value, dt.date):
                return value.isoformat()
            text = str(value).strip()
            for parse in (
                dt.date.fromisoformat,
                lambda t: dt.datetime.strptime(t, "%d.%m.%Y").date(),
            ):
                try:
                    return parse(text).isoformat()
                except ValueError:
                    continue
            raise ValueError("not a date (YYYY-MM-DD or DD.MM.YYYY)")
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "да"):
                return True
            if text in ("0", "false", "no", "нет"):
                return False
            raise ValueError("not yes or no")
        if kind == "choice":
            if value not in (definition.choices or []):
                raise ValueError(f"not one of: {', '.join(map(str, definition.choices or []))}")
            return value
        if kind == "multi_choice":
            items = value if isinstance(value, list) else [value]
            bad = [v for v in items if v not in (definition.choices or [])]
            if bad:
                raise ValueError(f"{bad[0]!r} is not one of the choices")
            return list(dict.fromkeys(items))
        if kind == "reference":
            try:
                ref_id = int(value)
            except (TypeError, ValueError):
                raise ValueError("not a record id") from None
            if self.work.records(definition.ref_entity or "").find(ref_id) is None:
                raise ValueError(f"no {definition.ref_entity} {ref_id}")
            return ref_id
        raise ValueError(f"unknown field kind {kind!r}")
