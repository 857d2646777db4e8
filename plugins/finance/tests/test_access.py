"""Each finance role reaches what it needs and nothing else, in the services themselves."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance

from crmkit.errors import NotFound, PermissionDenied

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
