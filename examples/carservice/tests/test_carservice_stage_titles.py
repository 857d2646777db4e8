"""An order's stage titles agree with «заказ» in Russian, a deal's with «сделка».

The catalogs are merged and an English title (``New``) has one plain translation, the
deals' «Новая»; each pipeline's stage titles are therefore looked up in the pipeline's
message context (``msgctxt "carservice_order"``) first.
"""

from __future__ import annotations

import html
import re

import pytest
from service_fixtures import signed_in

from crmkit.i18n import contexted

pytestmark = pytest.mark.anyio

#: the car service's order stages as the Russian catalog translates them in their context
ORDER_STAGES = {"New": "Новый", "Done": "Готов", "Paid": "Оплачен", "Closed": "Закрыт"}
#: the finance plugin's own order pipeline (its stages are listed in the orders' filter too)
FINANCE_STAGES = {"New": "Новый", "Done": "Готов"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _text(page):
    body = re.sub(r"(?s)<script.*?</script>", "", page.text)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def _stage_line(page):
    return _text(page).split("Диагностика", 1)[0]


def _a_deal(station):
    client = station.client
    with station.crm.acting_as(station.users["admin"]) as work:
        return work.deals.create({"title": "Поставка масла", "party_id": client.id})


async def _pages(station):
    """The order's page, the orders' list, a deal's page (in Russian, as the director)."""
    order = station.order()
    deal = _a_deal(station)
    director = await signed_in(station, "director")
    admin = await signed_in(station, "admin")
    order_page = await director.get(f"/records/finance_order/{order.id}")
    orders = await director.get("/lists/finance_order")
    deal_page = await admin.get(f"/records/deal/{deal.id}")
    for page in (order_page, orders, deal_page):
        assert page.status_code == 200, page.text
    return order, order_page, orders, deal_page


def _add_order_entries(station):
    """The Russian catalog as it is once the contexted entries are added to it."""
    from crmkit.web.i18n import catalogs_of

    russian = catalogs_of(station.crm)["ru"]
    for title, shown in ORDER_STAGES.items():
        russian._catalog[contexted("carservice_order", title)] = shown
    for title, shown in FINANCE_STAGES.items():
        russian._catalog[contexted("finance_order", title)] = shown


async def test_stage_titles_are_looked_up_in_their_pipelines_context_first(station):
    """With contexted entries in the catalog (put in by the test), the order's page, list,
    move button, board and stage history read «Новый»…«Закрыт»; a deal keeps «Новая»."""
    _add_order_entries(station)
    order, order_page, orders, deal_page = await _pages(station)
    line = _text(order_page)
    assert "Новый" in line and "Закрыт" in line and "Оплачен " in line
    assert "Новая" not in line and "Закрытые" not in line
    listed = _text(orders)
    assert "Новый" in listed and "Новая" not in listed
    assert "Новая" in _text(deal_page) and "Новый" not in _text(deal_page)
    # the stage history and the board
    worker = await signed_in(station, "ivan")
    page = await worker.get(f"/records/finance_order/{order.id}")
    version = re.search(r'name="version" value="(\d+)"', page.text)[1]
    moved = await worker.post(
        f"/records/finance_order/{order.id}/move", {"to": "diagnostics", "version": version}
    )
    assert moved.status_code == 303, moved.text
    director = await signed_in(station, "director")
    page = await director.get(f"/records/finance_order/{order.id}")
    history = _text(page).split("История стадий", 1)[1]
    assert "Новый → Диагностика" in history
    board = await director.get("/boards/carservice_order")
    assert board.status_code == 200, board.text
    assert "Новый" in _text(board) and "Закрыт" in _text(board)


async def test_an_orders_stages_read_masculine_while_a_deals_stay_feminine(station):
    """Fails until the catalogs hold the car service's contexted entries
    (``msgctxt "carservice_order"``: New «Новый», Closed «Закрыт»…)."""
    _order, order_page, orders, deal_page = await _pages(station)
    shown = _text(order_page)
    for russian in ORDER_STAGES.values():
        assert re.search(rf"\b{russian}\b", shown), russian
    assert "Новая" not in shown and "Закрытые" not in shown
    listed = _text(orders)
    assert "Новый" in listed and "Новая" not in listed
    assert "Новая" in _text(deal_page)
