"""Financial reports: each a table plus a Chart.js chart description, limited to some roles.

Every report checks, before it reads anything, that the actor holds one of its roles (or
the ``report`` permission on the entity it is about, which the admin role has, or is the
system) and may read that entity; order-based reports apply
the actor's record scope, so a report never counts an order its reader may not see.

Figures are in the base currency, by business date (the deployment's time zone).  Revenue
is net of discounts and counts a line on the day it was recognized (an order's completion,
or the day an extra line was added to or removed from a completed order).  Cost is the
moving-average stock value of the goods sold; margin = revenue - cost.  The average check
is the recognized revenue of the orders completed in a month divided by their number.
A margin's or a plan's share (``margin_percent``, ``done_percent``) is a fraction, as every
report's ``percent`` column is (:func:`crmkit.reports.share`: four places, rounded half up):
``0.7576``, shown as 75,8 %, and written so to CSV and JSON.

Parameters arrive as strings from screens (``"2026-01-01"``) or as Python values.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select

from crmkit.access.rules import Scope
from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.i18n import Label, message
from crmkit.model import Party, User
from crmkit.reports import Column, PeriodFields, Report, ReportResult, share
from crmkit.web.forms import optional_id
from crmkit_finance.ledger import MONEY_KINDS, as_amount, normal_balance
from crmkit_finance.model import (
    FinanceAccount,
    FinanceEntry,
    FinanceItem,
    FinanceItemCategory,
    FinanceOrder,
    FinanceOrderCompletion,
    FinanceOrderLine,
    FinancePayment,
    FinanceTransaction,
)
from crmkit_finance.money import round_money
from crmkit_finance.services import finance
from crmkit_finance.services.payroll import month_bounds

MANAGEMENT = ("director", "accountant")
ZERO = Decimal("0.00")


# -- parameters -------------------------------------------------------------------------


def _date(params: Mapping[str, Any], key: str, default: dt.date) -> dt.date:
    value = params.get(key)
    if value in (None, ""):
        return default
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValidationFailed(
            {key: [message("{value} is not a date (YYYY-MM-DD)", value=repr(value))]}
        ) from None


def _count(params: Mapping[str, Any], key: str, default: int, most: int) -> int:
    """A whole number from 1 to ``most`` (``default`` when not given), refused by ``key``."""
    value = params.get(key)
    if value in (None, ""):
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if isinstance(value, bool) or not 1 <= number <= most:
        raise ValidationFailed(
            {
                key: [
                    message(
                        "{value} is not a whole number from 1 to {most}",
                        value=repr(value),
                        most=most,
                    )
                ]
            }
        )
    return number


def period(work: Any, params: Mapping[str, Any]) -> tuple[dt.date, dt.date]:
    """``start``/``end`` from the parameters; by default the last twelve months to today."""
    today = finance(work).business_date(utcnow())
    default_start = (
        dt.date(today.year - 1, today.month, 1) if today.month < 12 else dt.date(today.year, 1, 1)
    )
    start = _date(params, "start", default_start)
    end = _date(params, "end", today)
    if end < start:
        raise ValidationFailed({"end": [message("the end comes before the start")]})
    return start, end


def month_key(day: dt.date) -> str:
    """``2026-03`` for any day of March 2026."""
    return f"{day.year:04d}-{day.month:02d}"


def months_between(start: dt.date, end: dt.date) -> list[str]:
    """Every month key from ``start`` to ``end``."""
    keys = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return keys


def guard(work: Any, roles: tuple[str, ...], entity: str, what: str) -> Scope:
    """Refuse unless the actor holds one of ``roles`` or the ``report`` permission on
    ``entity``, and may read ``entity``; their read scope."""
    fin = finance(work)
    fin.require_report(roles, entity, what)
    return fin.require(entity, "read")


def _order_scope(work: Any, scope: Scope) -> Any:
    """``None`` when every order is visible, else the SQL predicate on orders."""
    if scope is Scope.ALL:
        return None
    return work.access.where("finance_order", "read", scope)


#: The revenue report's groupings (``by``) and the header of their column.
GROUPS = {"category": Label("Category"), "item": Label("Item"), "worker": Label("Worker")}


def _category_names(work: Any) -> dict[int | None, str]:
    names: dict[int | None, str] = {None: Label("Uncategorized")}
    names.update(
        work.session.execute(select(FinanceItemCategory.id, FinanceItemCategory.name)).all()
    )
    return names


def _bar_chart(
    labels: list[str], datasets: list[dict[str, Any]], stacked: bool = False
) -> dict[str, Any]:
    options: dict[str, Any] = {"responsive": True}
    if stacked:
        options["scales"] = {"x": {"stacked": True}, "y": {"stacked": True}}
    return {
        "type": "bar",
        "data": {
            "labels": labels,
            "datasets": [{**d, "data": [_num(v) for v in d["data"]]} for d in datasets],
        },
        "options": options,
    }


def _num(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


# -- the director's report (benchmarked) ----------------------------------------------


def revenue_by_day_and_category(
    work: Any, start: dt.date, end: dt.date, scope_predicate: Any = None
) -> list[tuple[dt.date, int | None, Decimal, Decimal]]:
    """(day, category, revenue, cost) of recognized lines.

    Grouped in the order of the covering index ``ix_finance_order_line_recognized``, so the
    database streams the aggregate straight off the index without sorting; the caller folds
    days into months (grouping by a month expression would sort millions of rows).
    """
    line = FinanceOrderLine
    statement = (
        select(
            line.recognized_on,
            line.category_id,
            func.sum(line.base_amount),
            func.sum(line.base_cost),
        )
        .where(line.recognized_on >= start, line.recognized_on <= end)
        .group_by(line.recognized_on, line.category_id)
    )
    if scope_predicate is not None:
        statement = statement.join(FinanceOrder, FinanceOrder.id == line.order_id).where(
            scope_predicate
        )
    return list(work.session.execute(statement))


def orders_by_day(
    work: Any, start: dt.date, end: dt.date, scope_predicate: Any = None
) -> list[tuple[dt.date, int, int, Decimal]]:
    """(day, orders counted: completed less reopened, orders completed, the revenue those
    completions recognized), off the covering index ``ix_finance_order_completion_day``.

    Read from the completions as they were written (:class:`FinanceOrderCompletion`), not
    from the orders as they are now, so a day's figures never change: an order reopened
    later is counted off on the day of its reopening, as its revenue is credited then."""
    entry = FinanceOrderCompletion
    done = case((entry.orders > 0, 1), else_=0)
    statement = (
        select(
            entry.completed_on,
            func.sum(entry.orders),
            func.sum(done),
            func.sum(case((entry.orders > 0, entry.base_total), else_=0)),
        )
        .where(entry.completed_on >= start, entry.completed_on <= end)
        .group_by(entry.completed_on)
    )
    if scope_predicate is not None:
        statement = statement.join(FinanceOrder, FinanceOrder.id == entry.order_id).where(
            scope_predicate
        )
    return [
        (day, int(net or 0), int(completed or 0), Decimal(total or 0))
        for day, net, completed, total in work.session.execute(statement)
    ]


def director_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Revenue by month and service category, orders, average check, cost and margin."""
    scope = guard(work, MANAGEMENT, "finance_order", "the director's report")
    start, end = period(work, params)
    predicate = _order_scope(work, scope)
    names = _category_names(work)
    months = months_between(start, end)
    revenue: dict[str, dict[int | None, Decimal]] = {m: defaultdict(Decimal) for m in months}
    cost: dict[str, Decimal] = defaultdict(Decimal)
    categories: set[int | None] = set()
    for day, category, amount, goods_cost in revenue_by_day_and_category(
        work, start, end, predicate
    ):
        key = month_key(day)
        revenue[key][category] += amount or ZERO
        cost[key] += goods_cost or ZERO
        categories.add(category)
    orders: dict[str, int] = defaultdict(int)
    completed: dict[str, int] = defaultdict(int)
    checks: dict[str, Decimal] = defaultdict(Decimal)
    for day, count, done, total in orders_by_day(work, start, end, predicate):
        key = month_key(day)
        orders[key] += count
        completed[key] += done
        checks[key] += total or ZERO
    ordered = sorted(categories, key=lambda c: (names.get(c, str(c)), c or 0))
    base = finance(work).base_currency
    rows = []
    for key in months:
        month_revenue = sum(revenue[key].values(), ZERO)
        margin = month_revenue - cost[key]
        row: dict[str, Any] = {
            "month": key,
            "orders": orders[key],
            "revenue": month_revenue,
            "average_check": (
                round_money(checks[key] / completed[key], base) if completed[key] else ZERO
            ),
            "cost": cost[key],
            "margin": margin,
            "margin_percent": share(margin, month_revenue),
        }
        for category in ordered:
            row[f"category_{category or 0}"] = revenue[key].get(category, ZERO)
        rows.append(row)
    total_revenue = sum((r["revenue"] for r in rows), ZERO)
    total_cost = sum((r["cost"] for r in rows), ZERO)
    total_orders = sum(r["orders"] for r in rows)
    total_completed = sum(completed.values())
    total_checks = sum(checks.values(), ZERO)
    columns = [
        Column("month", "Month"),
        Column("orders", "Orders", "number"),
        Column("revenue", "Revenue", "money"),
        Column("average_check", "Average check", "money"),
        Column("cost", "Cost of goods", "money"),
        Column("margin", "Margin", "money"),
        Column("margin_percent", "Margin, %", "percent"),
        *(Column(f"category_{c or 0}", names.get(c, str(c)), "money") for c in ordered),
    ]
    chart = _bar_chart(
        months,
        [
            {
                "label": names.get(c, str(c)),
                "data": [r[f"category_{c or 0}"] for r in rows],
                "stack": "revenue",
            }
            for c in ordered
        ]
        + [
            {
                "label": Label("Average check"),
                "type": "line",
                "data": [r["average_check"] for r in rows],
                "yAxisID": "check",
            }
        ],
        stacked=True,
    )
    chart["options"]["scales"]["check"] = {"position": "right", "beginAtZero": True}
    return ReportResult(
        columns=columns,
        rows=rows,
        chart=chart,
        totals={
            "orders": total_orders,
            "revenue": total_revenue,
            "average_check": round_money(total_checks / total_completed, base)
            if total_completed
            else ZERO,
            "cost": total_cost,
            "margin": total_revenue - total_cost,
            "margin_percent": share(total_revenue - total_cost, total_revenue),
            "currency": base,
        },
    )


