"""The intake form in Russian: a client's name is «ФИО», numbers in refusals read the Russian
way.  (The name label's Russian comes with its catalog entry: see the branch's report.)"""

from __future__ import annotations

import html
import re

import pytest
from service_fixtures import signed_in

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_the_intake_form_asks_a_persons_full_name_not_a_title(station):
    manager = await signed_in(station, "manager")
    page = await manager.get("/service/intake")
    assert page.status_code == 200, page.text
    label = re.search(r"<label>([^<]*)<input name=\"client_name\"", page.text)[1]
    assert html.unescape(label) == "ФИО (или название организации)"


async def test_a_mileage_over_the_limit_names_the_limit_with_russian_grouping(station):
    manager = await signed_in(station, "manager")
    form = {
        "client_kind": "person",
        "party_id": str(station.client.id),
        "car_id": str(station.car.id),
        "services": str(station.diagnostics.id),
        "assignee_id": str(station.ivan.id),
        "location_id": str(station.branch.id),
        "mileage": "12345678",
    }
    response = await manager.post("/service/intake", form)
    assert response.status_code == 422, response.status_code
    error = html.unescape(re.search(r'id="form-error">([^<]*)<', response.text)[1])
    assert "9\u00a0999\u00a0999" in error, error
    assert "9999999" not in error
