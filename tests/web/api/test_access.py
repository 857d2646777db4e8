"""Through the API an agent never sees another agent's records, by any endpoint.

Alice and Bob, two agents, each own a client with a deal, a task, a note, a file, an event
and a reminder.  Every way of reaching Bob's records with Alice's token must answer as if
they did not exist: 404 on reads and writes, absent from lists, search and the timeline.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from crmkit.model import Attachment, PermissionRule
from crmkit.testing import add_user, factories
from tests.web.api.conftest import (
    hidden_organisation,
    his_organisation,
    person_at_hidden_organisation,
    problem,
)

READABLE = ("party", "deal", "task", "activity", "attachment", "calendar_event", "reminder")


def seed(crm, owner):
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
    }


@pytest.fixture
def world(crm, client_for):
    alice = add_user(crm, "alice", ["agent"])
    bob = add_user(crm, "bob", ["agent"])
    return client_for(alice), seed(crm, alice), seed(crm, bob)


def all_ids(api, entity):
    ids, cursor = set(), None
    while True:
        params = {"limit": 2, **({"after": cursor} if cursor else {})}
        page = api.get(entity, params=params)
        assert page.status_code == 200, page.text
        ids |= {row["id"] for row in page.json()["items"]}
        cursor = page.json()["next"]
        if not cursor:
            return ids


@pytest.mark.parametrize("entity", READABLE)
def test_lists_and_reads_show_only_own_records(world, entity):
    api, mine, theirs = world
    listed = all_ids(api, entity)
    assert mine[entity] in listed
    assert theirs[entity] not in listed
    assert api.get(f"{entity}/{mine[entity]}").status_code == 200
    body = problem(api.get(f"{entity}/{theirs[entity]}"), 404)
    assert str(theirs[entity]) not in body.get("detail", "")  # no echo of what exists


def test_writes_to_hidden_records_are_not_found(world):
    api, _, theirs = world
    problem(api.patch(f"party/{theirs['party']}", json={"source": "x"}), 404)
    problem(api.patch(f"deal/{theirs['deal']}", json={"title": "x"}), 404)
    problem(api.patch(f"task/{theirs['task']}", json={"title": "x"}), 404)
    problem(api.post(f"deal/{theirs['deal']}/move", json={"to": "qualified"}), 404)
    problem(api.get(f"deal/{theirs['deal']}/stages"), 404)
    problem(api.get(f"deal/{theirs['deal']}/history"), 404)
    problem(api.post(f"reminder/{theirs['reminder']}/done"), 404)
    linked = api.post("deal", json={"title": "x", "party_id": theirs["party"]})
    assert "party_id" in problem(linked, 422)["errors"]


def test_links_in_a_body_to_hidden_or_missing_records_are_422_naming_the_field(world, crm):
    """As for a deal's party_id: a note or a file linked to what you cannot see."""
    api, mine, theirs = world
    links = {
        "party_id": {"party_id": theirs["party"]},
        "record_id": {"record_entity": "task", "record_id": theirs["task"]},
    }
    for field, link in links.items():
        for target in (link, {**link, field: 987654}):  # hidden, and missing: one answer
            note = problem(api.post("notes", json={**target, "body": "hi"}), 422)
            assert list(note["errors"]) == [field], note
            form = {k: str(v) for k, v in target.items()}
            upload = api.post("attachment", data=form, files={"file": ("a.txt", b"x")})
            assert list(problem(upload, 422)["errors"]) == [field]
    with crm.system() as work:  # nothing was written for any of them
        assert work.session.scalar(sa.select(sa.func.count()).select_from(Attachment)) == 2
    assert api.post("notes", json={"party_id": mine["party"], "body": "hi"}).status_code == 201
    spec = api.get("openapi.json").json()["paths"]
    assert "404" not in spec["/notes"]["post"]["responses"]
    assert "404" not in spec["/attachment"]["post"]["responses"]


