"""The accountant's cashback screen as the car service uses it: namesakes told apart."""

from __future__ import annotations

import html
import re

import pytest
from crmkit_carservice import carservice

from crmkit.testing.web import WebClient

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def found_clients(page_text):
    """Each found client's list item (its text) by client id."""
    items = re.findall(
        r'<li class="found-client"><a href="/finance/cashback\?client=(\d+)">(.*?)</li>',
        page_text,
        re.S,
    )
    return {int(i): html.unescape(re.sub(r"<[^>]+>", " ", body)) for i, body in items}


async def test_namesakes_found_for_cashback_show_their_phone_and_plates(station):
    phones = ("+7 903 111-11-11", "+7 903 222-22-22", None)
    plates = ("В111ОР77", None, "Е333КХ99")
    namesakes = []
    with station.crm.acting_as(station.manager) as work:
        for phone, plate in zip(phones, plates, strict=True):
            points = [{"kind": "phone", "value": phone}] if phone else []
            party = work.parties.create(
                kind="person",
                name="Павел Петров",
                contact_points=points,
                confirm_duplicates=True,
            )
            if plate:
                carservice(work).cars.create(
                    party_id=party.id, plate=plate, make="Kia", model="Rio"
                )
            namesakes.append(party)
    client = WebClient.for_crm(station.crm)
    assert (await client.login("accountant")).status_code == 303
    page = await client.get("/finance/cashback", params={"q": "Павел Петров"})
    found = found_clients(page.text)
    assert set(found) == {p.id for p in namesakes}, found
    first, second, third = (found[p.id] for p in namesakes)
    assert "Павел Петров" in first and "111-11-11" in first and "В111ОР77" in first
    assert "222-22-22" in second and "ОР77" not in second and "КХ99" not in second
    assert "Е333КХ99" in third and "+7" not in third
