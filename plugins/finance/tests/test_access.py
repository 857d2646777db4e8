"""Each finance role reaches what it needs and nothing else, in the services themselves."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance
from finance_web import clients

from crmkit.errors import NotFound, PermissionDenied
from crmkit.testing import add_user

MONTH = dt.date(2026, 1, 1)

#: (what, how) -> which roles may do it
OPERATIONS = {
    "take a payment": lambda fin, shop: fin.payments.take(
        party_id=shop.client.id, amount="1.00", method="transfer"
    ),
    "read the ledger": lambda fin, shop: fin.ledger.trial_balance(),
    "accrue salaries": lambda fin, shop: fin.payroll.accrue(MONTH),
    "set a pay scheme": lambda fin, shop: fin.payroll.set_scheme(
        shop.manager.id, percent="5", valid_from=MONTH
    ),
    "receive goods": lambda fin, shop: fin.stock.receive(shop.oil.id, shop.branch.id, "1", "1.00"),
    "read stock": lambda fin, shop: fin.stock.levels(),
    "record an expense": lambda fin, shop: fin.expenses.expense("expense:rent", "1.00"),
    "set the cashback program": lambda fin, shop: fin.cashback.set_program("3", 30),
    "read a cashback balance": lambda fin, shop: fin.cashback.balance(shop.client.id),
    "set a plan": lambda fin, shop: fin.plans.set(MONTH, "revenue", "1.00"),
    "create an order": lambda fin, shop: fin.orders.create(
        party_id=shop.client.id, location_id=shop.branch.id
    ),
}

ALLOWED = {
    "cashier": {"take a payment", "read a cashback balance"},
    "accountant": set(OPERATIONS) - {"receive goods", "create an order"},
    "warehouse": {"receive goods", "read stock"},
    "director": {"read the ledger", "read stock", "read a cashback balance", "set a plan"},
    "manager": {"create an order", "read a cashback balance"},
}


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_role_matrix(shop, role):
    user = getattr(shop, role)
    reached = set()
    for what, operation in OPERATIONS.items():
        try:
            with shop.crm.acting_as(user) as work:
                operation(finance(work), shop)
        except (PermissionDenied, NotFound):
            continue
        reached.add(what)
    assert reached == ALLOWED[role]


def test_what_was_paid_filters_only_for_who_reads_payments(shop):
    """``total_paid`` of a client and ``due`` of an order come from the payments: who may
    list clients or orders but not read payments (the warehouse head, a core agent) cannot
    read them a threshold at a time, in the services, the lists or the API."""
    crm = shop.crm
    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(shop.cashier) as work:
        finance(work).payments.take(party_id=shop.client.id, amount="1000.00", method="transfer")
    with crm.acting_as(agent) as work:
        own = work.parties.create(kind="person", first_name="Олег", last_name="Свой")
    for user in (shop.warehouse, agent):
        with crm.acting_as(user) as work:
            with pytest.raises(PermissionDenied, match="filtering by “Total paid”"):
                work.parties.list(filters={"total_paid__gte": "999"})
            with pytest.raises(PermissionDenied):
                work.parties.count(where={"field": "total_paid", "op": "lt", "value": 1})
    with crm.acting_as(shop.warehouse) as work:
        with pytest.raises(PermissionDenied, match="filtering by “Due”"):
            work.records("finance_order").list(filters={"due__lte": "0"})
        secret = work.api_tokens.create("probe").secret
    with crm.acting_as(shop.manager) as work:  # who reads payments filters by them
        rich = work.parties.list(filters={"total_paid__gte": "999"}).items
        assert [p.id for p in rich] == [shop.client.id]
    signed_in = clients(crm)
    warehouse = signed_in("warehouse")
    for probe in ("999", "1001"):
        page = warehouse.get(f"/lists/party?f.total_paid__gte={probe}")
        assert page.status_code == 403 and f"/clients/{shop.client.id}" not in page.text
    assert warehouse.get("/lists/party").status_code == 200  # the list itself stays theirs
    answer = warehouse.get(
        "/api/v1/party?total_paid__gte=999", headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status_code == 403
    assert "“Total paid”" in answer.json()["detail"]
    page = signed_in("manager").get("/lists/party?f.total_paid__gte=999")
    assert page.status_code == 200 and f"/clients/{shop.client.id}" in page.text
    assert f"/clients/{own.id}" not in page.text


def test_the_warehouse_head_edits_the_suppliers_they_created_not_clients(shop):
    """The README's "creates supplier parties": a new supplier is theirs to edit, a client
    is not (it was every party, at scope all)."""
    with shop.crm.acting_as(shop.warehouse) as work:
        supplier = work.parties.create(kind="organisation", name="ООО «Масла оптом»")
        work.parties.update(supplier.id, description="масла, фильтры")
        with pytest.raises(PermissionDenied):
            work.parties.update(shop.client.id, description="не наш клиент")
        assert work.parties.get(shop.client.id).description != "не наш клиент"
    with shop.crm.acting_as(shop.manager) as work:
        assert work.parties.get(supplier.id).description == "масла, фильтры"
        assert work.parties.get(shop.client.id).description != "не наш клиент"
