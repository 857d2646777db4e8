"""Pages name the records an order refers to (its branch, its contract) instead of showing
their ids, linked to their pages, and say nothing of one the reader may not read."""

from __future__ import annotations

import re

from finance_web import clients


def _details(page) -> dict[str, str]:
    """The record page's fields: label -> shown value (tags left in, text stripped)."""
    block = page.text.split('<dl class="details">', 1)[1].split("</dl>", 1)[0]
    pairs = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block, re.S)
    return {label.strip(): value.strip() for label, value in pairs}


def test_the_order_page_shows_its_branch_by_name(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
    page = clients(shop.crm)("manager").get(f"/records/finance_order/{order.id}")
    assert page.status_code == 200
    fields = _details(page)
    branch = fields.get("location_id") or fields.get("склад") or fields.get("филиал")
    assert branch == (
        f'<a href="/records/finance_location/{shop.branch.id}">{shop.branch.name}</a>'
    ), fields


def test_a_reader_who_may_not_read_branches_sees_no_branch_on_the_order(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
    with shop.crm.system() as work:
        work.permissions.set("manager", "finance_location", "read", "none")
    page = clients(shop.crm)("manager").get(f"/records/finance_order/{order.id}")
    assert page.status_code == 200
    assert shop.branch.name not in page.text
    assert f"/records/finance_location/{shop.branch.id}" not in page.text
    fields = _details(page)
    assert not {"location_id", "склад", "филиал"} & set(fields), fields


def test_the_cash_desk_list_shows_the_desks_branch_by_name(shop):
    page = clients(shop.crm)("accountant").get("/lists/finance_cash_desk?cols=name,location_id")
    assert page.status_code == 200
    body = page.text.split("<tbody", 1)[1]
    row = next(r for r in body.split("<tr") if shop.desk.name in r)
    assert f'<a href="/records/finance_location/{shop.branch.id}">{shop.branch.name}</a>' in row


def test_the_audit_log_names_an_orders_old_and_new_branch(shop):
    with shop.crm.acting_as(shop.warehouse) as work:
        other = work.records("finance_location").create(name="Branch 2")
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        work.records("finance_order").update(order, location_id=other.id)
    admin = clients(shop.crm)("admin")
    for url in ("/admin/audit?entity=finance_order", "/admin"):
        page = admin.get(url)
        assert page.status_code == 200, url
        row = page.text.split("<b>филиал</b>: ", 1)[0].rsplit("<tr>", 1)[1]
        assert f'<a href="/records/finance_order/{order.id}">{order.number}</a>' in row, url
        change = page.text.split("<b>филиал</b>: ", 1)[1].split("</small>", 1)[0]
        change = change.split(";", 1)[0]
        assert change == (
            f'<a href="/records/finance_location/{shop.branch.id}">Branch 1</a>'
            f' → <a href="/records/finance_location/{other.id}">Branch 2</a>'
        ), url


def test_payments_name_an_order_by_number_and_a_hidden_one_not_at_all(shop):
    from crmkit_finance import finance

    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.diagnostics.id)
        work.moves.move(order, "done", entity="finance_order")
    cashier = clients(shop.crm)("cashier")
    desk = f"/finance/cashdesk?desk={shop.desk.id}"
    cashier.submit(f"/finance/cashdesk/{shop.desk.id}/open", {"counted": "0"})
    cashier.submit(
        "/finance/payments",
        {"order_id": order.id, "desk_id": shop.desk.id, "amount": "1000", "method": "cash"},
    )
    with shop.crm.acting_as(shop.cashier) as work:
        shift = finance(work).cashdesk.current_shift(shop.desk.id)
    order_link = f'<a href="/records/finance_order/{order.id}">'
    for url in (desk, f"/records/finance_order/{order.id}"):
        page = cashier.get(url)
        table = page.text.split('class="records payments"', 1)[1]
        assert re.search(order_link + r"(Order|Заказ) " + re.escape(order.number), table), url
    with shop.crm.system() as work:  # a cashier who may not read orders
        work.permissions.set("cashier", "finance_order", "read", "none")
    for url in (desk, f"/finance/shifts/{shift.id}"):
        page = cashier.get(url)
        assert page.status_code == 200, url
        assert order_link not in page.text, url
        assert not re.search(r"· (Order|Заказ) ", page.text), url


def test_a_purchase_names_a_good_no_longer_sold(shop):
    from crmkit_finance import finance

    with shop.crm.acting_as(shop.warehouse) as work:
        vendor = work.parties.create(kind="organisation", name="ООО «Масла»")
        supplier = work.records("finance_supplier").create(party_id=vendor.id)
        lines = [{"item_id": shop.oil.id, "qty": "4", "unit_cost": "300.00"}]
        purchase = finance(work).purchases.create_order(supplier.id, shop.branch.id, lines)
        work.records("finance_item").update(shop.oil, active=False)
    page = clients(shop.crm)("warehouse").get("/finance/purchases")
    assert page.status_code == 200
    row = page.text.split(f'id="purchase-{purchase.id}"', 1)[1].split("</tr>", 1)[0]
    assert f"<td>{shop.oil.name}: " in row, row


def test_the_shift_list_names_the_cashier_and_the_desk(shop):
    cashier = clients(shop.crm)("cashier")
    cashier.submit(f"/finance/cashdesk/{shop.desk.id}/open", {"counted": "0"})
    page = clients(shop.crm)("accountant").get("/lists/finance_shift?cols=id,desk_id,cashier_id")
    assert page.status_code == 200
    row = page.text.split("<tbody", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert f'<a href="/records/finance_cash_desk/{shop.desk.id}">{shop.desk.name}</a>' in cells
    assert shop.cashier.label in cells, cells


def test_a_payment_names_its_shift_in_the_readers_words(shop):
    """A shift has no name: it is called by its label and number, translated."""
    from crmkit_finance import finance

    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.diagnostics.id)
        work.moves.move(order, "done", entity="finance_order")
    cashier = clients(shop.crm)("cashier")
    cashier.submit(f"/finance/cashdesk/{shop.desk.id}/open", {"counted": "0"})
    cashier.submit(
        "/finance/payments",
        {"order_id": order.id, "desk_id": shop.desk.id, "amount": "1000", "method": "cash"},
    )
    with shop.crm.acting_as(shop.cashier) as work:
        shift = finance(work).cashdesk.current_shift(shop.desk.id)
    page = clients(shop.crm)("accountant").get("/lists/finance_payment?cols=amount,shift_id")
    assert page.status_code == 200
    assert f'<a href="/records/finance_shift/{shift.id}">Смена #{shift.id}</a>' in page.text