# -- revenue and average check ------------------------------------------------------


def _period_key(day: dt.date, grain: str) -> str:
    if grain == "day":
        return day.isoformat()
    if grain == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return month_key(day)


def revenue_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Revenue by day, week or month, by category, item or worker.

    ``grain``: day, week or month; ``by``: category, item or worker (the first line is the
    report's description on the reports page, in the user's words).
    """
    scope = guard(work, MANAGEMENT, "finance_order", "revenue")
    start, end = period(work, params)
    grain = str(params.get("grain") or "month")
    by = str(params.get("by") or "category")
    if grain not in ("day", "week", "month"):
        raise ValidationFailed({"grain": [message("day, week or month")]})
    line = FinanceOrderLine
    group_columns = {
        "category": line.category_id,
        "item": line.item_id,
        "worker": func.coalesce(line.performer_id, FinanceOrder.assignee_id),
    }
    if by not in group_columns:
        raise ValidationFailed({"by": [message("category, item or worker")]})
    group = group_columns[by]
    statement = (
        select(line.recognized_on, group, func.sum(line.base_amount), func.count())
        .join(FinanceOrder, FinanceOrder.id == line.order_id)
        .where(line.recognized_on >= start, line.recognized_on <= end)
        .group_by(line.recognized_on, group)
    )
    predicate = _order_scope(work, scope)
    if predicate is not None:
        statement = statement.where(predicate)
    if by == "category":
        names = _category_names(work)
    elif by == "item":
        names = dict(work.session.execute(select(FinanceItem.id, FinanceItem.name)).all())
    else:
        names = {u.id: u.label for u in work.session.scalars(select(User))}
    table: dict[tuple[str, Any], dict[str, Any]] = {}
    for day, key, amount, count in work.session.execute(statement):
        bucket = table.setdefault(
            (_period_key(day, grain), key),
            {
                "period": _period_key(day, grain),
                "group": names.get(key, "—"),
                "revenue": ZERO,
                "lines": 0,
            },
        )
        bucket["revenue"] += amount or ZERO
        bucket["lines"] += count
    rows = sorted(table.values(), key=lambda r: (r["period"], r["group"]))
    periods = sorted({r["period"] for r in rows})
    groups = sorted({r["group"] for r in rows})
    lookup = {(r["period"], r["group"]): r["revenue"] for r in rows}
    chart = _bar_chart(
        periods,
        [{"label": g, "data": [lookup.get((p, g), ZERO) for p in periods]} for g in groups],
        stacked=True,
    )
    return ReportResult(
        columns=[
            Column("period", "Period"),
            Column("group", GROUPS[by]),
            Column("revenue", "Revenue", "money"),
            Column("lines", "Lines", "number"),
        ],
        rows=rows,
        chart=chart,
        totals={"revenue": sum((r["revenue"] for r in rows), ZERO)},
    )


def average_check_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Orders completed per month, their revenue and the average check."""
    # the completions as they were written: an order reopened later stays in its month
    scope = guard(work, MANAGEMENT, "finance_order", "the average check")
    start, end = period(work, params)
    base = finance(work).base_currency
    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for day, _counted, done, total in orders_by_day(work, start, end, _order_scope(work, scope)):
        counts[month_key(day)] += done
        sums[month_key(day)] += total or ZERO
    rows = [
        {
            "month": key,
            "orders": counts[key],
            "revenue": sums[key],
            "average_check": round_money(sums[key] / counts[key], base) if counts[key] else ZERO,
        }
        for key in months_between(start, end)
    ]
    total_orders = sum(counts.values())
    total = sum(sums.values(), ZERO)
    return ReportResult(
        columns=[
            Column("month", "Month"),
            Column("orders", "Orders", "number"),
            Column("revenue", "Revenue", "money"),
            Column("average_check", "Average check", "money"),
        ],
        rows=rows,
        chart={
            "type": "line",
            "data": {
                "labels": [r["month"] for r in rows],
                "datasets": [
                    {
                        "label": Label("Average check"),
                        "data": [_num(r["average_check"]) for r in rows],
                    }
                ],
            },
        },
        totals={
            "orders": total_orders,
            "revenue": total,
            "average_check": round_money(total / total_orders, base) if total_orders else ZERO,
        },
    )


