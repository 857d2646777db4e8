"""What a UX audit of denaq found: the statistics' agents and units, the new lead form."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re

import pytest
from crmkit_denaq.distribution import distribution
from denaq_fixtures import add_person, new_lead
from denaq_web import Client
from openpyxl import load_workbook

from crmkit.clock import frozen_at, utcnow
from crmkit.web.app import create_app


@pytest.fixture
def signed_in(denaq, staff):
    app = create_app(denaq)
    return lambda username: Client(app, username)


def _cells(page: str) -> list[str]:
    table = page.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    return [c.strip() for c in re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", table)]


def _header(page: str) -> list[str]:
    table = page.split('id="report-table"', 1)[1].split("</thead>", 1)[0]
    return [c.strip() for c in re.findall(r"<th[^>]*>([^<]*)</th>", table)]


def test_the_funnel_by_agent_page_shows_no_lead_creator(denaq, staff, signed_in):
    new_lead(denaq, staff.finder, name="ООО «Велоград»")
    new_lead(denaq, staff.anna, name="ООО «Автомир»")
    admin = signed_in("boss")
    cells = _cells(admin.get("/reports/denaq_funnel_by_agent").text)
    assert "Анна" in cells and "Ксения" not in cells
    csv = admin.get("/reports/denaq_funnel_by_agent/export.csv").content.decode("utf-8-sig")
    assert "Анна" in csv and "Ксения" not in csv


def _chart(page: str) -> dict:
    """The Chart.js configuration of a report's own page."""
    return json.loads(html.unescape(re.search(r'data-chart="([^"]*)"', page)[1]))


def test_the_time_in_stage_reads_in_days_on_the_page_the_chart_and_the_downloads(
    denaq, staff, signed_in
):
    """Two days and three hours as a lead is 2,1 days: in the table, in the chart, whose
    legend is the column's header (no "Average hours"), and in the CSV and XLSX, whose
    header says the unit."""
    start = utcnow() - dt.timedelta(days=5)
    with frozen_at(start):
        lead = new_lead(denaq, staff.finder)
        with denaq.acting_as(staff.admin) as work:
            distribution(work).assign([lead], staff.anna.id)
    add_person(denaq, staff.anna, lead)
    with frozen_at(start + dt.timedelta(days=2, hours=3)), denaq.acting_as(staff.anna) as work:
        work.moves.move(lead, "firm", entity="party")
    admin = signed_in("boss")
    page = admin.get("/reports/denaq_time_in_stage").text
    assert "Average hours" not in page
    header = _header(page)
    assert header[-1] in ("Average time, days", "Среднее время, дней")
    lead_row = _cells(page)[len(header) : 2 * len(header)]
    assert lead_row[-1] == "2,1"
    chart = _chart(page)
    [dataset] = chart["data"]["datasets"]
    assert dataset["label"] == header[-1]
    assert dataset["data"][0] == 2.1
    rows = list(
        csv.reader(
            io.StringIO(
                admin.get("/reports/denaq_time_in_stage/export.csv").content.decode("utf-8-sig")
            )
        )
    )
    assert rows[0][-1] == header[-1] and rows[1][-1] == "2.1"
    book = load_workbook(io.BytesIO(admin.get("/reports/denaq_time_in_stage/export.xlsx").content))
    sheet = [[c.value for c in r] for r in book.active.iter_rows()]
    assert sheet[0][-1] == header[-1] and float(sheet[1][-1]) == 2.1


def _h1(page: str) -> str:
    return re.search(r"<h1>([^<]*)</h1>", page)[1].strip()


def test_the_new_lead_form_is_titled_as_the_button_the_lead_creator_clicked(
    denaq, staff, signed_in
):
    finder = signed_in("finder")
    assert "/denaq/leads/new" in finder.menu() and "/clients/new" not in finder.menu()
    assert 'href="/denaq/leads/new"' in finder.get("/denaq/leads").text
    form = finder.get("/denaq/leads/new").text
    assert _h1(form) == "Новый лид"
    assert "<title>Новый лид" in form
    refused = finder.post("/denaq/leads/new", {"kind": "organisation", "name": ""})
    assert refused.status_code == 422 and _h1(refused.text) == "Новый лид"
    # the core's form, from the clients' list, is still a new client's
    assert _h1(finder.get("/clients/new").text) == "Новый клиент"


def test_save_and_add_another_returns_to_an_empty_form_naming_the_saved_lead(
    denaq, staff, signed_in
):
    finder = signed_in("finder")
    form = finder.get("/denaq/leads/new").text
    assert 'name="another" value="1"' in form
    saved = finder.post(
        "/denaq/leads/new",
        {"kind": "organisation", "name": "ООО «Велоград»", "source": "2ГИС", "another": "1"},
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/denaq/leads/new"
    with denaq.acting_as(staff.finder) as work:
        [lead] = work.parties.list(filters={"name": "ООО «Велоград»"}).items
    again = finder.get("/denaq/leads/new").text
    flash = html.unescape(again.split('class="flash', 1)[1].split("</p>", 1)[0])
    assert "ООО «Велоград»" in flash
    assert f'href="/clients/{lead.id}"' in flash
    empty = again.split('class="record-form"', 1)[1]
    assert 'name="name" value=""' in empty and "Велоград" not in empty
    # a plain save still opens the new lead's card
    plain = finder.post("/denaq/leads/new", {"kind": "organisation", "name": "ООО «Тандем»"})
    assert plain.status_code == 303 and plain.headers["location"].startswith("/clients/")
    # a likely duplicate stops the save: "create anyway" keeps the wish to add another
    twin = finder.post(
        "/denaq/leads/new", {"kind": "organisation", "name": "ООО «Велоград»", "another": "1"}
    )
    assert twin.status_code == 409
    assert '<input type="hidden" name="another" value="1">' in twin.text
    anyway = finder.post(
        "/denaq/leads/new",
        {
            "kind": "organisation",
            "name": "ООО «Велоград»",
            "another": "1",
            "confirm_duplicates": "1",
        },
    )
    assert anyway.status_code == 303 and anyway.headers["location"] == "/denaq/leads/new"
