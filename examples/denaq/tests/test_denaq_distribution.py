"""The admin's distribution of leads and reassignment of firms."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_denaq.distribution import distribution, summary
from denaq_fixtures import add_person, new_lead

from crmkit.clock import utcnow
from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.model import Conversation
from crmkit.testing import add_user


def test_leads_of_the_lead_creators_wait_until_given_by_hand(denaq, staff):
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(3)]
    with denaq.acting_as(staff.admin) as work:
        service = distribution(work)
        assert [p.id for p in service.unassigned()] == leads
        assert service.assign(leads[:2], staff.anna.id).count == 2
        with pytest.raises(ValidationFailed, match="not an active agent"):
            service.assign(leads[2:], staff.finder.id)
        assert [p.id for p in service.unassigned()] == leads[2:]
    with denaq.acting_as(staff.anna) as work:
        assert sorted(p.id for p in work.parties.list()) == leads[:2]
    with denaq.acting_as(staff.finder) as work:  # given away: no longer the finder's
        assert [p.id for p in work.parties.list()] == leads[2:]


def test_round_robin_deals_in_turn_starting_with_the_least_loaded(denaq, staff):
    new_lead(denaq, staff.anna, name="ООО «Своё»")  # Анна already works on one lead
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(5)]
    with denaq.acting_as(staff.admin) as work:
        given = distribution(work).round_robin()
        assert given.given == {staff.igor.id: 3, staff.anna.id: 2} and given.taken == []
        assert distribution(work).unassigned() == []
        assert distribution(work).load() == {staff.anna.id: 3, staff.igor.id: 3}
        owners = [work.parties.get(i).owner_id for i in leads]
    assert owners == [staff.igor.id, staff.anna.id] * 2 + [staff.igor.id]


def test_leads_dealt_from_a_stale_page_skip_those_already_taken(denaq, staff):
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(3)]
    with denaq.acting_as(staff.admin) as work:  # one admin gives the first lead to Игорь
        distribution(work).assign(leads[:1], staff.igor.id)
    with denaq.acting_as(staff.admin) as work:  # another, still showing all three
        dealt = distribution(work).assign(leads[:2], staff.anna.id)
        assert (dealt.given, [p.name for p in dealt.taken]) == (
            {staff.anna.id: 1},
            ["ООО «Лид 0»"],
        )
        dealt = distribution(work).round_robin(leads)
        assert dealt.count == 1
        assert sorted(p.name for p in dealt.taken) == ["ООО «Лид 0»", "ООО «Лид 1»"]
    with denaq.acting_as(staff.admin) as work:
        owners = [work.parties.get(i).owner_id for i in leads]
    assert owners[:2] == [staff.igor.id, staff.anna.id]
    with denaq.acting_as(staff.igor) as work:
        assert leads[0] in [p.id for p in work.parties.list()]


def test_an_agent_may_not_distribute(denaq, staff):
    lead = new_lead(denaq, staff.finder)
    with denaq.acting_as(staff.anna) as work, pytest.raises(PermissionDenied):
        distribution(work).assign([lead], staff.anna.id)


def test_reassigning_firms_moves_their_people_tasks_and_meetings(denaq, staff):
    firm = new_lead(denaq, staff.anna, name="ООО «Кедр»")
    other = new_lead(denaq, staff.anna, name="ООО «Сосна»")
    person = add_person(denaq, staff.anna, firm)
    soon = utcnow() + dt.timedelta(days=1)
    with denaq.acting_as(staff.anna) as work:
        work.moves.move(firm, "firm", entity="party")
        task = work.tasks.create(title="Перезвонить", party_id=firm, assignee_id=staff.anna.id)
        event = work.calendar.create(
            title="Встреча",
            starts_at=soon.isoformat(),
            ends_at=(soon + dt.timedelta(hours=1)).isoformat(),
            party_id=firm,
        )
    with denaq.acting_as(staff.admin) as work:
        assert distribution(work).reassign(staff.anna.id, staff.igor.id, [firm]) == 1
        rows = {r["agent"].username: r for r in summary(work)}
        assert (rows["anna"]["lead"], rows["igor"]["firm"]) == (1, 1)
    with denaq.acting_as(staff.anna) as work:
        for record in (firm, person):
            with pytest.raises(NotFound):
                work.parties.get(record)
        # what she wrote herself stays hers to read, but it is now Игорь's work
        assert work.tasks.get(task.id).assignee_id == staff.igor.id
        assert work.tasks.mine() == []
        assert [p.id for p in work.parties.list()] == [other]
    with denaq.acting_as(staff.igor) as work:
        assert work.parties.get(firm).owner_id == staff.igor.id
        assert work.tasks.get(task.id).assignee_id == staff.igor.id
        assert work.calendar.get(event.id).owner_id == staff.igor.id
        assert [p.id for p in work.parties.contacts_of(firm)] == [person]


def test_reassigning_firms_moves_reminders_conversations_and_meetings_going_on(denaq, staff):
    firm = new_lead(denaq, staff.anna, name="ООО «Кедр»")
    now = utcnow()
    with denaq.acting_as(staff.anna) as work:
        reminder = work.reminders.create(
            remind_at=(now + dt.timedelta(days=2)).isoformat(), text="Позвонить", party_id=firm
        )
        meeting = work.calendar.create(
            title="Идёт встреча",
            starts_at=(now - dt.timedelta(minutes=30)).isoformat(),
            ends_at=(now + dt.timedelta(minutes=30)).isoformat(),
            party_id=firm,
        )
        over = work.calendar.create(
            title="Прошлая встреча",
            starts_at=(now - dt.timedelta(days=1, hours=1)).isoformat(),
            ends_at=(now - dt.timedelta(days=1)).isoformat(),
            party_id=firm,
        )
    with denaq.system() as work:
        conversation = Conversation(
            channel="mail",
            address="olga@kedr.ru",
            address_key="olga@kedr.ru",
            subject="Условия",
            party_id=firm,
            assignee_id=staff.anna.id,
        )
        work.session.add(conversation)
        work.flush()
        conversation_id = conversation.id
    with denaq.acting_as(staff.admin) as work:
        assert distribution(work).reassign(staff.anna.id, staff.igor.id, [firm]) == 1
    with denaq.acting_as(staff.anna) as work:
        assert work.reminders.for_user(staff.anna.id) == []
        assert work.conversations.list("mine") == []
    with denaq.acting_as(staff.igor) as work:
        assert [r.id for r in work.reminders.for_user(staff.igor.id)] == [reminder.id]
        assert [c.id for c in work.conversations.list("mine")] == [conversation_id]
        assert work.calendar.get(meeting.id).owner_id == staff.igor.id
    with denaq.acting_as(staff.admin) as work:  # a meeting that is over stays in her diary
        assert work.calendar.get(over.id).owner_id == staff.anna.id


def test_reassigning_to_a_blocked_agent_is_refused_and_changes_nothing(denaq, staff):
    firm = new_lead(denaq, staff.anna)
    gone = add_user(denaq, "gone", ["agent"])
    with denaq.system() as work:
        work.users.block(gone.id)
    with denaq.acting_as(staff.admin) as work, pytest.raises(ValidationFailed):
        distribution(work).reassign(staff.anna.id, gone.id)
    with denaq.acting_as(staff.anna) as work:
        assert work.parties.get(firm).owner_id == staff.anna.id