def test_search_timeline_calendar_and_files_stay_private(world):
    api, mine, theirs = world
    hits = api.get("search", params={"q": "bob"}).json()["hits"]
    hits += api.get("search", params={"q": "Клиент"}).json()["hits"]
    assert ("party", theirs["party"]) not in {(h["entity"], h["id"]) for h in hits}
    assert ("party", mine["party"]) in {(h["entity"], h["id"]) for h in hits}
    problem(api.get(f"party/{theirs['party']}/timeline"), 404)
    assert api.get(f"party/{mine['party']}/timeline").json()["items"]
    problem(api.get(f"attachment/{theirs['attachment']}/content"), 404)
    assert api.get(f"attachment/{mine['attachment']}/content").content == b"secret"
    now = dt.datetime.now(dt.UTC)
    week = api.get(
        "calendar",
        params={"start": now.isoformat(), "end": (now + dt.timedelta(days=7)).isoformat()},
    )
    assert [e["id"] for e in week.json()["items"]] == [mine["calendar_event"]]
    filtered = api.get("activity", params={"party_id": theirs["party"]}).json()["items"]
    assert filtered == []


def test_access_changes_apply_on_the_next_request(crm, client_for):
    """Actors are kept between requests; any change to what shapes them is seen at once."""
    alice = add_user(crm, "alice", ["agent"])
    bob = add_user(crm, "bob", ["agent"])
    theirs = seed(crm, bob)
    api = client_for(alice)
    problem(api.get(f"party/{theirs['party']}"), 404)

    def listed():  # the first page: its query is built once per actor access and reused
        return theirs["party"] in {p["id"] for p in api.get("party").json()["items"]}

    assert not listed()
    with crm.engine.begin() as connection:  # any write path, even raw SQL, is noticed
        connection.execute(
            sa.update(PermissionRule)
            .where(PermissionRule.role == "agent", PermissionRule.entity == "party")
            .values(scope="team")
        )
    problem(api.get(f"party/{theirs['party']}"), 404)  # a team scope without a team
    with crm.system() as work:
        team = work.users.create_team("Продажи", members=[alice.id, bob.id])
    assert api.get(f"party/{theirs['party']}").status_code == 200
    assert listed()
    with crm.system() as work:
        work.users.set_team_members(team.id, [alice.id])
    problem(api.get(f"party/{theirs['party']}"), 404)
    assert not listed()
    with crm.system() as work:
        work.users.update(alice.id, roles=["manager"])
    assert api.get(f"party/{theirs['party']}").status_code == 200
    assert listed()


def test_private_columns_are_refused_as_filters_and_orders_like_unknown_ones(crm, client_for):
    api = client_for(add_user(crm, "alice", ["agent"]))
    add_user(crm, "root", ["admin"])
    unknown = problem(api.get("user", params={"nosuch": "abc"}), 422)["errors"]
    assert unknown == {"nosuch": ["User cannot be filtered by 'nosuch'"]}
    for field, value in (
        ("password_hash__startswith", "$argon2"),
        ("password_hash", "x"),
        ("session_epoch", "abc"),  # not "must be a whole number": that would tell its type
        ("session_epoch__gte", "0"),
    ):
        name = field.partition("__")[0]
        errors = problem(api.get("user", params={field: value}), 422)["errors"]
        assert errors == {name: [f"User cannot be filtered by {name!r}"]}, field
    for order in ("password_hash", "-session_epoch"):
        problem(api.get("user", params={"order": order}), 422)
    listed = api.get("user").json()["items"]
    assert listed and not any({"password_hash", "session_epoch"} & set(u) for u in listed)


