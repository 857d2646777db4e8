"""Stock: moving average valuation, issues and returns, counts, purchases, low-stock reminders."""

from __future__ import annotations

import threading
import time

import pytest
from crmkit_finance import finance
from crmkit_finance.integrity import problems
from finance_fixtures import money
from sqlalchemy import select

from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.model import Reminder


def test_moving_average_cost_and_last_units_take_the_rest(shop):
    with shop.crm.acting_as(shop.warehouse) as work:
        stock = finance(work).stock
        stock.receive(shop.oil.id, shop.branch.id, "5", "430.00")  # 10 @ 400 + 5 @ 430
        level = stock.level(shop.oil.id, shop.branch.id)
        assert level.qty == 15 and level.value == money("6150.00")
        assert stock.average_cost(level) == money("410.00")
        first = stock.write_off(shop.oil.id, shop.branch.id, "1", reason="spilled")
        assert first.value == money("-410.00")
        stock.receive(shop.oil.id, shop.branch.id, "3", "333.33")  # uneven average
        level = stock.level(shop.oil.id, shop.branch.id)
        values = []
        while level.qty > 0:
            take = min(level.qty, 7)
            values.append(-stock.write_off(shop.oil.id, shop.branch.id, take, reason="used").value)
        assert level.value == 0  # no rounding residue stays in stock
        assert sum(values) == money("5740.00") + money("999.99")
        assert problems(work) == []


def test_purchase_order_for_a_client_order_received_and_paid(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        order = shop.order(work)
    with crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        vendor = work.parties.create(kind="organisation", name="ООО «Масла»")
        supplier = work.records("finance_supplier").create(party_id=vendor.id, payment_days=14)
        purchase = fin.purchases.create_order(
            supplier.id,
            shop.branch.id,
            [{"item_id": shop.oil.id, "qty": "20", "unit_cost": "380.00"}],
            client_order_id=order.id,
        )
        assert purchase.task_id is not None
        assert work.tasks.get(purchase.task_id).record_id == purchase.id
        [line] = fin.purchases.lines(purchase)
        fin.purchases.receive(purchase.id, {line.id: "12"})
        assert purchase.status == "partially_received"
        with pytest.raises(ValidationFailed, match="only 8 outstanding"):
            fin.purchases.receive(purchase.id, {line.id: "9"})
        fin.purchases.receive(purchase.id)
        assert purchase.status == "received"
        assert [p.id for p in fin.purchases.for_order(order.id)] == [purchase.id]
        level = fin.stock.level(shop.oil.id, shop.branch.id)
        assert level.qty == 30 and level.value == money("11600.00")
        subject, body, email = fin.letters.render(purchase.id)
        assert subject == f"Заказ поставщику № {purchase.id}" and email is None
        assert "1. Motor oil 5W-30 — 20 l × 380.00 RUB = 7 600.00 RUB" in body
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.purchases.owed_to(supplier.id) == money("7600.00")
        fin.purchases.pay(supplier.id, "5000.00")
        assert fin.purchases.owed_to(supplier.id) == money("2600.00")
        assert problems(work) == []


def test_inventory_count_and_supplier_return(shop):
    with shop.crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        vendor = work.parties.create(kind="organisation", name="ООО «Склад»")
        supplier = work.records("finance_supplier").create(party_id=vendor.id)
        fin.stock.receive(shop.oil.id, shop.branch.id, "10", "400.00", supplier_id=supplier.id)
        moves = fin.stock.count(shop.branch.id, {shop.oil.id: "18.5"})
        assert [m.qty for m in moves] == [money("-1.5")]
        assert fin.ledger.balance(fin.ledger.account("expense:shrinkage"), "RUB") == money("600.00")
        fin.stock.count(shop.branch.id, {shop.oil.id: "19"})  # surplus at the average cost
        fin.stock.return_to_supplier(shop.oil.id, shop.branch.id, "4", supplier_id=supplier.id)
        assert fin.purchases.owed_to(supplier.id) == money("2400.00")
        assert fin.stock.level(shop.oil.id, shop.branch.id).qty == 15
        assert problems(work) == []


def test_transfer_between_locations_keeps_value(shop):
    with shop.crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        store = work.records("finance_location").create(name="Central store", kind="warehouse")
        out, into = fin.stock.transfer(shop.oil.id, shop.branch.id, store.id, "4")
        assert into.value == -out.value == money("1600.00")
        assert fin.stock.total_value() == money("4000.00")


def test_low_stock_reminds_the_warehouse_once(shop):
    crm = shop.crm
    with crm.acting_as(shop.warehouse) as work:
        finance(work).stock.set_minimum(shop.oil.id, shop.branch.id, "5")
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil.id, qty="6")  # 4 left, below 5
    with crm.acting_as(shop.manager) as work:
        finance(work).orders.add_line(order.id, shop.oil.id, qty="1")  # still low: no repeat
    with crm.system() as work:
        reminders = list(work.session.scalars(select(Reminder)))
    assert len(reminders) == 1
    assert "Low stock: “Motor oil 5W-30” at Branch 1: 4 l left, minimum 5" in reminders[0].text
    with crm.acting_as(shop.warehouse) as work:
        assert [r.id for r in work.reminders.list().items] == [reminders[0].id]
    from crmkit_finance.services.stock import check_low_stock

    assert check_low_stock(crm) == 0  # the pending reminder is enough


