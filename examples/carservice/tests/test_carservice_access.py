"""Who sees what: a worker only their own orders and no money, the cashier no salaries."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_carservice import carservice
from crmkit_finance import finance

from crmkit.errors import NotFound, PermissionDenied


def test_a_worker_sees_only_the_orders_assigned_to_them(station):
    mine = station.order("ivan")
    theirs = station.order("petr")
    with station.crm.acting_as(station.ivan) as work:
        orders = work.records("finance_order")
        assert [o.id for o in orders.list()] == [mine.id]
        assert orders.count() == 1
        with pytest.raises(NotFound):
            orders.get(theirs.id)
        with pytest.raises(NotFound):
            work.moves.move(theirs.id, "in_work", entity="finance_order")
        # the plate search shows the car, but only the worker's own order of it
        views = carservice(work).views(list(orders.list()))
        assert views[0].car.plate == "А123ВС77" and views[0].client_name == "Сергей Волков"


def test_a_worker_reaches_no_money(station):
    station.order("ivan")
    crm = station.crm
    with crm.acting_as(station.ivan) as work:
        for entity in ("finance_payment", "finance_ledger", "finance_payroll", "finance_cashback"):
            assert not work.access.can(entity, "read"), entity
        with pytest.raises(PermissionDenied):
            work.records("finance_payment").list()
        for report in ("finance.director", "finance.revenue", "finance.salaries", "finance.shift"):
            with pytest.raises(PermissionDenied):
                crm.reports[report].build(work, {})
        # and no client base either
        assert not work.access.can("party", "read")


def test_the_cashier_cannot_change_salary_settings(station):
    with station.crm.acting_as(station.cashier) as work:
        with pytest.raises(PermissionDenied):
            finance(work).payroll.set_scheme(
                station.ivan.id, percent="30", valid_from=dt.date(2026, 1, 1)
            )
        assert not work.access.can("finance_pay_scheme", "read")
    with station.crm.acting_as(station.accountant) as work:
        finance(work).payroll.set_scheme(
            station.ivan.id, percent="30", valid_from=dt.date(2026, 1, 1)
        )


def test_every_role_lands_on_its_own_workspace(station):
    crm = station.crm
    assert crm.roles["worker"].start_screen == "carservice-my"
    assert crm.roles["manager"].start_screen == "carservice-desk"
    assert crm.roles["director"].start_screen == "carservice-director"
    assert crm.roles["cashier"].start_screen == "finance_cashdesk"
    for name in ("carservice-my", "carservice-desk", "carservice-director"):
        assert name in crm.screens
