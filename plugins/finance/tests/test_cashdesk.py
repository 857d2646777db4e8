"""The cash desk: shifts and counts, payments by every method, refunds, voids, currencies."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading

import pytest
from crmkit_finance import finance
from crmkit_finance.integrity import problems
from crmkit_finance.services.cashdesk import PaymentService
from finance_fixtures import money
from finance_web import clients

from crmkit.clock import frozen_at
from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.testing import add_user


def completed_order(shop, *lines):
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        for item, qty in lines or ((shop.oil_change, 1),):
            fin.orders.add_line(order, item.id, qty=qty)
        work.moves.move(order, "done")
        return order


def test_shift_counts_and_differences(shop):
    crm = shop.crm
    with crm.acting_as(shop.cashier) as work:
        cashdesk = finance(work).cashdesk
        shift = cashdesk.open_shift(shop.desk.id, counted="0.00")
        with pytest.raises(ValidationFailed, match="already open"):
            cashdesk.open_shift(shop.desk.id, counted="0.00")
    order = completed_order(shop)
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.payments.take(order_id=order.id, amount="1000.00", method="cash", desk_id=shop.desk.id)
        fin.payments.take(order_id=order.id, amount="500.00", method="card", desk_id=shop.desk.id)
        closed = fin.cashdesk.close_shift(shift.id, counted="990.00")
        report = fin.cashdesk.shift_report(shift.id)
    assert closed.closing_expected == money("1000.00")
    assert report["closing_difference"] == money("-10.00")
    assert report["by_method"]["cash"]["received"] == money("1000.00")
    assert report["by_method"]["card"]["received"] == money("500.00")
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        # the shortage is booked: the drawer now holds what was counted
        assert fin.cashdesk.drawer_balance(shop.desk) == money("990.00")
        nxt = fin.cashdesk.open_shift(shop.desk.id, counted="990.00")
        assert nxt.opening_expected == money("990.00")
        assert fin.ledger.balance(fin.ledger.account("expense:cash_difference"), "RUB") == money(
            "10.00"
        )


def test_cash_payment_needs_an_open_shift(shop):
    order = completed_order(shop)
    with (
        pytest.raises(ValidationFailed, match="open a shift at Desk 1 first"),
        shop.crm.acting_as(shop.cashier) as work,
    ):
        finance(work).payments.take(
            order_id=order.id, amount="100.00", method="cash", desk_id=shop.desk.id
        )


def test_partial_payments_prepayment_refund_and_events(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil_change.id)
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(shop.desk.id, counted="0")
        prepayment = fin.payments.take(
            order_id=order.id, amount="500.00", method="cash", desk_id=shop.desk.id
        )
        events = [e.name for e in work.pending_events]
        assert "payment.received" in events
        event = next(e for e in work.pending_events if e.name == "payment.received")
        assert event.party_id == shop.client.id and event.data["amount"] == "500.00"
        # a prepayment: the client's receivable is negative (money paid in advance)
        assert fin.payments.receivable(shop.client.id) == money("-500.00")
    with crm.acting_as(shop.manager) as work:
        work.moves.move(order.id, "done", entity="finance_order")
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.orders.totals(order.id).due == money("1000.00")
        rest = fin.payments.take(order_id=order.id, amount="1000.00", method="transfer")
        assert fin.orders.totals(order.id).due == 0
        assert fin.payments.receivable(shop.client.id) == 0
        refund = fin.payments.refund(prepayment.id, "200.00")
        assert refund.amount == money("-200.00") and refund.method == "cash"
        assert fin.orders.totals(order.id).due == money("200.00")
        assert fin.payments.refunded(prepayment) == money("200.00")
        with pytest.raises(ValidationFailed, match="between 0.01 and 300.00"):
            fin.payments.refund(prepayment.id, "300.01")
        assert fin.payments.total_paid(shop.client.id) == money("1300.00")
        timeline = work.timeline.list(shop.client.id, kinds=["payment"]).items
        assert [a.data["amount"] for a in timeline] == ["-200.00", "1000.00", "500.00"]
        assert rest.shift_id is None
        assert problems(work) == []


def test_orders_are_found_by_what_is_still_due(shop):
    """``due`` (a computed filter field of orders): the total less what was paid, negative
    when overpaid; lists and automation conditions read it."""
    crm = shop.crm
    unpaid, part, full, over = (completed_order(shop) for _ in range(4))
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(shop.desk.id, counted="0")
        for order, amount in ((part, "500.00"), (full, "1500.00"), (over, "2000.00")):
            fin.payments.take(order_id=order.id, amount=amount, method="transfer")
    with crm.acting_as(shop.manager) as work:
        orders = finance(work).orders

        def due(op, value):
            where = {"field": "due", "op": op, "value": value}
            return sorted(o.id for o in orders.list(where=where).items)

        assert due("gt", 0) == [unpaid.id, part.id]
        assert due("lte", 0) == [full.id, over.id]
        assert due("lt", "0") == [over.id]
        assert due("eq", "1 000,00") == [part.id]
        assert due("ne", 1000) == [unpaid.id, full.id, over.id]
        with pytest.raises(ValidationFailed, match="operator contains does not apply"):
            due("contains", 1)
        with pytest.raises(ValidationFailed, match="0.001 has more than 2 decimal places"):
            due("gt", "0.001")
    with crm.acting_as(shop.cashier) as work:
        [payment] = finance(work).payments.of_order(full.id)
        finance(work).payments.refund(payment.id, "100.00", method="transfer")
    with crm.acting_as(shop.manager) as work:
        orders = finance(work).orders
        assert due("gt", 0) == [unpaid.id, part.id, full.id]  # a refund is owed again
    # the orders list filters by it from its query string
    page = clients(crm)("manager").get("/lists/finance_order?f.due__lte=0")
    listed = {int(i) for i in re.findall(r"/records/finance_order/(\d+)", page.text)}
    assert listed == {over.id}


def test_void_reverses_and_only_in_its_shift(shop):
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        shift = fin.cashdesk.open_shift(shop.desk.id, counted="0")
        wrong = fin.payments.take(
            order_id=order.id, amount="15000.00", method="card", desk_id=shop.desk.id
        )
        void = fin.payments.void(wrong.id, reason="typed one zero too many")
        assert void.voids_id == wrong.id
        with pytest.raises(ValidationFailed, match="already voided"):
            fin.payments.void(wrong.id, reason="again")
        right = fin.payments.take(
            order_id=order.id, amount="1500.00", method="card", desk_id=shop.desk.id
        )
        fin.cashdesk.close_shift(shift.id, counted="0")
        with pytest.raises(ValidationFailed, match="shift is closed"):
            fin.payments.void(right.id, reason="late")
        ledger = fin.ledger
        assert ledger.balance(ledger.desk_account(shop.desk.id, "card"), "RUB") == money("1500.00")
        assert fin.orders.totals(order.id).due == 0


def test_a_voided_payment_cannot_be_refunded(shop):
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(shop.desk.id, counted="2000.00")
        wrong = fin.payments.take(
            order_id=order.id, amount="1000.00", method="cash", desk_id=shop.desk.id
        )
        fin.payments.void(wrong.id, reason="entered for the wrong order")
    with (
        pytest.raises(ValidationFailed, match=f"payment {wrong.id} was voided"),
        shop.crm.acting_as(shop.cashier) as work,
    ):
        finance(work).payments.refund(wrong.id)
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        # the money went back once (by the void), not twice
        assert fin.cashdesk.drawer_balance(shop.desk) == money("2000.00")
        assert fin.orders.totals(order.id).due == money("1500.00")
        assert problems(work) == []


def test_two_refunds_of_one_payment_at_once_give_it_back_once(shop):
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        paid = finance(work).payments.take(order_id=order.id, amount="1500.00", method="transfer")
    # both read what is left to refund before either writes (as a double click or two
    # screens would), unless the first holds the payment until it commits
    done, refused = _two_at_once(
        shop,
        (PaymentService, "refunded"),
        lambda fin: fin.payments.refund(paid.id),
        users=(shop.cashier, shop.cashier),
    )
    assert done == 1 and len(refused) == 1 and "between 0.01 and 0.00" in refused[0]
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.payments.refunded(paid) == money("1500.00")
        assert fin.orders.totals(order.id).due == money("1500.00")
        assert problems(work) == []


def test_salary_supplier_and_expense_paid_from_the_drawer_belong_to_its_shift(shop):
    drawer = f"cash:desk:{shop.desk.id}"
    with shop.crm.acting_as(shop.warehouse) as work:
        finance(work).ledger.desk_account(shop.desk.id, "cash")
        vendor = work.parties.create(kind="organisation", name="ООО «Масла»")
        supplier = work.records("finance_supplier").create(party_id=vendor.id)
    pay_outs = (
        lambda fin: fin.payroll.pay(shop.manager.id, "300.00", paid_from=drawer),
        lambda fin: fin.purchases.pay(supplier.id, "200.00", paid_from=drawer),
        lambda fin: fin.expenses.expense("expense:other", "100.00", paid_from=drawer),
    )
    for pay in pay_outs:  # no shift open: the drawer is not to be touched
        with (
            pytest.raises(ValidationFailed, match="open a shift at Desk 1 first"),
            shop.crm.acting_as(shop.accountant) as work,
        ):
            pay(finance(work))
    with shop.crm.acting_as(shop.cashier) as work:
        shift = finance(work).cashdesk.open_shift(shop.desk.id, counted="0")
    for pay in pay_outs:  # an empty drawer pays nothing
        with (
            pytest.raises(ValidationFailed, match="not that much cash in the drawer"),
            shop.crm.acting_as(shop.accountant) as work,
        ):
            pay(finance(work))
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        finance(work).payments.take(
            order_id=order.id, amount="1500.00", method="cash", desk_id=shop.desk.id
        )
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        for pay in pay_outs:
            pay(fin)
        fin.expenses.income("income:other", "50.00", received_into=drawer, note="scrap metal")
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        report = fin.cashdesk.shift_report(shift.id)
        assert [(r["kind"], r["amount"]) for r in report["cash_other"]] == [
            ("salary_payout", money("-300.00")),
            ("supplier_payment", money("-200.00")),
            ("expense", money("-100.00")),
            ("income", money("50.00")),
        ]
        assert report["cash_paid_out"] == money("550.00")
        assert report["expected_cash"] == money("950.00")
        closed = fin.cashdesk.close_shift(shift.id, counted="950.00")
        assert closed.closing_count == closed.closing_expected


def test_one_payment_form_sent_twice_at_once_takes_the_money_once(shop):
    order = completed_order(shop)
    barrier = threading.Barrier(2)
    taken = []

    def take():
        with shop.crm.acting_as(shop.cashier) as work:
            barrier.wait(5)
            payment = finance(work).payments.take(
                order_id=order.id, amount="1500.00", method="transfer", form_token="f-1"
            )
            taken.append(payment.id)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        [payment] = fin.payments.of_order(order.id)
        assert taken == [payment.id, payment.id]  # the repeat gets the first payment back
        assert fin.orders.totals(order.id).due == 0
        # another form (another token) is another payment
        fin.payments.take(order_id=order.id, amount="1.00", method="transfer", form_token="f-2")
        assert fin.orders.totals(order.id).due == money("-1.00")


def test_ledger_entries_cannot_be_edited_or_deleted(shop):
    import sqlalchemy as sa

    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        finance(work).payments.take(order_id=order.id, amount="100.00", method="transfer")
    for statement in (
        "UPDATE finance_entry SET amount = 0",
        "DELETE FROM finance_payment",
        "UPDATE finance_transaction SET memo = 'x'",
        "DELETE FROM finance_stock_move",
    ):
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            shop.crm.engine.begin() as connection,
        ):
            connection.execute(sa.text(statement))


def test_payment_in_another_currency_goes_through_exchange(shop):
    crm = shop.crm
    order = completed_order(shop)  # 1500 RUB
    with crm.acting_as(shop.accountant) as work:
        finance(work).rates.set("USD", "90.00", dt.date(2020, 1, 1))
    with crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        payment = fin.payments.take(
            order_id=order.id, amount="10.00", method="transfer", currency="USD"
        )
        assert payment.order_amount == money("900.00") and payment.base_amount == money("900.00")
        assert fin.orders.totals(order.id).due == money("600.00")
        ledger = fin.ledger
        assert ledger.balance(ledger.account("bank:main"), "USD") == money("10.00")
        for currency, total in work.session.execute(
            sa_text("SELECT currency, SUM(amount) FROM finance_entry GROUP BY currency")
        ):
            assert total == 0, currency


def test_orders_in_foreign_currency_are_reported_in_base(shop):
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).rates.set("EUR", "100.00", dt.date(2020, 1, 1))
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work, currency="EUR")
        line = fin.orders.add_line(order, shop.oil_change.id)  # 1500 RUB list price = 15 EUR
        fin.orders.complete(order)
        assert line.unit_price == money("15.00") and line.base_amount == money("1500.00")
        assert fin.ledger.balance(fin.ledger.receivable(shop.client.id), "EUR") == money("15.00")
        assert fin.ledger.balance(fin.ledger.account("income:services"), "RUB") == money("1500.00")


def test_unknown_rate_is_a_clear_error(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work, currency="USD")
        with pytest.raises(ValidationFailed, match="no USD exchange rate"):
            finance(work).orders.add_line(order, shop.oil_change.id)


def test_worker_roles_without_payment_rights(shop):
    order = completed_order(shop)
    with shop.crm.acting_as(shop.warehouse) as work, pytest.raises(PermissionDenied):
        finance(work).payments.take(order_id=order.id, amount="1", method="transfer")


def sa_text(statement):
    import sqlalchemy as sa

    return sa.text(statement)


def test_a_cashback_payment_is_refunded_to_cashback_and_a_money_payment_in_money(shop):
    """Cashback cannot be turned into cash by refunding a cashback payment by another
    method, nor money into cashback."""
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).cashback.adjust(shop.client.id, "500.00", reason="gift")
    order = completed_order(shop)  # 1500.00
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(shop.desk.id, counted="1000.00")
        in_cashback = fin.payments.take(order_id=order.id, amount="500.00", method="cashback")
        in_cash = fin.payments.take(
            order_id=order.id, amount="1000.00", method="cash", desk_id=shop.desk.id
        )
    for method in ("cash", "card", "transfer"):
        with (
            pytest.raises(
                ValidationFailed,
                match=f"a payment made with cashback goes back to cashback, not by {method}",
            ),
            shop.crm.acting_as(shop.cashier) as work,
        ):
            finance(work).payments.refund(in_cashback.id, method=method, desk_id=shop.desk.id)
    with (
        pytest.raises(
            ValidationFailed, match="a cash payment is refunded in money, not to cashback"
        ),
        shop.crm.acting_as(shop.cashier) as work,
    ):
        finance(work).payments.refund(in_cash.id, "100.00", method="cashback")
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        # nothing left the drawer and no cashback came out of nowhere
        assert fin.cashdesk.drawer_balance(shop.desk) == money("2000.00")
        assert fin.cashback.balance(shop.client.id) == 0
        assert fin.payments.refunded(in_cashback) == 0 == fin.payments.refunded(in_cash)
        # the cashback payment goes back to cashback; a money payment by another money method
        back = fin.payments.refund(in_cashback.id)
        assert back.method == "cashback" and fin.cashback.balance(shop.client.id) == money("500")
        by_transfer = fin.payments.refund(in_cash.id, "100.00", method="transfer")
        assert by_transfer.method == "transfer"
        assert fin.cashdesk.drawer_balance(shop.desk) == money("2000.00")
        assert problems(work) == []


def test_a_refund_form_sent_twice_at_once_gives_the_money_back_once(shop):
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        paid = finance(work).payments.take(order_id=order.id, amount="1500.00", method="transfer")
    barrier = threading.Barrier(2)
    refunds = []

    def refund():
        with shop.crm.acting_as(shop.cashier) as work:
            barrier.wait(5)
            refunds.append(finance(work).payments.refund(paid.id, "300.00", form_token="r-1").id)

    threads = [threading.Thread(target=refund) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.payments.refunded(paid) == money("300.00")
        [given] = [p for p in fin.payments.of_order(order.id) if p.kind == "refund"]
        assert refunds == [given.id, given.id]  # the repeat gets the first refund back
        # another form is another refund
        fin.payments.refund(paid.id, "300.00", form_token="r-2")
        assert fin.payments.refunded(paid) == money("600.00")


def test_money_forms_sent_again_book_once(shop):
    """Taking cash to the bank, an expense, an income, a cashback adjustment and a supplier
    payment, each sent twice with its form's token, take effect once."""
    with shop.crm.acting_as(shop.warehouse) as work:
        vendor = work.parties.create(kind="organisation", name="ООО «Масла»")
        supplier = work.records("finance_supplier").create(party_id=vendor.id)
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(shop.desk.id, counted="0")
        fin.payments.take(order_id=order.id, amount="1500.00", method="cash", desk_id=shop.desk.id)
    for _ in range(2):
        with shop.crm.acting_as(shop.cashier) as work:
            first = finance(work).cashdesk.move_cash(shop.desk.id, "1000.00", form_token="m-1")
        with shop.crm.acting_as(shop.accountant) as work:
            fin = finance(work)
            expense = fin.expenses.expense("expense:rent", "700.00", form_token="e-1")
            income = fin.expenses.income("income:other", "40.00", form_token="i-1")
            gift = fin.cashback.adjust(shop.client.id, "50.00", reason="sorry", form_token="c-1")
            taken = fin.cashback.adjust(shop.client.id, "-20.00", reason="oops", form_token="c-2")
            paid = fin.purchases.pay(supplier.id, "200.00", form_token="p-1")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        ledger = fin.ledger
        assert fin.cashdesk.drawer_balance(shop.desk) == money("500.00")
        assert ledger.balance(ledger.get_account("expense:rent"), "RUB") == money("700.00")
        assert ledger.balance(ledger.get_account("income:other"), "RUB") == money("40.00")
        assert fin.cashback.balance(shop.client.id) == money("30.00")
        assert fin.purchases.owed_to(supplier.id) == money("-200.00")
        # the repeat returns what the first submission wrote
        assert first.kind == "cash_out" and expense.kind == "expense" and income.kind == "income"
        assert gift.amount == money("50.00") and taken.kind == "cashback_withdrawal"
        assert paid.kind == "supplier_payment"
        assert problems(work) == []


