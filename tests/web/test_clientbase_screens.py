"""Client base screens: duplicate screening as one types, the client form's inline candidates."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmkit.model import Party

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_screening_shows_candidates_with_owner_only_when_visible(web, crm):
    owner = await web("agent", username="olga")
    other = await web("agent", username="petr")
    with crm.acting_as(owner.user) as work:
        party = work.parties.create(
            name="ООО «Ромашка»", contact_points=[{"kind": "phone", "value": "8 916 123-45-67"}]
        )
    page = await owner.get("/screening")
    assert page.status_code == 200 and 'hx-get="/screening/candidates"' in page.text

    mine = await owner.get("/screening/candidates", params={"q": "Romashka"})
    assert f'href="/clients/{party.id}"' in mine.text and "olga" in mine.text

    theirs = await other.get("/screening/candidates", params={"q": "+7 (916) 1234567"})
    assert "ООО «Ромашка»" in theirs.text
    assert f"/clients/{party.id}" not in theirs.text and "olga" not in theirs.text
    assert "another manager" in theirs.text or "другой менеджер" in theirs.text

    nothing = await other.get("/screening/candidates", params={"q": "Совсем другая фирма"})
    assert "candidate" not in nothing.text


async def test_new_client_form_shows_duplicates_and_creates_only_when_confirmed(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        work.parties.create(name="ЗАО «Альфа-Строй»")
    form = {"kind": "organisation", "name": "Альфастрой", "phone": "", "email": ""}
    refused = await agent.post("/clients/new", form)
    assert refused.status_code == 409
    assert "ЗАО «Альфа-Строй»" in refused.text and 'name="confirm_duplicates"' in refused.text
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == 1
    created = await agent.post("/clients/new", {**form, "confirm_duplicates": "1"})
    assert created.status_code in (302, 303)
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == 2
