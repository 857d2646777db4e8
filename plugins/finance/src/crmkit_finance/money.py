"""Money: exact decimal amounts with a currency, and the one rounding rule of the plugin.

Every amount the plugin computes is a :class:`~decimal.Decimal` in a named currency, never a
float.  Amounts are kept at the currency's minor unit (kopecks, cents); whenever a
computation produces more decimal places (a price times a quantity, a percentage, a
conversion, an average cost) the result is rounded **half up** (half away from zero) to the
minor unit, once, at the point the rules in the README name.  Where a whole must be split
into parts that add up exactly (amortization months, the last units of a stock item), the
last part takes the remainder instead of being rounded on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import attrs

from crmkit.errors import ValidationFailed
from crmkit.i18n import message

#: The rounding mode of every money computation in the plugin.
ROUNDING = ROUND_HALF_UP

#: ISO 4217 minor units of the currencies the plugin accepts.  Amounts are stored as an
#: integer count of hundredths, so a currency with more than two minor units (KWD, BHD...)
#: cannot be represented exactly and is not listed.
MINOR_UNITS: dict[str, int] = {
    "RUB": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CNY": 2,
    "KZT": 2,
    "BYN": 2,
    "UAH": 2,
    "AMD": 2,
    "GEL": 2,
    "AZN": 2,
    "UZS": 2,
    "KGS": 2,
    "TRY": 2,
    "AED": 2,
    "INR": 2,
    "PLN": 2,
    "CZK": 2,
    "SEK": 2,
    "NOK": 2,
    "JPY": 0,
    "KRW": 0,
}

#: Decimal places kept for exchange rates (units of the base currency per one unit).
RATE_PLACES = 8

#: Decimal places kept for quantities of goods (litres, metres, pieces).
QUANTITY_PLACES = 3

#: The largest number (in absolute value) a money or number field accepts: under a
#: trillion.  Far beyond any real amount, and far enough below what the 64-bit integer
#: columns hold (minor units, or thousandths of a quantity) that sums and a price times a
#: quantity are checked against it instead of overflowing.
MAX_NUMBER = Decimal("999999999999.99")

#: What a person types as a number: digits, optionally grouped by three with spaces (plain,
#: no-break, thin), and one decimal comma or point.  No exponent, no sign but a minus.
_TYPED_NUMBER = re.compile(r"[-\u2212]?(?:\d{1,3}(?:[ \u00a0\u2009\u202f]\d{3})+|\d+)(?:[.,]\d+)?")


def minor_units(currency: str) -> int:
    """Decimal places of ``currency``; ``ValidationFailed`` for an unknown code."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise ValidationFailed(
            {
                "currency": [
                    message("unknown or unsupported currency {currency}", currency=repr(currency))
                ]
            }
        ) from None


def quantum(currency: str) -> Decimal:
    """The smallest amount of ``currency`` (``Decimal('0.01')`` for roubles)."""
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(value: Decimal | int | str, currency: str) -> Decimal:
    """``value`` rounded half up to the minor unit of ``currency`` (zero is never -0.00)."""
    return unsigned_zero(Decimal(value).quantize(quantum(currency), rounding=ROUNDING))


def unsigned_zero(value: Decimal) -> Decimal:
    """``value``, with a zero that kept a minus sign (``-0.00``, what a zero times -1 or a
    negative rounded to nothing gives) made plain ``0.00``; any other value unchanged."""
    return value.copy_abs() if value.is_zero() else value


