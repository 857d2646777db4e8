"""Plain numbers read from forms (snooze hours, a task's priority, a record's version):
a value outside the field's range, 25 digits included, is refused naming the field (a
422, never a 500), and nothing is written."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from crmkit.model import Conversation, Task
from crmkit.testing import factories
from tests.web.conftest import ChatChannel

pytestmark = pytest.mark.anyio

HUGE = "9" * 25


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[ChatChannel()])


def _says(response, field: str, words: str) -> bool:
    return f"{field}: {words}" in html.unescape(response.text)


@pytest.mark.parametrize(
    ("hours", "words"),
    [(HUGE, "must be between 1 and 8760"), ("8761", "must be between 1 and 8760"),
     ("0", "must be between 1 and 8760"), ("-3", "must be between 1 and 8760"),
     ("четыре", "must be a whole number")],
)  # fmt: skip
async def test_snooze_hours_out_of_range_are_refused_naming_the_field(web, crm, hours, words):
    from crmkit import InboundMessage

    agent = await web("agent", locale="en")
    with crm.system() as work:
        work.channels.ingest(
            InboundMessage(channel="chat", external_id="m1", sender="a@example.ru", body="hi")
        )
        (conversation,) = work.session.scalars(select(Conversation))
    refused = await agent.post(
        f"/inbox/{conversation.id}/act", {"action": "snooze", "hours": hours}
    )
    assert refused.status_code == 303  # back to the conversation, saying why
    page = await agent.get(refused.headers["location"])
    assert _says(page, "hours", words)
    with crm.system() as work:
        assert work.session.get(Conversation, conversation.id).status == "open"
    # a year is the most: it is still snoozed
    taken = await agent.post(f"/inbox/{conversation.id}/act", {"action": "snooze", "hours": "8760"})
    assert taken.status_code == 303
    with crm.system() as work:
        assert work.session.get(Conversation, conversation.id).status == "snoozed"


@pytest.mark.parametrize(
    ("priority", "words"),
    [(HUGE, "must be between 0 and 3"), ("4", "must be between 0 and 3"),
     ("-1", "must be between 0 and 3"), ("1.5", "must be a whole number")],
)  # fmt: skip
async def test_a_task_priority_out_of_range_is_refused_and_no_task_is_added(
    web, crm, priority, words
):
    agent = await web("agent", locale="en")
    refused = await agent.post("/tasks/new", {"title": "Позвонить", "priority": priority})
    assert refused.status_code in (303, 422)
    if refused.status_code == 303:
        refused = await agent.get(refused.headers["location"])
    assert _says(refused, "priority", words)
    taken = await agent.post("/tasks/new", {"title": "Позвонить", "priority": "3"})
    assert taken.status_code == 303
    with crm.system() as work:
        assert [t.priority for t in work.session.scalars(select(Task))] == [3]


async def test_a_huge_version_is_refused_naming_it_and_nothing_changes(web, crm):
    manager = await web("manager", locale="en")
    with crm.acting_as(manager.user) as work:
        party = factories.organisation(work, name="ООО «Альфа»")
    refused = await manager.post(
        f"/clients/{party.id}/edit", {"name": "ООО «Бета»", "version": HUGE}
    )
    assert refused.status_code == 422 and _says(refused, "version", "must be between 1 and")
    with crm.system() as work:
        assert work.parties.get(party.id).name == "ООО «Альфа»"


async def test_a_board_move_refuses_an_odd_version_naming_it_and_moves_nothing(web, crm):
    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work)
        stage = deal.stage
    for odd in ("abc", HUGE, 10**25, "0"):
        moved = await agent.post_json(
            "/boards/sales/move", {"id": str(deal.id), "to": "proposal", "version": odd}
        )
        assert moved.status_code == 422, odd
        assert moved.json()["reasons"][0].startswith("version: must be"), odd
    with crm.system() as work:
        assert work.records("deal").get(deal.id).stage == stage
