"""Salary: fixed plus percent of revenue per category, accrual, payout, payslip."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance
from finance_fixtures import after_month, money

from crmkit.clock import frozen_at
from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
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
        with after_month(crm, month):  # a month is accrued once it is over
            slips = fin.payroll.accrue(month)
        assert {s.user_id: s.total for s in slips} == {
            mechanic.id: money("30240.00"),
            helper.id: money("333.30"),
        }
        with pytest.raises(ValidationFailed, match="reverse payslip"), after_month(crm, month):
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
        with after_month(crm, month):
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


def test_a_month_is_accrued_once_its_last_day_is_over_where_the_business_is(shop):
    crm = shop.crm
    zone = crm.config.zone
    with crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            shop.manager.id, fixed_amount="30000.00", valid_from=dt.date(2026, 1, 1)
        )
    last_evening = dt.datetime(2026, 1, 31, 23, 59, tzinfo=zone)
    with frozen_at(last_evening), crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        with pytest.raises(ValidationFailed) as refused:
            fin.payroll.accrue(dt.date(2026, 1, 1))
        assert list(refused.value.errors) == ["month"]
        assert str(refused.value) == (
            "month: 2026-01 is not over yet: its salaries can be accrued from 2026-02-01 on"
        )
        assert fin.payroll.payslips(dt.date(2026, 1, 1)) == []
        assert fin.payroll.owed(shop.manager.id) == 0
    with frozen_at(dt.datetime(2026, 2, 1, tzinfo=zone)), crm.acting_as(shop.accountant) as work:
        [slip] = finance(work).payroll.accrue(dt.date(2026, 1, 15))
        assert slip.total == money("30000.00")
        transaction = finance(work).ledger.get(slip.transaction_id)
        assert transaction.on_date == dt.date(2026, 1, 31)  # the month's cost


def test_unknown_employees_categories_and_accounts_are_refused_naming_the_field(shop):
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        with pytest.raises(ValidationFailed, match="no user 99999") as refused:
            fin.payroll.pay(99999, "10.00")
        assert list(refused.value.errors) == ["user_id"]
        with pytest.raises(ValidationFailed, match="a cash drawer or a bank account") as refused:
            fin.payroll.pay(shop.manager.id, "10.00", paid_from="bank:nowhere")
        assert list(refused.value.errors) == ["paid_from"]
        with pytest.raises(ValidationFailed, match="no category 99999") as refused:
            fin.payroll.set_scheme(
                shop.manager.id, percent="10", rates={99999: "5"}, valid_from=dt.date(2026, 1, 1)
            )
        assert list(refused.value.errors) == ["rates[99999]"]
        assert fin.payroll.scheme_for(shop.manager.id, dt.date(2026, 1, 1)) is None
        with pytest.raises(NotFound):
            fin.payroll.payslip(99999, dt.date(2026, 1, 1))


def test_reading_a_payslip_or_what_is_owed_writes_nothing(shop):
    from crmkit_finance.model import FinanceAccount
    from sqlalchemy import func, select

    def accounts():
        with shop.crm.system() as work:
            return work.session.scalar(select(func.count()).select_from(FinanceAccount))

    before = accounts()
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        slip = fin.payroll.payslip(shop.cashier.id, dt.date(2026, 1, 1))
        assert slip["owed"] == 0 and slip["paid_in_period"] == 0 and not slip["accrued"]
        assert fin.payroll.owed(shop.cashier.id) == 0
        assert fin.payroll.owed_by_user() == {}
    assert accounts() == before
