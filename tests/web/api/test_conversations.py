"""Conversations over the API: the same ones the contact center shows."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import update

from crmkit.errors import NotFound
from crmkit.model import Conversation
from crmkit.testing import add_user
from tests.services.test_conversations import client_of, conversations, receive
from tests.web.conftest import ChatChannel


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[ChatChannel()])


def test_the_api_lists_the_conversations_the_screens_show(crm, client_for_crm):
    """Triage is everyone's; being assigned one does not show a client one may not see."""
    ann, bob = add_user(crm, "ann"), add_user(crm, "bob")
    receive(crm, "stranger@new.ru", "triage", 1)
    client_of(crm, ann, "a@kedr.ru")
    receive(crm, "a@kedr.ru", "ann's client", 2)
    triage, anns = conversations(crm)
    with crm.system() as work:  # assigned to bob, who may not see ann's client
        work.session.execute(
            update(Conversation).where(Conversation.id == anns.id).values(assignee_id=bob.id)
        )
    for user, expected in [(ann, {triage.id, anns.id}), (bob, {triage.id})]:
        with crm.acting_as(user) as work:
            screens = set()
            for conversation in (triage, anns):
                with contextlib.suppress(NotFound):
                    screens.add(work.conversations.get(conversation.id).id)
        listed = client_for_crm(crm, user).get("conversation").json()["items"]
        assert {c["id"] for c in listed} == screens == expected, user.username


def test_the_api_lets_a_mailbox_owner_read_her_conversation_not_its_hidden_client(
    crm, client_for_crm
):
    """A colleague's client writing to Anna's own mailbox: the API gives her the
    conversation and its message, as the screens do, and still not the client."""
    from crmkit import InboundMessage

    anna, boris = add_user(crm, "anna"), add_user(crm, "boris")
    party_id = client_of(crm, boris, "c@corp.ru")
    with crm.system() as work:
        letter = work.channels.ingest(
            InboundMessage(
                channel="chat", external_id="p1", sender="c@corp.ru", body="to Anna",
                account="anna-own", owner_id=anna.id,
            )
        )  # fmt: skip
    (conversation,) = conversations(crm)
    api = client_for_crm(crm, anna)
    assert [c["id"] for c in api.get("conversation").json()["items"]] == [conversation.id]
    assert api.get(f"conversation/{conversation.id}").status_code == 200
    assert api.get(f"activity/{letter.id}").json()["body"] == "to Anna"
    assert api.get(f"party/{party_id}").status_code == 404
    listed = client_for_crm(crm, boris).get("conversation").json()["items"]
    assert [c["id"] for c in listed] == [conversation.id]


def test_the_api_names_no_client_the_caller_may_not_read(crm, client_for_crm):
    """Anna reads the conversation a colleague's client started in her own mailbox, as the
    contact center shows it: the sender and no client.  The API gives its client as null
    too, on the list, the conversation and its message, and a filter on the client never
    matches it (which would tell whose it is); her own client's conversation keeps its."""
    from crmkit import InboundMessage

    anna, boris = add_user(crm, "anna"), add_user(crm, "boris")
    hidden = client_of(crm, boris, "c@corp.ru", "Boris's client")
    hers = client_of(crm, anna, "a@kedr.ru", "Anna's client")
    with crm.system() as work:
        letter = work.channels.ingest(
            InboundMessage(
                channel="chat", external_id="p1", sender="c@corp.ru", body="to Anna",
                account="anna-own", owner_id=anna.id,
            )
        ).id  # fmt: skip
    receive(crm, "a@kedr.ru", "from Anna's client", 2)
    personal, own = conversations(crm)
    assert (personal.party_id, own.party_id) == (hidden, hers)

    api = client_for_crm(crm, anna)
    listed = {c["id"]: c["party_id"] for c in api.get("conversation").json()["items"]}
    assert listed == {personal.id: None, own.id: hers}
    assert api.get(f"conversation/{personal.id}").json()["party_id"] is None
    assert api.get(f"conversation/{own.id}").json()["party_id"] == hers
    message = api.get(f"activity/{letter}").json()
    assert (message["body"], message["party_id"]) == ("to Anna", None)
    for query in (
        {"party_id": hidden},
        {"party_id__in": f"{hidden},{hers}"},
        {"party_id__gte": 1},
        {"party_id__ne": hers},
    ):
        found = [c["id"] for c in api.get("conversation", params=query).json()["items"]]
        assert personal.id not in found, query
    assert [
        c["id"] for c in api.get("conversation", params={"party_id": hers}).json()["items"]
    ] == [own.id]
    assert [m["id"] for m in api.get("activity", params={"party_id": hidden}).json()["items"]] == []
    # a filter on anything but the client finds it, as the contact center lists it
    found = api.get("conversation", params={"channel": "chat"}).json()["items"]
    assert {c["id"] for c in found} == {personal.id, own.id}
    # the client's owner reads it as before
    boris_api = client_for_crm(crm, boris)
    assert boris_api.get(f"conversation/{personal.id}").json()["party_id"] == hidden
    assert boris_api.get(f"activity/{letter}").json()["party_id"] == hidden
    found = boris_api.get("conversation", params={"party_id": hidden}).json()["items"]
    assert [c["id"] for c in found] == [personal.id]
