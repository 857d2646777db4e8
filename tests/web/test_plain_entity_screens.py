"""A plugin entity that offers users no filters (no ``filter_attrs``, as the tutorial's)
still shows on its clients' cards and on its board: the core's own queries narrow by its
party, pipeline and stage whatever the entity offers users.  The API's filters stay what
the entity declares."""

from __future__ import annotations

import html

import pytest

from crmkit.testing import add_user, factories
from crmkit.web.app import create_app
from tests.plain_plugin import plugin as plain
from tests.web.conftest import Browser

pytestmark = pytest.mark.anyio

WHEN = "2026-11-20T10:00:00+03:00"


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _browser(crm, username):
    browser = Browser(create_app(crm), crm)
    assert (await browser.login(username)).status_code == 303
    return browser


async def test_cards_and_the_board_of_an_entity_without_filter_attrs(make_crm):
    crm = make_crm(plugins=[plain])
    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(agent) as work:
        visited = factories.organisation(work, name="Весна")
        other = factories.organisation(work, name="Без визитов")
        visit = work.records("plain_visit").create(party_id=visited.id, visited_at=WHEN)
    browser = await _browser(crm, "agent1")
    try:
        card = await browser.get(f"/clients/{visited.id}")
        assert card.status_code == 200, card.text
        assert f'href="/records/plain_visit/{visit.id}"' in card.text
        empty = await browser.get(f"/clients/{other.id}")
        assert empty.status_code == 200, empty.text
        board = await browser.get("/boards/plain_visit")
        assert board.status_code == 200, board.text
        assert "Весна" in html.unescape(board.text)
        assert f"/records/plain_visit/{visit.id}" in board.text
        mine = await browser.get("/boards/plain_visit?mine=1")
        assert mine.status_code == 200, mine.text
        # users still filter only on what the entity declares
        listed = await browser.get(f"/lists/plain_visit?f.party_id={visited.id}")
        assert listed.status_code == 422 and "нельзя отбирать по полю" in html.unescape(listed.text)
    finally:
        await browser.close()


def test_a_stage_is_emptied_of_an_entity_without_filter_attrs(make_crm):
    crm = make_crm(plugins=[plain])
    manager = add_user(crm, "manager1", ["manager"])
    with crm.acting_as(manager) as work:
        party = factories.organisation(work)
        visit = work.records("plain_visit").create(party_id=party.id, visited_at=WHEN)
    with crm.acting_as(manager) as work:
        result = work.moves.move_stage_out("plain_visit", "planned", "cancelled")
        assert result.moved == [visit.id]