# -- margins ------------------------------------------------------------------------------


#: orders the margin report shows by default, and at most (its ``limit`` parameter)
ORDER_MARGIN_ROWS = 500
ORDER_MARGIN_MOST = 5000


def order_margin_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Revenue, cost and margin of each order with revenue in the period (largest first)."""
    scope = guard(work, MANAGEMENT, "finance_order", "order margins")
    start, end = period(work, params)
    limit = _count(params, "limit", ORDER_MARGIN_ROWS, ORDER_MARGIN_MOST)
    line = FinanceOrderLine
    revenue = func.sum(line.base_amount)
    cost = func.sum(line.base_cost)
    statement = (
        select(FinanceOrder.id, FinanceOrder.number, Party.id, Party.name, revenue, cost)
        .join(FinanceOrder, FinanceOrder.id == line.order_id)
        .join(Party, Party.id == FinanceOrder.party_id)
        .where(line.recognized_on >= start, line.recognized_on <= end)
        .group_by(FinanceOrder.id, FinanceOrder.number, Party.id, Party.name)
        .order_by((revenue - cost).desc(), FinanceOrder.id)
        .limit(limit)
    )
    predicate = _order_scope(work, scope)
    if predicate is not None:
        statement = statement.where(predicate)
    found = work.session.execute(statement).all()
    # an order read by holding it (a worker's), whose client the reader may not read, names
    # no client: blank, as the API gives its ``party_id`` as ``null`` (one query, only then)
    readable = work.records("finance_order").readable_clients(row[2] for row in found)
    rows = []
    for order_id, number, party_id, client, amount, goods_cost in found:
        amount, goods_cost = amount or ZERO, goods_cost or ZERO
        rows.append(
            {
                "order_id": order_id,
                "number": number,
                "client": client if party_id in readable else "",
                "revenue": amount,
                "cost": goods_cost,
                "margin": amount - goods_cost,
                "margin_percent": share(amount - goods_cost, amount),
            }
        )
    return ReportResult(
        columns=[
            Column("number", "Order"),
            Column("client", "Client"),
            Column("revenue", "Revenue", "money"),
            Column("cost", "Cost", "money"),
            Column("margin", "Margin", "money"),
            Column("margin_percent", "Margin, %", "percent"),
        ],
        rows=rows,
        totals={
            "revenue": sum((r["revenue"] for r in rows), ZERO),
            "cost": sum((r["cost"] for r in rows), ZERO),
            "margin": sum((r["margin"] for r in rows), ZERO),
        },
    )


def service_margin_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Per service or good: quantity sold, revenue, cost, margin (largest revenue first)."""
    scope = guard(work, MANAGEMENT, "finance_order", "margins per service")
    start, end = period(work, params)
    line = FinanceOrderLine
    statement = (
        select(
            line.item_id,
            FinanceItem.name,
            FinanceItem.kind,
            func.sum(line.qty),
            func.sum(line.base_amount),
            func.sum(line.base_cost),
        )
        .join(FinanceItem, FinanceItem.id == line.item_id)
        .where(line.recognized_on >= start, line.recognized_on <= end)
        .group_by(line.item_id, FinanceItem.name, FinanceItem.kind)
    )
    predicate = _order_scope(work, scope)
    if predicate is not None:
        statement = statement.join(FinanceOrder, FinanceOrder.id == line.order_id).where(predicate)
    rows = []
    for item_id, name, kind, qty, amount, goods_cost in work.session.execute(statement):
        amount, goods_cost = amount or ZERO, goods_cost or ZERO
        rows.append(
            {
                "item_id": item_id,
                "item": name,
                "kind": kind,
                "qty": qty,
                "revenue": amount,
                "cost": goods_cost,
                "margin": amount - goods_cost,
                "margin_percent": share(amount - goods_cost, amount),
            }
        )
    rows.sort(key=lambda r: (-r["revenue"], r["item"]))
    return ReportResult(
        columns=[
            Column("item", "Service or good"),
            Column("kind", "Kind"),
            Column("qty", "Quantity", "number"),
            Column("revenue", "Revenue", "money"),
            Column("cost", "Cost", "money"),
            Column("margin", "Margin", "money"),
            Column("margin_percent", "Margin, %", "percent"),
        ],
        rows=rows,
        chart=_bar_chart(
            [r["item"] for r in rows[:20]],
            [
                {"label": Label("Revenue"), "data": [r["revenue"] for r in rows[:20]]},
                {"label": Label("Margin"), "data": [r["margin"] for r in rows[:20]]},
            ],
        ),
        totals={
            "revenue": sum((r["revenue"] for r in rows), ZERO),
            "cost": sum((r["cost"] for r in rows), ZERO),
            "margin": sum((r["margin"] for r in rows), ZERO),
        },
    )


