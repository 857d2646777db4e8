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


AGAIN = ("This form was already sent", "Эта форма уже отправлена")


def _token(page, action):
    form = page.text.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return re.search(r'name="form_token" value="([^"]+)"', form).group(1)


def _flash(page):
    return " ".join(re.findall(r'<p class="flash [^"]*"[^>]*>([^<]*)</p>', page.text))


def test_an_add_line_form_sent_twice_adds_the_line_once(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
    manager = clients(shop.crm)("manager")
    page = manager.get(f"/records/finance_order/{order.id}")
    add = f"/finance/orders/{order.id}/lines"
    sent = {"item_id": shop.oil.id, "qty": "2", "form_token": _token(page, add)}
    first = manager.submit(add, sent)
    again = manager.submit(add, sent)  # a double click, a reload, the back button
    assert "flash error" not in first.text + again.text
    assert not any(text in _flash(first) for text in AGAIN)
    assert any(text in _flash(again) for text in AGAIN)
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        [line] = fin.orders.lines(order.id)
        assert line.qty == 2 and fin.orders.totals(order.id).total == Decimal("1800.00")
    assert _on_hand(shop) == Decimal("8")  # 10 on hand, 2 issued once
    # the page gives the next form a token of its own: the same good again is a second line
    page = manager.get(f"/records/finance_order/{order.id}")
    manager.submit(add, {**sent, "form_token": _token(page, add)})
    with shop.crm.acting_as(shop.manager) as work:
        assert len(finance(work).orders.lines(order.id)) == 2
    assert _on_hand(shop) == Decimal("6")


def test_a_remove_line_form_sent_twice_removes_once(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        fin = finance(work)
        service = fin.orders.add_line(order, shop.oil_change.id, main=True)
        goods = fin.orders.add_line(order, shop.oil.id, qty=3)
    manager = clients(shop.crm)("manager")
    page = manager.get(f"/records/finance_order/{order.id}")
    remove = f"/finance/orders/{order.id}/lines/{goods.id}/remove"
    sent = {"form_token": _token(page, remove)}
    manager.submit(remove, sent)
    again = manager.submit(remove, sent)  # the open line is gone: no 404, no second return
    assert "flash error" not in again.text
    assert any(text in _flash(again) for text in AGAIN)
    assert _on_hand(shop) == Decimal("10")
    # a charged line: one correcting line and one credit, however often the form comes
    with shop.crm.acting_as(shop.manager) as work:
        work.moves.move(order.id, "done", entity="finance_order")
    page = manager.get(f"/records/finance_order/{order.id}")
    remove = f"/finance/orders/{order.id}/lines/{service.id}/remove"
    sent = {"form_token": _token(page, remove)}
    manager.submit(remove, sent)
    again = manager.submit(remove, sent)
    assert "flash error" not in again.text
    assert any(text in _flash(again) for text in AGAIN)
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        lines = fin.orders.lines(order.id)
        assert [line.reverses_line_id for line in lines] == [None, service.id]
        totals = fin.orders.totals(order.id)
        assert totals.total == 0 and totals.charged == 0
    # a token of one order's form does not remove a line of another order
    with shop.crm.acting_as(shop.manager) as work:
        other = shop.order(work)
        stray = finance(work).orders.add_line(other, shop.diagnostics.id)
    page = manager.get(f"/records/finance_order/{order.id}")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
    stray_path = f"/finance/orders/{order.id}/lines/{stray.id}/remove"
    assert manager.post(stray_path, {"form_token": token}).status_code == 404
    with shop.crm.acting_as(shop.manager) as work:
        assert len(finance(work).orders.lines(other.id)) == 1


def test_a_performer_chosen_on_the_form_or_over_the_api_stays_with_its_worker(shop):
    """The line form and the API choose the performer by hand, even when it is the order's
    assignee of the day: reopened and given to someone else, the order keeps that worker on
    the line (a line left empty on the form goes to the new assignee)."""
    from finance_web import TestClient

    from crmkit.testing import add_user
    from crmkit.web.app import create_app

    ivan = add_user(shop.crm, "ivan", ["agent"])
    petr = add_user(shop.crm, "petr", ["agent"])
    with shop.crm.acting_as(shop.manager) as work:
        on_form = shop.order(work, assignee_id=ivan.id)
        secret = work.api_tokens.create("test").secret
    manager = clients(shop.crm)("manager")
    add = f"/finance/orders/{on_form.id}/lines"
    manager.submit(add, {"item_id": shop.oil_change.id, "performer_id": str(ivan.id)})
    manager.submit(add, {"item_id": shop.diagnostics.id, "performer_id": ""})
    created = TestClient(create_app(shop.crm)).post(
        "/api/v1/finance_order",
        json={
            "party_id": shop.client.id,
            "location_id": shop.branch.id,
            "assignee_id": ivan.id,
            "lines": [
                {"item_id": shop.oil_change.id, "performer_id": ivan.id},
                {"item_id": shop.diagnostics.id},
            ],
        },
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert created.status_code == 201, created.text
    over_api = created.json()["id"]
    with shop.crm.acting_as(shop.manager) as work:
        orders = finance(work).orders
        for order_id in (on_form.id, over_api):
            orders.complete(order_id)
            orders.reopen(order_id)
            orders.update(order_id, assignee_id=petr.id)
            orders.complete(order_id)
            lines = orders.lines(order_id)
            credited = {line.reverses_line_id for line in lines}
            done_again = {
                line.item_id: line.performer_id
                for line in lines
                if line.recognized_on is not None
                and line.reverses_line_id is None
                and line.id not in credited
            }
            assert done_again == {shop.oil_change.id: ivan.id, shop.diagnostics.id: petr.id}


def test_the_order_page_lists_the_stage_once_and_keeps_the_client_no_panel_shows(shop):
    """Without a car service block the order's field block names the client (no other
    part of the page does), but never the pipeline or the stage: the stage line says it."""
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
    page = clients(shop.crm)("manager").get(f"/records/finance_order/{order.id}")
    details = page.text.split('<dl class="details">', 1)[1].split("</dl>", 1)[0]
    labels = re.findall(r"<dt>(.*?)</dt>", details)
    assert "party_id" in labels or "клиент" in labels, labels
    assert not {"pipeline", "stage", "воронка", "стадия"} & set(labels), labels
    assert page.text.count('class="current') == 1
