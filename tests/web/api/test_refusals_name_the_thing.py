"""Refusals name what the client sent (the parameter, the header, the field) and bad input
is refused instead of answered as if it were fine."""

from __future__ import annotations

import pytest

from crmkit.model import Activity, Notification
from crmkit.testing import add_user, factories


@pytest.fixture
def setup(crm, client_for):
    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="Альфа").id
    return crm, agent, client_for(agent), party


def test_patching_the_version_says_how_versions_are_given(setup):
    _, _, api, party = setup
    answer = api.patch(f"party/{party}", json={"version": 7})
    assert answer.status_code == 422
    assert answer.json()["errors"] == {
        "version": [
            "the version is kept by the system, not edited (send the one you read as If-Match)"
        ]
    }
    stage = api.patch(f"party/{party}", json={"stage": "client"})
    assert stage.json()["errors"] == {"stage": ["change the stage with a move, not an edit"]}


def test_searching_an_entity_without_search_names_q(setup):
    _, _, api, _ = setup
    answer = api.get("reminder", params={"q": "x"})
    assert answer.status_code == 422
    assert answer.json()["errors"] == {"q": ["reminder cannot be searched"]}


def test_a_malformed_if_match_is_400_naming_the_header(setup):
    crm, _, api, party = setup
    for header in ("garbage", '"3", nonsense'):
        answer = api.patch(
            f"party/{party}", json={"description": "x"}, headers={"If-Match": header}
        )
        assert answer.status_code == 400, (header, answer.text)
        assert list(answer.json()["errors"]) == ["If-Match"]
    stale = api.patch(f"party/{party}", json={"description": "x"}, headers={"If-Match": '"99"'})
    assert stale.status_code == 412
    with crm.system() as work:
        assert work.parties.get(party).description in ("", None)


def test_an_unknown_timeline_kind_is_refused_naming_kind(setup):
    crm, agent, api, party = setup
    with crm.acting_as(agent) as work:
        work.timeline.add_note(party_id=party, body="заметка")
        work.timeline.add("merge", party_id=party, subject="Альфа-2")  # no form writes it
    bogus = api.get(f"party/{party}/timeline", params={"kind": "bogus"})
    assert bogus.status_code == 422 and list(bogus.json()["errors"]) == ["kind"]
    assert "bogus" in bogus.json()["errors"]["kind"][0]
    notes = api.get(f"party/{party}/timeline", params={"kind": "note,merge"})
    assert notes.status_code == 200 and len(notes.json()["items"]) == 2
    assert api.get(f"party/{party}/timeline", params={"kind": "call"}).json()["items"] == []


def test_is_null_takes_no_value_or_a_boolean(setup):
    crm, agent, api, party = setup
    with crm.acting_as(agent) as work:
        work.parties.update(party, position=None)
    refused = api.get("party", params={"name__is_null": "maybe"})
    assert refused.status_code == 422
    assert list(refused.json()["errors"]) == ["name__is_null"]
    assert api.get("party", params={"name__is_null": ""}).json()["items"] == []
    assert api.get("party", params={"name__is_null": "true"}).json()["items"] == []
    named = api.get("party", params={"name__is_null": "false"}).json()["items"]
    assert [p["id"] for p in named] == [party]


def test_mentions_are_capped_and_must_be_users(setup):
    crm, _, api, party = setup
    colleague = add_user(crm, "colleague", ["agent"])
    many = api.post(
        "notes", json={"body": "всем", "party_id": party, "mention": list(range(1, 100_001))}
    )
    assert many.status_code == 422
    assert many.json()["errors"] == {"mention": ["at most 100 users may be mentioned"]}
    missing = api.post(
        "notes", json={"body": "кому?", "party_id": party, "mention": [colleague.id, 987654]}
    )
    assert missing.status_code == 422
    assert missing.json()["errors"] == {"mention": ["no user 987654"]}
    with crm.system() as work:
        assert work.session.query(Activity).filter_by(kind="note").count() == 0
        assert work.session.query(Notification).count() == 0
    told = api.post("notes", json={"body": "глянь", "party_id": party, "mention": [colleague.id]})
    assert told.status_code == 201