# -- money: ledger-based reports ----------------------------------------------------


def _ledger_by_month(
    work: Any, start: dt.date, end: dt.date, kinds: tuple[str, ...]
) -> list[tuple[dt.date, str, str, str, Decimal]]:
    base = finance(work).base_currency
    statement = (
        select(
            FinanceEntry.on_date,
            FinanceAccount.code,
            FinanceAccount.name,
            FinanceAccount.kind,
            func.sum(FinanceEntry.amount),
        )
        .join(FinanceAccount, FinanceAccount.id == FinanceEntry.account_id)
        .where(
            FinanceEntry.on_date >= start,
            FinanceEntry.on_date <= end,
            FinanceEntry.currency == base,
            FinanceAccount.kind.in_(kinds),
        )
        .group_by(
            FinanceEntry.on_date, FinanceAccount.code, FinanceAccount.name, FinanceAccount.kind
        )
    )
    return list(work.session.execute(statement))


def profit_loss_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Income and expenses by category and month, and the profit."""
    guard(work, MANAGEMENT, "finance_ledger", "profit and loss")
    start, end = period(work, params)
    months = months_between(start, end)
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for day, code, name, kind, raw in _ledger_by_month(work, start, end, ("income", "expense")):
        row = table.setdefault(
            (kind, code),
            {"kind": kind, "code": code, "category": name, **{m: ZERO for m in months}},
        )
        row[month_key(day)] += normal_balance(kind, as_amount(raw))
    rows = sorted(table.values(), key=lambda r: (r["kind"] != "income", r["category"]))
    income = {m: sum((r[m] for r in rows if r["kind"] == "income"), ZERO) for m in months}
    expenses = {m: sum((r[m] for r in rows if r["kind"] == "expense"), ZERO) for m in months}
    for row in rows:
        row["total"] = sum((row[m] for m in months), ZERO)
    profit_row = {
        "kind": Label("profit"),
        "code": "",
        "category": Label("Profit"),
        **{m: income[m] - expenses[m] for m in months},
    }
    profit_row["total"] = sum((profit_row[m] for m in months), ZERO)
    rows.append(profit_row)
    return ReportResult(
        columns=[
            Column("category", "Category"),
            Column("kind", "Kind"),
            *(Column(m, m, "money") for m in months),
            Column("total", "Total", "money"),
        ],
        rows=rows,
        chart=_bar_chart(
            months,
            [
                {"label": Label("Income"), "data": [income[m] for m in months]},
                {"label": Label("Expenses"), "data": [expenses[m] for m in months]},
                {
                    "label": Label("Profit"),
                    "type": "line",
                    "data": [income[m] - expenses[m] for m in months],
                },
            ],
        ),
        totals={
            "income": sum(income.values(), ZERO),
            "expenses": sum(expenses.values(), ZERO),
            "profit": sum(income.values(), ZERO) - sum(expenses.values(), ZERO),
        },
    )


def cash_flow_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Money in and out of the drawers, card terminals and bank by month and kind of movement."""
    guard(work, MANAGEMENT, "finance_ledger", "cash flow")
    start, end = period(work, params)
    base = finance(work).base_currency
    amount = FinanceEntry.amount
    statement = (
        select(
            FinanceEntry.on_date,
            FinanceTransaction.kind,
            func.sum(amount).filter(amount > 0),
            func.sum(amount).filter(amount < 0),
        )
        .join(FinanceAccount, FinanceAccount.id == FinanceEntry.account_id)
        .join(FinanceTransaction, FinanceTransaction.id == FinanceEntry.transaction_id)
        .where(
            FinanceEntry.on_date >= start,
            FinanceEntry.on_date <= end,
            FinanceEntry.currency == base,
            FinanceAccount.kind.in_(MONEY_KINDS),
        )
        .group_by(FinanceEntry.on_date, FinanceTransaction.kind)
    )
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for day, kind, inflow, outflow in work.session.execute(statement):
        row = table.setdefault(
            (month_key(day), kind),
            {"month": month_key(day), "kind": kind, "inflow": ZERO, "outflow": ZERO},
        )
        row["inflow"] += as_amount(inflow)
        row["outflow"] -= as_amount(outflow)
    rows = sorted(table.values(), key=lambda r: (r["month"], r["kind"]))
    for row in rows:
        row["net"] = row["inflow"] - row["outflow"]
    months = months_between(start, end)
    net = {m: sum((r["net"] for r in rows if r["month"] == m), ZERO) for m in months}
    return ReportResult(
        columns=[
            Column("month", "Month"),
            Column("kind", "Movement"),
            Column("inflow", "In", "money"),
            Column("outflow", "Out", "money"),
            Column("net", "Net", "money"),
        ],
        rows=rows,
        chart=_bar_chart(
            months, [{"label": Label("Net cash flow"), "data": [net[m] for m in months]}]
        ),
        totals={
            "inflow": sum((r["inflow"] for r in rows), ZERO),
            "outflow": sum((r["outflow"] for r in rows), ZERO),
            "net": sum(net.values(), ZERO),
        },
    )