def test_a_foreign_currency_payment_refunded_in_parts_leaves_nothing_on_the_order(shop):
    with shop.crm.system() as work:
        finance(work).rates.set("USD", "33.33333333", dt.date(2020, 1, 1))
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.diagnostics.id)  # 1000.00 RUB
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        paid = fin.payments.take(
            order_id=order.id, amount="3.00", method="transfer", currency="USD"
        )
        assert paid.order_amount == money("100.00")
        parts = [fin.payments.refund(paid.id, "1.00") for _ in range(3)]
        # each part its share; the last one what the others left
        assert [p.order_amount for p in parts] == [money("-33.33")] * 2 + [money("-33.34")]
        assert sum(p.base_amount for p in parts) == -paid.base_amount
        assert fin.orders.paid(order.id) == 0
        assert fin.payments.receivable(shop.client.id) == 0
        assert fin.payments.total_paid(shop.client.id) == 0
        assert problems(work) == []


def test_a_payment_without_a_shift_is_voided_only_on_its_business_day(shop):
    """A transfer (no shift) is voided the same business day in the business's time zone
    (Moscow here: 23:30 and 00:30 are two days, although the same UTC date), by one who may
    also refund it; afterwards it is refunded."""
    late_evening = dt.datetime(2030, 3, 4, 20, 30, tzinfo=dt.UTC)  # 23:30 in Moscow
    with frozen_at(late_evening), shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        this_evening = [
            fin.payments.take(party_id=shop.client.id, amount="1000.00", method="transfer")
            for _ in range(2)
        ]
        old = fin.payments.take(
            party_id=shop.client.id,
            amount="500.00",
            method="transfer",
            at=dt.datetime(2029, 1, 10, 9, tzinfo=dt.UTC),
        )
    with (
        frozen_at(late_evening + dt.timedelta(minutes=20)),
        shop.crm.acting_as(shop.cashier) as work,
    ):
        voided = finance(work).payments.void(this_evening[0].id, reason="booked twice")
        assert voided.voids_id == this_evening[0].id
    after_midnight = late_evening + dt.timedelta(hours=1)  # 2030-03-04 21:30 UTC
    for payment, day in ((this_evening[1], "2030-03-04"), (old, "2029-01-10")):
        with (
            pytest.raises(
                ValidationFailed,
                match=rf"a transfer payment can be voided only on the day it is dated \({day}\); "
                "refund it instead",
            ),
            frozen_at(after_midnight),
            shop.crm.acting_as(shop.cashier) as work,
        ):
            finance(work).payments.void(payment.id, reason="oops")
    # the power to void alone is not enough to cancel a payment taken outside a shift
    with shop.crm.system() as work:
        work.permissions.set("cashier", "finance_payment", "refund", "none")
    with (
        pytest.raises(PermissionDenied),
        frozen_at(late_evening),
        shop.crm.acting_as(shop.cashier) as work,
    ):
        finance(work).payments.void(this_evening[1].id, reason="oops")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.payments.receivable(shop.client.id) == money("-1500.00")
        fin.payments.refund(old.id)  # refunding it is the way
        assert fin.payments.receivable(shop.client.id) == money("-1000.00")
        assert problems(work) == []


