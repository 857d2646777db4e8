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


def test_an_order_done_again_by_another_worker_pays_the_one_who_did_it_again(shop):
    """Ivan does the oil change in March; in April the order is reopened, given to Petr and
    done again: April takes Ivan's percent back and pays Petr's. The diagnostics were given
    to the helper by hand, and stay the helper's whoever holds the order."""
    crm = shop.crm
    ivan = add_user(crm, "ivan", ["agent"])
    petr = add_user(crm, "petr", ["agent"])
    helper = add_user(crm, "helper", ["agent"])
    zone = crm.config.zone
    with frozen_at(dt.datetime(2026, 3, 20, 12, tzinfo=zone)), crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work, assignee_id=ivan.id)
        fin.orders.add_line(order, shop.oil_change.id)  # 1500
        fin.orders.add_line(order, shop.diagnostics.id, performer_id=helper.id)  # 1000
        fin.orders.complete(order)
    with frozen_at(dt.datetime(2026, 4, 6, 12, tzinfo=zone)), crm.acting_as(shop.manager) as work:
        fin = finance(work)
        fin.orders.reopen(order, reason="the oil leaks")
        fin.orders.update(order, assignee_id=petr.id)
        fin.orders.complete(order)
    with crm.acting_as(shop.accountant) as work:
        payroll = finance(work).payroll
        for worker in (ivan, petr, helper):
            payroll.set_scheme(
                worker.id, percent="10", basis="lines", valid_from=dt.date(2020, 1, 1)
            )

        def percent(worker, month):
            return payroll.calculate(worker.id, month)["commission"]

        march, april = dt.date(2026, 3, 1), dt.date(2026, 4, 1)
        assert (percent(ivan, march), percent(petr, march)) == (money("150.00"), money("0.00"))
        assert percent(ivan, april) == money("-150.00")  # his oil change credited back
        assert percent(petr, april) == money("150.00")  # and done again by Petr
        assert (percent(helper, march), percent(helper, april)) == (
            money("100.00"),
            money("0.00"),  # credited back and done again, by the helper both times
        )


def test_a_performer_chosen_by_hand_stays_when_the_order_changes_hands(shop):
    """Ivan holds the order and is also chosen by hand for the oil change (his speciality);
    the diagnostics are left to whoever holds the order, and the oil is given to him by
    editing its line. Reopened in April and given to Petr, the hand-chosen lines stay
    Ivan's and the diagnostics follow the order to Petr."""
    crm = shop.crm
    ivan = add_user(crm, "ivan", ["agent"])
    petr = add_user(crm, "petr", ["agent"])
    zone = crm.config.zone
    with frozen_at(dt.datetime(2026, 3, 20, 12, tzinfo=zone)), crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work, assignee_id=ivan.id)
        fin.orders.add_line(order, shop.oil_change.id, performer_id=ivan.id)  # 1500, by hand
        fin.orders.add_line(order, shop.diagnostics.id)  # 1000, whoever holds the order
        oil = fin.orders.add_line(order, shop.oil.id)
        fin.orders.update_line(oil, performer_id=ivan.id)  # by hand, on the line's form
        fin.orders.complete(order)
    with frozen_at(dt.datetime(2026, 4, 6, 12, tzinfo=zone)), crm.acting_as(shop.manager) as work:
        fin = finance(work)
        fin.orders.reopen(order, reason="the oil leaks")
        fin.orders.update(order, assignee_id=petr.id)
        reopened = {
            line.item_id: line.performer_id
            for line in fin.orders.lines(order)
            if line.recognized_on is None
        }
        assert reopened == {
            shop.oil_change.id: ivan.id,
            shop.diagnostics.id: None,
            shop.oil.id: ivan.id,
        }
        fin.orders.complete(order)
        done_again = {
            line.item_id: line.performer_id
            for line in fin.orders.lines(order)
            if line.added_at.date() == dt.date(2026, 4, 6) and line.reverses_line_id is None
        }
        assert done_again == {
            shop.oil_change.id: ivan.id,
            shop.diagnostics.id: petr.id,
            shop.oil.id: ivan.id,
        }
    with crm.acting_as(shop.accountant) as work:
        payroll = finance(work).payroll
        for worker in (ivan, petr):
            payroll.set_scheme(
                worker.id, percent="10", basis="lines", valid_from=dt.date(2020, 1, 1)
            )

        def percent(worker, month):
            return payroll.calculate(worker.id, month)["commission"]

        march, april = dt.date(2026, 3, 1), dt.date(2026, 4, 1)
        assert (percent(ivan, march), percent(petr, march)) == (money("250.00"), money("0.00"))
        # April: Ivan's diagnostics credited back, his oil change credited and done again
        assert percent(ivan, april) == money("-100.00")
        assert percent(petr, april) == money("100.00")  # the diagnostics, done again by Petr


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


def _block_and_unblock(shop, user, *moments):
    """Block ``user`` at the first moment, unblock at the next, block again... (local times)."""
    zone = shop.crm.config.zone
    for number, (day, hour) in enumerate(moments):
        with (
            frozen_at(dt.datetime.combine(day, dt.time(hour), zone)),
            shop.crm.acting_as(shop.admin) as work,
        ):
            if number % 2 == 0:
                work.users.block(user.id, reason="leave")
            else:
                work.users.unblock(user.id)


