"""The order page says each thing once: the stage in its stage line, the client and the
worker in the car block, not again in the field block."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import pytest
from service_fixtures import signed_in

from crmkit.errors import ValidationFailed
from crmkit.i18n import pgettext
from crmkit.web import i18n
from crmkit.web.pages import error_text

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


async def test_an_orders_number_is_named_number_not_a_figure(station):
    """The core says «число» for ``number`` (a field type); the order's number has its own
    label, «номер» (its msgid ``order number`` until the catalog has it), in the list's
    header («Номер») and in a refusal naming it."""
    station.order()
    client = await signed_in(station, "manager")
    listed = await client.get("/lists/finance_order", params={"cols": "number,total"})
    assert listed.status_code == 200
    headers = [
        html.unescape(re.sub(r"<[^>]+>", "", h)).strip()
        for h in re.findall(r"<th[^>]*>(.*?)</th>", listed.text, re.S)
    ]
    # a heading starts with a capital (the field's name is lowercase inside sentences)
    assert any(h.startswith(("Номер", "Order number")) for h in headers), headers
    assert not any(h.lower().startswith("число") for h in headers), headers
    request = SimpleNamespace(
        state=SimpleNamespace(
            locale=i18n.Locale("ru", "UTC", "RUB", i18n.catalogs_of(station.crm)["ru"])
        ),
        app=SimpleNamespace(state=SimpleNamespace(crm=station.crm)),
    )
    refused = ValidationFailed({"number": ["Longer than 100."]}, entity="finance_order")
    said = error_text(request, refused)
    assert said.startswith(("номер: ", "order number: ")), said


def _text(page_text):
    body = re.sub(r"(?s)<script.*?</script>", "", page_text)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


async def test_the_stage_history_enters_the_first_stage_without_a_stray_dot(station):
    """The order's first history row is its entry into the first stage: "→ Новый", not
    "· → Новый" (no stage came before it)."""
    order = station.order()
    client = await signed_in(station, "manager")
    page = await client.get(f"/records/finance_order/{order.id}")
    new = pgettext(client.app.state.catalogs["ru"].gettext, "carservice_order", "New")
    rows = re.findall(r"<li>(.*?)</li>", page.text.split('class="plain history"', 1)[1], re.S)
    first = _text(rows[0])
    assert f"→ {new}" in first
    assert "·" not in first.split("→", 1)[0]


async def test_the_order_page_names_the_order_number_once(station):
    """An order titled by its number reads "Заказ #N" once, not again as a bare "N"."""
    order = station.order()
    client = await signed_in(station, "manager")
    page = await client.get(f"/records/finance_order/{order.id}")
    head = page.text.split('class="pagehead"', 1)[1].split("</div>", 2)
    head = _text(head[0] + head[1])
    assert str(order.number) == str(order.id)  # the case the page says once
    assert re.findall(rf"\b{order.id}\b", head) == [str(order.id)], head
    assert f"#{order.id}" in head
