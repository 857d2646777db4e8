"""Salary: fixed plus percent of revenue per category, accrual, payout, payslip."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance
from finance_fixtures import money

from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.testing import add_user


def test_accrual_payout_and_payslip(shop):
    crm = shop.crm
    mechanic = add_user(crm, "mechanic", ["agent"])
    helper = add_user(crm, "helper", ["agent"])
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work, assignee_id=mechanic.id)
        fin.orders.add_line(order, shop.oil_change.id)  # 1500, engine category
        fin.orders.add_line(order, shop.diagnostics.id, performer_id=helper.id)  # 1000
        fin.orders.add_line(order, shop.oil.id, qty="2")  # goods: 1800
        fin.orders.complete(order)
        month = order.completed_on
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.payroll.set_scheme(
            mechanic.id,
            fixed_amount="30000.00",
            percent="10",
            rates={shop.parts.id: "5"},
            valid_from=dt.date(2020, 1, 1),
        )
        fin.payroll.set_scheme(helper.id, percent="33.33", valid_from=dt.date(2020, 1, 1))
        figures = fin.payroll.calculate(mechanic.id, month)
        assert figures["commission"] == money("240.00")  # 10 % of 1500 + 5 % of 1800
        slips = fin.payroll.accrue(month)
        assert {s.user_id: s.total for s in slips} == {
            mechanic.id: money("30240.00"),
            helper.id: money("333.30"),
        }
        with pytest.raises(ValidationFailed, match="reverse payslip"):
            fin.payroll.accrue(month, [mechanic.id])
        fin.payroll.pay(mechanic.id, "20000.00")
        payslip = fin.payroll.payslip(mechanic.id, month)
        assert payslip["owed"] == money("10240.00")
        assert payslip["paid_in_period"] == money("20000.00")
        fin.payroll.reverse(payslip["payslip_id"], reason="wrong percent")
        assert fin.payroll.owed(mechanic.id) == money("-20000.00")  # paid ahead now
        fin.payroll.set_scheme(
            mechanic.id, fixed_amount="30000.00", percent="12", valid_from=dt.date(2020, 1, 1)
        )
        [again] = fin.payroll.accrue(month, [mechanic.id])
        assert again.total == money("30180.00")  # 12 % of services; goods no longer count
        assert fin.ledger.balance(fin.ledger.account("expense:salary"), "RUB") == money("30513.30")


def test_basis_orders_counts_the_whole_order_and_removed_lines(shop):
    crm = shop.crm
    mechanic = add_user(crm, "mechanic", ["agent"])
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work, assignee_id=mechanic.id)
        fin.orders.add_line(order, shop.oil_change.id)
        extra = fin.orders.add_line(order, shop.diagnostics.id, performer_id=shop.manager.id)
        fin.orders.complete(order)
        fin.orders.remove_line(extra, reason="not done")
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.payroll.set_scheme(
            mechanic.id, percent="10", basis="orders", valid_from=dt.date(2020, 1, 1)
        )
        assert fin.payroll.calculate(mechanic.id, order.completed_on)["commission"] == money(
            "150.00"
        )


def test_cashier_cannot_change_salary_settings(shop):
    with shop.crm.acting_as(shop.cashier) as work, pytest.raises(PermissionDenied):
        finance(work).payroll.set_scheme(
            shop.cashier.id, percent="50", valid_from=dt.date(2020, 1, 1)
        )