def test_an_invited_colleague_or_a_recipient_may_read_but_not_write(crm, client_for):
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    with crm.system() as work:  # agents may delete their own events and reminders here
        work.permissions.set("agent", "calendar_event", "delete", "own")
        work.permissions.set("agent", "reminder", "delete", "own")
    now = dt.datetime.now(dt.UTC)
    with crm.acting_as(anna) as work:
        event = work.calendar.create(
            title="Встреча",
            starts_at=(now + dt.timedelta(hours=1)).isoformat(),
            ends_at=(now + dt.timedelta(hours=2)).isoformat(),
            attendees=[{"user_id": boris.id}],
        )
        reminder = work.reminders.create(
            text="Продлить договор",
            remind_at=(now + dt.timedelta(days=1)).isoformat(),
            recipients=[{"user_id": anna.id}, {"user_id": boris.id}],
        )
    api = client_for(boris)
    assert api.get(f"calendar_event/{event.id}").json()["title"] == "Встреча"
    assert api.get(f"reminder/{reminder.id}").json()["text"] == "Продлить договор"
    problem(api.patch(f"calendar_event/{event.id}", json={"title": "Отменена"}), 403)
    problem(api.delete(f"calendar_event/{event.id}"), 403)
    problem(api.patch(f"reminder/{reminder.id}", json={"text": "Забыть"}), 403)
    problem(api.delete(f"reminder/{reminder.id}"), 403)
    snooze = api.post(f"reminder/{reminder.id}/snooze", json={"until": "2030-01-02T09:00:00Z"})
    problem(snooze, 403)
    assert api.post(f"reminder/{reminder.id}/done").status_code == 200  # his own part
    owner = client_for(anna)
    assert owner.get(f"calendar_event/{event.id}").json()["title"] == "Встреча"
    kept = owner.get(f"reminder/{reminder.id}").json()
    assert (kept["text"], kept["status"]) == ("Продлить договор", "pending")
    assert owner.patch(f"calendar_event/{event.id}", json={"title": "В 11"}).status_code == 200


def test_an_invited_colleague_or_a_recipient_is_not_told_a_client_they_may_not_read(
    crm, client_for
):
    """Boris is invited to Anna's meeting with her client and reminded by her reminder
    about it: he reads both, as the calendar shows them, and not whose they are.  The API
    gives their client as null (lists, one record, the calendar's range, a reminder he
    dismisses), and a filter on the client (its id, its group) never matches them, while
    one on anything else does; his own client's event keeps its, and Anna reads hers as
    before."""
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    now = dt.datetime.now(dt.UTC)
    hour = {
        "starts_at": (now + dt.timedelta(hours=1)).isoformat(),
        "ends_at": (now + dt.timedelta(hours=2)).isoformat(),
    }
    with crm.acting_as(anna) as work:
        hidden = factories.organisation(work, name="ООО «Тайна»").id
        event = work.calendar.create(
            title="Встреча", party_id=hidden, attendees=[{"user_id": boris.id}], **hour
        ).id
        reminder = work.reminders.create(
            text="Позвонить",
            party_id=hidden,
            remind_at=(now + dt.timedelta(days=1)).isoformat(),
            recipients=[{"user_id": boris.id}],
        ).id
    with crm.system() as work:
        group = work.groups.create("Особые").id
        work.groups.add_members(group, [hidden])
    with crm.acting_as(boris) as work:
        his = factories.organisation(work, name="ИП Борисов").id
        own = work.calendar.create(title="Своя", party_id=his, **hour).id
        work.groups.add_members(group, [his])

    api = client_for(boris)
    assert api.get(f"party/{hidden}").status_code == 404
    listed = {e["id"]: e["party_id"] for e in api.get("calendar_event").json()["items"]}
    assert listed == {event: None, own: his}
    assert api.get(f"calendar_event/{event}").json()["party_id"] is None
    assert api.get(f"calendar_event/{own}").json()["party_id"] == his
    week = {"start": now.isoformat(), "end": (now + dt.timedelta(days=7)).isoformat()}
    ranged = {e["id"]: e["party_id"] for e in api.get("calendar", params=week).json()["items"]}
    assert ranged == {event: None, own: his}
    assert [r["party_id"] for r in api.get("reminder").json()["items"]] == [None]
    assert api.get(f"reminder/{reminder}").json()["party_id"] is None
    assert api.post(f"reminder/{reminder}/done").json()["party_id"] is None
    for query in (
        {"party_id": hidden},
        {"party_id__in": f"{hidden},{his}"},
        {"party_id__gte": 1},
        {"party_id__ne": his},
        {"group": group},
    ):
        found = [e["id"] for e in api.get("calendar_event", params=query).json()["items"]]
        assert event not in found, query
    assert [
        e["id"] for e in api.get("calendar_event", params={"group": group}).json()["items"]
    ] == [own]
    assert api.get("reminder", params={"party_id": hidden}).json()["items"] == []
    # a filter on anything else finds them as the calendar shows them
    found = api.get("calendar_event", params={"kind": "meeting", "owner_id": anna.id}).json()
    assert [e["id"] for e in found["items"]] == [event]
    later = {"remind_at__gte": now.isoformat()}
    assert [r["id"] for r in api.get("reminder", params=later).json()["items"]] == [reminder]

    anna_api = client_for(anna)
    assert anna_api.get(f"calendar_event/{event}").json()["party_id"] == hidden
    assert anna_api.get(f"reminder/{reminder}").json()["party_id"] == hidden
    found = anna_api.get("calendar_event", params={"party_id": hidden}).json()["items"]
    assert [e["id"] for e in found] == [event]
    found = anna_api.get("calendar_event", params={"group": group}).json()["items"]
    assert [e["id"] for e in found] == [event]


