"""The contact center's rules, service by service: who sees a conversation, whom it goes
to when the sender becomes known or moves, and what triage actions keep."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from crmkit import InboundMessage
from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.model import Activity, Conversation
from crmkit.testing import add_user, factories
from tests.web.conftest import ChatChannel


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[ChatChannel()])


def receive(crm, sender, body, n):
    with crm.system() as work:
        return work.channels.ingest(
            InboundMessage(channel="chat", external_id=f"m{n}", sender=sender, body=body)
        ).id


def conversations(crm):
    with crm.system() as work:
        return list(work.session.scalars(select(Conversation).order_by(Conversation.id)))


def client_of(crm, owner, address, name="ООО «Кедр»"):
    with crm.acting_as(owner) as work:
        return factories.organisation(
            work, name=name, contact_points=[{"kind": "email", "value": address}]
        ).id


def test_a_sender_who_becomes_known_takes_the_client_with_earlier_messages(crm):
    ann = add_user(crm, "ann")
    first = receive(crm, "ivan@new.ru", "first", 1)
    party_id = client_of(crm, ann, "ivan@new.ru")  # the address added to a card
    receive(crm, "ivan@new.ru", "second", 2)

    (conversation,) = conversations(crm)
    assert conversation.party_id == party_id
    with crm.acting_as(ann) as work:
        bodies = [a.body for a in work.timeline.list(party_id, kinds=["message"])]
        assert bodies == ["second", "first"]  # the triaged message is on the card too
        assert work.session.get(Activity, first).status == "new"


def test_a_sender_whose_address_moved_to_another_client_starts_a_new_conversation(crm):
    ann, bob = add_user(crm, "ann"), add_user(crm, "bob")
    old_co = client_of(crm, ann, "ivan@x.ru", "OldCo")
    receive(crm, "ivan@x.ru", "hello", 1)
    with crm.system() as work:  # Ivan moved: his address is NewCo's now
        party = work.parties.get(old_co)
        work.parties.remove_contact(party, party.contact_points[0].id)
    new_co = client_of(crm, bob, "ivan@x.ru", "NewCo")
    receive(crm, "ivan@x.ru", "our budget is 5M", 2)

    old, new = conversations(crm)
    assert (old.party_id, new.party_id) == (old_co, new_co)
    with crm.acting_as(bob) as work:
        (seen,) = work.conversations.list("unassigned")
        assert seen.id == new.id
        assert [m.body for m in work.conversations.messages(new.id)] == ["our budget is 5M"]
    with crm.acting_as(ann) as work:
        assert [c.id for c in work.conversations.list("unassigned")] == [old.id]


def test_attaching_lets_go_an_assignee_who_cannot_see_the_client_and_keeps_reply_states(crm):
    ann, bob = add_user(crm, "ann"), add_user(crm, "bob")
    receive(crm, "x@new.ru", "кто вы?", 1)
    (conversation,) = conversations(crm)
    with crm.acting_as(bob) as work:  # bob answers in triage: it is his now
        reply = work.conversations.reply(conversation.id, body="Мы — Кедр").id
    with crm.system() as work:
        work.session.execute(update(Activity).where(Activity.id == reply).values(status="sent"))
    party_id = client_of(crm, ann, "other@new.ru")
    with crm.acting_as(ann) as work:
        work.conversations.attach(conversation.id, party_id)
        # back in the unassigned queue, where ann (who sees the client) finds it
        assert [c.id for c in work.conversations.list("unassigned")] == [conversation.id]
        assert work.session.get(Activity, reply).status == "sent"  # not "new"
    with crm.acting_as(bob) as work, pytest.raises(NotFound):
        work.conversations.get(conversation.id)


def test_a_closed_conversation_is_not_snoozed(crm):
    receive(crm, "x@new.ru", "hi", 1)
    (conversation,) = conversations(crm)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with crm.system() as work:
        work.conversations.close(conversation.id)
        with pytest.raises(ValidationFailed) as refused:
            work.conversations.snooze(conversation.id, later)
        assert list(refused.value.errors) == ["status"]
    receive(crm, "x@new.ru", "again", 2)
    assert [c.status for c in conversations(crm)] == ["closed", "open"]  # a new one


def test_an_update_scope_narrower_than_reading_is_kept(crm):
    mia = add_user(crm, "mia", ["manager"])
    ann = add_user(crm, "ann")
    client_of(crm, ann, "a@kedr.ru")
    receive(crm, "a@kedr.ru", "hi", 1)
    (conversation,) = conversations(crm)
    with crm.system() as work:  # managers may change only their own clients' conversations
        work.permissions.set("manager", "conversation", "update", "own")
    with crm.acting_as(mia) as work:
        assert work.conversations.get(conversation.id).id == conversation.id  # reads all
        for act in (
            lambda: work.conversations.close(conversation.id),
            lambda: work.conversations.reply(conversation.id, body="x"),
        ):
            with pytest.raises(PermissionDenied):
                act()


def test_a_reply_to_a_subject_with_line_breaks_is_one_line(crm):
    with crm.system() as work:
        work.channels.ingest(
            InboundMessage(
                channel="chat", external_id="m1", sender="x@new.ru", body="hi",
                subject="Счёт\r\nBcc: x@evil.ru",
            )
        )  # fmt: skip
        (conversation,) = work.conversations.list("unassigned")
        reply = work.conversations.reply(conversation.id, body="Ок")
        assert reply.subject == "Re: Счёт Bcc: x@evil.ru"
