"""Generic entity endpoints: CRUD, lists (pages, filters, order, search), ETags, moves."""

from __future__ import annotations

import base64
import json
import re

import pytest
import sqlalchemy as sa

from crmkit.model import Party
from crmkit.services.parties import PartyService
from crmkit.testing import add_user, factories
from tests.web.api.conftest import problem


def test_create_read_update_delete_a_party(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)
    created = api.post(
        "party",
        json={
            "name": "ООО «Ромашка»",
            "contact_points": [{"kind": "phone", "value": "8 (916) 123-45-67"}],
            "tags": ["vip"],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/api/v1/party/{body['id']}"
    assert created.headers["etag"] == '"1"'
    assert body["owner_id"] == agent.id
    assert body["tags"] == ["vip"]
    assert [(c["kind"], c["key"]) for c in body["contact_points"]] == [("phone", "+79161234567")]

    read = api.get(f"party/{body['id']}")
    assert read.status_code == 200
    assert read.json()["name"] == "ООО «Ромашка»"

    changed = api.patch(f"party/{body['id']}", json={"source": "site"}, headers={"If-Match": '"1"'})
    assert changed.status_code == 200, changed.text
    assert changed.json()["source"] == "site"
    assert changed.headers["etag"] == '"2"'


def test_validation_errors_name_each_field(crm, client_for):
    api = client_for(add_user(crm, "ann", ["agent"]))
    body = problem(api.post("party", json={"kind": "alien", "colour": "red"}), 422)
    assert set(body["errors"]) >= {"kind", "colour"}
    assert problem(api.post("deal", json={"amount": "12.345"}), 422)["errors"].keys() >= {"title"}
    assert problem(
        api.post("party", content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    assert problem(api.post("party", json=[1, 2]), 422)["errors"] == {
        "_schema": ["the body must be a JSON object"]
    }
    assert problem(
        api.post("party", content=b"name=x", headers={"content-type": "text/plain"}), 415
    )


def test_a_deletion_and_a_missing_record(crm, client_for):
    admin = add_user(crm, "root", ["admin"])
    api = client_for(admin)
    party_id = api.post("party", json={"name": "Gone"}).json()["id"]
    assert api.delete(f"party/{party_id}").status_code == 204
    assert problem(api.get(f"party/{party_id}"), 404)["type"] == "/api/v1/docs#not-found"
    problem(api.get("party/99999999999999999999"), 404)
    problem(api.patch("party/a%0Ab", json={"source": "x"}), 404)  # a line break in the id
    problem(api.get("nothing-here"), 404)


def test_every_path_id_past_an_id_column_is_a_404(crm, client_for):
    """Every API path taking an id uses the ``id`` route convertor: a 25-digit id is a
    404 problem on each operation, never a 500."""
    from crmkit.web.api import api_operations

    api = client_for(add_user(crm, "root", ["admin"]))
    operations = [op for op in api_operations(crm) if ":id}" in op.path]
    assert not [op.path for op in api_operations(crm) if ":int}" in op.path]
    assert len(operations) > 10
    for op in operations:
        path = re.sub(r"\{\w+:id\}", "9" * 25, op.path).lstrip("/")
        body = {} if op.method in ("POST", "PUT", "PATCH") else None
        problem(api.request(op.method, path, json=body), 404)


def test_a_merged_away_id_reads_the_survivor_but_never_changes_or_deletes_it(crm, client_for):
    admin = add_user(crm, "root", ["admin"])
    with crm.acting_as(admin) as work:
        survivor = factories.organisation(work, name="Survivor", source="site").id
        duplicate = factories.organisation(work, name="Survivor LLC").id
        work.merges.merge(survivor, duplicate)
    api = client_for(admin)
    assert api.get(f"party/{duplicate}").json()["id"] == survivor
    for attempt in (
        api.delete(f"party/{duplicate}"),
        api.delete(f"party/{duplicate}", headers={"If-Match": '"1"'}),
        api.patch(f"party/{duplicate}", json={"source": "stale integration"}),
        api.post(f"party/{duplicate}/move", json={"to": "won"}),
    ):
        body = problem(attempt, 409)
        assert body["type"] == "/api/v1/docs#merged" and body["merged_into"] == survivor
        assert f"party {duplicate} was merged into party {survivor}" in body["detail"]
    kept = api.get(f"party/{survivor}")
    assert kept.status_code == 200 and kept.json()["source"] == "site"
    note = api.post("notes", json={"party_id": duplicate, "body": "through the old id"})
    assert note.status_code == 201 and note.json()["party_id"] == survivor
    spec = api.get("openapi.json").json()
    assert "409" in spec["paths"]["/party/{id}"]["delete"]["responses"]


def test_json_bodies_past_the_limit_are_refused_before_anything_is_written(crm, client_for):
    api = client_for(add_user(crm, "root", ["admin"]))
    limit = crm.config["api.max_json_bytes"]
    assert limit == 1024 * 1024
    big = {"name": "Big", "source": "x" * limit}
    refused = problem(api.post("party", json=big), 413)
    assert refused["type"] == "/api/v1/docs#too-large"
    assert "api.max_json_bytes" in refused["detail"]

    async def chunked():  # no Content-Length: counted as the chunks arrive
        yield b'{"name": "Big", "source": "'
        for _ in range(limit // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    problem(api.post("party", content=chunked(), headers={"content-type": "application/json"}), 413)
    assert api.get("party").json()["items"] == []  # nothing written
    # just under the limit the body is read and judged by its content
    under = {"name": "Big", "source": "x" * (limit - 100)}
    assert len(json.dumps(under)) <= limit
    assert "source" in problem(api.post("party", json=under), 422)["errors"]
    assert api.post("party", json={"name": "Small"}).status_code == 201
    spec = api.get("openapi.json").json()
    assert "413" in spec["paths"]["/party/{id}"]["patch"]["responses"]
    assert "413" in spec["paths"]["/notes"]["post"]["responses"]


def test_a_nul_character_is_refused_naming_the_field_on_every_database(crm, client_for):
    admin = add_user(crm, "root", ["admin"])
    api = client_for(admin)
    party = api.post("party", json={"name": "Clean", "source": "site"}).json()
    refused = problem(api.patch(f"party/{party['id']}", json={"source": "x\u0000y"}), 422)
    assert refused["errors"] == {"source": ["contains a NUL character"]}
    tags = api.post("party", json={"name": "Nul", "tags": ["ok", "b\u0000d"]})
    assert problem(tags, 422)["errors"] == {"tags": ["contains a NUL character"]}
    points = [{"kind": "email", "value": "a\u0000@b.ru"}]
    contact = api.post("party", json={"name": "Nul", "contact_points": points})
    errors = problem(contact, 422)["errors"]
    assert errors == {"contact_points": {"0": {"value": ["contains a NUL character"]}}}
    custom = api.post("party", json={"name": "Nul", "custom": {"region\u0000": "x"}})
    assert problem(custom, 422)["errors"] == {"custom": ["contains a NUL character"]}
    note = api.post("notes", json={"party_id": party["id"], "body": "\u0000"})
    assert problem(note, 422)["errors"] == {"body": ["contains a NUL character"]}
    assert api.get(f"party/{party['id']}").json()["source"] == "site"
    assert [p["name"] for p in api.get("party").json()["items"]] == ["Clean"]


def test_list_pages_filters_order_and_search(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    with crm.acting_as(agent) as work:
        for index in range(7):
            factories.organisation(
                work, name=f"Фирма {index}", source="call" if index % 2 else "site"
            )
    api = client_for(agent)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, "order": "name"}
        if cursor:
            params["after"] = cursor
        page = api.get("party", params=params)
        assert page.status_code == 200, page.text
        pages += 1
        seen += [row["name"] for row in page.json()["items"]]
        cursor = page.json()["next"]
        if cursor is None:
            assert "link" not in page.headers
            break
        assert 'rel="next"' in page.headers["link"]
    assert pages == 3
    assert seen == sorted(seen) and len(seen) == 7 == len(set(seen))

    # the Link header alone walks the same pages, keeping the caller's other parameters
    followed, url = [], "http://testserver/api/v1/party?limit=3&order=name"
    while url:
        page = api.get(url)
        assert page.status_code == 200, page.text
        followed += [row["name"] for row in page.json()["items"]]
        link = page.headers.get("link")
        url = "http://testserver" + link[1 : link.index(">")] if link else None
        if url:
            assert "limit=3&order=name&after=" in url and url.count("after=") == 1
    assert followed == seen

    calls = api.get("party", params={"source": "call"}).json()["items"]
    assert sorted(r["name"] for r in calls) == ["Фирма 1", "Фирма 3", "Фирма 5"]
    both = api.get("party", params={"source__in": "call,site", "limit": 50}).json()["items"]
    assert len(both) == 7
    assert [r["name"] for r in api.get("party", params={"q": "фирма 4"}).json()["items"]] == [
        "Фирма 4"
    ]
    desc = api.get("party", params={"order": "-name", "limit": 2}).json()["items"]
    assert [r["name"] for r in desc] == ["Фирма 6", "Фирма 5"]

    assert "order" in problem(api.get("party", params={"order": "password"}), 422)["errors"]
    assert "colour" in problem(api.get("party", params={"colour": "red"}), 422)["errors"]
    assert "owner_id" in problem(api.get("party", params={"owner_id": "me"}), 422)["errors"]
    assert "limit" in problem(api.get("party", params={"limit": 100000}), 422)["errors"]
    assert "after" in problem(api.get("party", params={"after": "garbage!"}), 422)["errors"]
    # a cursor edited, or of another order: its values are not the sort columns' types
    tampered = base64.urlsafe_b64encode(b'[{"t":"garbage"},1]').decode()
    for order in ("-created_at", "name"):
        body = problem(api.get("party", params={"order": order, "after": tampered}), 422)
        assert body["errors"] == {"after": ["the page cursor does not match the sort order"]}


def test_a_stale_write_is_refused_and_loses_nothing(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    first, second = client_for(agent), client_for(agent)
    party_id = first.post("party", json={"name": "Общая"}).json()["id"]
    tag = first.get(f"party/{party_id}").headers["etag"]
    assert second.get(f"party/{party_id}").headers["etag"] == tag

    assert first.patch(f"party/{party_id}", json={"source": "first"}, headers={"If-Match": tag})
    stale = second.patch(f"party/{party_id}", json={"source": "second"}, headers={"If-Match": tag})
    body = problem(stale, 412)
    assert body["type"].endswith("#stale-write")
    assert first.get(f"party/{party_id}").json()["source"] == "first"

    current = first.get(f"party/{party_id}")
    assert current.headers["etag"] != tag
    assert (
        first.get(
            f"party/{party_id}", headers={"If-None-Match": current.headers["etag"]}
        ).status_code
        == 304
    )
    assert problem(first.delete(f"party/{party_id}"), 403)["type"].endswith("#forbidden")


def test_stage_moves_explain_refusals_and_take_required_fields(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    deal = api.post("deal", json={"title": "Поставка", "party_id": party_id})
    deal_id = deal.json()["id"]
    assert deal.json()["stage"] == "new"

    refused = problem(api.post(f"deal/{deal_id}/move", json={"to": "won"}), 409)
    assert refused["type"].endswith("#move-refused") and refused["reasons"]

    stages = api.get(f"deal/{deal_id}/stages").json()["items"]
    assert {s["stage"] for s in stages} == {"qualified", "lost"}
    moved = api.post(f"deal/{deal_id}/move", json={"to": "qualified"}, headers={"If-Match": '"1"'})
    assert moved.status_code == 200, moved.text
    assert moved.json()["stage"] == "qualified"

    needs_amount = problem(api.post(f"deal/{deal_id}/move", json={"to": "proposal"}), 409)
    assert needs_amount["missing_fields"] == ["amount"]
    assert api.get(f"deal/{deal_id}").json()["stage"] == "qualified"
    with_amount = api.post(
        f"deal/{deal_id}/move", json={"to": "proposal", "fields": {"amount": "120000"}}
    )
    assert with_amount.status_code == 200, with_amount.text
    assert with_amount.json()["amount"] == "120000.00"
    stale = api.post(f"deal/{deal_id}/move", json={"to": "won"}, headers={"If-Match": '"1"'})
    problem(stale, 412)

    history = api.get(f"deal/{deal_id}/history").json()["items"]
    assert [(h["from_stage"], h["to_stage"]) for h in history] == [
        (None, "new"),
        ("new", "qualified"),
        ("qualified", "proposal"),
    ]


def test_history_says_which_moves_went_backward(crm, client_for):
    api = client_for(add_user(crm, "ann", ["agent"]))
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    deal_id = api.post("deal", json={"title": "Поставка", "party_id": party_id}).json()["id"]
    for stage in ("qualified", "new", "qualified"):
        moved = api.post(f"deal/{deal_id}/move", json={"to": stage})
        assert moved.status_code == 200, moved.text
    history = api.get(f"deal/{deal_id}/history").json()["items"]
    assert [(h["to_stage"], h["backward"]) for h in history] == [
        ("new", False),
        ("qualified", False),
        ("new", True),
        ("qualified", False),
    ]


def test_a_deal_created_in_a_later_stage_needs_the_place_permission(crm, client_for):
    agent = client_for(add_user(crm, "ann", ["agent"]))
    refused = problem(agent.post("deal", json={"title": "Сразу", "stage": "proposal"}), 422)
    assert refused["errors"]["stage"] == [
        "a new record starts in “New”: create it there and move it on to “Proposal” "
        "(putting it straight into a later stage takes the permission “place”)"
    ]
    admin = client_for(add_user(crm, "boss", ["admin"]))
    placed = admin.post("deal", json={"title": "Перенесена", "stage": "proposal", "amount": "5"})
    assert placed.status_code == 201, placed.text
    assert placed.json()["stage"] == "proposal"


def test_tasks_reminders_and_calendar(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)
    task = api.post("task", json={"title": "Перезвонить", "deadline": "2030-01-02T10:00:00+03:00"})
    assert task.status_code == 201, task.text
    done = api.patch(
        f"task/{task.json()['id']}", json={"status": "done"}, headers={"If-Match": '"1"'}
    )
    assert done.json()["done_at"] is not None
    assert done.headers["etag"] == '"2"'

    reminder = api.post("reminder", json={"text": "позвонить", "remind_at": "2030-01-01T09:00:00Z"})
    assert reminder.status_code == 201, reminder.text
    snoozed = api.post(
        f"reminder/{reminder.json()['id']}/snooze", json={"until": "2030-01-02T09:00:00Z"}
    )
    assert snoozed.json()["remind_at"] == "2030-01-02T09:00:00+00:00"

    event = api.post(
        "calendar_event",
        json={
            "title": "Встреча",
            "starts_at": "2030-01-05T10:00:00+00:00",
            "ends_at": "2030-01-05T11:00:00+00:00",
        },
    )
    assert event.status_code == 201, event.text
    week = api.get(
        "calendar", params={"start": "2030-01-04T00:00:00Z", "end": "2030-01-11T00:00:00Z"}
    )
    assert [e["title"] for e in week.json()["items"]] == ["Встреча"]
    assert problem(api.get("calendar", params={"start": "2030-01-04"}), 422)["errors"]
    bad = api.post(
        "calendar_event",
        json={"title": "x", "starts_at": "2030-01-05T10:00:00Z", "ends_at": "2030-01-05T09:00:00Z"},
    )
    assert "ends_at" in problem(bad, 422)["errors"]


@pytest.mark.parametrize("odd", ["abc", "1.5", "²", "1_000", "-5", "9" * 25])
def test_the_calendars_owner_and_resource_are_read_as_ids(crm, client_for, odd):
    """``owner_id`` and ``resource_id`` go through the id reader the forms use: what is no
    id ("1_000" and "²" included, which ``int`` took or choked on) is refused naming it."""
    api = client_for(add_user(crm, "root", ["admin"]))
    week = {"start": "2030-01-04T00:00:00Z", "end": "2030-01-11T00:00:00Z"}
    for field in ("owner_id", "resource_id"):
        errors = problem(api.get("calendar", params={**week, field: odd}), 422)["errors"]
        assert errors == {field: ["not an id (1 to 2^63-1)"]}, field


def test_times_utc_cannot_hold_are_refused_naming_the_field(crm, client_for):
    api = client_for(add_user(crm, "root", ["admin"]))
    early, late = "0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00"  # years 0 and 10000
    week = api.get("calendar", params={"start": early, "end": "0001-01-05T00:00:00Z"})
    assert "start" in problem(week, 422)["errors"]
    assert (
        "deadline__gte" in problem(api.get("task", params={"deadline__gte": late}), 422)["errors"]
    )
    reminder = api.post("reminder", json={"title": "x", "remind_at": early})
    assert "remind_at" in problem(reminder, 422)["errors"]
    event = api.post("calendar_event", json={"title": "x", "starts_at": early, "ends_at": late})
    assert {"starts_at", "ends_at"} <= problem(event, 422)["errors"].keys()
    # the first hours of year 1 in UTC itself are fine, and an offset is kept as the instant
    task = api.post("task", json={"title": "x", "deadline": "2030-01-05T10:00:00+03:00"})
    assert task.status_code == 201, task.text
    assert task.json()["deadline"].startswith("2030-01-05T07:00:00")


def test_notes_mention_colleagues_and_fill_the_timeline(crm, client_for):
    ann = add_user(crm, "ann", ["agent"])
    bob = add_user(crm, "bob", ["manager"])
    cid = add_user(crm, "cid", ["agent"])  # may not see ann's client
    api = client_for(ann)
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    note = api.post("notes", json={"party_id": party_id, "body": "@bob позвони им, @cid"})
    assert note.status_code == 201, note.text
    assert note.json()["data"]["mentions"] == ["bob"]
    assert note.json()["data"]["not_told"] == ["cid"]
    with crm.acting_as(bob) as work:
        assert [n.kind for n in work.notifications.latest()] == ["mention"]
    with crm.acting_as(cid) as work:
        assert work.notifications.latest() == []
    timeline = api.get(f"party/{party_id}/timeline", params={"kind": "note"}).json()["items"]
    assert [t["body"] for t in timeline] == ["@bob позвони им, @cid"]
    assert (
        "body" in problem(api.post("notes", json={"party_id": party_id, "body": ""}), 422)["errors"]
    )


def test_search_across_entities(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)
    party_id = api.post("party", json={"name": "Гранит"}).json()["id"]
    api.post("deal", json={"title": "Гранит: плитка", "party_id": party_id})
    hits = api.get("search", params={"q": "гранит"}).json()["hits"]
    assert {(h["entity"], h["title"]) for h in hits} >= {
        ("party", "Гранит"),
        ("deal", "Гранит: плитка"),
    }
    assert problem(api.get("search", params={"q": ""}), 422)["errors"] == {
        "q": ["give something to search for"]
    }


def test_the_api_reads_and_writes_the_language(crm, client_for):
    api = client_for(add_user(crm, "ann", ["agent"]))
    created = api.post("party", json={"name": "Hans", "language": "de"})
    assert created.status_code == 201, created.text
    assert created.json()["language"] == "de"
    assert (
        "language"
        in problem(api.post("party", json={"name": "X", "language": "German"}), 422)["errors"]
    )


def test_a_resource_clash_over_the_api_is_a_validation_problem(crm, client_for):
    """The clash is named in the deployment's zone (Moscow): 10:00 UTC is 13:00 there."""
    from crmkit.model import Resource

    with crm.system() as work:
        bay = Resource(name="Пост 1", kind="bay")
        work.session.add(bay)
        work.flush()
        bay_id = bay.id
    api = client_for(add_user(crm, "ann", ["agent"]))
    hour = {"starts_at": "2030-01-05T10:00:00Z", "ends_at": "2030-01-05T11:00:00Z"}
    first = api.post("calendar_event", json={"title": "ТО", "resource_id": bay_id, **hour})
    assert first.status_code == 201, first.text
    second = api.post("calendar_event", json={"title": "Мойка", "resource_id": bay_id, **hour})
    assert problem(second, 422)["errors"] == {"resource_id": ["already booked at 2030-01-05 13:00"]}


def test_an_event_is_not_put_on_a_retired_resource_over_the_api(crm, client_for):
    """Bay 1 is out of service (``active`` false): an event made on it, or moved onto it,
    is a 422 naming resource_id and the bay; the event it still holds can be edited."""
    from crmkit.model import Resource

    with crm.system() as work:
        bay, other = Resource(name="Пост 1", kind="bay"), Resource(name="Пост 2", kind="bay")
        work.session.add_all([bay, other])
        work.flush()
        bay_id, other_id = bay.id, other.id
    api = client_for(add_user(crm, "ann", ["agent"]))
    hour = {"starts_at": "2030-01-05T10:00:00Z", "ends_at": "2030-01-05T11:00:00Z"}
    later = {"starts_at": "2030-01-05T12:00:00Z", "ends_at": "2030-01-05T13:00:00Z"}
    kept = api.post("calendar_event", json={"title": "ТО", "resource_id": bay_id, **hour})
    moving = api.post("calendar_event", json={"title": "Мойка", "resource_id": other_id, **hour})
    assert kept.status_code == moving.status_code == 201, (kept.text, moving.text)
    with crm.system() as work:
        work.session.get(Resource, bay_id).active = False
    refusal = {"resource_id": ["Пост 1 is out of service and cannot be booked"]}
    made = api.post("calendar_event", json={"title": "Шины", "resource_id": bay_id, **later})
    assert problem(made, 422)["errors"] == refusal
    moved = api.patch(f"calendar_event/{moving.json()['id']}", json={"resource_id": bay_id})
    assert problem(moved, 422)["errors"] == refusal
    assert api.get(f"calendar_event/{moving.json()['id']}").json()["resource_id"] == other_id
    edited = api.patch(f"calendar_event/{kept.json()['id']}", json={"title": "ТО (перезвонить)"})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["title"], edited.json()["resource_id"]) == ("ТО (перезвонить)", bay_id)


def test_an_event_on_a_retired_resource_is_not_moved_in_time_over_the_api(crm, client_for):
    """Bay 1 is taken out of service with a client still on it: a PATCH of the event's
    start is a 422 naming resource_id and the bay, and the event keeps its hour; its title
    can still be changed and it can be cancelled."""
    from crmkit.model import Resource

    with crm.system() as work:
        bay = Resource(name="Пост 1", kind="bay")
        work.session.add(bay)
        work.flush()
        bay_id = bay.id
    api = client_for(add_user(crm, "ann", ["agent"]))
    hour = {"starts_at": "2030-01-05T10:00:00Z", "ends_at": "2030-01-05T11:00:00Z"}
    kept = api.post("calendar_event", json={"title": "ТО", "resource_id": bay_id, **hour})
    assert kept.status_code == 201, kept.text
    url = f"calendar_event/{kept.json()['id']}"
    with crm.system() as work:
        work.session.get(Resource, bay_id).active = False
    moved = api.patch(url, json={"starts_at": "2030-01-05T09:30:00Z"})
    assert problem(moved, 422)["errors"] == {
        "resource_id": ["Пост 1 is out of service and cannot be booked"]
    }
    assert api.get(url).json()["starts_at"].startswith("2030-01-05T10:00:00")
    edited = api.patch(url, json={"title": "ТО (перезвонить)"})
    assert edited.status_code == 200, edited.text
    cancelled = api.patch(url, json={"status": "cancelled"})
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["title"], cancelled.json()["status"]) == (
        "ТО (перезвонить)",
        "cancelled",
    )


def test_a_stale_row_met_by_an_autoflush_is_a_conflict(crm, client_for, monkeypatch):
    """The record's row changed under a request that changed it too, and a query flushed
    the change on its way (not the unit's own flush): 409, and nothing of it is saved."""
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)
    party_id = api.post("party", json={"name": "Общая"}).json()["id"]
    original = PartyService.after_update

    def meanwhile(self, record, values, extra, changes):
        # the row's version moves on behind the loaded record (as another writer's would)
        self.session.connection().execute(
            sa.update(Party).where(Party.id == record.id).values(version=Party.version + 1)
        )
        original(self, record, values, extra, changes)
        self.session.scalar(sa.select(Party.id).limit(1))

    monkeypatch.setattr(PartyService, "after_update", meanwhile)
    body = problem(api.patch(f"party/{party_id}", json={"source": "site"}), 409)
    assert body["type"].endswith("#conflict") and "reload and try again" in body["detail"]
    monkeypatch.undo()
    assert api.get(f"party/{party_id}").json()["source"] != "site"
