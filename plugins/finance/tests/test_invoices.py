"""Corporate clients: contract terms, deferred payment, invoices paid by bank transfer."""

from __future__ import annotations

import datetime as dt

from crmkit_finance import finance
from crmkit_finance.integrity import problems
from finance_fixtures import money


def test_contract_invoice_and_transfer(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        company = work.parties.create(
            kind="organisation", name="ООО «Такси»", customer_type="corporate"
        )
        contract = work.records("finance_contract").create(
            party_id=company.id, number="Д-17", payment_days=10, signed_on="2020-01-01"
        )
        orders = []
        for _ in range(2):
            order = shop.order(work, party_id=company.id)
            assert order.contract_id == contract.id
            fin.orders.add_line(order, shop.oil_change.id)
            work.moves.move(order, "done")
            orders.append(order)
        assert orders[0].due_on == orders[0].completed_on + dt.timedelta(days=10)
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        invoice = fin.invoices.issue([o.id for o in orders])
        assert invoice.amount == money("3000.00")
        assert invoice.number == f"{invoice.issued_on.year}-0001"
        payments = fin.payments.pay_invoice(invoice.id, "2000.00", reference="п/п 45")
        assert [p.order_amount for p in payments] == [money("1500.00"), money("500.00")]
        assert invoice.status == "issued"
        fin.payments.pay_invoice(invoice.id, "1000.00")
        assert invoice.status == "paid"
        assert fin.payments.receivable(company.id) == 0
        document = fin.invoices.document(invoice.id)
        assert document["contract"] == "Д-17" and document["outstanding"] == 0
        second = fin.invoices.issue.__self__  # the service keeps numbering per year
        assert second is fin.invoices
        assert problems(work) == []


def test_overdue_receivables(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        company = work.parties.create(
            kind="organisation", name="АО «Парк»", customer_type="corporate"
        )
        work.records("finance_contract").create(party_id=company.id, number="7", payment_days=5)
        order = shop.order(work, party_id=company.id)
        fin.orders.add_line(order, shop.oil_change.id)
        work.moves.move(order, "done")
    with crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        later = order.completed_on + dt.timedelta(days=6)
        [row] = fin.payments.receivables(as_of=later)
        assert row["client"] == "АО «Парк»" and row["balance"] == row["overdue"] == money("1500.00")
        [row] = fin.payments.receivables(as_of=order.completed_on)
        assert row["overdue"] == 0