def test_a_shift_is_its_cashiers(shop):
    """Only the cashier who opened a shift takes payments, refunds, voids and moves cash
    in it; the accountant may close it; a blocked cashier's shift another cashier closes."""
    colleague = add_user(shop.crm, "cashier2", ["cashier"])
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        shift = fin.cashdesk.open_shift(shop.desk.id, counted="0")
        in_cash = fin.payments.take(
            order_id=order.id, amount="1000.00", method="cash", desk_id=shop.desk.id
        )
        by_transfer = fin.payments.take(order_id=order.id, amount="100.00", method="transfer")
    refused = "the shift at Desk 1 was opened by cashier at .*; work at this desk after it is"
    attempts = (
        lambda fin: fin.payments.take(
            order_id=order.id, amount="5.00", method="cash", desk_id=shop.desk.id
        ),
        lambda fin: fin.payments.take(
            order_id=order.id, amount="5.00", method="card", desk_id=shop.desk.id
        ),
        lambda fin: fin.payments.refund(in_cash.id, "5.00"),
        lambda fin: fin.payments.refund(
            by_transfer.id, "5.00", method="cash", desk_id=shop.desk.id
        ),
        lambda fin: fin.payments.void(in_cash.id, reason="not mine"),
        lambda fin: fin.cashdesk.move_cash(shop.desk.id, "5.00"),
    )
    for act in attempts:
        with pytest.raises(ValidationFailed, match=refused), shop.crm.acting_as(colleague) as work:
            act(finance(work))
    with (
        pytest.raises(ValidationFailed, match="opened by cashier; they close it"),
        shop.crm.acting_as(colleague) as work,
    ):
        finance(work).cashdesk.close_shift(shift.id, counted="1000.00")
    with shop.crm.acting_as(colleague) as work:
        fin = finance(work)
        # money that does not go through the drawer is not the shift's business
        fin.payments.refund(by_transfer.id, "5.00")
        assert fin.cashdesk.drawer_balance(shop.desk) == money("1000.00")
        assert fin.cashdesk.current_shift(shop.desk.id).id == shift.id
    # the cashier is blocked with the shift open: their colleague counts and closes it
    with shop.crm.system() as work:
        work.users.block(shop.cashier.id, reason="left")
    with shop.crm.acting_as(colleague) as work:
        fin = finance(work)
        closed = fin.cashdesk.close_shift(shift.id, counted="990.00", note="counted for Anna")
        assert closed.closing_count == money("990.00") and closed.closing_expected == 1000
        mine = fin.cashdesk.open_shift(shop.desk.id, counted="990.00")
        fin.payments.take(order_id=order.id, amount="400.00", method="cash", desk_id=shop.desk.id)
    # the accountant closes any shift (its cashier is not blocked)
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.cashdesk.close_shift(mine.id, counted="1390.00")
        assert fin.cashdesk.current_shift(shop.desk.id) is None
        assert problems(work) == []


