"""The admin's statistics: funnels, conversion, time in stage, sources, creators, activity."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from crmkit_denaq import stats
from crmkit_denaq.distribution import distribution
from denaq_fixtures import add_person, attach, new_lead, refuse

from crmkit.clock import frozen_at
from crmkit.errors import ValidationFailed


def _story(crm, staff):
    """Анна makes a client and loses a firm; Игорь works on one firm; the finder found all."""
    ids = [
        new_lead(crm, staff.finder, name=f"ООО «Фирма {n}»", source=source)
        for n, source in enumerate(("2ГИС", "2ГИС", "выставка", "сайт"))
    ]
    with crm.acting_as(staff.admin) as work:
        distribution(work).assign(ids[:3], staff.anna.id)
        distribution(work).assign(ids[3:], staff.igor.id)
    for agent, party in ((staff.anna, ids[0]), (staff.anna, ids[1]), (staff.igor, ids[3])):
        add_person(crm, agent, party)
        with crm.acting_as(agent) as work:
            work.moves.move(party, "firm", entity="party")
            work.timeline.add("call", party_id=party, subject="звонок")
            work.timeline.add_note(party_id=party, body="заметка")
    attach(crm, staff.anna, ids[0], "contract", "requisites")
    with crm.acting_as(staff.anna) as work:
        work.moves.move(ids[0], "account", entity="party")
        work.moves.move(ids[0], "client", entity="party")
        refuse(work, ids[1], "дорого")
        work.timeline.add("mail", party_id=ids[0], subject="предложение")
    return ids


def test_funnel_by_agent_counts_who_moved_each_record_and_moves_back_apart(denaq, staff):
    ids = _story(denaq, staff)
    with denaq.acting_as(staff.anna) as work:  # Анна reopens the firm that refused...
        work.moves.move(ids[1], "firm", entity="party")
    with denaq.acting_as(staff.admin) as work:  # ...which is then handed to Игорь
        distribution(work).reassign(staff.anna.id, staff.igor.id, [ids[1]])
    with denaq.acting_as(staff.igor) as work:  # who loses it again
        refuse(work, ids[1], "другое", comment="передумали")
    with denaq.acting_as(staff.admin) as work:
        result = stats.funnel_by_agent(work, {})
    rows = {r["owner"]: r for r in result.rows}
    stages = ("lead", "firm", "account", "client", "refused", "back")
    assert {k: rows["Анна"][k] for k in stages} == {
        "lead": 0,
        "firm": 2,  # the reopened firm is a move back, not a second entry
        "account": 1,
        "client": 1,
        "refused": 1,
        "back": 1,
    }
    # one client of the two firms she made, a share as every report's (crmkit.reports.share)
    assert rows["Анна"]["conversion"] == Decimal("0.5000")
    assert isinstance(rows["Анна"]["conversion"], Decimal)
    assert {k: rows["Игорь"][k] for k in stages} == {
        "lead": 0,
        "firm": 1,
        "account": 0,
        "client": 0,
        "refused": 1,
        "back": 0,
    }
    # the lead creator who entered the four leads is no agent: her bar would flatten theirs
    assert "Ксения" not in rows
    assert result.chart["labels"] == ["Анна", "Игорь"]
    assert ("back", "Moved back") in [(c.key, c.label) for c in result.columns]


def test_funnel_by_agent_shows_agents_only_even_those_who_entered_leads(denaq, staff):
    _story(denaq, staff)
    new_lead(denaq, staff.anna, name="ООО «Своя»")  # an agent entering a lead is counted
    with denaq.acting_as(staff.admin) as work:
        refuse(work, new_lead(denaq, staff.admin, name="ООО «Админ»"), "не интересно")
        result = stats.funnel_by_agent(work, {})
    rows = {r["owner"]: r for r in result.rows}
    assert sorted(rows) == ["Анна", "Игорь"]  # neither the lead creator nor the admin
    assert rows["Анна"]["lead"] == 1
    assert result.chart["labels"] == ["Анна", "Игорь"]


def test_funnel_and_time_in_stage_of_the_dealer_pipeline(denaq, staff):
    _story(denaq, staff)
    with denaq.acting_as(staff.admin) as work:
        funnel = {r["stage"]: r for r in stats.STATS[0].build(work, {}).rows}
        time = {r["stage"]: r for r in stats.STATS[2].build(work, {}).rows}
    assert funnel["lead"]["entered"] == 4 and funnel["firm"]["entered"] == 3
    assert funnel["client"]["from_first"] == 0.25
    assert time["firm"]["left"] == 2 and time["account"]["left"] == 1


def test_leads_by_source_and_by_creator(denaq, staff):
    _story(denaq, staff)
    new_lead(denaq, staff.anna, name="ООО «Своя»", source="сайт")
    with denaq.acting_as(staff.admin) as work:
        sources = {r["key"]: r["count"] for r in stats.leads_by_source(work, {}).rows}
        creators = {r["key"]: r["count"] for r in stats.leads_by_creator(work, {}).rows}
    assert sources == {"2ГИС": 2, "сайт": 2, "выставка": 1}
    assert creators == {"Ксения": 4, "Анна": 1}


def test_activity_per_agent_per_week(denaq, staff):
    _story(denaq, staff)
    with denaq.acting_as(staff.admin) as work:
        result = stats.activity_by_week(work, {"weeks": 4})
    totals = {(r["who"], r["kind"]): r["total"] for r in result.rows}
    assert totals == {
        ("Анна", "call"): 2,
        ("Анна", "mail"): 1,
        ("Анна", "note"): 2,
        ("Игорь", "call"): 1,
        ("Игорь", "note"): 1,
    }
    this_week = result.chart["labels"][-1]
    assert all(r[this_week] == r["total"] for r in result.rows)
    assert {d["label"]: sum(d["data"]) for d in result.chart["datasets"]} == {
        "Анна": 5,
        "Игорь": 2,
    }


def test_activity_weeks_start_on_monday_midnight_in_the_deployments_time_zone(denaq, staff):
    assert denaq.config["locale.timezone"] == "Europe/Moscow"
    lead = new_lead(denaq, staff.anna)
    moscow = ZoneInfo("Europe/Moscow")
    sunday_night = dt.datetime(2024, 3, 3, 23, 30, tzinfo=moscow)  # 20:30 UTC
    monday_early = dt.datetime(2024, 3, 4, 0, 15, tzinfo=moscow)  # still Sunday in UTC
    with denaq.acting_as(staff.anna) as work:
        work.timeline.add("call", party_id=lead, subject="поздно", occurred_at=sunday_night)
        work.timeline.add("call", party_id=lead, subject="рано", occurred_at=monday_early)
    with (
        frozen_at(dt.datetime(2024, 3, 4, 0, 30, tzinfo=moscow)),
        denaq.acting_as(staff.admin) as work,
    ):
        result = stats.activity_by_week(work, {"weeks": 2})
    assert result.chart["labels"] == ["2024-02-26", "2024-03-04"]
    [row] = result.rows
    assert (row["who"], row["2024-02-26"], row["2024-03-04"]) == ("Анна", 1, 1)


@pytest.mark.parametrize("weeks", ["x", "-1", "0", "53", "2.5"])
def test_activity_refuses_weeks_that_are_not_1_to_52_naming_the_parameter(denaq, staff, weeks):
    with denaq.acting_as(staff.admin) as work, pytest.raises(ValidationFailed) as refused:
        stats.activity_by_week(work, {"weeks": weeks})
    assert list(refused.value.errors) == ["weeks"]


def test_activity_takes_1_and_52_weeks_and_8_when_not_given(denaq, staff):
    with denaq.acting_as(staff.admin) as work:
        for given, columns in ((None, 8), ("", 8), ("1", 1), ("52", 52), (3, 3)):
            params = {} if given is None else {"weeks": given}
            assert len(stats.activity_by_week(work, params).chart["labels"]) == columns


def test_an_agent_running_the_statistics_sees_only_their_own(denaq, staff):
    _story(denaq, staff)
    with denaq.acting_as(staff.igor) as work:
        funnel = {r["owner"]: r for r in stats.funnel_by_agent(work, {}).rows}
        # his one record: he made it a firm (Ксения, who entered it, is no agent)
        assert {who: (r["lead"], r["firm"]) for who, r in funnel.items()} == {"Игорь": (0, 1)}
        assert {r["who"] for r in stats.activity_by_week(work, {}).rows} == {"Игорь"}
        assert sum(r["count"] for r in stats.leads_by_source(work, {}).rows) == 1
