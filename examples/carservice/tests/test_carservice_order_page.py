"""The order page says each thing once: the stage in its stage line, the client and the
worker in the car block, not again in the field block."""

from __future__ import annotations

import html
import re

import pytest
from test_carservice_screens import signed_in

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _field_block(page_text):
    details = page_text.split('<dl class="details">', 1)[1].split("</dl>", 1)[0]
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", details, re.S))


async def test_the_order_page_shows_the_stage_and_the_client_once(station):
    order = station.order()
    client = await signed_in(station, "manager")
    page = await client.get(f"/records/finance_order/{order.id}")
    assert page.status_code == 200
    fields = _field_block(page.text)
    for label in ("стадия", "воронка", "клиент", "исполнитель", "stage", "pipeline"):
        assert label not in fields, fields
    text = html.unescape(page.text)
    assert text.count('class="current') == 1  # the stage line marks the stage
    assert text.count(station.client.name) == 1, station.client.name
    car_block = text.split('id="order-car"', 1)[1].split("</dl>", 1)[0]
    assert station.client.name in car_block and "Ivan" in car_block
