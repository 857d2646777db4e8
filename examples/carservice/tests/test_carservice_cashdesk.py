"""The finance plugin's cash desk as the car service uses it: plates on the found orders,
the search label naming them, no payment form for an order paid in full."""

from __future__ import annotations

import html
import re

import pytest
from crmkit_finance import finance

from crmkit.testing.web import WebClient

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def cashier_at_the_desk(station):
    with station.crm.acting_as(station.cashier) as work:
        finance(work).cashdesk.open_shift(station.desk.id, counted="0.00")
    client = WebClient.for_crm(station.crm)
    assert (await client.login("cashier")).status_code == 303
    return client


def found_orders(page_text):
    """Each found order's article by order id."""
    parts = re.split(r'<article class="found-order" id="order-(\d+)">', page_text)[1:]
    return {
        int(i): html.unescape(body.split("</article>", 1)[0])
        for i, body in zip(parts[::2], parts[1::2], strict=True)
    }


async def test_found_orders_show_the_car_plate_and_the_label_names_plates(station):
    order = station.order()
    client = await cashier_at_the_desk(station)
    empty = await client.get("/finance/cashdesk", params={"desk": station.desk.id})
    label = re.search(r"<label>([^<]*)<input type=\"search\"", html.unescape(empty.text))
    assert label and "госномер" in label.group(1).lower(), label
    for typed in ("a123", "Сергей Волков", order.number):
        page = await client.get("/finance/cashdesk", params={"desk": station.desk.id, "q": typed})
        found = found_orders(page.text)
        assert order.id in found, typed
        assert "А123ВС77" in found[order.id] and "Lada Vesta" in found[order.id], typed


async def test_an_order_paid_in_full_shows_paid_instead_of_the_payment_form(station):
    paid, unpaid = station.order(), station.order()
    with station.crm.acting_as(station.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(station.desk.id, counted="0.00")
        fin.payments.take(
            order_id=paid.id, amount="1500.00", method="cash", desk_id=station.desk.id
        )
    client = WebClient.for_crm(station.crm)
    assert (await client.login("cashier")).status_code == 303
    page = await client.get("/finance/cashdesk", params={"desk": station.desk.id, "q": "Волков"})
    found = found_orders(page.text)
    assert 'action="/finance/payments"' not in found[paid.id]
    assert "оплачен полностью" in found[paid.id]
    assert 'action="/finance/payments"' in found[unpaid.id]
    assert "оплачен полностью" not in found[unpaid.id]
