"""Nothing leaks: roles x entities x actions, through every way of reading.

Two agents each own a client with a deal, a task, a note, a file, an event and a reminder.
Every reading path (get, list, count, search, export iteration, related lists on the card,
timeline, calendar) is checked for every role; writes are checked too.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from crmkit.access.rules import Scope
from crmkit.errors import NotFound, PermissionDenied
from crmkit.testing import add_user, factories

ENTITIES = (
    "party",
    "deal",
    "task",
    "activity",
    "attachment",
    "calendar_event",
    "reminder",
    "contact_point",
)


def seed_world(crm, owner):
    """One client of ``owner`` with a record of every kind; returns ids by entity."""
    now = dt.datetime.now(dt.UTC)
    with crm.acting_as(owner) as work:
        org = factories.organisation(work, name=f"Клиент {owner.username}")
        deal = factories.deal(work, party_id=org.id, title=f"Сделка {owner.username}")
        task = factories.task(work, party_id=org.id, title=f"Задача {owner.username}")
        note = work.timeline.add_note(party_id=org.id, body=f"заметка {owner.username}")
        file = work.attachments.add(f"{owner.username}.txt", b"secret", party_id=org.id)
        event = work.calendar.create(
            title=f"Встреча {owner.username}",
            party_id=org.id,
            starts_at=(now + dt.timedelta(hours=1)).isoformat(),
            ends_at=(now + dt.timedelta(hours=2)).isoformat(),
        )
        reminder = work.reminders.create(
            text=f"напомнить {owner.username}",
            party_id=org.id,
            remind_at=(now + dt.timedelta(days=1)).isoformat(),
        )
        return {
            "party": org.id,
            "deal": deal.id,
            "task": task.id,
            "activity": note.id,
            "attachment": file.id,
            "calendar_event": event.id,
            "reminder": reminder.id,
            "contact_point": org.contact_points[0].id,
        }


@pytest.fixture
def world(crm):
    people = {
        "alice": add_user(crm, "alice", ["agent"]),
        "bob": add_user(crm, "bob", ["agent"]),
        "carol": add_user(crm, "carol", ["manager"]),
        "root": add_user(crm, "root", ["admin"]),
    }
    records = {name: seed_world(crm, people[name]) for name in ("alice", "bob")}
    return people, records


def visible_ids(work, entity):
    service = work.records(entity)
    listed = set()
    cursor = None
    while True:
        page = service.list(after=cursor, limit=2)
        listed |= {r.id for r in page.items}
        cursor = page.next_cursor
        if not cursor:
            break
    iterated = {r.id for r in service.iterate()}
    assert listed == iterated, f"{entity}: list and export disagree"
    assert service.count() == len(listed), f"{entity}: count and list disagree"
    return listed


@pytest.mark.parametrize("entity", ENTITIES)
def test_agents_see_only_their_own(crm, world, entity):
    people, records = world
    for me, other in (("alice", "bob"), ("bob", "alice")):
        with crm.acting_as(people[me]) as work:
            seen = visible_ids(work, entity)
            assert records[me][entity] in seen
            assert records[other][entity] not in seen
            with pytest.raises(NotFound):
                work.records(entity).get(records[other][entity])


@pytest.mark.parametrize("entity", ENTITIES)
@pytest.mark.parametrize("role_user", ["carol", "root"])
def test_managers_and_admins_see_everything(crm, world, entity, role_user):
    people, records = world
    with crm.acting_as(people[role_user]) as work:
        seen = visible_ids(work, entity)
        assert {records["alice"][entity], records["bob"][entity]} <= seen


def test_search_never_finds_hidden_clients(crm, world):
    people, records = world
    with crm.acting_as(people["alice"]) as work:
        assert [p.id for p in work.parties.list(search="Клиент bob").items] == []
        assert [p.id for p in work.parties.list(search="Клиент").items] == [
            records["alice"]["party"]
        ]
        bob_phone = work.session.get(work.parties.model, records["bob"]["party"])
        phone = bob_phone.contact_points[0].value
        assert work.parties.list(search=phone).items == []
        assert work.parties.by_contact("phone", phone) == []
        assert [t.id for t in work.tasks.list(search="Задача").items] == [records["alice"]["task"]]
        assert [d.id for d in work.deals.list(search="Сделка").items] == [records["alice"]["deal"]]


def test_related_lists_of_a_hidden_client_are_not_found(crm, world):
    people, records = world
    bob_party = records["bob"]["party"]
    with crm.acting_as(people["alice"]) as work:
        with pytest.raises(NotFound):
            work.timeline.list(bob_party)
        with pytest.raises(NotFound):
            work.attachments.for_party(bob_party)
        with pytest.raises(NotFound):
            work.groups.groups_of(bob_party)
        with pytest.raises(NotFound):
            work.attachments.open(records["bob"]["attachment"])
        # an entry naming a hidden file (a mail's files are listed in its data) shows none
        mail = SimpleNamespace(id=1, data={"attachments": [records["bob"]["attachment"]]})
        assert work.attachments.of_entries([mail]) == {}
        mail.data["attachments"].append(records["alice"]["attachment"])
        assert [f.id for f in work.attachments.of_entries([mail])[1]] == [
            records["alice"]["attachment"]
        ]
        with pytest.raises(NotFound):
            work.audit_log.for_record("party", bob_party)
        assert work.tasks.for_party(bob_party) == []
        assert work.timeline.mentions_of(people["bob"].id) == []
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        events = work.calendar.between(start, start + dt.timedelta(days=3))
        assert [e.id for e in events] == [records["alice"]["calendar_event"]]


def test_cannot_link_records_to_hidden_clients(crm, world):
    people, records = world
    with crm.acting_as(people["alice"]) as work:
        with pytest.raises(Exception, match="no party"):
            work.deals.create(title="steal", party_id=records["bob"]["party"])
        with pytest.raises(NotFound):
            work.timeline.add_note(party_id=records["bob"]["party"], body="hi")


@pytest.mark.parametrize("action", ["update", "delete", "assign"])
def test_agent_writes_outside_scope(crm, world, action):
    people, records = world
    with crm.acting_as(people["alice"]) as work:
        bob_party = records["bob"]["party"]
        # agents may not assign at all: refused before the record is even looked at
        with pytest.raises(PermissionDenied if action == "assign" else NotFound):
            if action == "update":
                work.parties.update(bob_party, description="x")
            elif action == "delete":
                work.parties.delete(bob_party)
            else:
                work.parties.assign([bob_party], people["alice"].id)
        own = records["alice"]["party"]
        if action == "update":
            work.parties.update(own, description="fine")
        else:
            with pytest.raises(PermissionDenied):
                if action == "delete":
                    work.parties.delete(own)
                else:
                    work.parties.assign([own], people["bob"].id)


def test_agent_cannot_administer(crm, world):
    people, _ = world
    with crm.acting_as(people["alice"]) as work:
        with pytest.raises(PermissionDenied):
            work.users.create(username="mallory", roles=["admin"])
        with pytest.raises(PermissionDenied):
            work.users.block("bob")
        with pytest.raises(PermissionDenied):
            work.permissions.set("agent", "party", "read", "all")
        with pytest.raises(PermissionDenied):
            work.audit_log.latest()


def test_admin_reassigns_and_visibility_follows(crm, world):
    people, records = world
    alice_party = records["alice"]["party"]
    with crm.acting_as(people["root"]) as work:
        assert work.parties.assign([alice_party], people["bob"].id) == 1
    with crm.acting_as(people["alice"]) as work:
        assert alice_party not in visible_ids(work, "party")
        assert records["alice"]["deal"] in visible_ids(work, "deal")  # deals keep their owner
        assert records["alice"]["activity"] not in visible_ids(work, "activity")
    with crm.acting_as(people["bob"]) as work:
        assert alice_party in visible_ids(work, "party")
        notes = work.notifications.latest()
        assert any(n.kind == "reassignment" and n.party_id == alice_party for n in notes)


def test_team_scope(crm, world):
    people, records = world
    dave = add_user(crm, "dave", ["agent"])
    dave_records = seed_world(crm, dave)
    with crm.system() as work:
        work.users.create_team("north", members=[people["alice"].id, dave.id])
        work.permissions.set("agent", "party", "read", Scope.TEAM)
    with crm.acting_as(people["alice"]) as work:
        seen = visible_ids(work, "party")
    assert seen == {records["alice"]["party"], dave_records["party"]}
    with crm.acting_as(people["bob"]) as work:
        assert visible_ids(work, "party") == {records["bob"]["party"]}


def test_group_scope_with_subgroups(crm, world):
    people, records = world
    with crm.system() as work:
        region = work.groups.create("Москва")
        district = work.groups.create("ЦАО", parent_id=region.id)
        work.groups.add_members(district.id, [records["bob"]["party"]])
        work.groups.grant(region.id, role="agent")
        work.permissions.set("agent", "party", "read", "group")
        work.permissions.set("agent", "activity", "read", "group")
    with crm.acting_as(people["alice"]) as work:
        assert visible_ids(work, "party") == {records["alice"]["party"], records["bob"]["party"]}
        assert records["bob"]["activity"] in visible_ids(work, "activity")
        assert records["bob"]["deal"] not in visible_ids(work, "deal")


def test_admin_edit_of_permission_survives_reseeding(crm, world):
    people, records = world
    with crm.system() as work:
        work.permissions.set("agent", "party", "read", "all")
    crm.sync_access()
    with crm.acting_as(people["alice"]) as work:
        assert records["bob"]["party"] in visible_ids(work, "party")


def test_what_is_linked_to_a_hidden_deal_stays_hidden_on_a_visible_client(crm, world):
    """Reading a client does not read a colleague's deal on it through its timeline:
    its stage moves (with their comments), its notes, its files; a task about it that is
    assigned to the reader stays theirs."""
    people, records = world
    alice, carol = people["alice"], people["carol"]
    client = records["alice"]["party"]
    with crm.acting_as(carol) as work:
        deal = work.deals.create(title="Чужая сделка", party_id=client, owner_id=people["bob"].id)
        work.moves.move(work.deals.get(deal.id), "lost", comment="ушли к конкуренту")
        note = work.timeline.add_note(record=("deal", deal.id), body="скидка не больше 15%")
        file = work.attachments.add("договор.pdf", b"terms", record=("deal", deal.id))
        task = factories.task(work, party_id=client, title="Позвонить", assignee_id=alice.id)
        task.record_entity, task.record_id = "deal", deal.id
        seen_by_manager = {a.id for a in work.timeline.list(client).items}
    assert note.id in seen_by_manager
    with crm.acting_as(alice) as work:
        with pytest.raises(NotFound):
            work.deals.get(deal.id)
        timeline = work.timeline.list(client).items
        assert records["alice"]["activity"] in {a.id for a in timeline}
        assert not [a for a in timeline if a.record_entity == "deal"], [
            (a.kind, a.body) for a in timeline
        ]
        assert work.records("activity").list(search="скидка").items == []
        assert note.id not in visible_ids(work, "activity")
        with pytest.raises(NotFound):
            work.attachments.open(file.id)
        assert file.id not in {f.id for f in work.attachments.for_party(client)}
        assert records["alice"]["attachment"] in visible_ids(work, "attachment")
        assert task.id in visible_ids(work, "task")
