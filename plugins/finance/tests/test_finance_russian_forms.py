"""Finance forms in Russian: the payroll's per-category percent and a new item's unit.

Their Russian comes with the catalog entries listed in the branch's report (``Percent for
%(category)s`` → «%(category)s, %%», ``pcs`` → «шт.»)."""

from __future__ import annotations

import html
import re
from decimal import Decimal

from crmkit_finance import finance

from crmkit.testing import factories


def test_the_pay_scheme_names_each_categorys_percent_grammatically(shop, signed_in):
    page = html.unescape(signed_in("accountant").get("/finance/payroll").text)
    assert "Процент за" not in page
    assert "Engine, %<input" in page


def test_a_new_item_is_counted_in_pieces_in_the_readers_words(shop, signed_in):
    warehouse = signed_in("warehouse")
    page = warehouse.get("/finance/stock")
    assert '<input name="unit" value="шт.">' in page.text
    warehouse.submit(
        "/finance/stock/items", {"name": "Свеча зажигания", "kind": "goods", "price": "300"}
    )
    with shop.crm.acting_as(shop.warehouse) as work:
        (item,) = work.records("finance_item").list(filters={"name": "Свеча зажигания"})
    assert item.unit == "шт."


def _field(page, form_marker, name):
    """The value a form (the first after ``form_marker``) shows in its field ``name``."""
    form = html.unescape(page.text).split(form_marker, 1)[1].split("</form>", 1)[0]
    return re.search(rf'name="{name}"[^>]*value="([^"]*)"', form).group(1)


def test_the_cashier_sees_sums_to_take_written_the_russian_way_and_sends_them_back(shop, signed_in):
    """The due in a payment form reads «1 500,00» (a no-break space between the groups),
    and that is what the cashier sends: at the desk, on the order's page and on an invoice."""
    order = shop.completed_order(shop.oil_change)  # 1500.00
    cashier = signed_in("cashier")
    cashier.submit(f"/finance/cashdesk/{shop.desk.id}/open", {"counted": "0"})
    found = cashier.get(f"/finance/cashdesk?desk={shop.desk.id}&q={order.number}")
    amount = _field(found, f'id="order-{order.id}"', "amount")
    assert amount == "1\u00a0500,00"
    on_order_page = cashier.get(f"/records/finance_order/{order.id}")
    assert _field(on_order_page, 'action="/finance/payments"', "amount") == amount
    page = cashier.submit(
        "/finance/payments",
        {"order_id": order.id, "desk_id": shop.desk.id, "amount": amount, "method": "cash"},
    )
    assert 'class="flash error"' not in page.text
    with shop.crm.acting_as(shop.cashier) as work:
        assert finance(work).orders.totals(order.id).paid == Decimal("1500.00")

    with shop.crm.acting_as(shop.manager) as work:
        firm = factories.organisation(work, customer_type="corporate")
    other = shop.completed_order(shop.oil_change, shop.diagnostics, party_id=firm.id)
    with shop.crm.acting_as(shop.accountant) as work:
        invoice = finance(work).invoices.issue([other.id])
    shown = cashier.get(f"/finance/invoices/{invoice.id}")
    amount = _field(shown, 'id="pay-invoice"', "amount")
    assert amount == "2\u00a0500,00"
    page = cashier.submit(f"/finance/invoices/{invoice.id}/pay", {"amount": amount})
    assert 'class="flash error"' not in page.text
    with shop.crm.acting_as(shop.cashier) as work:
        assert finance(work).payments.receivable(firm.id) == 0


def test_percents_in_forms_are_written_with_a_decimal_comma(shop, signed_in):
    """An order's discount and the cashback program's percent read «12,5» in their forms,
    and the form sent as shown keeps them."""
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id)
        finance(work).orders.set_discount(order, "12.5")
    with shop.crm.acting_as(shop.admin) as work:
        finance(work).cashback.set_program("2.5", expiry_days=30)
    manager = signed_in("manager")
    page = manager.get(f"/records/finance_order/{order.id}")
    percent = _field(page, 'id="order-discount"', "percent")
    assert percent == "12,5"
    manager.submit(f"/finance/orders/{order.id}/discount", {"percent": percent})
    admin = signed_in("admin")
    assert _field(admin.get("/finance/cashback"), 'id="program"', "percent") == "2,5"
    with shop.crm.acting_as(shop.manager) as work:
        assert work.records("finance_order").get(order.id).discount_percent == Decimal("12.5")
