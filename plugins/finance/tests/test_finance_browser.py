"""A cashier's shift in headless Chromium: open it, find an order, take a payment, see the
order settled, close the shift with its report (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from crmkit_finance import finance
from crmkit_finance import plugin as finance_plugin
from finance_fixtures import build_shop

from crmkit.clock import utcnow
from crmkit.testing import make_crm
from crmkit.testing.web import chromium, served, sign_in

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.fixture
def served_shop(tmp_path):
    from crmkit.web.app import create_app

    crm = make_crm(directory=tmp_path, plugins=[finance_plugin])
    shop = build_shop(crm)
    with served(create_app(crm), lifespan="auto") as base:
        yield shop, base
    crm.close()


def test_a_cashier_takes_a_payment_in_the_browser(served_shop):
    shop, base = served_shop
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id, main=True)  # 1500.00
        work.moves.move(order, "done", entity="finance_order")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        phone = browser.new_context(viewport={"width": 420, "height": 900})
        page = sign_in(phone, base, "cashier")
        page.goto(f"{base}/finance/cashdesk")
        page.fill('#open-shift input[name="counted"]', "500")
        page.click("#open-shift button[type=submit]")
        page.wait_for_selector("#take-payment")
        page.fill('#take-payment input[name="q"]', order.number)
        page.click("#take-payment form[method=get] button[type=submit]")
        found = page.wait_for_selector(f"#order-{order.id}")
        assert found.eval_on_selector('input[name="amount"]', "el => el.value") == "1\xa0500,00"
        found.query_selector('select[name="method"]').select_option("cash")
        found.query_selector("button[type=submit]").click()
        page.wait_for_selector("#shift-payments tr.payment")
        assert "1 500,00" in page.inner_text("#shift-payments").replace("\xa0", " ")
        page.screenshot(path=str(ARTIFACTS / "finance-cashdesk.png"), full_page=True)
        page.fill('#close-shift input[name="counted"]', "2000")
        page.click("#close-shift button[type=submit]")
        page.wait_for_selector("#closing-difference")
        assert page.inner_text("#closing-difference").replace("\xa0", " ").startswith("0,00")
    with shop.crm.acting_as(shop.accountant) as work:
        totals = finance(work).orders.totals(order.id)
        assert totals.paid == Decimal("1500.00") and totals.settled


def test_a_clients_cashback_lots_fit_the_screen_of_a_phone_and_a_laptop(served_shop):
    import datetime as dt

    shop, base = served_shop
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("5", 30, valid_from=dt.date(2020, 1, 1))
    for _ in range(2):
        with shop.crm.acting_as(shop.manager) as work:
            order = shop.order(work)
            finance(work).orders.add_line(order, shop.oil_change.id)
            work.moves.move(order, "done", entity="finance_order")
        with shop.crm.acting_as(shop.cashier) as work:
            finance(work).payments.take(order_id=order.id, amount="1500.00", method="transfer")
    with chromium() as browser:
        for width, height in ((390, 844), (1366, 768)):
            page = sign_in(
                browser.new_context(viewport={"width": width, "height": height}), base, "accountant"
            )
            page.goto(f"{base}/finance/cashback?client={shop.client.id}")
            page.wait_for_selector("#cashback-lots tbody tr")
            # the page itself never scrolls sideways: a wide table scrolls in its own box
            assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_a_payslip_fits_the_screen_of_a_phone(served_shop):
    shop, base = served_shop
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            shop.manager.id,
            fixed_amount="150000.00",
            percent="12.5",
            valid_from=finance(work).business_date(utcnow()).replace(day=1),
        )
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work, assignee_id=shop.manager.id)
        finance(work).orders.add_line(order, shop.oil_change.id)
        work.moves.move(order, "done", entity="finance_order")
    with chromium() as browser:
        phone = browser.new_context(viewport={"width": 390, "height": 844})
        page = sign_in(phone, base, "accountant")
        page.goto(f"{base}/finance/payroll/{shop.manager.id}")
        page.wait_for_selector("#payslip-groups tbody tr")
        assert "12,5 %" in page.inner_text("#payslip-groups")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_refused_write_off_on_a_phone_opens_on_its_form(served_shop):
    """On a phone the write-off form is far down the stock page: refused, the page comes
    back showing that form with what was typed and the reason inside it, not its top."""
    _shop, base = served_shop
    with chromium() as browser:
        phone = browser.new_context(viewport={"width": 390, "height": 844})
        page = sign_in(phone, base, "warehouse")
        page.goto(f"{base}/finance/stock")
        page.fill('#write-off input[name="qty"]', "50")
        page.fill('#write-off input[name="reason"]', "пролили")
        page.click("#write-off button[type=submit]")
        reason = page.wait_for_selector("#write-off .flash.error")
        assert page.input_value('#write-off input[name="qty"]') == "50"
        assert page.input_value('#write-off input[name="reason"]') == "пролили"
        box = reason.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 844, box


def test_choosing_an_employee_in_the_scheme_form_shows_their_scheme(served_shop):
    shop, base = served_shop
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            shop.manager.id,
            fixed_amount="30000.00",
            percent="12.5",
            valid_from=utcnow().date().replace(day=1),
        )
    with chromium() as browser:
        page = sign_in(browser.new_context(), base, "accountant")
        page.goto(f"{base}/finance/payroll?employee={shop.cashier.id}")
        assert page.input_value('#set-scheme input[name="fixed_amount"]') == "0"
        page.select_option('#set-scheme select[name="user_id"]', str(shop.manager.id))
        page.wait_for_url(f"**employee={shop.manager.id}**")
        assert page.input_value('#set-scheme input[name="fixed_amount"]') == "30\xa0000,00"
        assert page.input_value('#set-scheme input[name="percent"]') == "12,5"