def test_a_refund_of_a_cancelled_order_says_it_owes_nothing(shop):
    """``payment.refunded`` tells what the order still owes: a cancelled order owes nothing,
    whatever its total was."""
    order = completed_order(shop)  # 1500
    with shop.crm.acting_as(shop.cashier) as work:
        paid = finance(work).payments.take(order_id=order.id, amount="1000.00", method="transfer")
    with shop.crm.acting_as(shop.manager) as work:
        work.moves.move(order.id, "in_work", entity="finance_order", comment="reopened")
        work.moves.move(order.id, "cancelled", entity="finance_order", comment="client left")
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.payments.refund(paid.id, "400.00")
        event = next(e for e in work.pending_events if e.name == "payment.refunded")
        assert event.data["order_due"] == "0.00"
        assert fin.orders.totals(order.id).due == money("-600.00")  # the client's money


def _at_once(first, second, first_done, timeout=30):
    """Run ``first`` and, once ``first_done`` is set, ``second`` in threads of their own
    (each its own unit of work and connection); what each raised or returned."""
    outcomes = {}

    def run(name, step):
        try:
            outcomes[name] = step()
        except ValidationFailed as refused:
            outcomes[name] = refused

    def then():
        first_done.wait(10)
        run("second", second)

    threads = [threading.Thread(target=run, args=("first", first)), threading.Thread(target=then)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return outcomes


def test_a_shift_closed_while_a_payment_is_posted_counts_it(shop, monkeypatch):
    """The closing waits for a payment being posted into the shift and counts it: the
    payment never lands in a shift whose expected cash left it out."""
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        shift = finance(work).cashdesk.open_shift(shop.desk.id, counted="0")
    posted, closed = threading.Event(), threading.Event()
    announce = PaymentService._announce

    def announce_then_linger(self, *args):
        announce(self, *args)
        posted.set()
        closed.wait(2)  # a closing that does not wait for us is done by now

    monkeypatch.setattr(PaymentService, "_announce", announce_then_linger)

    def pay():
        with shop.crm.acting_as(shop.cashier) as work:
            finance(work).payments.take(
                order_id=order.id, amount="1500.00", method="cash", desk_id=shop.desk.id
            )

    def close():
        try:
            with shop.crm.acting_as(shop.cashier) as work:
                return finance(work).cashdesk.close_shift(shift.id, counted="1500.00").id
        finally:
            closed.set()

    outcomes = _at_once(pay, close, posted)
    monkeypatch.undo()
    assert outcomes == {"first": None, "second": shift.id}
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        report = fin.cashdesk.shift_report(shift.id)
        [payment] = fin.payments.of_order(order.id)
        assert payment.shift_id == shift.id
        assert report["cash_received"] == money("1500.00")
        assert report["expected_cash"] == money("1500.00")
        assert report["closing_difference"] == 0
        assert fin.ledger.balance(fin.ledger.account("expense:cash_difference"), "RUB") == 0


def test_a_payment_posted_while_its_shift_is_closed_is_refused(shop, monkeypatch):
    """A payment waiting for the closing of its shift is refused (open a shift first), not
    posted into the closed shift."""
    order = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        shift = finance(work).cashdesk.open_shift(shop.desk.id, counted="0")
    counting, paying = threading.Event(), threading.Event()
    from crmkit_finance.services.cashdesk import CashDeskService

    book = CashDeskService._book_difference

    def book_then_linger(self, *args):
        book(self, *args)
        counting.set()
        paying.wait(2)  # a payment that does not wait for the closing is posted by now

    monkeypatch.setattr(CashDeskService, "_book_difference", book_then_linger)

    def close():
        with shop.crm.acting_as(shop.cashier) as work:
            return finance(work).cashdesk.close_shift(shift.id, counted="0").id

    def pay():
        try:
            with shop.crm.acting_as(shop.cashier) as work:
                finance(work).payments.take(
                    order_id=order.id, amount="1500.00", method="cash", desk_id=shop.desk.id
                )
        finally:
            paying.set()

    outcomes = _at_once(close, pay, counting)
    monkeypatch.undo()
    assert outcomes["first"] == shift.id
    assert "open a shift at Desk 1 first" in str(outcomes["second"])
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert fin.payments.of_order(order.id) == []
        assert fin.cashdesk.drawer_balance(shop.desk) == 0
        assert problems(work) == []


def _two_at_once(shop, hold, action, users=None):
    """``action(fin)`` by two users at once (``users``; by default the shop's cashier and a
    second one), each on a connection of its own. ``hold`` is ``(class, method name)``:
    each waits for the other right after that method returned, so both read before either
    writes (as a double click or two screens would), unless the other holds a row it needs
    (then it goes on alone after two seconds). Returns how many went through and the texts
    of the refusals."""
    if users is None:
        users = (shop.cashier, add_user(shop.crm, "cashier2", ["cashier"]))
    owner, name = hold
    both_read = threading.Barrier(2)
    read = getattr(owner, name)

    def read_then_wait(self, *args, **kwargs):
        value = read(self, *args, **kwargs)
        # the other one may be waiting for a row we hold: then go on alone
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait(2)
        return value

    done, refused = [], []

    def run(user):
        try:
            with shop.crm.acting_as(user) as work:
                action(finance(work))
            done.append(user)
        except ValidationFailed as refusal:
            refused.append(str(refusal))

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(owner, name, read_then_wait)
        threads = [threading.Thread(target=run, args=(user,)) for user in users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    return len(done), refused


@pytest.mark.parametrize("method", ["transfer", "cashback"])
def test_two_cashiers_taking_the_full_due_at_once_take_it_once(shop, method):
    """Both forms showed 1500 due: the second payment waits for the first, finds nothing
    due and is refused by name (by money or by cashback alike)."""
    order = completed_order(shop)  # 1500
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).cashback.adjust(shop.client.id, "3000.00", reason="welcome gift")
    done, refused = _two_at_once(
        shop,
        (PaymentService, "_desk_and_shift"),
        lambda fin: fin.payments.take(
            order_id=order.id, amount="1500.00", method=method, due="1500.00"
        ),
    )
    assert done == 1 and len(refused) == 1
    assert f"only 0.00 RUB is due on order {order.number}" in refused[0]
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert len(fin.payments.of_order(order.id)) == 1
        assert fin.orders.totals(order.id).due == 0
        assert fin.cashback.balance(shop.client.id) == money(
            "1500.00" if method == "cashback" else "3000.00"
        )
        assert problems(work) == []


def test_two_cashiers_booking_one_invoice_transfer_at_once_book_it_once(shop):
    with shop.crm.acting_as(shop.manager) as work:
        firm = work.parties.create(kind="organisation", name="ООО «Такси»")
        order = shop.order(work, party_id=firm.id)
        finance(work).orders.add_line(order, shop.oil_change.id)
        work.moves.move(order, "done")
    with shop.crm.acting_as(shop.accountant) as work:
        invoice = finance(work).invoices.issue([order.id])
    done, refused = _two_at_once(
        shop,
        (PaymentService, "_desk_and_shift"),
        lambda fin: fin.payments.pay_invoice(invoice.id, "1500.00", due="1500.00"),
    )
    assert done == 1 and len(refused) == 1
    assert f"only 0.00 RUB is due on invoice {invoice.number}" in refused[0]
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        assert len(fin.payments.of_order(order.id)) == 1
        assert fin.payments.receivable(firm.id) == 0  # no second 1500 on the firm's account


def test_a_payment_more_than_what_is_due_now_is_refused_but_an_advance_is_not(shop):
    order = completed_order(shop)  # 1500
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.payments.take(order_id=order.id, amount="1000.00", method="transfer", due="1500.00")
        # a form shown before that payment: 1500 was due, 500 is
        with pytest.raises(ValidationFailed, match="only 500.00 RUB is due on order"):
            fin.payments.take(order_id=order.id, amount="1500.00", method="transfer", due="1500.00")
        # what is due now, from the same old form, is taken
        fin.payments.take(order_id=order.id, amount="500.00", method="transfer", due="1500.00")
        assert fin.orders.totals(order.id).due == 0
    other = completed_order(shop)
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        # the due is what the form showed: paying more on purpose is an advance
        fin.payments.take(order_id=other.id, amount="2000.00", method="transfer", due="1500.00")
        assert fin.orders.totals(other.id).due == money("-500.00")


def test_two_cashiers_opening_one_desk_at_once_open_one_shift(shop):
    """Both read "no shift open" before either writes (unless the desk is held): the
    second waits for the first and is refused by name, not a database error."""
    from crmkit_finance.services.cashdesk import CashDeskService

    done, refused = _two_at_once(
        shop,
        (CashDeskService, "current_shift"),
        lambda fin: fin.cashdesk.open_shift(shop.desk.id, counted="0.00"),
    )
    assert done == 1 and len(refused) == 1, refused
    assert "a shift is already open at Desk 1" in refused[0]
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.cashdesk.current_shift(shop.desk.id) is not None
        assert problems(work) == []


def test_an_amount_is_typed_in_plain_digits_and_within_a_trillion(shop):
    """ "1e5" is not 100 000 ₽, a twenty-digit amount is refused naming the field (not an
    overflow), and grouped digits with a decimal comma still read as the number."""
    order = completed_order(shop)  # 1500 RUB
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(shop.desk.id, counted="0")
        for typed, reason in (
            ("1e5", "is not a number"),
            ("1,500.00", "is not a number"),
            ("15 00", "is not a number"),
            ("NaN", "is not a number"),
            ("99999999999999999999", "is too large: at most 999999999999.99"),
        ):
            with pytest.raises(ValidationFailed) as refused:
                fin.payments.take(
                    order_id=order.id, amount=typed, method="cash", desk_id=shop.desk.id
                )
            assert list(refused.value.errors) == ["amount"], typed
            assert reason in str(refused.value), typed
        assert fin.payments.of_order(order.id) == []
        paid = fin.payments.take(
            order_id=order.id, amount="1\u202f000,50", method="cash", desk_id=shop.desk.id
        )
        assert paid.amount == money("1000.50")
        assert fin.orders.totals(order.id).due == money("499.50")
    with shop.crm.acting_as(shop.accountant) as work, pytest.raises(ValidationFailed) as refused:
        finance(work).rates.set("USD", "99999999999", dt.date(2020, 1, 1))
    assert list(refused.value.errors) == ["rate"] and "is too large" in str(refused.value)
    with shop.crm.acting_as(shop.admin) as work:
        fin = finance(work)
        draft = shop.order(work)
        with pytest.raises(ValidationFailed, match="qty: quantity times price comes to"):
            fin.orders.add_line(
                draft, shop.oil_change.id, qty="999999999", unit_price="999999999.00"
            )
        assert fin.orders.lines(draft) == []
