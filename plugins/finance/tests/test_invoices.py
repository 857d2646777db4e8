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


def _invoiced(shop, *items):
    """A corporate client's completed orders (one per item) and an invoice for them."""
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        company = work.parties.create(
            kind="organisation", name="ООО «Такси»", customer_type="corporate"
        )
        orders = []
        for item in items:
            order = shop.order(work, party_id=company.id)
            fin.orders.add_line(order, item.id)
            work.moves.move(order, "done")
            orders.append(order)
    with shop.crm.acting_as(shop.accountant) as work:
        invoice = finance(work).invoices.issue([o.id for o in orders])
    return company, orders, invoice


def test_the_invoice_status_follows_its_money_both_ways(shop):
    _company, (first, _second), invoice = _invoiced(shop, shop.diagnostics, shop.oil_change)
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        payments = fin.payments.pay_invoice(invoice.id, "2500.00")
        assert fin.invoices.get(invoice.id).status == "paid"
        fin.payments.void(payments[0].id, reason="the bank sent it back")
        invoice = fin.invoices.get(invoice.id)
        assert (invoice.status, fin.invoices.outstanding(invoice)) == ("issued", money("1000.00"))
    with shop.crm.acting_as(shop.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(shop.desk.id, counted="0")
        # paid at the desk instead: the invoice is paid all the same
        cash = fin.payments.take(
            order_id=first.id, amount="1000.00", method="cash", desk_id=shop.desk.id
        )
        assert fin.invoices.get(invoice.id).status == "paid"
        fin.payments.refund(cash.id, "400.00")
        assert fin.invoices.get(invoice.id).status == "issued"
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        cancelled = fin.invoices.cancel(invoice.id, reason="a new one with the right amount")
        assert cancelled.status == "cancelled"
        assert fin.orders.get(first.id).invoice_id is None
        assert problems(work) == []


def test_a_cancelled_order_leaves_its_invoice(shop):
    company, (first, second), invoice = _invoiced(shop, shop.diagnostics, shop.oil_change)
    with shop.crm.acting_as(shop.manager) as work:
        order = finance(work).orders.get(first.id)
        work.moves.move(order, "in_work", comment="mistake")
        work.moves.move(order, "cancelled", comment="the client left")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.orders.get(first.id).invoice_id is None
        assert fin.orders.totals(first.id).due == 0
        where = {"field": "due", "op": "gt", "value": 0}
        assert [o.id for o in fin.orders.list(where=where).items] == [second.id]
        invoice = fin.invoices.get(invoice.id)
        assert fin.invoices.outstanding(invoice) == money("1500.00")
        [payment] = fin.payments.pay_invoice(invoice.id, "1500.00")
        assert payment.order_id == second.id and invoice.status == "paid"
        assert fin.payments.receivable(company.id) == 0
    with shop.crm.acting_as(shop.manager) as work:
        order = finance(work).orders.get(second.id)
        work.moves.move(order, "in_work", comment="redo")
        work.moves.move(order, "cancelled", comment="not needed")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        # its last order gone, the invoice is withdrawn; the transfer stays an advance
        assert fin.invoices.get(invoice.id).status == "cancelled"
        assert fin.payments.receivable(company.id) == money("-1500.00")
        assert problems(work) == []


def test_receivables_name_only_clients_their_reader_may_read(shop):
    """A role reading payments (its own) and handed the receivables reads who owes what
    with the clients it may not read blank, neither named nor linked by id; the
    accountant, who reads every client, reads the name."""
    from crmkit_finance.reports import run_report

    from crmkit.testing import add_user

    crm = shop.crm
    mechanic = add_user(crm, "mechanic", ["agent"])
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        company = work.parties.create(
            kind="organisation", name="АО «Парк»", customer_type="corporate"
        )
        order = shop.order(work, party_id=company.id)
        fin.orders.add_line(order, shop.oil_change.id)
        work.moves.move(order, "done")
    with crm.system() as work:
        work.permissions.set("agent", "finance_payment", "read", "own")
        work.permissions.set("agent", "finance_payment", "report", "own")
    with crm.acting_as(mechanic) as work:
        rows = finance(work).payments.receivables()
        report = run_report(work, "finance.receivables", {})
    assert [(r["client"], r["party_id"], r["balance"]) for r in rows] == [
        ("", None, money("1500.00"))
    ]
    assert [r["client"] for r in report.rows] == [""]
    with crm.acting_as(shop.accountant) as work:
        [row] = finance(work).payments.receivables()
    assert (row["client"], row["party_id"]) == ("АО «Парк»", company.id)
