"""The core half of the channel contract: send via the outbox, ingest once, calls."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
from sqlalchemy import func, select

from crmkit import (
    AddressKind,
    CallEvent,
    CallPhase,
    Capability,
    Channel,
    DeliveryReceipt,
    InboundMessage,
    hookimpl,
)
from crmkit.channels import Attachment
from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.model import Activity, AuditEntry, OutboxItem
from crmkit.model import Attachment as AttachmentRow
from crmkit.testing import add_user, factories


class NullAdapter:
    def send(self, message):
        return DeliveryReceipt("never-called-here")


class ChannelsPlugin:
    crmkit_plugin_name = "test_channels"

    def __init__(self):
        self.received = []

    @hookimpl
    def crmkit_register_channels(self):
        return [
            Channel(
                "mail",
                AddressKind.EMAIL,
                {Capability.SEND, Capability.RECEIVE, Capability.COPIES},
                lambda crm: NullAdapter(),
                activity_kind="mail",
            ),
            Channel(
                "sms",
                AddressKind.PHONE,
                {Capability.SEND},
                lambda crm: NullAdapter(),
                activity_kind="message",
            ),
            Channel(
                "phone",
                AddressKind.PHONE,
                {Capability.CALL_IN, Capability.CALL_OUT},
                lambda crm: NullAdapter(),
                activity_kind="call",
            ),
        ]

    @hookimpl
    def crmkit_message_received(self, work, message, activity):
        self.received.append((message.external_id, activity.party_id))


@pytest.fixture
def plugin():
    return ChannelsPlugin()


@pytest.fixture
def crm(make_crm, plugin):
    return make_crm(plugins=[plugin])


def message(external_id="<m1@example.ru>", sender="Client@Romashka.ru", **kw):
    return InboundMessage(
        channel="mail",
        external_id=external_id,
        sender=sender,
        body="Здравствуйте!",
        subject="Вопрос",
        **kw,
    )


def test_inbound_lands_on_the_right_party_exactly_once(crm, plugin):
    with crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "client@romashka.ru"}]
        )
    with crm.system() as work:
        first = work.channels.ingest(
            message(attachments=[Attachment("счёт.pdf", "application/pdf", b"%PDF-1.4")])
        )
        assert first.party_id == client.id and first.direction == "in"
    with crm.system() as work:
        assert work.channels.ingest(message()) is None  # the same message again
        assert len(work.attachments.for_party(client.id)) == 1
    assert plugin.received == [("<m1@example.ru>", client.id)]


def test_unknown_sender_waits_in_triage_then_is_attached(crm):
    with crm.system() as work:
        triaged = work.channels.ingest(message(sender="new@unknown.ru"))
        assert triaged.party_id is None and triaged.status == "triage"
        client = factories.organisation(work, contact_points=[])
        work.channels.attach_to_party(triaged.id, client.id)
    with crm.system() as work:
        later = work.channels.ingest(message("<m2@x>", sender="NEW@unknown.ru"))
        assert later.party_id == client.id  # the address was remembered


def test_unknown_sender_becomes_a_lead_when_configured(make_crm, plugin):
    crm = make_crm(plugins=[plugin], settings={"channels.unknown_sender": "lead"})
    with crm.system() as work:
        activity = work.channels.ingest(message(sender="boss@newfirm.ru", sender_name="Олег"))
        lead = work.parties.get(activity.party_id)
        assert lead.name == "Олег" and lead.source == "mail"
        assert [c.key for c in lead.contact_points] == ["boss@newfirm.ru"]


def test_a_nameless_senders_lead_is_named_from_the_address(make_crm, plugin):
    """A sender with no name made a lead named "ivan.petrov@romashka.ru".  The local
    part names the person when it reads as a name, else the company's domain names the
    lead (not a public mail service's), else the address; the address stays as its email."""
    crm = make_crm(plugins=[plugin], settings={"channels.unknown_sender": "lead"})
    with crm.system() as work:
        for n, sender, kind, name in (
            (1, "ivan.petrov@romashka.ru", "person", "Ivan Petrov"),
            (2, "info@kedr-stroy.ru", "organisation", "Kedr-Stroy"),
            (3, "zakaz@mail.ru", "person", "zakaz@mail.ru"),
        ):
            activity = work.channels.ingest(message(f"<n{n}@x>", sender=sender))
            lead = work.parties.get(activity.party_id)
            assert (lead.kind, lead.name) == (kind, name)
            assert [c.value for c in lead.contact_points] == [sender]


def test_a_batch_is_recorded_like_its_messages_one_by_one(make_crm, plugin):
    crm = make_crm(plugins=[plugin], settings={"channels.unknown_sender": "lead"})
    with crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "client@romashka.ru"}]
        )
        work.channels.ingest(message("<old@x>"))
    batch = [
        message("<old@x>"),  # recorded before
        message("<b1@x>", sender="boss@newfirm.ru", sender_name="Олег"),
        message("<b2@x>"),
        message("<b3@x>", sender="Boss@NewFirm.ru"),  # the same stranger again
        message("<b2@x>"),  # twice in the batch
    ]
    with crm.system() as work:
        results = work.channels.ingest_many(batch)
        assert [r is None for r in results] == [True, False, False, False, True]
        assert results[2].party_id == client.id
        lead_id = results[1].party_id
        assert lead_id not in (None, client.id) and results[3].party_id == lead_id
        assert work.parties.get(lead_id).name == "Олег"
        conversations = {c.address_key: c.unread for c in work.conversations.list(limit=10)}
        assert conversations == {"client@romashka.ru": 2, "boss@newfirm.ru": 2}
    assert [external for external, _ in plugin.received] == [
        "<old@x>",
        "<b1@x>",
        "<b2@x>",
        "<b3@x>",
    ]


