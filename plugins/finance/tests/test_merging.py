"""Two clients merged: orders, balances and supplier records follow the survivor."""

from __future__ import annotations

import pytest
from crmkit_finance import finance
from crmkit_finance.integrity import problems
from crmkit_finance.model import FinanceAccount, FinancePayment, FinanceSupplier, FinanceTransaction
from finance_fixtures import money
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