def to_decimal(value: Any, field: str = "amount") -> Decimal:
    """Parse user input (``"1 500,50"``, ``1500.5``, ``Decimal``) into a Decimal.

    Floats are refused: their binary value is not the number the user typed.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool) or value is None:
        raise ValidationFailed({field: [message("a number is required")]})
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        raise ValidationFailed({field: [message("give money as a string or Decimal, not a float")]})
    else:
        text = str(value).strip()
        if not _TYPED_NUMBER.fullmatch(text):
            raise ValidationFailed({field: [message("{value} is not a number", value=repr(value))]})
        for space in " \u00a0\u2009\u202f":
            text = text.replace(space, "")
        try:
            result = Decimal(text.replace(",", ".").replace("\u2212", "-"))
        except InvalidOperation:  # pragma: no cover - the pattern lets only numbers through
            raise ValidationFailed(
                {field: [message("{value} is not a number", value=repr(value))]}
            ) from None
    if not result.is_finite():
        raise ValidationFailed(
            {field: [message("{value} is not a finite number", value=repr(value))]}
        )
    return at_most(result, MAX_NUMBER, field)


def at_most(value: Decimal, maximum: Decimal, field: str) -> Decimal:
    """``value`` if it is within ``maximum`` either way, else ``ValidationFailed`` on ``field``."""
    if abs(value) > maximum:
        raise ValidationFailed(
            {
                field: [
                    message("{value} is too large: at most {maximum}", value=value, maximum=maximum)
                ]
            }
        )
    return value


def exact_money(value: Any, currency: str, field: str = "amount") -> Decimal:
    """User input as an amount of ``currency``; more decimals than the currency has is refused."""
    amount = to_decimal(value, field)
    rounded = round_money(amount, currency)
    if rounded != amount:
        places = minor_units(currency)
        raise ValidationFailed(
            {
                field: [
                    message(
                        "{value} has more than {places} decimal places", value=value, places=places
                    )
                ]
            }
        )
    return rounded


def quantity(value: Any, field: str = "qty") -> Decimal:
    """A quantity of goods with at most three decimals."""
    amount = to_decimal(value, field)
    rounded = amount.quantize(Decimal(1).scaleb(-QUANTITY_PLACES), rounding=ROUNDING)
    if rounded != amount:
        raise ValidationFailed(
            {
                field: [
                    message(
                        "{value} has more than {places} decimals",
                        value=value,
                        places=QUANTITY_PLACES,
                    )
                ]
            }
        )
    return rounded


def line_total(qty: Decimal, price: Decimal, currency: str, field: str = "qty") -> Decimal:
    """A quantity times a unit price, rounded half up; beyond :data:`MAX_NUMBER` refused on
    ``field`` (each is within it, their product need not be)."""
    amount = round_money(qty * price, currency)
    if abs(amount) > MAX_NUMBER:
        raise ValidationFailed(
            {
                field: [
                    message(
                        "quantity times price comes to {amount}: at most {maximum}",
                        amount=amount,
                        maximum=MAX_NUMBER,
                    )
                ]
            }
        )
    return amount


def percent_of(amount: Decimal, percent: Decimal, currency: str) -> Decimal:
    """``percent`` % of ``amount``, rounded half up to the minor unit."""
    return round_money(amount * percent / 100, currency)


def allocate(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split ``total`` in proportion to ``weights`` so that the parts add up exactly.

    Each part is rounded down to the minor unit, then the leftover minor units go to the
    parts with the largest remainders (ties to the earlier part): the largest remainder
    method.  Zero weights get nothing; all-zero weights split evenly.
    """
    if not weights:
        return []
    step = quantum(currency)
    units = int((total / step).to_integral_value())
    weights = [w if w > 0 else Decimal(0) for w in weights]
    weight_sum = sum(weights, Decimal(0))
    if weight_sum == 0:
        weights = [Decimal(1)] * len(weights)
        weight_sum = Decimal(len(weights))
    exact = [Decimal(units) * w / weight_sum for w in weights]
    floors = [int(e.to_integral_value(rounding="ROUND_FLOOR")) for e in exact]
    left = units - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[: max(left, 0)]:
        floors[i] += 1
    return [Decimal(f) * step for f in floors]


@attrs.frozen(order=False)
class Money:
    """An amount in a currency, always at the currency's minor unit.

    Adding or comparing amounts of different currencies raises ``ValueError``: convert
    first (see :class:`crmkit_finance.services.rates.RateService`).
    """

    amount: Decimal
    currency: str

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "amount", round_money(self.amount, self.currency))

    @classmethod
    def zero(cls, currency: str) -> Money:
        """No money in ``currency``."""
        return cls(Decimal(0), currency)

    @classmethod
    def parse(cls, value: Any, currency: str, field: str = "amount") -> Money:
        """User input as money; more decimals than the currency has is refused."""
        return cls(exact_money(value, currency, field), currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def __bool__(self) -> bool:
        return bool(self.amount)

    def times(self, factor: Decimal | int) -> Money:
        """This amount times ``factor``, rounded half up."""
        return Money(self.amount * Decimal(factor), self.currency)

    def percent(self, percent: Decimal | int) -> Money:
        """``percent`` % of this amount, rounded half up."""
        return Money(percent_of(self.amount, Decimal(percent), self.currency), self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def total(amounts: Iterable[Money], currency: str) -> Money:
    """The sum of amounts in one currency (zero for none)."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result
