"""Exchange rates by date, and converting amounts between currencies.

A rate says how many units of the base currency one unit of a currency buys on a date; the
rate in force on a day is the latest one on or before it.  Converting between two foreign
currencies goes through the base currency.  Converted amounts are rounded half up to the
target currency's minor unit, once.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit_finance.model import FinanceRate
from crmkit_finance.money import RATE_PLACES, at_most, minor_units, round_money, to_decimal

#: The largest rate kept: a million units of the base currency for one unit.  Real rates
#: are far below; an amount converted at it still fits its column.
MAX_RATE = Decimal(1_000_000)

if TYPE_CHECKING:
    from crmkit_finance.services import Finance


class RateService:
    """Dated exchange rates against the base currency."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.session = finance.work.session

    def set(self, currency: str, rate: Any, on_date: dt.date, source: str = "") -> FinanceRate:
        """Record (or correct) the rate of ``currency`` on ``on_date``.

        Rates keep eight decimals; more are rounded half up.  Correcting a rate does not
        touch amounts already converted with it: those keep the rate they were made at.
        """
        self.finance.require("finance_rate", "create")
        currency = currency.upper()
        minor_units(currency)
        if currency == self.finance.base_currency:
            raise ValidationFailed({"currency": [message("the base currency has no rate")]})
        value = to_decimal(rate, "rate").quantize(
            Decimal(1).scaleb(-RATE_PLACES), rounding=ROUND_HALF_UP
        )
        if value <= 0:
            raise ValidationFailed({"rate": [message("a rate is positive")]})
        at_most(value, MAX_RATE, "rate")
        row = self.session.scalar(
            select(FinanceRate).where(
                FinanceRate.currency == currency, FinanceRate.on_date == on_date
            )
        )
        old = row.rate if row is not None else None
        if row is None:
            row = FinanceRate(currency=currency, on_date=on_date, rate=value, source=source)
            self.session.add(row)
        else:
            row.rate, row.source = value, source
        self.finance.work.flush()
        self.finance.work.audit(
            "finance_rate", row.id, "set", {"rate": [str(old) if old else None, str(value)]}
        )
        return row

    def rate(self, currency: str, on_date: dt.date) -> Decimal:
        """Units of the base currency per unit of ``currency`` on ``on_date``."""
        if currency == self.finance.base_currency:
            return Decimal(1)
        found = self.session.scalar(
            select(FinanceRate.rate)
            .where(FinanceRate.currency == currency, FinanceRate.on_date <= on_date)
            .order_by(FinanceRate.on_date.desc())
            .limit(1)
        )
        if found is None:
            raise ValidationFailed(
                {
                    "currency": [
                        message(
                            "no {currency} exchange rate on or before {day}",
                            currency=currency,
                            day=on_date.isoformat(),
                        )
                    ]
                }
            )
        return Decimal(found)

    def factor(self, source: str, target: str, on_date: dt.date) -> Decimal:
        """How many ``target`` one ``source`` buys on ``on_date`` (unrounded)."""
        if source == target:
            return Decimal(1)
        return self.rate(source, on_date) / self.rate(target, on_date)

    def convert(self, amount: Decimal, source: str, target: str, on_date: dt.date) -> Decimal:
        """``amount`` of ``source`` in ``target``, rounded half up to its minor unit."""
        if source == target:
            return amount
        return round_money(amount * self.factor(source, target, on_date), target)

    def to_base(self, amount: Decimal, currency: str, on_date: dt.date) -> Decimal:
        """``amount`` in the base currency."""
        return self.convert(amount, currency, self.finance.base_currency, on_date)

    def history(self, currency: str, limit: int = 100) -> list[FinanceRate]:
        """The latest rates of a currency, newest first."""
        return list(
            self.session.scalars(
                select(FinanceRate)
                .where(FinanceRate.currency == currency.upper())
                .order_by(FinanceRate.on_date.desc())
                .limit(limit)
            )
        )