def test_send_goes_through_the_outbox_in_the_same_transaction(crm):
    with crm.system() as work:
        client = factories.organisation(work)
        activity = work.channels.send(
            "mail", to="client@romashka.ru", subject="КП", body="Добрый день", party_id=client.id
        )
        assert activity.status == "queued"
        item = work.session.scalar(select(OutboxItem))
        assert item.kind == "channel.send" and item.payload["to"] == "client@romashka.ru"
        assert item.idempotency_key == f"mail:activity:{activity.id}"
    with pytest.raises(RuntimeError), crm.system() as work:
        work.channels.send("mail", to="a@b.ru", body="x", party_id=client.id)
        raise RuntimeError("the change failed")
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(OutboxItem)) == 1


def test_a_message_sent_to_a_merged_away_id_lands_on_the_survivor(crm):
    with crm.system() as work:
        survivor = factories.organisation(work)
        merged = factories.organisation(work)
        work.merges.merge(survivor.id, merged.id)
    with crm.system() as work:
        sent = work.channels.send("mail", to="client@romashka.ru", body="Добрый день",
                                  party_id=merged.id)  # fmt: skip
        assert sent.party_id == survivor.id
        assert sent.id in [a.id for a in work.timeline.list(survivor.id)]


def test_send_refuses_what_a_channel_cannot_do(crm):
    with crm.system() as work:
        with pytest.raises(ValidationFailed, match="phone cannot send"):
            work.channels.send("phone", to="+79160000000", body="hi")
        with pytest.raises(ValidationFailed, match="empty"):
            work.channels.send("mail", to="a@b.ru", body="  ")
        # a line break in a header would only fail later, at the worker, naming nothing
        for field, values in [
            ("subject", {"subject": "Счёт\r\nBcc: x@evil.ru"}),
            ("to", {"to": "a@b.ru\nBcc: x@evil.ru"}),
        ]:
            with pytest.raises(ValidationFailed) as refused:
                work.channels.send("mail", **{"to": "a@b.ru", "body": "x", **values})
            assert refused.value.errors == {field: ["one line, without line breaks"]}


def test_copies_are_checked_once_each_and_travel_with_the_message(crm):
    with crm.system() as work:
        activity = work.channels.send(
            "mail", to="client@romashka.ru", subject="КП", body="Добрый день",
            cc=(" Boss@Romashka.ru ", "boss@romashka.ru", "CLIENT@romashka.ru", "", "acc@firm.ru"),
        )  # fmt: skip
        # trimmed, each address once, the recipient not copied to themselves
        assert activity.data["cc"] == ["Boss@Romashka.ru", "acc@firm.ru"]
        item = work.session.scalar(select(OutboxItem))
        assert item.payload["cc"] == ["Boss@Romashka.ru", "acc@firm.ru"]
        plain = work.channels.send("mail", to="client@romashka.ru", body="без копий")
        assert "cc" not in plain.data


