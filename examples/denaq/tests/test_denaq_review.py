"""What a reviewer using denaq in Russian found: figures, exports, the handover of a blocked
agent's firms, odd ids, notes to colleagues, one notice per handover, paging, words in
English on Russian pages."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from crmkit_denaq.distribution import distribution
from denaq_fixtures import add_person, attach, new_lead
from denaq_web import Client

from crmkit.clock import frozen_at, utcnow
from crmkit.web.app import create_app


@pytest.fixture
def signed_in(denaq, staff):
    app = create_app(denaq)
    return lambda username: Client(app, username)


def _cells(page: str) -> list[str]:
    table = page.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    return [c.strip() for c in re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", table)]


def test_report_pages_show_percents_and_durations_as_a_reader_reads_them(denaq, staff, signed_in):
    """A conversion of one in three is "33,3 %" (not "0,333 %"), and two days and three
    hours in a stage read so, not as 183600 seconds."""
    start = utcnow() - dt.timedelta(days=5)
    with frozen_at(start):
        ids = [new_lead(denaq, staff.finder, name=f"ООО «Фирма {n}»") for n in range(3)]
        with denaq.acting_as(staff.admin) as work:
            distribution(work).assign(ids, staff.anna.id)
    for party in ids:
        add_person(denaq, staff.anna, party)
    with frozen_at(start + dt.timedelta(days=2, hours=3)), denaq.acting_as(staff.anna) as work:
        for party in ids:
            work.moves.move(party, "firm", entity="party")
    attach(denaq, staff.anna, ids[0], "contract", "requisites")
    with denaq.acting_as(staff.anna) as work:
        work.moves.move(ids[0], "account", entity="party")
        work.moves.move(ids[0], "client", entity="party")
    admin = signed_in("boss")
    cells = _cells(admin.get("/reports/denaq_funnel_by_agent").text)
    assert "33,3\xa0%" in cells and not any("0,333" in c for c in cells)
    cells = _cells(admin.get("/reports/denaq_time_in_stage").text)
    assert "2 дня 3 часа" in cells
    assert not any(re.fullmatch(r"[\d\s,]+", c) and len(c) > 5 for c in cells)


@pytest.mark.parametrize("name", ["denaq_leads_by_source", "denaq_leads_by_creator"])
def test_the_totals_row_of_leads_by_source_and_creator_says_total(denaq, staff, signed_in, name):
    new_lead(denaq, staff.finder, name="ООО «Велоград»", source="2ГИС")
    new_lead(denaq, staff.finder, name="ООО «Автомир»", source="сайт")
    admin = signed_in("boss")
    text = admin.get(f"/reports/{name}/export.csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[-1] == ["Итого", "2"]
    assert "Project-Id-Version" not in text
    xlsx = admin.get(f"/reports/{name}/export.xlsx")
    assert xlsx.status_code == 200 and b"Project-Id-Version" not in xlsx.content
    assert "Project-Id-Version" not in admin.get(f"/reports/{name}").text


def _select(page: str, name: str) -> str:
    return page.split(f'name="{name}"', 1)[1].split("</select>", 1)[0]


def test_a_blocked_agents_firms_can_still_be_handed_over_from_the_screen(denaq, staff, signed_in):
    """An agent who left keeps their firms until the admin hands them over: they are listed
    (marked blocked) in the agents' table and under "From", never as a receiver."""
    firm = new_lead(denaq, staff.finder, name="ООО «Автомир»")
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign([firm], staff.igor.id)
    with denaq.system() as work:
        work.users.block(staff.igor.id)
        gone = work.users.create(username="olga", roles=["agent"], display_name="Ольга")
        work.users.block(gone.id)  # holds nothing: not listed
    admin = signed_in("boss")
    page = admin.get("/denaq/distribution").text
    agents = page.split('id="agents"', 1)[1].split("</section>", 1)[0]
    assert "Игорь" in agents and "заблокирован" in agents and "Ольга" not in agents
    assert f'href="/denaq/distribution?from={staff.igor.id}#handover"' in agents
    assert f'value="{staff.igor.id}"' in _select(page, "from")
    assert "Ольга" not in _select(page, "from")
    handover = admin.get(f"/denaq/distribution?from={staff.igor.id}").text
    assert "ООО «Автомир»" in handover
    receivers = _select(handover, "to_agent")
    assert f'value="{staff.anna.id}"' in receivers and f'value="{staff.igor.id}"' not in receivers
    done = admin.post(
        "/denaq/distribution",
        {"action": "reassign", "from_agent": str(staff.igor.id), "to_agent": str(staff.anna.id)},
    )
    assert done.status_code == 303
    with denaq.system() as work:
        assert work.parties.get(firm).owner_id == staff.anna.id
    # holding nothing now, the blocked agent is no longer listed
    assert "Игорь" not in admin.get("/denaq/distribution").text.split('id="agents"', 1)[1]