def test_cashier_cannot_touch_stock(shop):
    with shop.crm.acting_as(shop.cashier) as work, pytest.raises(PermissionDenied):
        finance(work).stock.receive(shop.oil.id, shop.branch.id, "1", "1.00")


def test_a_receipt_is_paid_at_once_only_from_a_drawer_or_the_bank_by_whom_may_pay(shop):
    crm, client = shop.crm, shop.client
    with crm.acting_as(shop.admin) as work:
        ledger = finance(work).ledger
        for account in (ledger.cashback(client.id), ledger.receivable(client.id)):
            assert ledger.balance(account, "RUB") == 0
    oil, branch = shop.oil.id, shop.branch.id
    # the warehouse head may receive goods but not pay: not even from the bank
    with crm.acting_as(shop.warehouse) as work:
        stock = finance(work).stock
        for source in (f"cashback:party:{client.id}", f"receivable:party:{client.id}", "bank:main"):
            with pytest.raises(ValidationFailed) as refused:
                stock.receive(oil, branch, "1", "500.00", paid_from=source)
            assert "paid_from" in refused.value.errors, source
            assert "who may make payments" in str(refused.value)
    # one who may pay pays from a drawer or the bank, never from a client's account
    drawer = f"cash:desk:{shop.desk.id}"
    with crm.acting_as(shop.admin) as work:
        fin = finance(work)
        for source in (f"cashback:party:{client.id}", f"receivable:party:{client.id}", "nope"):
            with pytest.raises(ValidationFailed, match="a cash drawer or a bank account") as no:
                fin.stock.receive(oil, branch, "1", "500.00", paid_from=source)
            assert list(no.value.errors) == ["paid_from"]
        with pytest.raises(ValidationFailed, match="open a shift at Desk 1 first") as closed:
            fin.stock.receive(oil, branch, "1", "300.00", paid_from=drawer)
        assert list(closed.value.errors) == ["paid_from"]
    with crm.acting_as(shop.cashier) as work:
        shift = finance(work).cashdesk.open_shift(shop.desk.id, "1000.00")  # a surplus booked
    with crm.acting_as(shop.admin) as work:
        fin = finance(work)
        with pytest.raises(ValidationFailed, match="not that much cash in the drawer"):
            fin.stock.receive(oil, branch, "3", "400.00", paid_from=drawer)
        move = fin.stock.receive(oil, branch, "1", "300.00", paid_from=drawer)
        assert fin.ledger.get(move.transaction_id).shift_id == shift.id  # on the shift's report
        fin.stock.receive(oil, branch, "1", "200.00", paid_from="bank:main")
        ledger = fin.ledger
        assert fin.cashdesk.drawer_balance(fin.cashdesk.desk(shop.desk.id)) == money("700.00")
        assert ledger.balance(ledger.account("bank:main"), "RUB") == money("-200.00")
        assert ledger.balance(ledger.cashback(client.id), "RUB") == 0
        assert ledger.balance(ledger.receivable(client.id), "RUB") == 0
        assert fin.stock.level(oil, branch).qty == 12  # the refused receipts left nothing


def test_two_write_offs_of_the_last_units_at_once_take_them_once(shop):
    """The second waits for the first and is refused by name, not with a stale write."""
    crm = shop.crm
    first_wrote, outcomes = threading.Event(), {}

    def write_off(reason, first):
        if not first:
            first_wrote.wait(10)
        try:
            with crm.acting_as(shop.warehouse) as work:
                finance(work).stock.write_off(shop.oil.id, shop.branch.id, "10", reason=reason)
                if first:
                    work.flush()
                    first_wrote.set()
                    time.sleep(1)  # the second one starts meanwhile
            outcomes[reason] = "written off"
        except ValidationFailed as refused:
            outcomes[reason] = str(refused)
        finally:
            first_wrote.set()

    threads = [
        threading.Thread(target=write_off, args=("spilt", True)),
        threading.Thread(target=write_off, args=("spilt too", False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == {
        "spilt": "written off",
        "spilt too": "qty: only 0 l of “Motor oil 5W-30” at Branch 1, 10 needed",
    }
    with crm.acting_as(shop.warehouse) as work:
        assert finance(work).stock.level(shop.oil.id, shop.branch.id).qty == 0
        assert problems(work) == []