def _given_to_boris(crm, anna, boris):
    """Anna's client, and an event, a task and a deal on it that Boris holds (an admin gave
    them to him): he reads and changes them as his own, and may not read the client."""
    now = dt.datetime.now(dt.UTC)
    hidden = hidden_organisation(crm, anna)
    with crm.system() as work:
        event = work.calendar.create(
            title="Встреча",
            party_id=hidden,
            owner_id=boris.id,
            starts_at=(now + dt.timedelta(hours=1)).isoformat(),
            ends_at=(now + dt.timedelta(hours=2)).isoformat(),
        ).id
        task = factories.task(work, title="Позвонить", party_id=hidden, assignee_id=boris.id).id
        deal = factories.deal(work, title="Поставка", party_id=hidden, owner_id=boris.id).id
    his = his_organisation(crm, boris)
    return hidden, his, {"calendar_event": event, "task": task, "deal": deal}


def _clients(crm, ids):
    with crm.system() as work:
        return {name: work.records(name).get(i).party_id for name, i in ids.items()}


def test_a_task_or_deal_held_without_its_client_does_not_name_it(crm, client_for):
    """A task assigned to Boris and a deal he owns, on Anna's client: the API gives them
    with their client as null (lists and records), a filter on the client never finds
    them, and his own client's rows keep theirs; Anna reads her client's as before."""
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    hidden, his, given = _given_to_boris(crm, anna, boris)
    with crm.acting_as(boris) as work:
        own_task = factories.task(work, title="Своя", party_id=his).id
        own_deal = factories.deal(work, title="Своя", party_id=his).id
    api = client_for(boris)
    assert api.get(f"party/{hidden}").status_code == 404
    for entity, own in (("task", own_task), ("deal", own_deal)):
        listed = {r["id"]: r["party_id"] for r in api.get(entity).json()["items"]}
        assert listed == {given[entity]: None, own: his}, entity
        assert api.get(f"{entity}/{given[entity]}").json()["party_id"] is None
        assert api.get(f"{entity}/{own}").json()["party_id"] == his
        for query in ({"party_id": hidden}, {"party_id__ne": his}, {"party_id__gte": 1}):
            found = [r["id"] for r in api.get(entity, params=query).json()["items"]]
            assert given[entity] not in found, (entity, query)
        found = api.get(entity, params={"party_id": his}).json()["items"]
        assert [r["id"] for r in found] == [own]
    anna_api = client_for(anna)
    with crm.system() as work:  # Anna may read every task and deal of her client's
        work.permissions.set("agent", "task", "read", "all")
        work.permissions.set("agent", "deal", "read", "all")
        work.permissions.set("agent", "party", "read", "all")
    for entity in ("task", "deal"):
        assert anna_api.get(f"{entity}/{given[entity]}").json()["party_id"] == hidden


