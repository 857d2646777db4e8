"""marshmallow schemas of the finance entities: the one place their input is validated.

Screens, the API and imports all create and edit catalogue records, locations, desks,
suppliers, contracts and orders through ``work.records(name)``, which loads input with these.
Money arrives as strings (``"1500.00"``), never floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from crmkit.schemas import StrictSchema
from crmkit_finance.money import MINOR_UNITS, QUANTITY_PLACES

ITEM_KINDS = ("service", "goods")
LOCATION_KINDS = ("branch", "warehouse")


class Places(validate.Validator):
    """A number the column keeps exactly: at most ``places`` decimal places (money columns
    refuse more rather than round) and within what a 64-bit column holds."""

    def __init__(self, places: int) -> None:
        self.places = places

    def __call__(self, value: Any) -> Any:
        if value is None:
            return value
        if abs(value) >= Decimal(10) ** (18 - self.places):
            raise ValidationError("too large")
        if value != value.quantize(Decimal(1).scaleb(-self.places)):
            raise ValidationError(f"at most {self.places} decimal places")
        return value


def _money(places: int = 2, **kwargs: Any) -> fields.Decimal:
    given = kwargs.pop("validate", None)
    checks = [Places(places), *([given] if given is not None else [])]
    return fields.Decimal(places=None, as_string=True, allow_nan=False, validate=checks, **kwargs)


def _currency(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(sorted(MINOR_UNITS)), **kwargs)


def _name(length: int = 200, required: bool = True) -> fields.String:
    if required:
        return fields.String(required=True, validate=validate.Length(min=1, max=length))
    return fields.String(validate=validate.Length(max=length), allow_none=True)


class NonNegative(validate.Validator):
    """A number that is zero or more."""

    def __call__(self, value: Any) -> Any:
        if value is not None and value < 0:
            raise ValidationError("must not be negative")
        return value


class ItemCategorySchema(StrictSchema):
    """A category of services or goods."""

    name = _name()
    kind = fields.String(validate=validate.OneOf(ITEM_KINDS))
    parent_id = fields.Integer(allow_none=True)
    position = fields.Integer()
    active = fields.Boolean()


class ItemSchema(StrictSchema):
    """A service or a good with its list price."""

    kind = fields.String(validate=validate.OneOf(ITEM_KINDS))
    name = _name(300)
    sku = _name(100, required=False)
    category_id = fields.Integer(allow_none=True)
    unit = fields.String(validate=validate.Length(min=1, max=16))
    price = _money(validate=NonNegative())
    currency = _currency()
    track_stock = fields.Boolean()
    active = fields.Boolean()
    description = fields.String(validate=validate.Length(max=5000))

    @validates_schema
    def _stock_for_goods(self, data: dict[str, Any], partial: Any = None, **_: Any) -> None:
        if data.get("track_stock") and data.get("kind", "goods") == "service":
            raise ValidationError("services have no stock", "track_stock")


class PriceListSchema(StrictSchema):
    """Prices for a price level from a date on."""

    name = _name()
    price_level = _name(64, required=False)
    currency = _currency()
    valid_from = fields.Date(allow_none=True)
    active = fields.Boolean()


class LocationSchema(StrictSchema):
    """A branch or a warehouse."""

    name = _name()
    kind = fields.String(validate=validate.OneOf(LOCATION_KINDS))
    team_id = fields.Integer(allow_none=True)
    active = fields.Boolean()


class CashDeskSchema(StrictSchema):
    """A till at a location."""

    name = _name()
    location_id = fields.Integer(allow_none=True)
    currency = _currency()
    active = fields.Boolean()


class SupplierSchema(StrictSchema):
    """A party we buy from."""

    party_id = fields.Integer(required=True)
    payment_days = fields.Integer(validate=validate.Range(min=0, max=3650))
    currency = _currency()
    active = fields.Boolean()
    note = fields.String(validate=validate.Length(max=5000))


class ContractSchema(StrictSchema):
    """A corporate client's contract."""

    party_id = fields.Integer(required=True)
    number = _name(100)
    signed_on = fields.Date(allow_none=True)
    valid_until = fields.Date(allow_none=True)
    payment_days = fields.Integer(validate=validate.Range(min=0, max=3650))
    credit_limit = _money(allow_none=True, validate=NonNegative())
    currency = _currency()
    active = fields.Boolean()
    note = fields.String(validate=validate.Length(max=5000))


class OrderLineInputSchema(StrictSchema):
    """A line given with a new order."""

    item_id = fields.Integer(required=True)
    qty = _money(QUANTITY_PLACES)
    unit_price = _money(allow_none=True, validate=NonNegative())
    discount = _money(validate=NonNegative())
    performer_id = fields.Integer(allow_none=True)
    main = fields.Boolean()
    description = fields.String(validate=validate.Length(max=300))


class OrderSchema(StrictSchema):
    """A client's order (lines are added through the order service)."""

    party_id = fields.Integer(required=True)
    assignee_id = fields.Integer(allow_none=True)
    owner_id = fields.Integer(allow_none=True)
    team_id = fields.Integer(allow_none=True)
    location_id = fields.Integer(allow_none=True)
    currency = _currency()
    price_level = _name(64, required=False)
    discount_percent = _money(validate=validate.Range(min=0, max=100))
    contract_id = fields.Integer(allow_none=True)
    note = fields.String(validate=validate.Length(max=20000))
    pipeline = fields.String(validate=validate.Length(max=64))
    stage = fields.String(validate=validate.Length(max=64))
    custom = fields.Dict(keys=fields.String())
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=100)))
    lines = fields.List(fields.Nested(OrderLineInputSchema))