def test_bad_copies_are_refused_by_name_and_nothing_is_queued(crm):
    with crm.system() as work:
        with pytest.raises(ValidationFailed) as refused:
            work.channels.send(
                "mail", to="client@romashka.ru", body="x", cc=("boss@romashka.ru", "бухгалтерия")
            )
        assert [str(m) for m in refused.value.errors["cc"]] == [
            "'бухгалтерия' is not a valid email address"
        ]
        many = tuple(f"person{i}@firm.ru" for i in range(21))
        with pytest.raises(ValidationFailed, match="at most 20 copies"):
            work.channels.send("mail", to="client@romashka.ru", body="x", cc=many)
        with pytest.raises(ValidationFailed) as refused:
            work.channels.send("sms", to="+79160000000", body="x", cc=("+79161111111",))
        assert refused.value.errors == {"cc": ["sms cannot send copies"]}
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(OutboxItem)) == 0
        assert work.session.scalar(select(func.count()).select_from(Activity)) == 0


def test_the_others_an_inbound_message_went_to_are_kept_for_a_reply_to_all(crm):
    with crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "client@romashka.ru"}]
        )
        work.channels.ingest(
            message(sender="client@romashka.ru", cc=("boss@romashka.ru", "acc@romashka.ru"))
        )
        (conversation,) = work.conversations.list("unassigned", "open")
        assert work.conversations.reply_copies(conversation.id) == [
            "boss@romashka.ru",
            "acc@romashka.ru",
        ]
        reply = work.conversations.reply(
            conversation.id,
            body="Ответ всем",
            cc=tuple(work.conversations.reply_copies(conversation.id)),
        )
        assert reply.party_id == client.id and reply.data["cc"] == [
            "boss@romashka.ru",
            "acc@romashka.ru",
        ]


def test_a_call_is_one_timeline_entry_across_phases(crm):
    start = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)
    with crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "phone", "value": "8 916 555-44-33"}]
        )
    for phase, minutes in ((CallPhase.RINGING, 0), (CallPhase.ANSWERED, 1), (CallPhase.ENDED, 5)):
        with crm.system() as work:
            work.channels.record_call(
                CallEvent(
                    channel="phone",
                    call_id="1700000000.42",
                    phase=phase,
                    direction="in",
                    remote="+79165554433",
                    extension="101",
                    at=start + dt.timedelta(minutes=minutes),
                    duration_seconds=240 if phase == CallPhase.ENDED else None,
                )
            )
    with crm.system() as work:
        calls = work.session.scalars(select(Activity).where(Activity.kind == "call")).all()
        assert len(calls) == 1
        call = calls[0]
        assert call.party_id == client.id and call.status == "ended"
        assert call.data["duration"] == 240 and set(call.data["phases"]) == {
            "ringing",
            "answered",
            "ended",
        }


def test_a_file_too_large_is_dropped_with_a_note_and_spoils_nothing(make_crm, plugin):
    crm = make_crm(plugins=[plugin], settings={"storage.max_upload_mb": 1})
    big = Attachment("чертёж.dwg", "application/acad", b"x" * (1024 * 1024 + 1))
    small = Attachment("счёт.pdf", "application/pdf", b"%PDF-1.4")
    with crm.system() as work:
        heavy, light = work.channels.ingest_many(
            [
                message("<big@x>", attachments=[small, big]),
                message("<small@x>", attachments=[small]),
            ]
        )
    with crm.system() as work:
        heavy, light = work.session.get(Activity, heavy.id), work.session.get(Activity, light.id)
        assert "чертёж.dwg" in heavy.data["dropped_attachments"]
        assert "attachments" not in heavy.data  # all or none of a message's files
        assert len(light.data["attachments"]) == 1
        stored = work.attachments.get(light.data["attachments"][0])
        assert stored.filename == "счёт.pdf" and stored.record_id == light.id


