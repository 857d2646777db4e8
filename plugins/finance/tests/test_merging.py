"""Two clients merged: orders, balances and supplier records follow the survivor."""

from __future__ import annotations

import pytest
from crmkit_finance import finance
from crmkit_finance.integrity import problems
from crmkit_finance.model import FinanceAccount, FinancePayment, FinanceSupplier, FinanceTransaction
from finance_fixtures import money
from finance_web import clients
from sqlalchemy import select

from crmkit.errors import ValidationFailed
from crmkit.model import Party
from crmkit.testing import factories


def test_a_merged_clients_debt_is_carried_over_and_its_payments_keep_their_payer(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        double = factories.person(work, customer_type="individual")
        order = shop.order(work, party_id=double.id)
        fin.orders.add_line(order, shop.diagnostics.id)
        fin.orders.complete(order)
    with crm.acting_as(shop.cashier) as work:
        payment = finance(work).payments.take(order_id=order.id, amount="400.00", method="transfer")
        assert finance(work).payments.receivable(double.id) == money("600.00")

    with crm.system() as work:
        work.merges.merge(shop.client.id, double.id)

    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        # the debt is the survivor's now, moved by a transfer; the ledger is not rewritten
        assert fin.payments.receivable(shop.client.id) == money("600.00")
        assert fin.ledger.balances(fin.ledger.receivable(shop.client.id)) == {
            "RUB": money("600.00")
        }
        old = work.session.scalar(
            select(FinanceAccount).where(FinanceAccount.code == f"receivable:party:{double.id}")
        )
        assert old.party_id == double.id and fin.ledger.balances(old) == {"RUB": 0}
        transfer = work.session.scalar(
            select(FinanceTransaction).where(FinanceTransaction.kind == "transfer")
        )
        assert transfer.memo == f"client {double.id} merged into {shop.client.id}"
        assert fin.orders.get(order.id).party_id == shop.client.id
        # the payment stays with who paid it, and counts for the survivor
        assert work.session.get(FinancePayment, payment.id).party_id == double.id
        assert fin.payments.total_paid(shop.client.id) == money("400.00")
        assert problems(work) == []


def test_two_suppliers_merged_keep_the_survivors_record_in_use(shop):
    crm = shop.crm
    with crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        first = work.parties.create(kind="organisation", name="ООО «Масла»")
        second = work.parties.create(kind="organisation", name="Масла", confirm_duplicates=True)
        kept = work.records("finance_supplier").create(party_id=first.id, payment_days=14)
        other = work.records("finance_supplier").create(party_id=second.id, payment_days=7)
        fin.stock.receive(shop.oil.id, shop.branch.id, "2", "400.00", supplier_id=other.id)
        assert fin.purchases.owed_to(other.id) == money("800.00")

    with crm.system() as work:
        work.merges.merge(first.id, second.id)

    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        suppliers = work.session.scalars(select(FinanceSupplier).order_by(FinanceSupplier.id))
        assert [(s.id, s.party_id, s.active) for s in suppliers] == [
            (kept.id, first.id, True),
            (other.id, second.id, False),  # its purchase history, no longer used
        ]
        assert fin.purchases.owed_to(kept.id) == money("800.00")
        assert problems(work) == []


def test_a_supplier_merged_into_a_client_becomes_the_clients_supplier_record(shop):
    crm = shop.crm
    with crm.acting_as(shop.warehouse) as work:
        vendor = work.parties.create(kind="organisation", name="ИП Петров")
        supplier = work.records("finance_supplier").create(party_id=vendor.id)
    with crm.system() as work:
        work.merges.merge(shop.client.id, vendor.id)
        assert work.session.get(FinanceSupplier, supplier.id).party_id == shop.client.id


def test_a_row_a_party_may_have_once_is_never_dropped_by_the_generic_merge(fin_crm):
    """Without the plugin's declaration the core's merge would have to drop a supplier
    record to move the other: it refuses instead, naming the table, and writes nothing."""
    fin_crm.party_merge_columns.clear()  # as a plugin that declares nothing
    with fin_crm.system() as work:
        first = work.parties.create(kind="organisation", name="ООО «Масла»")
        second = work.parties.create(kind="organisation", name="Масла", confirm_duplicates=True)
        work.records("finance_supplier").create(party_id=first.id)
        other = work.records("finance_supplier").create(party_id=second.id)
    with (
        pytest.raises(ValidationFailed, match="both parties have a record in “Supplier”"),
        fin_crm.system() as work,
    ):
        work.merges.merge(first.id, second.id)
    with fin_crm.system() as work:
        assert work.session.get(Party, second.id).merged_into_id is None
        assert work.session.get(FinanceSupplier, other.id).party_id == second.id


def test_a_client_with_money_on_account_is_merged_and_the_ledger_keeps_its_links(shop):
    """An advance paid onto the account and cashback given by hand are ledger transactions
    linked to the client itself (``record_entity = 'party'``): the ledger is append-only,
    so the merge keeps those links (they name who the money was booked for then) and
    carries the balances over instead."""
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        double = factories.person(work, customer_type="individual")
    with crm.acting_as(shop.cashier) as work:
        advance = finance(work).payments.take(
            party_id=double.id, amount="400.00", method="transfer"
        )
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.adjust(double.id, "50.00", reason="a welcome gift")

    with crm.system() as work:
        work.merges.merge(shop.client.id, double.id)
        assert work.session.get(Party, double.id).merged_into_id == shop.client.id

    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        # the advance and the cashback are the survivor's now
        assert fin.payments.receivable(shop.client.id) == money("-400.00")
        assert fin.cashback.balance(shop.client.id) == money("50.00")
        assert fin.payments.total_paid(shop.client.id) == money("400.00")
        paid = work.session.get(FinanceTransaction, advance.transaction_id)
        assert (paid.record_entity, paid.record_id, paid.party_id) == (
            "party",
            double.id,
            double.id,
        )
        assert problems(work) == []
    # the survivor, with a transfer linked to it, can itself be merged later
    with crm.acting_as(shop.manager) as work:
        third = factories.person(work, customer_type="individual")
    with crm.system() as work:
        work.merges.merge(third.id, shop.client.id)
    with crm.acting_as(shop.accountant) as work:
        assert finance(work).payments.receivable(third.id) == money("-400.00")
        assert problems(work) == []


def test_a_merged_suppliers_purchase_orders_go_to_the_survivors_record(shop):
    crm = shop.crm
    with crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        first = work.parties.create(kind="organisation", name="ООО «Масла»")
        second = work.parties.create(kind="organisation", name="Масла", confirm_duplicates=True)
        kept = work.records("finance_supplier").create(party_id=first.id)
        other = work.records("finance_supplier").create(party_id=second.id)
        lines = [{"item_id": shop.oil.id, "qty": "4", "unit_cost": "300.00"}]
        done = fin.purchases.create_order(other.id, shop.branch.id, lines)
        fin.purchases.receive(done.id)
        waiting = fin.purchases.create_order(other.id, shop.branch.id, lines)

    with crm.system() as work:
        work.merges.merge(first.id, second.id)

    with crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        # both purchase orders are the survivor's supplier's, the open one still to come
        assert fin.purchases.get(waiting.id).supplier_id == kept.id
        assert fin.purchases.get(done.id).supplier_id == kept.id
        assert fin.purchases.get(waiting.id).status == "ordered"
        listed = work.records("finance_purchase_order").list(filters={"supplier_id": kept.id})
        assert {p.id for p in listed} == {waiting.id, done.id}
        # the receipt already booked keeps the supplier record it came from (append-only)
        (receipt,) = [m for m in fin.stock.moves(shop.oil.id) if m.purchase_order_id == done.id]
        assert receipt.supplier_id == other.id
        # goods arriving now are owed to the survivor
        fin.purchases.receive(waiting.id)
        assert fin.purchases.owed_to(kept.id) == money("2400.00")
        assert problems(work) == []

    page = clients(crm)("warehouse").get("/finance/purchases")
    row = page.text.split(f'id="purchase-{waiting.id}"', 1)[1].split("</tr>", 1)[0]
    assert "ООО «Масла»" in row
