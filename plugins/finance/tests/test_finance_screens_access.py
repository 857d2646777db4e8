"""Who sees which finance screen: menus per role, and 404 for everything a role lacks."""

from __future__ import annotations

import re

import pytest
from crmkit_finance import finance
from crmkit_finance import plugin as finance_plugin
from finance_fixtures import build_shop
from finance_web import clients

from crmkit import hookimpl
from crmkit.access.rules import Role, Scope, grant
from crmkit.testing import add_user

MONEY_MENU = {
    "/finance/cashdesk",
    "/finance/receivables",
    "/finance/invoices",
    "/finance/payroll",
    "/finance/cashback",
    "/finance/expenses",
    "/finance/stock",
    "/finance/purchases",
}
MENUS = {
    # the cashier looks up a client's cashback (read only)
    "cashier": {
        "/finance/cashdesk",
        "/finance/receivables",
        "/finance/invoices",
        "/finance/cashback",
    },
    "accountant": MONEY_MENU,
    "warehouse": {"/finance/stock", "/finance/purchases"},
    "director": MONEY_MENU - {"/finance/cashdesk"},
}


class WorkerRole:
    """A deployment's worker: sees and moves the orders assigned to them, nothing of money."""

    @hookimpl
    def crmkit_register_roles(self):
        return [Role("worker", "Worker")]

    @hookimpl
    def crmkit_register_permissions(self):
        return [
            *grant("worker", "finance_order", ("read", "move"), Scope.OWN),
            *grant("worker", ("party", "contact_point", "user", "activity"), ("read",), Scope.ALL),
        ]


@pytest.fixture
def shop_with_worker(make_crm):
    shop = build_shop(make_crm(plugins=[finance_plugin, WorkerRole()]))
    return shop, add_user(shop.crm, "worker", ["worker"])


def test_each_role_sees_only_its_menu_items_and_starts_on_its_screen(shop):
    signed_in = clients(shop.crm)
    for username, expected in MENUS.items():
        menu = set(signed_in(username).menu())
        assert menu & MONEY_MENU == expected, username
    starts = {
        "cashier": "/finance/cashdesk",
        "accountant": "/finance/payroll",
        "warehouse": "/finance/stock",
        "director": "/reports/finance.director",
    }
    for username, path in starts.items():
        assert signed_in(username).get("/").headers["location"] == path, username


def _sample_path(path, ids):
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: str(ids.get(m.group(1), 1)), path)


def test_a_worker_gets_404_on_every_money_screen_and_sees_only_their_orders(shop_with_worker):
    shop, worker_user = shop_with_worker
    with shop.crm.acting_as(shop.manager) as work:
        mine = shop.order(work, assignee_id=worker_user.id)
        finance(work).orders.add_line(mine, shop.oil_change.id)
        other = shop.order(work)
    with shop.crm.acting_as(shop.cashier) as work:
        finance(work).cashdesk.open_shift(shop.desk.id, "0")
        shift = finance(work).cashdesk.current_shift(shop.desk.id)
        payment = finance(work).payments.take(
            order_id=mine.id, amount="100", method="cash", desk_id=shop.desk.id
        )
    ids = {
        "desk_id": shop.desk.id,
        "shift_id": shift.id,
        "payment_id": payment.id,
        "order_id": mine.id,
        "line_id": 1,
        "party_id": shop.client.id,
        "user_id": worker_user.id,
        "invoice_id": 1,
        "payslip_id": 1,
        "purchase_id": 1,
        "action": "receive",
    }
    worker = clients(shop.crm)("worker")
    finance_screens = [s for s in shop.crm.screens.values() if s.name.startswith("finance_")]
    assert len(finance_screens) > 30
    for screen in finance_screens:
        url = _sample_path(screen.path, ids)
        for method in screen.methods:
            response = worker.get(url) if method == "GET" else worker.post(url, {"amount": "1"})
            assert response.status_code == 404, (method, url)
    for name in (n for n in shop.crm.reports if n.startswith("finance.")):
        assert worker.get(f"/reports/{name}").status_code == 404, name
        assert worker.get(f"/reports/{name}/export.csv").status_code == 404, name
    assert not set(worker.menu()) & MONEY_MENU
    # their own order shows its lines, but no payments and no payment form
    page = worker.get(f"/records/finance_order/{mine.id}")
    assert page.status_code == 200 and "Oil change" in page.text
    assert 'id="order-pay"' not in page.text and f'id="payment-{payment.id}"' not in page.text
    assert worker.get(f"/records/finance_order/{other.id}").status_code == 404
    card = worker.get(f"/clients/{shop.client.id}")
    assert card.status_code == 200 and "panel-finance_client" not in card.text
    with shop.crm.acting_as(shop.cashier) as work:
        assert len(finance(work).payments.of_order(mine.id)) == 1  # nothing was written


def test_the_cashier_cannot_change_salary_settings(shop):
    cashier = clients(shop.crm)("cashier")
    for url, data in (
        ("/finance/payroll/schemes", {"user_id": shop.cashier.id, "fixed_amount": "1000000"}),
        ("/finance/payroll/accrue", {"month": "2026-11"}),
        ("/finance/payroll/pay", {"user_id": shop.cashier.id, "amount": "1000"}),
        ("/finance/cashback/program", {"percent": "50", "expiry_days": "999"}),
    ):
        assert cashier.post(url, data).status_code == 404, url
    assert cashier.get("/finance/payroll").status_code == 404
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.payroll.owed(shop.cashier.id) == 0
        assert fin.cashback.program() is None


def test_every_role_names_a_start_screen_that_exists(fin_crm):
    for role in fin_crm.roles.values():
        target = role.start_screen
        if not target:
            continue
        if target.startswith("/reports/"):
            assert target.removeprefix("/reports/") in fin_crm.reports, (role.name, target)
        elif not target.startswith("/"):
            assert target in fin_crm.screens, (role.name, target)