def test_files_of_a_batch_undone_or_dropped_leave_nothing_in_storage(make_crm, plugin):
    crm = make_crm(plugins=[plugin], settings={"storage.max_upload_mb": 1})
    big = Attachment("чертёж.dwg", "application/acad", b"x" * (1024 * 1024 + 1))
    small = Attachment("счёт.pdf", "application/pdf", b"%PDF-1.4")

    def stored_files():
        return sorted(p.name for p in crm.storage.root.rglob("*") if p.is_file())

    class Undone(Exception):
        pass

    with pytest.raises(Undone), crm.system() as work:
        work.channels.record_many(
            [message("<a@x>", attachments=[small, small]), message("<b@x>", attachments=[small])]
        )
        assert len(stored_files()) == 3
        raise Undone
    assert stored_files() == []
    with crm.system() as work:
        (heavy,) = work.channels.record_many([message("<big@x>", attachments=[small, big])])
    assert stored_files() == []  # the small file went with the refused one
    with crm.system() as work:
        assert "dropped_attachments" in work.session.get(Activity, heavy).data
        (kept,) = work.channels.record_many([message("<kept@x>", attachments=[small, small])])
        files = work.session.get(Activity, kept).data["attachments"]
    with crm.system() as work:
        audited = work.session.execute(
            select(AuditEntry.record_id, AuditEntry.action, AuditEntry.changes).where(
                AuditEntry.entity == "attachment"
            )
        ).all()
    assert sorted(audited) == [
        (file, "create", {"filename": [None, "счёт.pdf"], "document_type": [None, None]})
        for file in sorted(files)
    ]


def test_a_batch_counts_on_open_conversations_wakes_snoozed_and_skips_closed(crm):
    with crm.system() as work:
        first = work.channels.ingest(message("<c1@x>", sender="open@x.ru"))
        snoozed = work.channels.ingest(message("<c2@x>", sender="sleepy@x.ru"))
        closed = work.channels.ingest(message("<c3@x>", sender="done@x.ru"))
        work.conversations.snooze(snoozed.conversation_id, utcnow() + dt.timedelta(days=1))
        work.conversations.close(closed.conversation_id)
    published = []
    crm.live.publish = lambda user_id, message: published.append((user_id, message))
    with crm.system() as work:
        loaded = work.conversations.get(first.conversation_id)  # in the session: refreshed
        assert loaded.unread == 1
        ids = work.channels.record_many(
            [
                message("<c4@x>", sender="open@x.ru"),
                message("<c5@x>", sender="sleepy@x.ru"),
                message("<c6@x>", sender="done@x.ru"),
                message("<c7@x>", sender="Done@X.ru"),
            ]
        )
        assert all(isinstance(i, int) for i in ids)
        entries = [work.session.get(Activity, i) for i in ids]
        assert entries[0].conversation_id == first.conversation_id and loaded.unread == 2
        woken = work.conversations.get(snoozed.conversation_id)
        assert (woken.status, woken.snoozed_until, woken.unread) == ("open", None, 2)
        assert entries[2].conversation_id not in (None, closed.conversation_id)
        assert entries[3].conversation_id == entries[2].conversation_id
        started = work.conversations.get(entries[2].conversation_id)
        assert (started.status, started.unread, started.address_key) == ("open", 2, "done@x.ru")
        assert work.conversations.get(closed.conversation_id).status == "closed"
        received = [e for e in work.pending_events if e.name == "message.received"]
        assert [e.record_id for e in received] == ids
    assert published == [(0, {"type": "inbox"})]  # open inboxes told once, after the commit


def test_files_of_a_batch_ingested_by_a_user_are_stored_one_by_one(crm):
    clerk = add_user(crm, "clerk", ["admin"])
    with crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "client@romashka.ru"}]
        )
    small = Attachment("счёт.pdf", "application/pdf", b"%PDF-1.4")
    with crm.acting_as(clerk) as work:
        (entry,) = work.channels.ingest_many([message("<u1@x>", attachments=[small])])
    with crm.system() as work:
        entry = work.session.get(Activity, entry.id)
        (stored,) = work.attachments.for_party(client.id)
        assert entry.data["attachments"] == [stored.id] and stored.uploaded_by_id == clerk.id
        assert (stored.record_entity, stored.record_id) == ("activity", entry.id)


def test_files_of_a_batch_that_rolls_back_are_removed_from_storage(make_crm, plugin):
    crm = make_crm(plugins=[plugin])
    small = Attachment("счёт.pdf", "application/pdf", b"%PDF-1.4")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), crm.system() as work:
        (entry_id,) = work.channels.record_many([message("<r1@x>", attachments=[small])])
        (key,) = work.session.scalars(select(AttachmentRow.storage_key))
        work.crm.storage.open(key).close()  # written
        raise Boom
    with pytest.raises(FileNotFoundError):
        crm.storage.open(key)
    with crm.system() as work:
        assert work.session.get(Activity, entry_id) is None


