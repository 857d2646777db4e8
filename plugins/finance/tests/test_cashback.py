"""Cashback: accrued on paid orders, spent as money, withdrawn on refunds, expiring."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from crmkit_finance import finance
from crmkit_finance.integrity import problems
from finance_fixtures import money

from crmkit.clock import frozen_at
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


def test_giving_back_an_overpayment_keeps_the_cashback_the_order_earned(shop):
    """The cashback follows what the order is paid now: an overpayment given back takes none,
    half the price given back takes half, and paying again gives it back."""
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop, "2000.00")  # 1500 charged, 500 an advance: 150 earned
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        [payment] = fin.payments.of_order(order.id)
        assert fin.cashback.balance(shop.client.id) == money("150.00")
        fin.payments.refund(payment.id, "500.00")  # the overpayment
        assert fin.orders.totals(order.id).settled
        assert fin.cashback.balance(shop.client.id) == money("150.00")
        fin.payments.refund(payment.id, "750.00")  # half the price
        assert fin.cashback.balance(shop.client.id) == money("75.00")
        again = fin.payments.take(order_id=order.id, amount="750.00", method="transfer")
        assert fin.cashback.balance(shop.client.id) == money("150.00")
        fin.payments.void(again.id, reason="the bank sent it back")
        assert fin.cashback.balance(shop.client.id) == money("75.00")
        [lot] = fin.cashback.lots(shop.client.id)
        assert (lot.amount, lot.remaining) == (money("150.00"), money("75.00"))
        assert problems(work) == []


def test_spent_cashback_is_not_taken_twice_when_more_is_refunded(shop):
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop)  # 150 earned
    with crm.acting_as(shop.manager) as work:
        second = shop.order(work)
        finance(work).orders.add_line(second, shop.diagnostics.id)
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.payments.take(order_id=second.id, amount="120.00", method="cashback")
        [payment] = fin.payments.of_order(order.id)
        fin.payments.refund(payment.id, "1000.00")  # earns 50 now: 100 to take, 30 is left
        assert fin.cashback.balance(shop.client.id) == 0
        fin.payments.refund(payment.id, "500.00")  # nothing left in the lot to take
        assert fin.cashback.balance(shop.client.id) == 0
        assert problems(work) == []


def test_a_cancelled_order_gives_back_its_cashback(shop):
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop)
    with crm.acting_as(shop.manager) as work:
        order = finance(work).orders.get(order.id)
        work.moves.move(order, "in_work", comment="mistake")
        work.moves.move(order, "cancelled", comment="the client left")
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        # the money stays with the client as an advance; what it earned as an order goes
        assert fin.payments.receivable(shop.client.id) == money("-1500.00")
        assert fin.cashback.balance(shop.client.id) == 0
        assert fin.orders.totals(order.id).due == money("-1500.00")
        assert problems(work) == []


def test_a_reopened_order_earns_cashback_on_what_it_charges_now(shop):
    """Reopened and completed again, the order's cashback follows what it earns now: more
    work paid for earns more, less work earns less; the ledger books each difference once."""
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop)  # 1500.00 paid: 150.00
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = fin.orders.get(order.id)
        work.moves.move(order, "in_work", comment="the noise is back")
        fin.orders.add_line(order, shop.diagnostics.id)  # 1000.00 more
        work.moves.move(order, "done")
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.cashback.balance(shop.client.id) == money("150.00")  # not paid yet
        fin.payments.take(order_id=order.id, amount="1000.00", method="transfer")
        assert fin.cashback.balance(shop.client.id) == money("250.00")  # 10 % of 2500
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = fin.orders.get(order.id)
        work.moves.move(order, "in_work", comment="diagnostics was not needed")
        work.moves.move(order, "done")  # completed again as it was: nothing more
        assert fin.cashback.balance(shop.client.id) == money("250.00")
        work.moves.move(order, "in_work", comment="diagnostics was not needed")
        [diagnostics] = [
            line
            for line in fin.orders.lines(order)
            if line.item_id == shop.diagnostics.id and line.recognized_on is None
        ]
        fin.orders.remove_line(diagnostics.id)
        work.moves.move(order, "done")
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        # 1500.00 charged now; the 1000.00 over it is the client's advance and earns nothing
        assert fin.cashback.balance(shop.client.id) == money("150.00")
        # the client's cashback account: each difference booked once, as it happened
        statement = fin.ledger.entries(fin.ledger.cashback(shop.client.id))
        assert [-entry.amount for entry in reversed(statement)] == [
            money("150.00"),
            money("100.00"),
            money("-100.00"),
        ]
        [lot] = fin.cashback.lots(shop.client.id)
        assert lot.remaining == money("150.00")
        assert problems(work) == []


def test_more_work_after_the_cashback_expired_earns_a_lot_of_its_own(shop):
    """An order whose cashback expired, reopened and paid for more work, earns cashback on
    the new work: a new lot with the first one's lifetime, while the expired remainder stays
    expired. Giving that work back takes the new lot's cashback again; the books agree."""
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop)  # 1500.00 paid: 150.00
    with crm.acting_as(shop.manager) as work:
        second = shop.order(work)
        finance(work).orders.add_line(second, shop.diagnostics.id)
    with crm.acting_as(shop.cashier) as work:
        finance(work).payments.take(order_id=second.id, amount="50.00", method="cashback")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.cashback.expire(later) == money("100.00")
        assert fin.cashback.balance(shop.client.id) == 0
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = fin.orders.get(order.id)
        work.moves.move(order, "in_work", comment="the noise is back")
        fin.orders.add_line(order, shop.diagnostics.id)  # 1000.00 more
        work.moves.move(order, "done")
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        payment = fin.payments.take(order_id=order.id, amount="1000.00", method="transfer")
        # 10 % of 2500 earned, 150 given before: 100 more, spendable; the expired 100 not
        assert fin.cashback.balance(shop.client.id) == money("100.00")
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        new, first = fin.cashback.lots(shop.client.id)
        assert (first.order_id, first.remaining, first.expired_at is not None) == (
            order.id,
            money("0.00"),
            True,
        )
        assert (new.amount, new.remaining, new.expired_at) == (
            money("100.00"),
            money("100.00"),
            None,
        )
        assert new.expires_at - new.accrued_at == dt.timedelta(days=30)
        assert fin.cashback.card(shop.client.id)["expiring"] == money("100.00")
        assert problems(work) == []
        fin.cashback.expire()  # nothing is due today: the new lot is not swept away
        assert fin.cashback.balance(shop.client.id) == money("100.00")
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.payments.refund(payment.id, "1000.00")  # earns 150 again: the 100 goes back
        assert fin.cashback.balance(shop.client.id) == 0
        fin.payments.take(order_id=order.id, amount="1000.00", method="transfer")
        assert fin.cashback.balance(shop.client.id) == money("100.00")  # the same lot again
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        # paid again, the cashback goes back to the lot it was taken from: no third lot
        assert [
            (lot.id, lot.amount, lot.remaining) for lot in fin.cashback.lots(shop.client.id)
        ] == [(new.id, money("100.00"), money("100.00")), (first.id, money("150.00"), 0)]
        assert problems(work) == []