def plan_fact_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Planned against actual revenue, expenses, profit or account movements by month."""
    guard(work, MANAGEMENT, "finance_plan", "plan versus fact")
    start, end = period(work, params)
    fin = finance(work)
    facts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for day, code, _, kind, raw in _ledger_by_month(work, start, end, ("income", "expense")):
        value = normal_balance(kind, as_amount(raw))
        key = month_key(day)
        facts[(key, code)] += value
        facts[(key, "revenue" if kind == "income" else "expenses")] += value
    rows = []
    for plan in fin.plans.of_period(start, end):
        key = month_key(plan.month)
        if plan.metric == "profit":
            fact = facts[(key, "revenue")] - facts[(key, "expenses")]
        else:
            fact = facts[(key, plan.metric)]
        rows.append(
            {
                "month": key,
                "metric": plan.metric,
                "plan": plan.amount,
                "fact": fact,
                "difference": fact - plan.amount,
                "done_percent": share(fact, plan.amount),
            }
        )
    return ReportResult(
        columns=[
            Column("month", "Month"),
            Column("metric", "Metric"),
            Column("plan", "Plan", "money"),
            Column("fact", "Fact", "money"),
            Column("difference", "Difference", "money"),
            Column("done_percent", "Done, %", "percent"),
        ],
        rows=rows,
        chart=_bar_chart(
            [f"{r['month']} {r['metric']}" for r in rows],
            [
                {"label": Label("Plan"), "data": [r["plan"] for r in rows]},
                {"label": Label("Fact"), "data": [r["fact"] for r in rows]},
            ],
        ),
    )


def corporate_income_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Money received from corporate clients by month and client."""
    scope = guard(work, MANAGEMENT, "finance_payment", "income from corporate clients")
    start, end = period(work, params)
    statement = (
        select(FinancePayment.on_date, Party.id, Party.name, func.sum(FinancePayment.base_amount))
        .join(Party, Party.id == FinancePayment.party_id)
        .where(
            FinancePayment.on_date >= start,
            FinancePayment.on_date <= end,
            Party.customer_type == "corporate",
        )
        .group_by(FinancePayment.on_date, Party.id, Party.name)
    )
    if scope is not Scope.ALL:  # the payments its reader may read
        statement = statement.where(work.access.where("finance_payment", "read", scope))
    found = work.session.execute(statement).all()
    # a client the reader may not read (payments read beyond their clients) is blank, as
    # the API gives its id as ``null`` (one query, only for such a reader)
    readable = work.records("finance_payment").readable_clients(row[1] for row in found)
    table: dict[tuple[str, int], dict[str, Any]] = {}
    for day, party_id, name, amount in found:
        shown = party_id if party_id in readable else None
        row = table.setdefault(
            (month_key(day), party_id),
            {
                "month": month_key(day),
                "party_id": shown,
                "client": name if shown is not None else "",
                "received": ZERO,
            },
        )
        row["received"] += amount or ZERO
    rows = sorted(table.values(), key=lambda r: (r["month"], -r["received"], r["client"]))
    months = months_between(start, end)
    per_month = {m: sum((r["received"] for r in rows if r["month"] == m), ZERO) for m in months}
    return ReportResult(
        columns=[
            Column("month", "Month"),
            Column("client", "Client"),
            Column("received", "Received", "money"),
        ],
        rows=rows,
        chart=_bar_chart(
            months, [{"label": Label("Corporate income"), "data": [per_month[m] for m in months]}]
        ),
        totals={"received": sum(per_month.values(), ZERO)},
    )


