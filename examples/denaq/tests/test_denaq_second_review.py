"""What a second review of denaq in Russian found: the statistics page crashing on a cut
URL, mail texts saying "None", and template variables that fill nothing."""

from __future__ import annotations

import datetime as dt
import html
import re
from zoneinfo import ZoneInfo

import pytest
from denaq_fixtures import new_lead
from denaq_web import Client

from crmkit.clock import frozen_at
from crmkit.web.app import create_app


@pytest.fixture
def signed_in(denaq, staff):
    app = create_app(denaq)
    return lambda username: Client(app, username)


@pytest.mark.parametrize("query", ["owner_id=abc", "pipeline=", "pipeline=deals"])
def test_the_statistics_page_reads_only_the_parameters_its_reports_take(
    denaq, staff, signed_in, query
):
    """A cut or typed URL of the statistics page crashed it (owner_id=abc: a 500) or made
    "Funnel by stage" report another pipeline; the page now reads, like each report's own
    page, only the parameters a report declares (weeks), and the dealers' funnel stays the
    dealers'."""
    new_lead(denaq, staff.finder, name="ООО «Велоград»")
    admin = signed_in("boss")
    page = admin.get(f"/denaq/stats?{query}")
    assert page.status_code == 200
    assert 'id="report-denaq_funnel"' in page.text and "Лид" in page.text


def test_the_funnel_report_page_refuses_an_owner_that_is_no_id(denaq, staff, signed_in):
    admin = signed_in("boss")
    page = admin.get("/reports/pipeline_funnel?pipeline=dealer&owner_id=abc")
    assert page.status_code == 422 and "owner_id" in page.text


def test_a_template_never_writes_none_for_a_value_the_client_or_sender_lacks(
    denaq, staff, signed_in
):
    """An agent without a phone previewing "{{ sender.phone }}", or a firm without a source
    "{{ party.source }}", read "None" in the mail to the dealer; an empty value is empty."""
    firm = new_lead(denaq, staff.anna, name="ООО «Шинторг»")
    anna = signed_in("anna")
    body = "Телефон: [{{ sender.phone }}], источник: [{{ party.source }}], {{ party.name }}"
    page = anna.post(
        "/templates/preview", {"subject": "Для {{ party.name }}", "body": body, "party_id": firm}
    )
    assert page.status_code == 200
    assert "Телефон: [], источник: [], ООО «Шинторг»" in html.unescape(page.text)
    assert "None" not in page.text


def test_the_preview_names_the_variables_that_fill_in_nothing_for_this_client(
    denaq, staff, signed_in
):
    """A misspelt variable ("{{ partyy.name }}"), a field the CRM does not have
    ("{{ party.inn }}") or one this client lacks ("{{ party.phone }}") silently wrote nothing:
    "Здравствуйте, !" went to the dealer. The preview still renders (a mailing to many
    must not stop at one client without a phone) and names them; ones written under an
    ``{% if %}`` or with ``|default`` are the writer's choice and not named."""
    firm = new_lead(denaq, staff.anna, name="ООО «Шинторг»")
    anna = signed_in("anna")
    body = (
        "Здравствуйте, {{ partyy.name }}! ИНН {{ party.inn }}, тел. {{ party.phone }}.\n"
        "{% if party.email %}{{ party.email }}{% endif %} {{ party.site|default('—') }}\n"
        "{{ sender.name }}, {{ today|date }}"
        "{% set who = party.name %}{{ who }}"
    )
    page = anna.post(
        "/templates/preview", {"subject": "Для {{ party.name }}", "body": body, "party_id": firm}
    )
    assert page.status_code == 200 and "ООО «Шинторг»" in html.unescape(page.text)
    note = page.text.split('class="flash error template-unfilled"', 1)[1].split("</p>", 1)[0]
    assert re.findall(r"<code>([^<]*)</code>", note) == ["partyy.name", "party.inn", "party.phone"]
    # nothing is named when everything fills in
    page = anna.post(
        "/templates/preview", {"subject": "x", "body": "{{ party.name }}", "party_id": firm}
    )
    assert "template-unfilled" not in page.text
    # nor without a client to fill in for (the editor's preview before one is chosen)
    page = anna.post("/templates/preview", {"subject": "x", "body": "{{ party.name }}"})
    assert page.status_code == 200 and "template-unfilled" not in page.text


def test_today_in_a_template_is_the_senders_date_not_utcs(denaq, staff, signed_in):
    """At 01:30 in Moscow on 2 November (22:30 on 1 November in UTC) "Ваш аккаунт дилера
    открыт с {{ today|date }}" said 01.11.2026: today is the sender's date (their time zone,
    else the deployment's), as every page shows it."""
    firm = new_lead(denaq, staff.anna, name="ООО «Шинторг»")
    anna = signed_in("anna")
    body = "Ваш аккаунт дилера открыт с {{ today|date }}."
    moscow = ZoneInfo("Europe/Moscow")
    with frozen_at(dt.datetime(2026, 11, 2, 1, 30, tzinfo=moscow)):
        page = anna.post("/templates/preview", {"subject": "x", "body": body, "party_id": firm})
        with denaq.system() as work:  # without a sender (automation): the deployment's date
            system = work.message_templates.render({"body": body}, party_id=firm).body
    assert "открыт с 02.11.2026." in page.text
    assert system == "Ваш аккаунт дилера открыт с 02.11.2026."
    with denaq.system() as work:
        work.users.update(staff.anna.id, timezone="UTC")
    with frozen_at(dt.datetime(2026, 11, 2, 1, 30, tzinfo=moscow)):  # her own zone decides
        page = signed_in("anna").post(
            "/templates/preview", {"subject": "x", "body": body, "party_id": firm}
        )
    assert "открыт с 01.11.2026." in page.text