def test_a_payment_taken_while_the_order_is_completed_earns_its_cashback(shop):
    """The worker moves the order to done while the cashier takes its payment: each step
    holds the order, so the second sees the first and the cashback is accrued."""
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    with crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.diagnostics.id)
    completing, failures = threading.Event(), []

    def complete():
        try:
            with crm.acting_as(shop.manager) as work:
                work.moves.move(finance(work).orders.get(order.id), "done")
                work.flush()
                completing.set()
                time.sleep(1)  # the payment is taken meanwhile
        except Exception as failed:  # reported by the assertion below
            failures.append(failed)
        finally:
            completing.set()

    def pay():
        completing.wait(10)
        try:
            with crm.acting_as(shop.cashier) as work:
                finance(work).payments.take(order_id=order.id, amount="1000.00", method="transfer")
        except Exception as failed:  # reported by the assertion below
            failures.append(failed)

    threads = [threading.Thread(target=complete), threading.Thread(target=pay)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.orders.totals(order.id).settled
        assert fin.cashback.balance(shop.client.id) == money("100.00")
        assert problems(work) == []


def test_cashback_past_its_date_is_neither_shown_nor_spent_before_the_job_runs(shop):
    """A lot past its date counts for nothing at once: the card does not show it, a cashback
    payment cannot use it; the daily job still books its expiry later."""
    crm = shop.crm
    now = dt.datetime.now(dt.UTC)
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
        fin.cashback.adjust(shop.client.id, "300.00", reason="gift", expiry_days=10)
        fin.cashback.adjust(shop.client.id, "200.00", reason="gift", expiry_days=60)
    with crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id)  # 1500
        work.moves.move(order, "done")
    later = now + dt.timedelta(days=20)  # the first lot is past its date, no job has run
    with frozen_at(later), crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        card = fin.cashback.card(shop.client.id)
        assert card["balance"] == money("200.00")
        assert card["next_expiry"] > later and card["expiring"] == money("200.00")
        with pytest.raises(ValidationFailed, match="only 200.00 RUB of cashback"):
            fin.payments.take(order_id=order.id, amount="500.00", method="cashback")
    with frozen_at(later), crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.payments.take(order_id=order.id, amount="200.00", method="cashback")
        assert fin.cashback.balance(shop.client.id) == money("0.00")
        assert fin.orders.totals(order.id).due == money("1300.00")
    with frozen_at(later), crm.system() as work:
        fin = finance(work)
        assert fin.cashback.expire() == money("300.00")  # the job books what was lost
        assert fin.ledger.balance(fin.ledger.cashback(shop.client.id), "RUB") == money("0.00")
        assert problems(work) == []