# -- salaries, stock, desk, receivables -----------------------------------------------


def salaries_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Each employee's accrual for a month, the payouts in it and what is owed.

    ``month``: any day of the month (this month by default).
    """
    guard(work, ("director", "accountant"), "finance_payroll", "salaries")
    fin = finance(work)
    month = _date(params, "month", fin.business_date(utcnow()))
    start, _ = month_bounds(month)
    user_ids = {slip.user_id for slip in fin.payroll.payslips(start)}
    from crmkit_finance.model import FinancePayScheme

    user_ids |= set(work.session.scalars(select(FinancePayScheme.user_id).distinct()))
    rows = []
    for user_id in sorted(user_ids):
        slip = fin.payroll.payslip(user_id, start)
        rows.append(
            {
                "user_id": user_id,
                "employee": slip["employee"],
                "accrued": slip["accrued"],
                "fixed_amount": slip["fixed_amount"],
                "commission": slip["commission"],
                "total": slip["total"],
                "paid": slip["paid_in_period"],
                "owed": slip["owed"],
            }
        )
    return ReportResult(
        columns=[
            Column("employee", "Employee"),
            Column("fixed_amount", "Fixed", "money"),
            Column("commission", "Percent of revenue", "money"),
            Column("total", "Total", "money"),
            Column("paid", "Paid out this month", "money"),
            Column("owed", "Owed", "money"),
        ],
        rows=rows,
        chart=_bar_chart(
            [r["employee"] for r in rows],
            [
                {"label": Label("Fixed"), "data": [r["fixed_amount"] for r in rows], "stack": "s"},
                {"label": Label("Percent"), "data": [r["commission"] for r in rows], "stack": "s"},
            ],
            stacked=True,
        ),
        totals={
            "total": sum((r["total"] for r in rows), ZERO),
            "owed": sum((r["owed"] for r in rows), ZERO),
            "month": month_key(start),
        },
    )


def stock_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Stock on hand and its value (moving average), by location and item."""
    guard(work, ("director", "accountant", "warehouse_head"), "finance_stock", "stock")
    fin = finance(work)
    rows = fin.stock.levels(location_id=optional_id(params.get("location_id"), "location_id"))
    rows = [r for r in rows if r["qty"] or r["value"] or r["min_qty"]]
    names = _category_names(work)
    for row in rows:
        row["category"] = names.get(row["category_id"], "")
    by_category: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        by_category[row["category"]] += row["value"]
    labels = sorted(by_category)
    return ReportResult(
        columns=[
            Column("location", "Location"),
            Column("item", "Item"),
            Column("category", "Category"),
            Column("qty", "On hand", "number"),
            Column("unit", "Unit"),
            Column("average_cost", "Average cost", "money"),
            Column("value", "Value", "money"),
            Column("min_qty", "Minimum", "number"),
        ],
        rows=rows,
        chart={
            "type": "doughnut",
            "data": {
                "labels": labels,
                "datasets": [
                    {"label": Label("Value"), "data": [_num(by_category[k]) for k in labels]}
                ],
            },
        },
        totals={
            "value": sum((r["value"] for r in rows), ZERO),
            "low": sum(1 for r in rows if r["low"]),
        },
    )