def test_a_file_the_reader_stored_is_referred_to_not_copied_nor_deleted(make_crm, plugin):
    crm = make_crm(plugins=[plugin], settings={"storage.max_upload_mb": 1})
    clerk = add_user(crm, "clerk", ["admin"])

    def stored(content):
        saved = crm.storage.save([content])
        return Attachment("счёт.pdf", "application/pdf", stored=saved)

    def files():
        return sorted(p.name for p in crm.storage.root.rglob("*") if p.is_file())

    small, big = stored(b"%PDF-1.4"), stored(b"x" * (1024 * 1024 + 1))
    with crm.system() as work:
        kept, heavy = work.channels.record_many(
            [message("<s1@x>", attachments=[small]), message("<s2@x>", attachments=[big])]
        )
    with crm.system() as work:
        (row,) = work.session.scalars(select(AttachmentRow))
        assert (row.storage_key, row.size, row.sha256) == (
            small.stored.key, 8, small.stored.sha256
        )  # fmt: skip
        assert work.session.get(Activity, kept).data["attachments"] == [row.id]
        assert (
            "larger than the limit" in work.session.get(Activity, heavy).data["dropped_attachments"]
        )
    # refused or not, the reader's files are left to the reader
    assert files() == sorted([small.stored.key, big.stored.key])
    # a user's batch gets a copy of its own (stored through attachments.add)
    copied = stored(b"%PDF-1.7")
    with crm.acting_as(clerk) as work:
        (entry,) = work.channels.record_many([message("<s3@x>", attachments=[copied])])
    with crm.system() as work:
        (file_id,) = work.session.get(Activity, entry).data["attachments"]
        row = work.session.get(AttachmentRow, file_id)
        assert row.storage_key != copied.stored.key
        with crm.storage.open(row.storage_key) as handle:
            assert handle.read() == b"%PDF-1.7"
    assert copied.stored.key in files()


def test_a_message_the_database_refuses_spoils_only_itself(crm):
    """A value PostgreSQL rejects (a NUL in text) is caught even from the bulk COPY path."""
    with crm.system() as work:
        ids, failures = work.channels.record_isolated(
            [
                message("<a@x>"),
                attrs.evolve(message("<b@x>"), body="bro\x00ken"),
                message("<c@x>"),
            ]
        )
        recorded = work.session.scalars(select(Activity.external_id).order_by(Activity.id)).all()
    if crm.engine.dialect.name == "postgresql":
        assert ids[1] is None and list(failures) == [1]
        assert "NUL" in failures[1]
        assert recorded == ["<a@x>", "<c@x>"]
    else:  # SQLite keeps any text
        assert failures == {} and recorded == ["<a@x>", "<b@x>", "<c@x>"]


def test_a_clients_mail_about_a_colleagues_deal_stays_on_the_clients_timeline(crm):
    """The mail follows its conversation (its client's), not the deal its thread matched;
    a note on that deal and the note's file stay hidden (two links deep)."""
    alice = add_user(crm, "alice", ["agent"])
    bob = add_user(crm, "bob", ["agent"])
    with crm.acting_as(alice) as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "client@romashka.ru"}]
        ).id
    with crm.system() as work:
        deal = work.deals.create(title="Сделка Боба", party_id=client, owner_id=bob.id).id
        first = work.channels.ingest(message("<m1@x>"))
        first.record_entity, first.record_id = "deal", deal
        note = work.timeline.add_note(record=("deal", deal), body="скидка 15%")
        note_file = work.attachments.add("условия.pdf", b"%PDF", record=("activity", note.id))
    with crm.system() as work:
        second = work.channels.ingest(
            message(
                "<m2@x>",
                thread_refs=("<m1@x>",),
                attachments=[Attachment("счёт.pdf", "application/pdf", b"%PDF")],
            )
        )
        assert (second.record_entity, second.record_id) == ("deal", deal)
    with crm.acting_as(alice) as work:
        timeline = work.timeline.list(client).items
        assert sorted(a.external_id for a in timeline if a.kind == "mail") == ["<m1@x>", "<m2@x>"]
        assert note.id not in {a.id for a in timeline}
        files = {f.filename for f in work.attachments.for_party(client)}
        assert files == {"счёт.pdf"}, files
        assert note_file.id not in {f.id for f in work.records("attachment").list().items}
