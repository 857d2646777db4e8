"""A client's preferred language: chosen on the client form, shown on the card."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_the_language_is_chosen_on_the_form_and_shown_on_the_card(web, crm):
    agent = await web("agent", locale="en")
    form = await agent.get("/clients/new")
    assert 'id="party-language"' in form.text and '<option value="en">English</option>' in form.text
    created = await agent.post(
        "/clients/new", {"kind": "person", "name": "John Smith", "language": "en"}
    )
    assert created.status_code == 303, created.text
    path = created.headers["location"]
    with crm.system() as work:
        [party] = work.parties.list(search="John Smith")
    assert party.language == "en"
    card = await agent.get(path)
    assert "<dd>English</dd>" in card.text
    edit = await agent.get(f"{path}/edit")
    assert '<option value="en" selected>English</option>' in edit.text
    cleared = await agent.post(
        f"{path}/edit",
        {"kind": "person", "name": "John Smith", "language": "", "version": str(party.version)},
    )
    assert cleared.status_code == 303
    with crm.system() as work:
        assert work.parties.get(party.id).language is None
    bad = await agent.post(
        f"{path}/edit",
        {"kind": "person", "name": "John Smith", "language": "EN!", "version": "2"},
    )
    assert bad.status_code == 422 and "language: a language code such as ru" in bad.text
