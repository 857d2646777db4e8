"""The car service's order page names the order's branch (it said «склад: 1»)."""

from __future__ import annotations

import re

import pytest
from service_fixtures import signed_in

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_the_order_page_names_its_branch(station):
    """The manager reads it linked; a worker, who may read neither branches nor clients,
    sees neither (no bare id instead)."""
    order = station.order()
    link = f'<a href="/records/finance_location/{station.branch.id}">{station.branch.name}</a>'
    for username, shown in (("manager", True), ("ivan", False)):
        client = await signed_in(station, username)
        page = await client.get(f"/records/finance_order/{order.id}")
        assert page.status_code == 200, username
        details = page.text.split('<dl class="details">', 1)[1].split("</dl>", 1)[0]
        fields = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", details, re.S))
        # the field's Russian label is «склад» now, «филиал» once the catalog says so
        branch = [v for k, v in fields.items() if k in ("склад", "филиал", "location_id")]
        assert branch == ([link] if shown else []), (username, fields)
