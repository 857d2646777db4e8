"""Income and expenses by category, equipment with straight-line amortization, and plans.

Categories are ledger accounts of kind ``income`` or ``expense`` (rent, utilities, salary,
purchases of consumables...); an expense is paid from a money account (a desk's drawer, the
bank) or owed to a supplier.

**Amortization** is straight-line: ``(cost - salvage value) / useful life in months`` per
month, rounded half up, from the month after the asset was acquired; the last month takes
whatever is left, so the months add up to exactly ``cost - salvage value``.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import message
from crmkit.services.limits import refuse_long_texts
from crmkit_finance.ledger import credit, debit
from crmkit_finance.model import (
    FinanceAmortization,
    FinanceAsset,
    FinancePlan,
    FinanceTransaction,
)
from crmkit_finance.money import exact_money, round_money
from crmkit_finance.services import forms
from crmkit_finance.services.payroll import month_bounds

if TYPE_CHECKING:
    from crmkit_finance.services import Finance

PLAN_METRICS = ("revenue", "expenses", "profit")


#: The longest useful life of equipment: a hundred years, in months.
MAX_USEFUL_LIFE_MONTHS = 1200


def _useful_life(value: Any) -> int:
    """An asset's useful life in whole months, 1 to :data:`MAX_USEFUL_LIFE_MONTHS`; refused
    naming ``useful_life_months`` (its schedule has one row a month, within the calendar)."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"-?[0-9]{1,12}", text):
        number = None
    else:
        number = int(text)
    if number is not None and number < 1:
        raise ValidationFailed({"useful_life_months": [message("at least one month")]})
    if number is None or number > MAX_USEFUL_LIFE_MONTHS:
        raise ValidationFailed(
            {
                "useful_life_months": [
                    message(
                        "a whole number of months from 1 to {most}", most=MAX_USEFUL_LIFE_MONTHS
                    )
                ]
            }
        )
    return number


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


class ExpenseService:
    """Recording income and expenses by category.  ``finance(work).expenses``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work

    def _record(
        self,
        kind: str,
        category: str,
        amount: Any,
        account: str,
        note: str,
        party_id: int | None,
        at: dt.datetime | None,
        form_token: str | None,
    ) -> Any:
        self.finance.require("finance_ledger", "create")
        refuse_long_texts(note=note)
        earlier = forms.claim(self.finance, form_token, kind)
        if earlier:
            return self.work.session.get(FinanceTransaction, earlier[0])
        ledger = self.finance.ledger
        ledger.ensure_system_accounts()
        try:
            target = ledger.get_account(category)
        except NotFound:  # a mistyped choice: the form again, naming the field
            target = None
        if target is None or target.kind != kind:
            raise ValidationFailed(
                {
                    "category": [
                        message(
                            "{category} is not an {kind} category", category=category, kind=kind
                        )
                    ]
                }
            )
        money = ledger.named_account(account, "account")
        if money.kind not in ("cash", "bank", "card", "payable"):
            raise ValidationFailed(
                {"account": [message("a drawer, a bank account or a supplier's payable")]}
            )
        base = self.finance.base_currency
        value = exact_money(amount, base)
        if value <= 0:
            raise ValidationFailed({"amount": [message("an amount is positive")]})
        if kind == "expense":
            legs = [debit(target, value, base), credit(money, value, base)]
        else:
            legs = [debit(money, value, base), credit(target, value, base)]
        shift = self.finance.cashdesk.drawer_shift(
            money, value if kind == "expense" else -value, "account"
        )
        transaction = ledger.post(kind, legs, memo=note, party_id=party_id, at=at, shift=shift)
        forms.remember(self.finance, form_token, [transaction.id])
        self.work.audit(
            "finance_ledger",
            transaction.id,
            kind,
            {"amount": [None, str(value)], "category": category},
        )
        return transaction

    def expense(
        self,
        category: str,
        amount: Any,
        *,
        paid_from: str = "bank:main",
        note: str = "",
        party_id: int | None = None,
        at: dt.datetime | None = None,
        form_token: str | None = None,
    ) -> Any:
        """Spend money on an expense category (``expense:rent``...).  ``form_token``: the
        form's one-time token; the same form sent again returns the first transaction."""
        return self._record("expense", category, amount, paid_from, note, party_id, at, form_token)

    def income(
        self,
        category: str,
        amount: Any,
        *,
        received_into: str = "bank:main",
        note: str = "",
        party_id: int | None = None,
        at: dt.datetime | None = None,
        form_token: str | None = None,
    ) -> Any:
        """Money earned outside orders (``income:other``...).  ``form_token`` as for
        :meth:`expense`."""
        return self._record(
            "income", category, amount, received_into, note, party_id, at, form_token
        )


