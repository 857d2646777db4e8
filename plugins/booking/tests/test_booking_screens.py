"""The journal's screens: a booking made through the form shows in the grid; a clash is
refused on the form with its reason."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_booking import booking

from crmkit.testing import add_user, factories
from crmkit.testing.web import WebClient

pytestmark = pytest.mark.anyio
DAY = dt.date(2030, 3, 4)


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_book_through_the_form_and_see_it_in_the_journal(booking_crm):
    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        bay = booking(work).add_resource("Пост 1", kind="bay")
        client = factories.person(work, name="Ольга Соколова")
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    form = {
        "party_id": client.id,
        "resource_id": bay.id,
        "starts_at": f"{DAY}T10:00",
        "minutes": "90",
    }
    booked = await web.post("/booking/new", form)
    assert booked.status_code == 303, booked.text
    page = await web.get("/booking", params={"day": DAY.isoformat()})
    assert page.status_code == 200
    busy = page.text.count('class="busy"')
    assert busy == 3 and "Ольга Соколова" in page.text  # 10:00, 10:30, 11:00
    clash = await web.post("/booking/new", {**form, "starts_at": f"{DAY}T11:00"})
    assert clash.status_code == 422 and 'id="form-error"' in clash.text
    windows = await web.get(
        "/booking", params={"day": DAY.isoformat(), "minutes": "60", "kind": "bay"}
    )
    assert f"starts_at={DAY}T09:00" in windows.text.split('id="free-windows"', 1)[1]
