"""The optional hook through which another plugin describes what a finance screen found:
the cash desk's orders and the cashback screen's clients, one hook for both."""

from __future__ import annotations

import html
import re

import pytest
from crmkit_finance import finance
from finance_web import clients

from crmkit import hookimpl


class Describer:
    """A plugin telling each found record's entity, id and the reader it was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    @hookimpl(optionalhook=True)
    def crmkit_finance_describe_found(self, work, entity, records):
        self.asked.append(entity)
        return {r.id: f"{entity} {r.id} for user {work.actor.user_id}" for r in records}


class Silent:
    """A plugin with nothing to say (None, or empty texts): the screens show nothing of it."""

    @hookimpl(optionalhook=True)
    def crmkit_finance_describe_found(self, work, entity, records):
        return None if entity == "party" else {r.id: "" for r in records}


@pytest.fixture
def describer(shop):
    plugin = Describer()
    shop.crm.pm.register(plugin)
    shop.crm.pm.register(Silent())
    return plugin


def test_the_cash_desk_shows_what_a_plugin_says_of_each_found_order(shop, describer):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id)
    cashier = clients(shop.crm)("cashier")
    cashier.submit(f"/finance/cashdesk/{shop.desk.id}/open", {"counted": "0"})
    page = cashier.get(f"/finance/cashdesk?desk={shop.desk.id}&q={order.number}")
    article = page.text.split(f'id="order-{order.id}"', 1)[1].split("</header>", 1)[0]
    notes = re.findall(r'<span class="found-note">(.*?)</span>', article)
    assert notes == [f"finance_order {order.id} for user {shop.cashier.id}"]
    assert describer.asked == ["finance_order"]


def test_the_cashback_screen_shows_what_a_plugin_says_of_each_found_client(shop, describer):
    accountant = clients(shop.crm)("accountant")
    page = accountant.get("/finance/cashback", params={"q": shop.client.name})
    items = dict(
        re.findall(
            r'<li class="found-client"><a href="/finance/cashback\?client=(\d+)">(.*?)</li>',
            page.text,
            re.S,
        )
    )
    assert str(shop.client.id) in items, page.text
    text = html.unescape(re.sub(r"<[^>]+>", " ", items[str(shop.client.id)]))
    assert f"party {shop.client.id} for user {shop.accountant.id}" in text
    assert describer.asked == ["party"]
