"""An agent sees only their own firms and accounts: lists, search, board, calendar, reports,
export and the API all answer from the same access rules."""

from __future__ import annotations

import datetime as dt

from denaq_fixtures import add_person, attach, new_lead
from denaq_web import Client, api

from crmkit.clock import utcnow
from crmkit.web.app import create_app


def _portfolio(crm, agent, name):
    """A firm and an account of ``agent``, each with a meeting tomorrow."""
    firm = new_lead(crm, agent, name=f"ООО «{name} Фирма»", source=f"{name}-источник")
    account = new_lead(crm, agent, name=f"ООО «{name} Аккаунт»")
    for party in (firm, account):
        add_person(crm, agent, party, name=f"{name} Контакт")
    attach(crm, agent, account, "contract", "requisites")
    tomorrow = utcnow().replace(microsecond=0) + dt.timedelta(days=1)
    with crm.acting_as(agent) as work:
        for party in (firm, account):
            work.moves.move(party, "firm", entity="party")
            work.calendar.create(
                title=f"Встреча {name} {party}",
                starts_at=tomorrow.isoformat(),
                ends_at=(tomorrow + dt.timedelta(hours=1)).isoformat(),
                party_id=party,
            )
        work.moves.move(account, "account", entity="party")
        work.timeline.add("call", party_id=firm, subject="звонок")
    return firm, account


def test_an_agent_sees_only_their_own_firms_and_accounts_everywhere(denaq, staff):
    mine = _portfolio(denaq, staff.anna, "Аннина")
    theirs = _portfolio(denaq, staff.igor, "Игорева")
    app = create_app(denaq)
    anna = Client(app, "anna")

    listed = _rows(anna.get("/lists/party?f.pipeline=dealer").text)
    assert "Аннина Фирма" in listed and "Аннина Аккаунт" in listed and "Игорева" not in listed
    assert "Игорева" not in _rows(anna.get("/lists/party?q=Игорева").text)  # search
    assert "Игорева" not in _rows(anna.get("/lists/party?q=Игорева Контакт").text)
    assert "Аннина Фирма" in _rows(anna.get("/lists/party?q=Аннина").text)
    board = anna.get("/boards/dealer").text
    assert "Аннина Фирма" in board and "Аннина Аккаунт" in board and "Игорева" not in board
    for party in theirs:
        assert anna.get(f"/clients/{party}").status_code == 404

    today = utcnow().date()
    window = f"start={today.isoformat()}T00:00:00Z&end={(today + dt.timedelta(days=3))}T00:00:00Z"
    for who in ("me", f"user:{staff.igor.id}"):
        events = anna.get(f"/calendar/events?{window}&who={who}").json()
        titles = " ".join(e["title"] for e in events)
        assert "Игорева" not in titles
    assert "Аннина" in " ".join(e["title"] for e in anna.get(f"/calendar/events?{window}").json())

    funnel = anna.get("/reports/denaq_funnel_by_agent").text
    assert "Анна" in funnel and "Игорь" not in funnel
    sources = anna.get("/reports/denaq_leads_by_source").text
    assert "Аннина-источник" in sources and "Игорева-источник" not in sources
    exported = anna.get("/reports/denaq_leads_by_source/export.csv")
    assert exported.status_code == 200
    text = exported.content.decode("utf-8-sig")
    assert "Аннина-источник" in text and "Игорева" not in text

    client = api(app, denaq, staff.anna)
    rows = client.get("/api/v1/party", params={"limit": 100}).json()["items"]
    names = {row["name"] for row in rows}
    assert {"ООО «Аннина Фирма»", "ООО «Аннина Аккаунт»"} <= names
    assert not any("Игорева" in name for name in names)
    assert client.get(f"/api/v1/party/{theirs[0]}").status_code == 404
    searched = client.get("/api/v1/party", params={"q": "Игорева"}).json()["items"]
    assert searched == []
    assert {r["id"] for r in client.get("/api/v1/calendar_event").json()["items"]}.isdisjoint(
        _events_of(denaq, theirs)
    )
    assert mine  # Анна's own records were found above through every path


def _events_of(crm, parties):
    with crm.system() as work:
        return {e.id for e in work.calendar.list(filters={"party_id": list(parties)}, limit=50)}


def _rows(page):
    """The rows of a list page (the search box repeats what was searched for)."""
    return page.split("<tbody", 1)[1].split("</tbody>", 1)[0]
