"""The client card offers the timeline kinds found on the client's timeline as filters,
each by its label."""

from __future__ import annotations

import html
import re

import pytest

from crmkit.testing import add_user, factories
from crmkit.web.app import create_app
from tests.web.api.test_timeline_kinds import VisitReports
from tests.web.conftest import Browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_plugins_kind_is_a_filter_of_the_card_shown_by_its_label(make_crm):
    crm = make_crm(plugins=[VisitReports()])
    agent = add_user(crm, "ann", ["agent"], locale="en")
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="ООО «Визит»").id
        work.timeline.add("visit_report", party_id=party, subject="склад осмотрен")
        work.timeline.add_note(party_id=party, body="заметка")
    browser = Browser(create_app(crm), crm)
    assert (await browser.login("ann")).status_code == 303

    card = await browser.get(f"/clients/{party}")

    chips = dict(
        re.findall(
            r'<a class="chip[^"]*" href="/clients/\d+\?kind=([^"]+)"[^>]*>([^<]+)</a>', card.text
        )
    )
    assert chips == {"visit_report": "Visit report", "note": "note"}  # what this client has
    visits = await browser.get(f"/clients/{party}/timeline?kind=visit_report")
    kinds = [
        html.unescape(k) for k in re.findall(r'<span class="kind">([^<]+)</span>', visits.text)
    ]
    assert kinds == ["Visit report"] and "склад осмотрен" in visits.text
    assert "заметка" not in visits.text
    await browser.close()


def _chips(page: str) -> dict[str, str]:
    found = re.findall(
        r'<a class="(chip[^"]*)" href="/clients/\d+(?:\?kind=([^"]+))?"[^>]*>([^<]+)</a>', page
    )
    return {kind or "": (label, "current" in css) for css, kind, label in found}


async def test_the_card_offers_only_the_kinds_its_client_has_and_keeps_a_chosen_one(make_crm):
    crm = make_crm(plugins=[VisitReports()])
    agent = add_user(crm, "ann", ["agent"], locale="en")
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="ООО «Визит»").id
        other = factories.organisation(work, name="ООО «Другой»").id
        work.timeline.add_note(party_id=party, body="заметка")
        work.timeline.add_note(party_id=party, body="ещё заметка")
        work.timeline.add("visit_report", party_id=other, subject="чужой визит")
    browser = Browser(create_app(crm), crm)
    assert (await browser.login("ann")).status_code == 303

    card = await browser.get(f"/clients/{party}")
    # "all" and the one kind found, once; not the kinds nobody wrote here (payment, assistant…)
    assert _chips(card.text) == {"": ("All", True), "note": ("note", False)}
    section = await browser.get(f"/clients/{party}/timeline")
    assert _chips(section.text) == _chips(card.text)
    # a kind chosen by its address stays on offer, chosen, though there is none of it
    chosen = await browser.get(f"/clients/{party}?kind=payment")
    assert chosen.status_code == 200
    assert _chips(chosen.text) == {
        "": ("All", False),
        "note": ("note", False),
        "payment": ("payment", True),
    }
    assert "заметка" not in chosen.text
    section = await browser.get(f"/clients/{party}/timeline?kind=visit_report")
    assert _chips(section.text)["visit_report"] == ("Visit report", True)
    # a client with no entries at all: only "all"
    with crm.acting_as(agent) as work:
        empty = factories.organisation(work, name="ООО «Пусто»").id
    assert _chips((await browser.get(f"/clients/{empty}")).text) == {"": ("All", True)}
    await browser.close()


def test_the_kinds_on_a_timeline_are_one_query_of_what_the_user_may_read(make_crm):
    from sqlalchemy import event

    crm = make_crm()
    agent = add_user(crm, "ann", ["agent"], locale="en")
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="ООО «Счёт»").id
        for n in range(5):
            work.timeline.add_note(party_id=party, body=f"заметка {n}")
        work.timeline.add("call", party_id=party, subject="звонок")
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    with crm.acting_as(agent) as work:
        work.parties.get(party)  # the party itself is read anyway by the card
        event.listen(crm.engine, "before_cursor_execute", seen)
        try:
            kinds = work.timeline.kinds_of(party)
        finally:
            event.remove(crm.engine, "before_cursor_execute", seen)
    assert kinds == {"note", "call"}
    assert len([s for s in statements if "activity" in s.lower()]) == 1
