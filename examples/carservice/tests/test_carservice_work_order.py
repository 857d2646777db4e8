"""The printable work order (заказ-наряд) of an order, as its readers see it."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from crmkit_finance import finance
from service_fixtures import signed_in

from crmkit.clock import frozen_at

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def order_with_service_and_goods(station):
    """Diagnostics by Ivan, two litres of oil, a 10 % discount, at 87 000 km."""
    order = station.order(mileage=87000)
    with station.crm.acting_as(station.manager) as work:
        work.records("carservice_car").update(station.car.id, vin="XTA21700050012345")
        fin = finance(work)
        fin.orders.add_line(order.id, station.oil.id, qty="2")
        fin.orders.set_discount(order.id, 10)
    return order


async def test_order_page_links_to_a_printable_work_order_in_russian(station):
    order = order_with_service_and_goods(station)
    client = await signed_in(station, "manager")
    record = await client.get(f"/records/finance_order/{order.id}")
    assert f'href="/service/orders/{order.id}/print"' in record.text
    page = await client.get(f"/service/orders/{order.id}/print")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    # a document of its own, for A4: no menu of the application
    assert "size: A4" in text and "@media print" in text
    assert 'id="menu"' not in text and "<nav" not in text
    # Russian (the new headings' Russian is proposed with the catalogs, not here)
    assert 'lang="ru"' in text and "Клиент" in text
    assert f'id="wo-number">{order.number}<' in text
    assert "Филиал 1" in text  # the branch
    assert "Сергей Волков" in text and "+7 916 100-20-30" in text
    assert "А123ВС77" in text and "Lada Vesta" in text and "XTA21700050012345" in text
    assert "87\u00a0000" in text
    works = text.split('id="wo-works"', 1)[1].split("</table>", 1)[0]
    parts = text.split('id="wo-parts"', 1)[1].split("</table>", 1)[0]
    assert "Диагностика" in works and "1\u00a0500,00\u00a0₽" in works
    assert "Масло 5W-30" in parts and ">2<" in parts and "900,00\u00a0₽" in parts
    # 1 500 + 2 × 900 = 3 300, less 10 %: 2 970
    totals = text.split('id="wo-totals"', 1)[1].split("</table>", 1)[0]
    assert "3\u00a0300,00\u00a0₽" in totals and "330,00\u00a0₽" in totals
    assert "2\u00a0970,00\u00a0₽" in totals and "(10 %)" in totals
    assert "Ivan" in text.split('id="wo-performers"', 1)[1]
    signatures = text.split('class="signatures"', 1)[1]
    assert "Клиент: Сергей Волков" in signatures and "Manager" in signatures


async def test_worker_prints_their_order_but_not_anothers(station):
    mine = order_with_service_and_goods(station)
    theirs = station.order(worker="petr")
    client = await signed_in(station, "ivan")
    page = await client.get(f"/service/orders/{mine.id}/print")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert "Сергей Волков" in text and "А123ВС77" in text
    assert "+7 916 100-20-30" not in text  # the client card is not theirs
    assert (await client.get(f"/service/orders/{theirs.id}/print")).status_code in (403, 404)
    assert (await client.get(f"/service/orders/{theirs.id}/print")).status_code == 404


async def test_the_work_orders_date_is_written_out_as_a_russian_document_writes_it(station):
    """«от 3 марта 2026 г.», the month's name in full (as on a contract or an act), not the
    screen's short «3 мар. 2026 г.»."""
    with frozen_at(dt.datetime(2026, 3, 3, 9, tzinfo=dt.UTC)):
        order = station.order()
    client = await signed_in(station, "manager")
    page = await client.get(f"/service/orders/{order.id}/print")
    date = html.unescape(page.text.split('id="wo-date">', 1)[1].split("<", 1)[0])
    assert re.sub(r"\s", " ", date) == "3 марта 2026 г.", date