def shift_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """A shift's payments and refunds by method, its counts and differences.

    ``shift_id``: the shift (its report is also the shift's page at the desk).
    """
    guard(work, ("cashier", "accountant", "director"), "finance_shift", "the shift report")
    shift_id = optional_id(params.get("shift_id"), "shift_id")
    if shift_id is None:
        raise ValidationFailed({"shift_id": [message("choose a shift")]})
    report = finance(work).cashdesk.shift_report(shift_id)
    rows = [
        {
            "method": method,
            "received": v["received"],
            "returned": v["returned"],
            "count": v["count"],
        }
        for method, v in report["by_method"].items()
    ]
    return ReportResult(
        columns=[
            Column("method", "Method"),
            Column("count", "Operations", "number"),
            Column("received", "Received", "money"),
            Column("returned", "Returned", "money"),
        ],
        rows=rows,
        totals={k: v for k, v in report.items() if k not in ("by_method", "cash_other")},
    )


def receivables_report(work: Any, params: Mapping[str, Any]) -> ReportResult:
    """Clients who owe money (or paid in advance), with what is overdue."""
    guard(work, ("cashier", "accountant", "director"), "finance_payment", "receivables")
    rows = finance(work).payments.receivables(
        as_of=_date(params, "as_of", finance(work).business_date(utcnow()))
    )
    return ReportResult(
        columns=[
            Column("client", "Client"),
            Column("balance", "Owes", "money"),
            Column("overdue", "Overdue", "money"),
        ],
        rows=rows,
        totals={
            "balance": sum((r["balance"] for r in rows if r["balance"] > 0), ZERO),
            "overdue": sum((r["overdue"] for r in rows), ZERO),
        },
    )