def test_a_list_page_asks_for_hidden_clients_once_and_not_for_every_client_s_reader(
    crm, client_for
):
    """An agent's page of deals asks which of their clients he may read in one query,
    however many rows and clients it holds; a reader of every client is asked nothing."""
    from tests.web.conftest import statements

    boris = add_user(crm, "boris", ["agent"])
    chief = add_user(crm, "chief", ["admin"])
    with crm.acting_as(boris) as work:
        factories.deal(work, title="Первая")
    api, chief_api = client_for(boris), client_for(chief)
    api.get("deal"), chief_api.get("deal")  # what a first request reads once

    def party_queries(client, limit):
        with statements(crm.engine) as seen:
            page = client.get("deal", params={"limit": limit})
        assert page.status_code == 200, page.text
        asked = [s for s in seen if "FROM party" in s and "deal" not in s]
        return len(page.json()["items"]), len(seen), len(asked)

    rows, one_row, asked = party_queries(api, 50)
    assert (rows, asked) == (1, 1)
    with crm.acting_as(boris) as work:
        for n in range(20):
            factories.deal(work, title=f"Сделка {n}")
    rows, many_rows, asked = party_queries(api, 50)
    assert (rows, many_rows, asked) == (21, one_row, 1)
    rows, _, asked = party_queries(chief_api, 50)
    assert (rows, asked) == (21, 0)


def test_writing_back_a_hidden_client_as_null_keeps_it(crm, client_for):
    """Boris, who holds an event, a task and a deal on Anna's client, reads their client as
    null and sends the record back as read (a client writing whole records): the link is
    kept, the rest changes, and a write of nothing else changes nothing (not even the
    version).  A client he may read replaces it; an admin, who reads the client, clears it."""
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    hidden, his, given = _given_to_boris(crm, anna, boris)
    api = client_for(boris)
    for entity, title in (("calendar_event", "В 11"), ("task", "Перезвонить"), ("deal", "Опт")):
        url = f"{entity}/{given[entity]}"
        read = api.get(url)
        assert read.json()["party_id"] is None
        same = api.patch(url, json={"party_id": None}, headers={"If-Match": read.headers["ETag"]})
        assert same.status_code == 200, same.text
        assert same.headers["ETag"] == read.headers["ETag"], entity  # nothing changed
        back = {"title": title, "party_id": None}
        written = api.patch(url, json=back, headers={"If-Match": same.headers["ETag"]})
        assert written.status_code == 200, written.text
        assert (written.json()["title"], written.json()["party_id"]) == (title, None)
        # a stale version is still refused, whatever it carries
        stale = api.patch(url, json=back, headers={"If-Match": read.headers["ETag"]})
        problem(stale, 412)
    assert _clients(crm, given) == dict.fromkeys(given, hidden)

    # a client he may read is his choice to make
    changed = api.patch(f"task/{given['task']}", json={"party_id": his})
    assert changed.json()["party_id"] == his
    assert _clients(crm, {"task": given["task"]}) == {"task": his}

    # who reads the client may clear it
    chief = client_for(add_user(crm, "chief", ["admin"]))
    assert chief.get(f"deal/{given['deal']}").json()["party_id"] == hidden
    cleared = chief.patch(f"deal/{given['deal']}", json={"party_id": None})
    assert cleared.status_code == 200, cleared.text
    assert _clients(crm, {"deal": given["deal"]}) == {"deal": None}


def _organisation_of(crm, person):
    with crm.system() as work:
        return work.parties.get(person).organisation_id


def test_a_person_read_without_their_organisation_does_not_name_it(crm, client_for):
    """Boris owns a person who works at Anna's organisation: the API gives the person with
    ``organisation_id`` null (list and record), a filter on the organisation never finds
    them, and his own person keeps theirs; an admin reads it as before."""
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    hidden, his, person, colleague = person_at_hidden_organisation(crm, anna, boris)
    api = client_for(boris)
    assert api.get(f"party/{hidden}").status_code == 404
    listed = {r["id"]: r["organisation_id"] for r in api.get("party").json()["items"]}
    assert listed == {person: None, colleague: his, his: None}
    assert api.get(f"party/{person}").json()["organisation_id"] is None
    assert api.get(f"party/{colleague}").json()["organisation_id"] == his
    for query in (
        {"organisation_id": hidden},
        {"organisation_id__ne": his},
        {"organisation_id__gte": 1},
    ):
        found = [r["id"] for r in api.get("party", params=query).json()["items"]]
        assert person not in found, query
    found = api.get("party", params={"organisation_id": his}).json()["items"]
    assert [r["id"] for r in found] == [colleague]
    # a filter on anything else finds the person as the list shows them
    found = api.get("party", params={"kind": "person", "name": "Пётр Тайнов"}).json()["items"]
    assert [(r["id"], r["organisation_id"]) for r in found] == [(person, None)]

    chief = client_for(add_user(crm, "chief", ["admin"]))
    assert chief.get(f"party/{person}").json()["organisation_id"] == hidden
    found = chief.get("party", params={"organisation_id": hidden}).json()["items"]
    assert [r["id"] for r in found] == [person]


