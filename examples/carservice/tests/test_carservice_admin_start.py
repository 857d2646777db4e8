"""The car service's administrator lands on the administration page, whose latest changes
read in Russian: who, what, which record (linked by its title) and the changed fields."""

from __future__ import annotations

import html
import re

import pytest

from crmkit.testing.web import WebClient

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


#: Russian for the texts the change adds, until the catalogs have them.
RUSSIAN = {"signed in": "вход в систему", "changed": "изменено"}


async def test_the_admins_latest_changes_read_as_sentences(station):
    order = station.order()
    client = WebClient.for_crm(station.crm)
    client.app.state.catalogs["ru"]._catalog.update(RUSSIAN)
    assert (await client.login("admin")).status_code == 303
    page = await client.get("/admin")
    assert page.status_code == 200
    body = page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    raw = re.findall(r"(?s)<tr>(.*?)</tr>", body)
    rows = [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r))) for r in raw]
    sign_in = rows[0]
    assert "Admin" in sign_in and "вход в систему" in sign_in, sign_in
    assert "None" not in sign_in and "→" not in sign_in and "#" not in sign_in, sign_in
    made = next(i for i, r in enumerate(rows) if order.number in r and "создано" in r)
    assert f'href="/records/finance_order/{order.id}"' in raw[made], raw[made]
    assert "Manager" in rows[made]
    stocked = next(r for r in rows if station.oil.name in r and "создано" in r)
    assert "учёт на складе : да" in stocked, stocked  # a yes/no field says yes or no
    for english in ("sign_in", "create", "update", "None", "True", "finance_order"):
        assert all(english not in r for r in rows), (english, rows)
