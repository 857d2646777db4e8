"""Builders shared by the finance tests: a small shop with staff of every role."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import attrs
from crmkit_finance import finance

from crmkit.clock import frozen_at, utcnow
from crmkit.testing import add_user, factories


@attrs.define
class Shop:
    """A small business: staff of every role, a branch with a desk, a catalogue, a client."""

    crm: Any
    admin: Any
    manager: Any
    cashier: Any
    accountant: Any
    warehouse: Any
    director: Any
    branch: Any
    desk: Any
    engine: Any  # service category
    parts: Any  # goods category
    diagnostics: Any  # service item
    oil_change: Any  # service item
    oil: Any  # goods item (kept in stock)
    client: Any

    def order(self, work: Any, **values: Any) -> Any:
        """A new order for the shop's client at its branch."""
        data = {"party_id": self.client.id, "location_id": self.branch.id}
        data.update(values)
        return finance(work).orders.create(data)

    def completed_order(self, *items: Any, party_id: int | None = None) -> Any:
        """A new order (for ``party_id``, else the shop's client) with one line of each of
        ``items``, moved to done by the manager."""
        with self.crm.acting_as(self.manager) as work:
            order = self.order(work, **({"party_id": party_id} if party_id else {}))
            for item in items:
                finance(work).orders.add_line(order, item.id)
            work.moves.move(order, "done", entity="finance_order")
            return order


def build_shop(crm: Any) -> Shop:
    """Create the shop's staff, places, catalogue, stock and a client."""
    users = {
        name: add_user(crm, name, [role])
        for name, role in (
            ("admin", "admin"),
            ("manager", "manager"),
            ("cashier", "cashier"),
            ("accountant", "accountant"),
            ("warehouse", "warehouse_head"),
            ("director", "director"),
        )
    }
    with crm.acting_as(users["warehouse"]) as work:
        fin = finance(work)
        branch = work.records("finance_location").create(name="Branch 1")
        engine = work.records("finance_item_category").create(name="Engine", kind="service")
        parts = work.records("finance_item_category").create(name="Oils", kind="goods")
        diagnostics = work.records("finance_item").create(
            name="Diagnostics", kind="service", category_id=engine.id, price="1000.00"
        )
        oil_change = work.records("finance_item").create(
            name="Oil change", kind="service", category_id=engine.id, price="1500.00"
        )
        oil = work.records("finance_item").create(
            name="Motor oil 5W-30",
            kind="goods",
            category_id=parts.id,
            price="900.00",
            unit="l",
            track_stock=True,
        )
        fin.stock.receive(oil.id, branch.id, "10", "400.00")
    with crm.acting_as(users["accountant"]) as work:
        desk = work.records("finance_cash_desk").create(name="Desk 1", location_id=branch.id)
    with crm.acting_as(users["manager"]) as work:
        client = factories.person(work, customer_type="individual")
    return Shop(
        crm=crm,
        **users,
        branch=branch,
        desk=desk,
        engine=engine,
        parts=parts,
        diagnostics=diagnostics,
        oil_change=oil_change,
        oil=oil,
        client=client,
    )


def money(value: str) -> Decimal:
    """Exact money for assertions."""
    return Decimal(value)


def previous_month(crm: Any) -> dt.date:
    """The first day of last month where the business is (a month that is over)."""
    first = utcnow().astimezone(crm.config.zone).date().replace(day=1)
    return (first - dt.timedelta(days=1)).replace(day=1)


def after_month(crm: Any, month: dt.date) -> Any:
    """``frozen_at`` the moment the month of ``month`` is over where the business is (the
    next month's first moment): a month's salaries are accrued once it is over."""
    following = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return frozen_at(dt.datetime.combine(following, dt.time(), crm.config.zone))