def test_cashback_kept_for_more_than_ten_years_is_refused(shop):
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        with pytest.raises(ValidationFailed) as refused:
            fin.cashback.set_program("5", 99999999999, valid_from=dt.date(2020, 1, 1))
        assert "expiry_days" in refused.value.errors
        with pytest.raises(ValidationFailed) as refused:
            fin.cashback.adjust(shop.client.id, "10.00", reason="gift", expiry_days=3651)
        assert "expiry_days" in refused.value.errors
        fin.cashback.set_program("5", 3650, valid_from=dt.date(2020, 1, 1))
    paid_order(shop)  # completed and paid: accrued with the longest lifetime
    with shop.crm.acting_as(shop.cashier) as work:
        assert finance(work).cashback.balance(shop.client.id) == money("75.00")


def test_more_work_paid_once_the_cashback_is_past_its_date_earns_a_lot_of_its_own(shop):
    """The order's lot is past its date and the daily job has not run yet: what the order
    earns more is a new lot the client can spend, not an addition to the lot that is already
    out of reach (and that the job then sweeps away)."""
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop)  # 1500.00 paid: 150.00, for 30 days
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)  # past its date, no job yet
    with frozen_at(later), crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = fin.orders.get(order.id)
        work.moves.move(order, "in_work", comment="the noise is back")
        fin.orders.add_line(order, shop.diagnostics.id)  # 1000.00 more
        work.moves.move(order, "done")
    with frozen_at(later), crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.cashback.balance(shop.client.id) == 0
        fin.payments.take(order_id=order.id, amount="1000.00", method="transfer")
        # 10 % of 2500 earned, 150 given before: the 100 more is there to spend
        assert fin.cashback.balance(shop.client.id) == money("100.00")
        assert fin.cashback.card(shop.client.id)["expiring"] == money("100.00")
    with frozen_at(later), crm.system() as work:
        fin = finance(work)
        assert fin.cashback.expire() == money("150.00")  # only the old lot's remainder
        assert fin.cashback.balance(shop.client.id) == money("100.00")
        assert problems(work) == []


def test_a_refund_once_the_cashback_is_past_its_date_brings_none_of_it_back(shop):
    """The order's lot is past its date when half the payment is refunded (the daily job
    has not run yet), and the client pays again after the job ran: the expired cashback
    stays expired, the client gets none of it back as a new lot."""
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("10", 30, valid_from=dt.date(2020, 1, 1))
    order = paid_order(shop)  # 1500.00 paid: 150.00, for 30 days
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    with frozen_at(later), crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        [payment] = fin.payments.of_order(order.id)
        fin.payments.refund(payment.id, "750.00")
        assert fin.cashback.balance(shop.client.id) == 0
    with frozen_at(later), crm.system() as work:
        assert finance(work).cashback.expire() == money("150.00")  # all of it expired
    with frozen_at(later), crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.payments.take(order_id=order.id, amount="750.00", method="transfer")
        assert fin.cashback.balance(shop.client.id) == 0
        assert [lot.remaining for lot in fin.cashback.lots(shop.client.id)] == [money("0.00")]
        assert problems(work) == []


def test_cashback_that_nets_to_zero_is_zero_not_minus_zero(shop):
    """Given and taken back, or never given: the balance is 0.00, never -0.00."""
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert str(fin.cashback.balance(shop.client.id)) == "0.00"  # nothing booked yet
        fin.cashback.adjust(shop.client.id, "300.00", reason="gift")
        fin.cashback.adjust(shop.client.id, "-300.00", reason="a mistake")
        assert str(fin.cashback.balance(shop.client.id)) == "0.00"
        assert str(fin.cashback.card(shop.client.id)["balance"]) == "0.00"
        assert str(fin.ledger.balance(fin.ledger.cashback(shop.client.id), "RUB")) == "0.00"
