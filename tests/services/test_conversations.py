"""The contact center's rules, service by service: who sees a conversation, whom it goes
to when the sender becomes known or moves, and what triage actions keep."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from crmkit import InboundMessage
from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.model import Activity, Conversation, OutboxItem
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


def arrive(crm, n, sender, body="hi", **fields):
    with crm.system() as work:
        return work.channels.ingest(
            InboundMessage(channel="chat", external_id=f"m{n}", sender=sender, body=body, **fields)
        ).id


def test_a_message_to_a_personal_account_is_its_owners_not_everyones_triage(crm):
    anna, boris = add_user(crm, "anna"), add_user(crm, "boris")
    vera = add_user(crm, "vera")
    mia = add_user(crm, "mia", ["manager"])
    client_of(crm, vera, "friend@corp.ru", "Vera's client")
    arrive(crm, 1, "doctor@clinic.ru", "your results", account="anna-own", owner_id=anna.id)
    arrive(crm, 2, "friend@corp.ru", "for Anna", account="anna-own", owner_id=anna.id)
    arrive(crm, 3, "friend@corp.ru", "to sales@", account="sales")

    personal, from_client, corporate = conversations(crm)
    assert (personal.owner_id, personal.account) == (anna.id, "anna-own")
    assert (from_client.owner_id, corporate.owner_id) == (anna.id, None)
    with crm.acting_as(anna) as work:  # her own mail
        assert {c.id for c in work.conversations.list("unassigned")} == {
            personal.id,
            from_client.id,
        }
    with crm.acting_as(boris) as work:  # neither his mailbox nor his client
        assert work.conversations.list("unassigned") == []
        with pytest.raises(NotFound):
            work.conversations.get(personal.id)
    with crm.acting_as(mia) as work:  # who reads every conversation reads these too
        assert len(work.conversations.list("unassigned")) == 3
        with pytest.raises(ValidationFailed, match="boris cannot see this conversation"):
            work.conversations.assign(personal.id, boris.id)


def test_a_colleagues_client_writing_to_ones_own_mailbox_is_answered_not_shown(crm):
    """Anna may not read Boris's client; the client writes to Anna's own mailbox.  Anna
    opens and answers the conversation (its messages and their files) and reads nothing
    else of the client; Boris, the client's owner, still sees his client's mail."""
    from crmkit.channels import Attachment as Carried

    anna, boris = add_user(crm, "anna"), add_user(crm, "boris")
    mia = add_user(crm, "mia", ["manager"])
    client = client_of(crm, boris, "client@corp.ru", "Boris's client")
    with crm.acting_as(boris) as work:  # the rest of the client's record
        note = work.timeline.add_note(party_id=client, body="discount 30%, do not tell")
        paper = work.attachments.add("contract.pdf", b"%PDF contract", party_id=client).id
    arrive(crm, 1, "client@corp.ru", "to sales@", account="sales")
    with crm.system() as work:
        letter = work.channels.ingest(
            InboundMessage(
                channel="chat", external_id="m2", sender="client@corp.ru", body="Anna, help",
                account="anna-own", owner_id=anna.id,
                attachments=[Carried("scan.pdf", "application/pdf", b"%PDF scan")],
            )
        )  # fmt: skip
        (scan,) = letter.data["attachments"]
    corporate, personal = conversations(crm)
    assert (personal.owner_id, personal.party_id, personal.account) == (anna.id, client, "anna-own")

    with crm.acting_as(anna) as work:
        # the conversation, its messages and their files: one predicate of the access layer
        assert [c.id for c in work.conversations.list("unassigned")] == [personal.id]
        assert [m.body for m in work.conversations.messages(personal.id)] == ["Anna, help"]
        assert work.records("activity").get(letter.id).body == "Anna, help"
        found, stream = work.attachments.open(scan)
        with stream:
            assert (found.filename, stream.read()) == ("scan.pdf", b"%PDF scan")
        assert work.conversations.client_of(personal) is None
        # and nothing else of the client: the card, its other entries, its files
        for hidden in (
            lambda: work.parties.get(client),
            lambda: work.records("activity").get(note.id),
            lambda: work.attachments.get(paper),
            lambda: work.conversations.get(corporate.id),
        ):
            with pytest.raises(NotFound):
                hidden()
        seen = work.session.scalars(
            select(Activity.id).where(work.access.where("activity"), Activity.party_id == client)
        ).all()
        assert seen == [letter.id]
        reply = work.conversations.reply(personal.id, body="Sure")
        work.flush()
        assert (reply.party_id, reply.conversation_id) == (client, personal.id)
        assert work.session.get(Conversation, personal.id).assignee_id == anna.id
        (item,) = work.session.scalars(select(OutboxItem))
        assert (item.payload["account"], item.payload["to"]) == ("anna-own", "client@corp.ru")
    with crm.acting_as(anna) as work:  # her reply is hers to read in the conversation too
        assert [m.body for m in work.conversations.messages(personal.id)] == [
            "Anna, help",
            "Sure",
        ]
    # Boris, the client's owner, sees his client's mail and the reply on the timeline
    with crm.acting_as(boris) as work:
        assert {c.id for c in work.conversations.list("unassigned")} == {corporate.id}
        assert work.conversations.get(personal.id).id == personal.id
        bodies = {a.body for a in work.timeline.list(client, kinds=["message"])}
        assert {"Anna, help", "Sure", "to sales@"} <= bodies
    # a manager may give it to its mailbox's owner, though she does not see the client
    with crm.acting_as(mia) as work:
        work.conversations.assign(personal.id, None)
        work.conversations.assign(personal.id, anna.id)
        with pytest.raises(ValidationFailed, match="anna cannot see this client"):
            work.conversations.assign(corporate.id, anna.id)


def test_reading_a_conversation_reads_its_messages_and_files_but_changes_none(crm):
    """Anna reads the conversation a colleague's client started in her own mailbox, with
    its message and file; her role may change and delete its own clients' entries and
    files.  The conversation lets her read those, not change or delete them."""
    from crmkit.channels import Attachment as Carried

    anna, boris = add_user(crm, "anna"), add_user(crm, "boris")
    client = client_of(crm, boris, "client@corp.ru", "Boris's client")
    mine = client_of(crm, anna, "own@corp.ru", "Anna's client")
    with crm.system() as work:
        for entity, action in (
            ("activity", "update"),
            ("activity", "delete"),
            ("attachment", "delete"),
        ):
            work.permissions.set("agent", entity, action, "own")
        letter = work.channels.ingest(
            InboundMessage(
                channel="chat", external_id="m1", sender="client@corp.ru", body="Anna, help",
                account="anna-own", owner_id=anna.id,
                attachments=[Carried("scan.pdf", "application/pdf", b"%PDF scan")],
            )
        )  # fmt: skip
        (scan,) = letter.data["attachments"]
        letter = letter.id
        own_note = work.timeline.add_note(party_id=mine, body="call back").id
    with crm.acting_as(anna) as work:
        entries = work.records("activity")
        assert entries.get(letter).body == "Anna, help"  # she reads it
        assert work.attachments.get(scan).filename == "scan.pdf"
        for act in (
            lambda: entries.get(letter, action="update"),
            lambda: work.timeline.pin(letter),
            lambda: entries.delete(letter),
            lambda: work.attachments.delete(scan),
        ):
            with pytest.raises(PermissionDenied):
                act()
        changeable = work.session.scalars(
            select(Activity.id).where(work.access.where("activity", "update"))
        ).all()
        assert letter not in changeable
        # her own client's entries stay hers to change
        assert work.timeline.pin(own_note).pinned is True
        entries.delete(own_note)
    with crm.acting_as(boris) as work:  # the client's owner finds it as it was
        found = work.records("activity").get(letter)
        assert (found.party_id, found.body, found.pinned) == (client, "Anna, help", False)
        assert work.attachments.get(scan).filename == "scan.pdf"


def test_a_reply_goes_out_from_the_account_the_client_wrote_to(crm):
    arrive(crm, 1, "olga@client.ru", "the invoice is wrong", account="support")
    (conversation,) = conversations(crm)
    with crm.system() as work:
        work.conversations.reply(conversation.id, body="We will fix it")
        work.flush()
        (item,) = work.session.scalars(select(OutboxItem))
        assert item.payload["account"] == "support"


def test_close_snooze_and_assign_from_a_page_that_missed_a_new_message_are_refused(crm):
    ann, bob = add_user(crm, "ann", ["manager"]), add_user(crm, "bob", ["manager"])
    shown = arrive(crm, 1, "ivan@client.ru", "first question")
    arrive(crm, 2, "ivan@client.ru", "URGENT: change the address!")
    (conversation,) = conversations(crm)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with crm.acting_as(ann) as work:
        for act in (
            lambda: work.conversations.close(conversation.id, seen=shown),
            lambda: work.conversations.snooze(conversation.id, later, seen=shown),
            lambda: work.conversations.assign(conversation.id, ann.id, seen=shown),
        ):
            with pytest.raises(ValidationFailed, match="a new message arrived"):
                act()
    (kept,) = conversations(crm)
    assert (kept.status, kept.unread, kept.assignee_id) == ("open", 2, None)
    newest = max(m.id for m in _messages(crm, conversation.id))
    with crm.acting_as(bob) as work:  # bob takes it first
        work.conversations.assign(conversation.id, bob.id, expected=None, seen=newest)
    with crm.acting_as(ann) as work, pytest.raises(ValidationFailed, match="bob has taken"):
        work.conversations.assign(conversation.id, ann.id, expected=None, seen=newest)
    assert conversations(crm)[0].assignee_id == bob.id
    with crm.acting_as(ann) as work:  # a page showing it as bob's may give it on
        work.conversations.close(conversation.id, seen=newest)
        work.conversations.assign(conversation.id, ann.id, expected=bob.id, seen=newest)
    assert (conversations(crm)[0].status, conversations(crm)[0].assignee_id) == ("closed", ann.id)


def _messages(crm, conversation_id):
    with crm.system() as work:
        return work.conversations.messages(conversation_id)


def test_the_queue_is_paged_oldest_waiting_first_by_arrival_not_the_senders_clock(crm):
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with crm.system() as work:
        work.channels.ingest_many(
            [
                InboundMessage(
                    channel="chat", external_id=f"w{i}", sender=f"c{i}@x.ru", body="help",
                    subject=f"request {i}", arrived_at=start + dt.timedelta(minutes=i),
                )
                for i in range(105)
            ]
        )  # fmt: skip
    wrong_clock = dt.datetime(2005, 2, 1, 7, tzinfo=dt.UTC)
    arrive(crm, 1, "new@client.ru", subject="urgent", received_at=wrong_clock,
           arrived_at=start + dt.timedelta(days=1))  # fmt: skip
    with crm.system() as work:
        assert work.conversations.counts() == {"unassigned": 106, "mine": 0, "team": 0}
        subjects, after = [], None
        while True:
            page = work.conversations.page("unassigned", after=after, limit=50)
            subjects += [c.subject for c in page]
            if page.next_cursor is None:
                break
            after = page.next_cursor
        assert subjects == [f"request {i}" for i in range(105)] + ["urgent"]
        urgent = next(c for c in work.conversations.list("unassigned", limit=200)
                      if c.subject == "urgent")  # fmt: skip
        assert urgent.last_message_at == start + dt.timedelta(days=1)
        (message,) = work.conversations.messages(urgent.id)
        assert message.occurred_at == wrong_clock  # the sender's date is still shown
        work.conversations.assign(urgent.id, None)
        work.conversations.close(urgent.id)
        assert work.conversations.list("unassigned", "closed")[0].id == urgent.id


def test_a_lead_from_a_later_conversation_takes_the_earlier_ones_in_triage(crm):
    arrive(crm, 1, "olga@new.ru", "first: our requirements")
    with crm.system() as work:
        work.conversations.close(conversations(crm)[0].id)
    arrive(crm, 2, "olga@new.ru", "second: any news?")
    _first, second = conversations(crm)
    with crm.system() as work:
        party = work.conversations.create_lead(second.id, "Olga")
    assert [c.party_id for c in conversations(crm)] == [party.id, party.id]
    with crm.system() as work:
        bodies = [a.body for a in work.timeline.list(party.id, kinds=["message"])]
        assert bodies == ["second: any news?", "first: our requirements"]
        assert work.session.scalar(select(Activity.id).where(Activity.party_id.is_(None))) is None
