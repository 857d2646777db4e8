"""The admin's distribution of leads and reassignment of firms."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_denaq.distribution import distribution, summary
from denaq_fixtures import add_person, new_lead

from crmkit.clock import utcnow
from crmkit.errors import MoveRefused, NotFound, PermissionDenied, ValidationFailed
from crmkit.model import Conversation, Party
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
        # mail to Anna's own mailbox is hers: it does not go with the firm
        personal = Conversation(
            channel="mail",
            address="olga@kedr.ru",
            address_key="olga@kedr.ru",
            subject="Лично Анне",
            party_id=firm,
            assignee_id=staff.anna.id,
            account="anna",
            owner_id=staff.anna.id,
        )
        work.session.add_all([conversation, personal])
        work.flush()
        conversation_id, personal_id = conversation.id, personal.id
    with denaq.acting_as(staff.admin) as work:
        assert distribution(work).reassign(staff.anna.id, staff.igor.id, [firm]) == 1
    with denaq.acting_as(staff.anna) as work:
        assert work.reminders.for_user(staff.anna.id) == []
        assert [c.id for c in work.conversations.list("mine")] == [personal_id]
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


def test_a_lead_given_to_an_agent_takes_the_people_its_creator_entered(denaq, staff):
    """The agent sees (and can call) the person the lead creator found, by hand or in turn."""
    firms = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(3)]
    people = [
        add_person(denaq, staff.finder, firm, name=f"Ольга Кедрова{n}")
        for n, firm in enumerate(firms)
    ]
    with denaq.system() as work:  # someone else's person at the first firm stays theirs
        stranger = work.parties.create(
            kind="person",
            first_name="Пётр",
            last_name="Чужой",
            organisation_id=firms[0],
            owner_id=staff.igor.id,
            confirm_duplicates=True,
        ).id
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign(firms[:1], staff.anna.id)
        dealt = distribution(work).round_robin()
        assert dealt.count == 2
        owners = {p: work.parties.get(p).owner_id for p in [*firms, *people, stranger]}
    for firm, person in zip(firms, people, strict=True):
        assert owners[person] == owners[firm] and owners[firm] in (staff.anna.id, staff.igor.id)
    assert owners[stranger] == staff.igor.id
    with denaq.acting_as(staff.anna) as work:
        assert [p.id for p in work.parties.contacts_of(firms[0])] == [people[0]]
        phone_book = work.parties.get(people[0])
        assert phone_book.organisation_id == firms[0]
        work.moves.move(firms[0], "firm", entity="party")
    with denaq.acting_as(staff.finder) as work:  # given away with the firm
        assert [p.id for p in work.parties.list()] == []


def test_a_lead_becomes_a_firm_only_with_a_person_the_mover_can_see(denaq, staff):
    firm = new_lead(denaq, staff.anna, name="ООО «Кедр»")
    with denaq.system() as work:  # a person at the firm, but Игорь's: Анна cannot call them
        work.parties.create(
            kind="person",
            first_name="Пётр",
            last_name="Чужой",
            organisation_id=firm,
            owner_id=staff.igor.id,
            confirm_duplicates=True,
        )
    with denaq.acting_as(staff.anna) as work, pytest.raises(MoveRefused, match="contact person"):
        work.moves.move(firm, "firm", entity="party")
    add_person(denaq, staff.anna, firm)
    with denaq.acting_as(staff.anna) as work:
        work.moves.move(firm, "firm", entity="party")
        assert work.parties.get(firm).stage == "firm"


def test_handing_over_firms_passes_over_people_merged_away(denaq, staff):
    firm = new_lead(denaq, staff.anna, name="ООО «Кедр»")
    kept = add_person(denaq, staff.anna, firm)
    twin = add_person(denaq, staff.anna, firm)
    with denaq.acting_as(staff.admin) as work:
        work.merges.merge(kept, twin)
    with denaq.acting_as(staff.admin) as work:
        assert distribution(work).reassign(staff.anna.id, staff.igor.id) == 1
    with denaq.acting_as(staff.igor) as work:
        assert [p.id for p in work.parties.contacts_of(firm)] == [kept]
        assert work.parties.get(kept).owner_id == staff.igor.id
    with denaq.system() as work:  # the merged-away row is left as it was
        assert work.session.get(Party, twin).owner_id == staff.anna.id


def test_handing_over_firms_gives_their_open_tasks_nobody_had_to_the_new_agent(denaq, staff):
    firm = new_lead(denaq, staff.anna, name="ООО «Кедр»")
    with denaq.acting_as(staff.anna) as work:
        loose = work.tasks.create(title="Отправить прайс", party_id=firm).id
        closed = work.tasks.create(title="Старое", party_id=firm, status="done").id
    with denaq.acting_as(staff.admin) as work:
        distribution(work).reassign(staff.anna.id, staff.igor.id)
    with denaq.acting_as(staff.igor) as work:
        assert [t.id for t in work.tasks.mine()] == [loose]
    with denaq.system() as work:
        assert work.tasks.get(closed).assignee_id is None  # what is done stays as it was