def _accrued_fixed(shop, user, month):
    """The fixed part the month's accrual pays, checked against the preview first."""
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        preview = fin.payroll.calculate(user.id, month)
        with after_month(shop.crm, month):
            slips = fin.payroll.accrue(month, [user.id])
        accrued = slips[0].fixed_amount if slips else money("0.00")
        assert accrued == preview["fixed_amount"], (month, accrued, preview)
        return accrued


def test_fixed_pay_follows_the_days_between_blocking_and_unblocking(shop):
    """Blocked on 10 September in the evening and unblocked on the 20th in the morning: the
    11th to the 19th (9 days) are not paid, 21 of September's 30 days are; October is whole."""
    worker = add_user(shop.crm, "worker", ["agent"])
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            worker.id, fixed_amount="30000.00", valid_from=dt.date(2020, 1, 1)
        )
    _block_and_unblock(shop, worker, (dt.date(2025, 9, 10), 18), (dt.date(2025, 9, 20), 9))
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.payroll.blocked_periods(worker.id) == [
            (dt.date(2025, 9, 11), dt.date(2025, 9, 19))
        ]
        assert fin.payroll.calculate(worker.id, dt.date(2025, 9, 1))["paid_days"] == 21
    assert _accrued_fixed(shop, worker, dt.date(2025, 8, 1)) == money("30000.00")
    assert _accrued_fixed(shop, worker, dt.date(2025, 9, 1)) == money("21000.00")  # 21/30
    assert _accrued_fixed(shop, worker, dt.date(2025, 10, 1)) == money("30000.00")
    with shop.crm.acting_as(shop.accountant) as work:
        slip = finance(work).payroll.payslip(worker.id, dt.date(2025, 9, 1))
        assert (slip["fixed_amount"], slip["paid_days"], slip["month_days"]) == (
            money("21000.00"),
            21,
            30,
        )


def test_fixed_pay_with_several_blockings_in_a_month_and_one_still_in_force(shop):
    """November 2025 (30 days): blocked on the 3rd, back on the 6th (4th, 5th unpaid);
    blocked on the 10th, back on the 12th (11th unpaid); blocked on the 25th for good
    (26th to 30th unpaid): 8 days unpaid, 22 paid; nothing in December."""
    worker = add_user(shop.crm, "worker", ["agent"])
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            worker.id, fixed_amount="30000.00", valid_from=dt.date(2020, 1, 1)
        )
    _block_and_unblock(
        shop,
        worker,
        (dt.date(2025, 11, 3), 17),
        (dt.date(2025, 11, 6), 9),
        (dt.date(2025, 11, 10), 12),
        (dt.date(2025, 11, 12), 8),
        (dt.date(2025, 11, 25), 19),
    )
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.payroll.blocked_on(worker.id) == dt.date(2025, 11, 25)
        assert fin.payroll.blocked_days(worker.id, dt.date(2025, 11, 1), dt.date(2025, 11, 30))
        assert fin.payroll.calculate(worker.id, dt.date(2025, 11, 1))["paid_days"] == 22
    assert _accrued_fixed(shop, worker, dt.date(2025, 11, 1)) == money("22000.00")
    assert _accrued_fixed(shop, worker, dt.date(2025, 12, 1)) == money("0.00")


def test_fixed_pay_for_a_whole_month_blocked_and_an_unblocking_mid_month(shop):
    """Blocked on 28 August 2025, back on 15 October: 28 of August's 31 days are paid,
    none of September's, and 17 of October's 31 (the 15th to the 31st); the percent of
    revenue is for work done and is never cut."""
    worker = add_user(shop.crm, "worker", ["agent"])
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            worker.id, fixed_amount="31000.00", percent="10", valid_from=dt.date(2020, 1, 1)
        )
    _block_and_unblock(shop, worker, (dt.date(2025, 8, 28), 20), (dt.date(2025, 10, 15), 10))
    zone = shop.crm.config.zone
    with (
        frozen_at(dt.datetime(2025, 10, 20, 12, tzinfo=zone)),
        shop.crm.acting_as(shop.manager) as work,
    ):
        order = shop.order(work, assignee_id=worker.id)
        finance(work).orders.add_line(order, shop.oil_change.id)  # 1500
        finance(work).orders.complete(order)
    assert _accrued_fixed(shop, worker, dt.date(2025, 8, 1)) == money("28000.00")  # 28/31
    assert _accrued_fixed(shop, worker, dt.date(2025, 9, 1)) == money("0.00")
    assert _accrued_fixed(shop, worker, dt.date(2025, 10, 1)) == money("17000.00")  # 17/31
    with shop.crm.acting_as(shop.accountant) as work:
        slip = finance(work).payroll.payslip(worker.id, dt.date(2025, 10, 1))
        assert slip["commission"] == money("150.00") and slip["total"] == money("17150.00")


def test_blocked_and_unblocked_within_a_day_loses_no_pay(shop):
    """A blocking undone the same day, or the next morning, leaves no whole day blocked."""
    worker = add_user(shop.crm, "worker", ["agent"])
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            worker.id, fixed_amount="30000.00", valid_from=dt.date(2020, 1, 1)
        )
    _block_and_unblock(
        shop,
        worker,
        (dt.date(2025, 6, 5), 10),
        (dt.date(2025, 6, 5), 11),
        (dt.date(2025, 6, 9), 22),
        (dt.date(2025, 6, 10), 8),
    )
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).payroll.blocked_periods(worker.id) == []
    assert _accrued_fixed(shop, worker, dt.date(2025, 6, 1)) == money("30000.00")
