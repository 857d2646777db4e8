"""A cashier's shift in headless Chromium: open it, find an order, take a payment, see the
order settled, close the shift with its report (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from crmkit_finance import finance
from crmkit_finance import plugin as finance_plugin
from finance_fixtures import build_shop

from crmkit.testing import DEMO_PASSWORD, make_crm, require
from crmkit.testing.web import served

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def served_shop(tmp_path):
    from crmkit.web.app import create_app

    crm = make_crm(directory=tmp_path, plugins=[finance_plugin])
    shop = build_shop(crm)
    with served(create_app(crm), lifespan="auto") as base:
        yield shop, base
    crm.close()


def test_a_cashier_takes_a_payment_in_the_browser(served_shop):
    require(os.path.exists(CHROMIUM), "Debian chromium (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    shop, base = served_shop
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id, main=True)  # 1500.00
        work.moves.move(order, "done", entity="finance_order")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = chromium.new_context(viewport={"width": 420, "height": 900}).new_page()  # a phone
        page.goto(f"{base}/login")
        page.fill('input[name="username"]', "cashier")
        page.fill('input[name="password"]', DEMO_PASSWORD)
        page.click('button[type="submit"]')
        page.wait_for_load_state()
        page.goto(f"{base}/finance/cashdesk")
        page.fill('#open-shift input[name="counted"]', "500")
        page.click("#open-shift button[type=submit]")
        page.wait_for_selector("#take-payment")
        page.fill('#take-payment input[name="q"]', order.number)
        page.click("#take-payment form[method=get] button[type=submit]")
        found = page.wait_for_selector(f"#order-{order.id}")
        assert found.eval_on_selector('input[name="amount"]', "el => el.value") == "1500.00"
        found.query_selector('select[name="method"]').select_option("cash")
        found.query_selector("button[type=submit]").click()
        page.wait_for_selector("#shift-payments tr.payment")
        assert "1 500,00" in page.inner_text("#shift-payments").replace("\xa0", " ")
        page.screenshot(path=str(ARTIFACTS / "finance-cashdesk.png"), full_page=True)
        page.fill('#close-shift input[name="counted"]', "2000")
        page.click("#close-shift button[type=submit]")
        page.wait_for_selector("#closing-difference")
        assert page.inner_text("#closing-difference").replace("\xa0", " ").startswith("0,00")
        chromium.close()
    with shop.crm.acting_as(shop.accountant) as work:
        totals = finance(work).orders.totals(order.id)
        assert totals.paid == Decimal("1500.00") and totals.settled
