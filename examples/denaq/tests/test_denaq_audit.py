"""What a UX audit of denaq found: the statistics' agents and units, the new lead form."""

from __future__ import annotations

import re

import pytest
from denaq_fixtures import new_lead
from denaq_web import Client

from crmkit.web.app import create_app


@pytest.fixture
def signed_in(denaq, staff):
    app = create_app(denaq)
    return lambda username: Client(app, username)


def _cells(page: str) -> list[str]:
    table = page.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    return [c.strip() for c in re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", table)]


def test_the_funnel_by_agent_page_shows_no_lead_creator(denaq, staff, signed_in):
    new_lead(denaq, staff.finder, name="ООО «Велоград»")
    new_lead(denaq, staff.anna, name="ООО «Автомир»")
    admin = signed_in("boss")
    cells = _cells(admin.get("/reports/denaq_funnel_by_agent").text)
    assert "Анна" in cells and "Ксения" not in cells
    csv = admin.get("/reports/denaq_funnel_by_agent/export.csv").content.decode("utf-8-sig")
    assert "Анна" in csv and "Ксения" not in csv