#: The period of the reports that take one: ``start`` and ``end``, the end day counted.
PERIOD = PeriodFields("start", "end", end_inclusive=True)


def _report(
    name: str,
    label: str,
    build: Callable[..., ReportResult],
    entity: str,
    roles: tuple[str, ...],
    params: Mapping[str, Any] | None = None,
) -> Report:
    params = params or {"start": "date", "end": "date"}
    return Report(
        name=name,
        label=label,
        build=build,
        entity=entity,
        roles=roles,
        description=(build.__doc__ or "").strip().splitlines()[0],
        params=params,
        # its page offers the period shortcuts (today, this month…) for start and end
        period=PERIOD if PERIOD.start in params and PERIOD.end in params else None,
    )


REPORTS = (
    _report(
        "finance.director", "Director's dashboard", director_report, "finance_order", MANAGEMENT
    ),
    _report(
        "finance.revenue",
        "Revenue",
        revenue_report,
        "finance_order",
        MANAGEMENT,
        {
            "start": "date",
            "end": "date",
            "grain": ["month", "week", "day"],
            "by": ["category", "item", "worker"],
        },
    ),
    _report(
        "finance.average_check", "Average check", average_check_report, "finance_order", MANAGEMENT
    ),
    _report(
        "finance.order_margin",
        "Margin per order",
        order_margin_report,
        "finance_order",
        MANAGEMENT,
        {"start": "date", "end": "date", "limit": "number"},
    ),
    _report(
        "finance.service_margin",
        "Margin per service",
        service_margin_report,
        "finance_order",
        MANAGEMENT,
    ),
    _report(
        "finance.profit_loss", "Profit and loss", profit_loss_report, "finance_ledger", MANAGEMENT
    ),
    _report("finance.cash_flow", "Cash flow", cash_flow_report, "finance_ledger", MANAGEMENT),
    _report("finance.plan_fact", "Plan versus fact", plan_fact_report, "finance_plan", MANAGEMENT),
    _report(
        "finance.corporate_income",
        "Income from corporate clients",
        corporate_income_report,
        "finance_payment",
        MANAGEMENT,
    ),
    _report(
        "finance.salaries",
        "Salaries",
        salaries_report,
        "finance_payroll",
        MANAGEMENT,
        {"month": "date"},
    ),
    _report(
        "finance.stock",
        "Stock on hand",
        stock_report,
        "finance_stock",
        ("director", "accountant", "warehouse_head"),
        {"location_id": "finance_location"},
    ),
    _report(
        "finance.shift",
        "Shift report",
        shift_report,
        "finance_shift",
        ("cashier", "accountant", "director"),
        {"shift_id": "finance_shift"},
    ),
    _report(
        "finance.receivables",
        "Receivables",
        receivables_report,
        "finance_payment",
        ("cashier", "accountant", "director"),
        {"as_of": "date"},
    ),
)


def run_report(work: Any, name: str, params: Mapping[str, Any] | None = None) -> ReportResult:
    """Build a registered report by name (its own access checks apply); a parameter the
    report does not declare in ``Report.params`` is refused, naming it and the declared ones."""
    report = work.crm.reports.get(name)
    if report is None:
        raise ValidationFailed({"report": [message("no report {name}", name=repr(name))]})
    params = params or {}
    unknown = sorted(key for key in params if key not in report.params)
    if unknown:
        # a misspelt key would otherwise build the report with the default silently
        raise ValidationFailed(
            {
                unknown[0]: [
                    message(
                        "not a parameter of {report}; its parameters: {known}",
                        report=report.name,
                        known=", ".join(report.params),  # keys as typed, not translated
                    )
                ]
            }
        )
    return report.build(work, params)


__all__ = ["REPORTS", "run_report"]
