"""Recording a phone call over the API (``POST /party/{id}/calls``), as the card's
"Record a call" form does: on the client's timeline, refused by name with nothing written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmkit.errors import ValidationFailed
from crmkit.model import Activity
from crmkit.testing import add_user, factories
from tests.web.api.conftest import problem


def _calls(crm, party_id):
    with crm.system() as work:
        return list(
            work.session.scalars(
                select(Activity)
                .where(Activity.party_id == party_id, Activity.kind == "call")
                .order_by(Activity.id)
            )
        )


def test_an_agent_records_a_call_on_their_client_like_the_card(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="ООО «Ромашка»")
        card_call = work.timeline.add_call(party.id, outcome="no answer")  # what the card does
        card_call_id = card_call.id
    api = client_for(agent)

    made = api.post(
        f"party/{party.id}/calls", json={"outcome": "reached", "body": "перезвонить в пятницу"}
    )

    assert made.status_code == 201, made.text
    entry = made.json()
    assert made.headers["location"] == f"/api/v1/activity/{entry['id']}"
    assert (entry["kind"], entry["direction"], entry["party_id"], entry["body"]) == (
        "call",
        "out",
        party.id,
        "перезвонить в пятницу",
    )
    timeline = api.get(f"party/{party.id}/timeline", params={"kind": "call"}).json()["items"]
    assert [item["id"] for item in timeline] == [entry["id"], card_call_id]
    card, via_api = _calls(crm, party.id)
    # counted as the card's call is: same kind, direction, channel, author; the outcome kept
    assert (
        (via_api.channel, via_api.actor_id) == (card.channel, card.actor_id) == ("phone", agent.id)
    )
    assert (card.data["outcome"], via_api.data["outcome"]) == ("no answer", "reached")


def test_a_call_on_a_client_the_agent_cannot_see_is_a_404(crm, client_for):
    owner = add_user(crm, "ann", ["agent"])
    stranger = add_user(crm, "bob", ["agent"])
    with crm.acting_as(owner) as work:
        party = factories.organisation(work, name="ООО «Чужая»")
    refused = client_for(stranger).post(f"party/{party.id}/calls", json={"outcome": "reached"})
    problem(refused, 404)
    missing = client_for(owner).post(
        "party/99999999999999999999999/calls", json={"outcome": "reached"}
    )
    problem(missing, 404)
    assert _calls(crm, party.id) == []


def test_a_call_with_a_bad_outcome_or_field_is_refused_by_name(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="ООО «Ромашка»")
    api = client_for(agent)
    for body, field in (
        ({"outcome": "busy"}, "outcome"),
        ({}, "outcome"),
        ({"outcome": "reached", "body": "x" * 20001}, "body"),
        ({"outcome": "reached", "direction": "in"}, "direction"),
    ):
        refused = problem(api.post(f"party/{party.id}/calls", json=body), 422)
        assert field in refused["errors"], (body, refused)
    assert _calls(crm, party.id) == []
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Activity)) == 0


def test_what_was_said_is_capped_at_20000_characters_like_on_the_card(crm, client_for):
    agent = add_user(crm, "ann", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="ООО «Болтливая»")
    api = client_for(agent)

    refused = problem(
        api.post(f"party/{party.id}/calls", json={"outcome": "reached", "body": "д" * 20001}),
        422,
    )

    assert refused["errors"] == {"body": ["Longer than maximum length 20000."]}
    assert _calls(crm, party.id) == []
    made = api.post(f"party/{party.id}/calls", json={"outcome": "reached", "body": "д" * 20000})
    assert made.status_code == 201, made.text
    [call] = _calls(crm, party.id)
    assert (call.id, len(call.body)) == (made.json()["id"], 20000)
    # the service checks it too, for the card and any other writer
    with crm.acting_as(agent) as work, pytest.raises(ValidationFailed) as too_long:
        work.timeline.add_call(party.id, outcome="reached", body="д" * 20001)
    assert [str(m) for m in too_long.value.errors["body"]] == ["longer than 20000 characters"]
    assert len(_calls(crm, party.id)) == 1
