"""The client card offers the declared timeline kinds as filters, each by its label."""

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
    assert chips["visit_report"] == "Visit report" and chips["site_survey"] == "site_survey"
    assert chips["note"] == "note" and "automation" in chips
    visits = await browser.get(f"/clients/{party}/timeline?kind=visit_report")
    kinds = [
        html.unescape(k) for k in re.findall(r'<span class="kind">([^<]+)</span>', visits.text)
    ]
    assert kinds == ["Visit report"] and "склад осмотрен" in visits.text
    assert "заметка" not in visits.text
    await browser.close()