class AssetService:
    """Equipment and its amortization.  ``finance(work).assets``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    def acquire(
        self,
        name: str,
        cost: Any,
        *,
        useful_life_months: int | str,
        acquired_on: dt.date,
        salvage_value: Any = "0",
        paid_from: str = "bank:main",
        location_id: int | None = None,
    ) -> FinanceAsset:
        """Buy equipment: its cost leaves ``paid_from`` and becomes an asset."""
        self.finance.require("finance_asset", "create")
        base = self.finance.base_currency
        value = exact_money(cost, base, "cost")
        salvage = exact_money(salvage_value, base, "salvage_value")
        if value <= 0:
            raise ValidationFailed({"cost": [message("a cost is positive")]})
        if not 0 <= salvage < value:
            raise ValidationFailed({"salvage_value": [message("between 0 and the cost")]})
        months = _useful_life(useful_life_months)
        if not (name or "").strip():
            raise ValidationFailed({"name": [message("name the asset")]})
        ledger = self.finance.ledger
        source = ledger.named_account(paid_from, "paid_from")
        transaction = ledger.post(
            "asset_purchase",
            [
                debit(ledger.account("fixed_asset:equipment"), value, base),
                credit(source, value, base),
            ],
            memo=f"equipment: {name}",
        )
        asset = FinanceAsset(
            name=name.strip(),
            cost=value,
            salvage_value=salvage,
            currency=base,
            acquired_on=acquired_on,
            useful_life_months=months,
            location_id=location_id,
            transaction_id=transaction.id,
        )
        self.session.add(asset)
        self.work.flush()
        self.work.audit("finance_asset", asset.id, "create", {"cost": [None, str(value)]})
        return asset

    def schedule(self, asset: FinanceAsset) -> list[tuple[dt.date, Decimal]]:
        """Every month's amortization of an asset: (first day of the month, amount)."""
        base = asset.currency
        depreciable = asset.cost - asset.salvage_value
        monthly = round_money(depreciable / asset.useful_life_months, base)
        rows = []
        done = Decimal(0)
        for index in range(asset.useful_life_months):
            month = _add_months(asset.acquired_on.replace(day=1), index + 1)
            amount = depreciable - done if index == asset.useful_life_months - 1 else monthly
            amount = min(amount, depreciable - done)
            rows.append((month, amount))
            done += amount
        return rows

    def amortize(self, month: dt.date) -> Decimal:
        """Book the month's amortization of every asset due (once per asset and month)."""
        self.finance.require("finance_asset", "update")
        start, end = month_bounds(month)
        ledger = self.finance.ledger
        total = Decimal(0)
        assets = self.session.scalars(
            select(FinanceAsset).where(FinanceAsset.acquired_on < start).order_by(FinanceAsset.id)
        )
        for asset in assets:
            if asset.disposed_on is not None and asset.disposed_on < start:
                continue
            amount = dict(self.schedule(asset)).get(start)
            if not amount:
                continue
            if self.session.scalar(
                select(FinanceAmortization.id).where(
                    FinanceAmortization.asset_id == asset.id, FinanceAmortization.month == start
                )
            ):
                continue
            transaction = ledger.post(
                "amortization",
                [
                    debit(ledger.account("expense:amortization"), amount, asset.currency),
                    credit(
                        ledger.account("accumulated_amortization:equipment"), amount, asset.currency
                    ),
                ],
                memo=f"amortization {start:%Y-%m}: {asset.name}",
                record=("finance_asset", asset.id),
                at=self.finance.start_of_day(end)
                if end < self.finance.business_date(utcnow())
                else None,
            )
            self.session.add(
                FinanceAmortization(
                    asset_id=asset.id, month=start, amount=amount, transaction_id=transaction.id
                )
            )
            total += amount
        self.work.flush()
        return total

    def book_value(self, asset_id: int) -> Decimal:
        """Cost less the amortization booked so far."""
        self.finance.require("finance_asset", "read")
        asset = self.session.get(FinanceAsset, asset_id)
        if asset is None:
            raise NotFound("finance_asset", asset_id)
        booked = self.session.scalar(
            select(func.coalesce(func.sum(FinanceAmortization.amount), 0)).where(
                FinanceAmortization.asset_id == asset.id
            )
        )
        return asset.cost - Decimal(booked)


class PlanService:
    """Monthly plans: revenue, expenses, profit, or any account.  ``finance(work).plans``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    def set(self, month: dt.date, metric: str, amount: Any) -> FinancePlan:
        """Plan a figure for a month."""
        self.finance.require("finance_plan", "create")
        if metric not in PLAN_METRICS and ":" not in metric:
            raise ValidationFailed(
                {
                    "metric": [
                        message(
                            "one of {choices} or an account code", choices=", ".join(PLAN_METRICS)
                        )
                    ]
                }
            )
        if ":" in metric:
            self.finance.ledger.get_account(metric)
        base = self.finance.base_currency
        value = exact_money(amount, base)
        start, _ = month_bounds(month)
        row = self.session.scalar(
            select(FinancePlan).where(FinancePlan.month == start, FinancePlan.metric == metric)
        )
        old = row.amount if row else None
        if row is None:
            row = FinancePlan(month=start, metric=metric, amount=value, currency=base)
            self.session.add(row)
        else:
            row.amount = value
        self.work.flush()
        self.work.audit(
            "finance_plan",
            row.id,
            "set",
            {metric: [str(old) if old is not None else None, str(value)]},
        )
        return row

    def of_period(self, start: dt.date, end: dt.date) -> list[FinancePlan]:
        """Plans of the months between two dates."""
        self.finance.require("finance_plan", "read")
        return list(
            self.session.scalars(
                select(FinancePlan)
                .where(FinancePlan.month >= start.replace(day=1), FinancePlan.month <= end)
                .order_by(FinancePlan.month, FinancePlan.metric)
            )
        )
