"""An order's page: lines (main service, extra services later, goods from stock),
discount, totals and payment state, edited by a manager."""

from __future__ import annotations

import re
from decimal import Decimal

from crmkit_finance import finance
from finance_web import clients


def _on_hand(shop):
    with shop.crm.acting_as(shop.warehouse) as work:
        return finance(work).stock.on_hand(shop.oil.id, shop.branch.id)


def test_a_manager_builds_an_order_on_its_page(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
    manager = clients(shop.crm)("manager")
    page_url = f"/records/finance_order/{order.id}"
    manager.submit(
        f"/finance/orders/{order.id}/lines", {"item_id": shop.oil_change.id, "main": "1"}
    )
    manager.submit(f"/finance/orders/{order.id}/lines", {"item_id": shop.oil.id, "qty": "4,5"})
    page = manager.submit(f"/finance/orders/{order.id}/discount", {"percent": "10"})
    # (1500 + 4.5 x 900) less 10 % = 4995.00
    totals = page.text.split('id="order-totals"', 1)[1].split("</dl>", 1)[0]
    assert re.search(r"4\xa0995,00", totals)
    assert "chip" in page.text.split('id="order-lines"', 1)[1].split("</table>")[0]  # main
    assert _on_hand(shop) == Decimal("5.5")
    with shop.crm.acting_as(shop.manager) as work:
        lines = finance(work).orders.lines(order.id)
        work.moves.move(order.id, "done", entity="finance_order")
    # an extra service after the work was done is charged at once
    manager.submit(f"/finance/orders/{order.id}/lines", {"item_id": shop.diagnostics.id})
    # removing a charged line adds a correcting line; the goods go back to stock
    goods = next(line for line in lines if line.item_id == shop.oil.id)
    page = manager.submit(f"/finance/orders/{order.id}/lines/{goods.id}/remove", {})
    assert 'class="removed"' in page.text
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        totals = fin.orders.totals(order.id)
        assert totals.total == Decimal("2250.00")  # (1500 + 1000) less 10 %
        assert totals.charged == Decimal("2250.00")
    assert _on_hand(shop) == Decimal("10")
    page = manager.get(page_url)
    assert "not paid" in page.text or "не оплачен" in page.text
    # a line of another order through this order's address is 404
    with shop.crm.acting_as(shop.manager) as work:
        other = shop.order(work)
        stray = finance(work).orders.add_line(other, shop.diagnostics.id)
    assert manager.post(f"/finance/orders/{order.id}/lines/{stray.id}/remove").status_code == 404
