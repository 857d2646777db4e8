"""Cashback: accrued on paid orders, spent as money, withdrawn on refunds, expiring."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance
from crmkit_finance.integrity import problems
from finance_fixtures import money

from crmkit.errors import ValidationFailed


def paid_order(shop, amount="1500.00"):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil_change.id)
        work.moves.move(order, "done")
    with crm.acting_as(shop.cashier) as work:
        finance(work).payments.take(order_id=order.id, amount=amount, method="transfer")
    return order


def test_cashback_accrues_once_paid_and_is_spent_as_money(shop):
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("5", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop, "1000.00")  # partly paid: nothing yet
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.cashback.balance(shop.client.id) == 0
        fin.payments.take(order_id=order.id, amount="500.00", method="transfer")
        card = fin.cashback.card(shop.client.id)
        assert card["balance"] == money("75.00") and card["expiring"] == money("75.00")
    second = paid_order(shop, "1000.00")
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        with pytest.raises(ValidationFailed, match="only 75.00 RUB of cashback"):
            fin.payments.take(order_id=second.id, amount="100.00", method="cashback")
        fin.payments.take(order_id=second.id, amount="75.00", method="cashback")
        assert fin.orders.totals(second.id).due == money("425.00")
        fin.payments.take(order_id=second.id, amount="425.00", method="transfer")
        # cashback is earned on what was paid in money only: 5 % of 1425
        assert fin.cashback.balance(shop.client.id) == money("71.25")
        assert problems(work) == []


def test_refund_withdraws_cashback_and_expiry(shop):
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop)
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        [payment] = fin.payments.of_order(order.id)
        fin.payments.refund(payment.id, "500.00")
        assert fin.cashback.balance(shop.client.id) == money("100.00")  # 150 less a third
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.cashback.adjust(shop.client.id, "50.00", reason="apology", expiry_days=400)
        assert fin.cashback.expire(dt.datetime.now(dt.UTC) + dt.timedelta(days=31)) == money(
            "100.00"
        )
        assert fin.cashback.balance(shop.client.id) == money("50.00")
        assert problems(work) == []
    with crm.acting_as(shop.cashier) as work, pytest.raises(Exception, match="not allowed"):
        finance(work).cashback.adjust(shop.client.id, "10.00", reason="friend")


def test_an_overpayment_earns_no_cashback(shop):
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop, "2000.00")  # 1500 charged, 500 kept as an advance
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.payments.receivable(shop.client.id) == money("-500.00")
        assert fin.cashback.balance(shop.client.id) == money("150.00")  # 10 % of 1500
        assert fin.orders.totals(order.id).due == money("-500.00")


def test_refunding_the_cashback_part_keeps_the_cashback_earned_on_money(shop):
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
        fin.cashback.adjust(shop.client.id, "500.00", reason="welcome gift")
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id)  # 1500
        work.moves.move(order, "done")
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        in_cashback = fin.payments.take(order_id=order.id, amount="500.00", method="cashback")
        fin.payments.take(order_id=order.id, amount="1000.00", method="transfer")
        assert fin.cashback.balance(shop.client.id) == money("100.00")  # 10 % of the 1000
        fin.payments.refund(in_cashback.id)
        # the 500 of cashback comes back; the 100 earned on the money paid stays
        assert fin.cashback.balance(shop.client.id) == money("600.00")
        assert problems(work) == []