def test_a_page_of_persons_asks_for_hidden_organisations_once(crm, client_for):
    """Boris's page of clients asks which organisations he may read in one query, for one
    person or twenty-one at as many organisations; an admin's page asks nothing more."""
    from tests.web.conftest import statements

    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    chief = add_user(crm, "chief", ["admin"])
    person_at_hidden_organisation(crm, anna, boris)
    api, chief_api = client_for(boris), client_for(chief)
    api.get("party"), chief_api.get("party")  # what a first request reads once

    def count(client):
        with statements(crm.engine) as seen:
            page = client.get("party", params={"limit": 100})
        assert page.status_code == 200, page.text
        return len(page.json()["items"]), len(seen)

    rows, few = count(api)
    _, chief_few = count(chief_api)
    with crm.acting_as(anna) as work:
        hidden = [factories.organisation(work, name=f"ООО {n}").id for n in range(20)]
    with crm.system() as work:
        for n, organisation in enumerate(hidden):
            work.parties.create(
                {
                    "kind": "person",
                    "name": f"Лицо {n}",
                    "organisation_id": organisation,
                    "owner_id": boris.id,
                }
            )
    more, many = count(api)
    assert (rows, more, many) == (3, 23, few)
    page = api.get("party", params={"limit": 100}).json()["items"]
    assert {r["organisation_id"] for r in page if r["name"].startswith("Лицо")} == {None}
    _, chief_many = count(chief_api)
    assert chief_many == chief_few == few - 1


def test_writing_back_a_hidden_organisation_as_null_keeps_it(crm, client_for):
    """Boris reads his person's organisation as null and sends the person back as read: the
    organisation is kept, the rest changes, and a write of nothing else changes nothing.
    An organisation he may read replaces it; an admin, who reads it, clears it."""
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    hidden, his, person, _ = person_at_hidden_organisation(crm, anna, boris)
    api = client_for(boris)
    url = f"party/{person}"
    read = api.get(url)
    assert read.json()["organisation_id"] is None
    same = api.patch(
        url, json={"organisation_id": None}, headers={"If-Match": read.headers["ETag"]}
    )
    assert same.status_code == 200, same.text
    assert same.headers["ETag"] == read.headers["ETag"]  # nothing changed
    back = {"name": "Пётр Тайнов-Иванов", "organisation_id": None}
    written = api.patch(url, json=back, headers={"If-Match": same.headers["ETag"]})
    assert written.status_code == 200, written.text
    assert (written.json()["name"], written.json()["organisation_id"]) == (back["name"], None)
    assert _organisation_of(crm, person) == hidden

    changed = api.patch(url, json={"organisation_id": his})
    assert changed.json()["organisation_id"] == his
    assert _organisation_of(crm, person) == his

    with crm.system() as work:
        work.parties.update(person, {"organisation_id": hidden})
    chief = client_for(add_user(crm, "chief", ["admin"]))
    cleared = chief.patch(url, json={"organisation_id": None})
    assert cleared.status_code == 200, cleared.text
    assert _organisation_of(crm, person) is None


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_a_person_s_card_does_not_name_a_hidden_organisation(crm, web):
    """Boris's card of his person at Anna's organisation names no organisation and links
    to none; the card of his own person names his."""
    anna = add_user(crm, "anna", ["agent"])
    browser = await web("agent", username="boris")
    hidden, his, person, colleague = person_at_hidden_organisation(crm, anna, browser.user)
    card = await browser.get(f"/clients/{person}")
    assert card.status_code == 200, card.text
    assert "Пётр Тайнов" in card.text
    assert "Тайна" not in card.text and f"/clients/{hidden}" not in card.text
    own = await browser.get(f"/clients/{colleague}")
    assert "ИП Борисов" in own.text and f'/clients/{his}"' in own.text
