"""The contact center: conversations of every channel, triage, assignment, replies, access."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from sqlalchemy import func, select, update

from crmkit import InboundMessage
from crmkit.model import Activity, Conversation, OutboxItem
from crmkit.testing import factories
from tests.web.conftest import ChatChannel, CopiesChannel

pytestmark = pytest.mark.anyio


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[ChatChannel(), CopiesChannel()])


def receive(crm, sender, body, n, name=None, subject="Вопрос"):
    with crm.system() as work:
        return work.channels.ingest(
            InboundMessage(
                channel="chat", external_id=f"m{n}", sender=sender, body=body,
                sender_name=name, subject=subject,
            )
        )  # fmt: skip


def conversations(crm):
    with crm.system() as work:
        return list(work.session.scalars(select(Conversation).order_by(Conversation.id)))


async def test_unknown_sender_to_lead_reply_snooze_close(web, crm):
    agent = await web("agent")
    receive(crm, "anna@example.ru", "Сколько стоит доставка?", 1, name="Анна")
    receive(crm, "anna@example.ru", "И сроки?", 2, name="Анна")
    (conversation,) = conversations(crm)  # two messages, one conversation
    assert conversation.unread == 2 and conversation.party_id is None

    page = await agent.get("/inbox")
    assert page.status_code == 200 and "Анна" in page.text
    page = await agent.get(f"/inbox/{conversation.id}")
    assert "Сколько стоит доставка?" in page.text and "И сроки?" in page.text

    # an unknown sender becomes a lead in one click (the name is filled in already)
    answer = await agent.post(f"/inbox/{conversation.id}/act", {"action": "lead", "name": "Анна"})
    assert answer.status_code == 303
    with crm.system() as work:
        lead = work.parties.get(conversations(crm)[0].party_id)
        assert lead.name == "Анна" and [p.value for p in lead.contact_points] == ["anna@example.ru"]
        assert {a.party_id for a in work.session.scalars(select(Activity))} == {lead.id}
    # the next message from her is filed under the lead at once
    receive(crm, "anna@example.ru", "Жду ответа", 3)
    assert conversations(crm)[0].unread == 1

    with crm.system() as work:  # managers write templates; agents use them
        template = work.message_templates.create(
            {"name": "ответ", "channel": "chat", "subject": "Ответ",
             "body": "{{ party.name }}, доставка бесплатно."}
        )  # fmt: skip
    await agent.post(
        f"/inbox/{conversation.id}/act", {"action": "reply", "template_id": template.id}
    )
    with crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem))
        assert item.payload["body"] == "Анна, доставка бесплатно."
        assert item.payload["to"] == "anna@example.ru" and item.payload["in_reply_to"] == "m3"
    # replying took it: it is now the agent's
    mine = await agent.get("/inbox?view=mine")
    assert f'data-id="{conversation.id}"' in mine.text
    assert f'data-id="{conversation.id}"' not in (await agent.get("/inbox")).text

    await agent.post(f"/inbox/{conversation.id}/act", {"action": "snooze", "hours": "4"})
    assert f'data-id="{conversation.id}"' not in (await agent.get("/inbox?view=mine")).text
    snoozed = await agent.get("/inbox?view=mine&status=snoozed")
    assert f'data-id="{conversation.id}"' in snoozed.text
    receive(crm, "anna@example.ru", "Алло?", 4)  # a new message wakes it up
    assert conversations(crm)[0].status == "open"

    await agent.post(f"/inbox/{conversation.id}/act", {"action": "close"})
    receive(crm, "anna@example.ru", "Ещё вопрос", 5)
    first, second = conversations(crm)
    assert first.status == "closed" and second.status == "open" and second.party_id == lead.id


async def test_attach_to_an_existing_client_in_two_clicks(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        client = factories.organisation(work, name="ООО «Ромашка»")
        deal = factories.deal(work, party_id=client.id)
    receive(crm, "new.boss@romashka.ru", "Это наш новый адрес", 1)
    (conversation,) = conversations(crm)
    found = await agent.get(f"/inbox/{conversation.id}?party=Ромашка")
    assert f'name="party_id" value="{client.id}"' in found.text
    await agent.post(f"/inbox/{conversation.id}/act", {"action": "attach", "party_id": client.id})
    with crm.system() as work:
        card = work.parties.get(client.id)
        assert "new.boss@romashka.ru" in [p.value for p in card.contact_points]
    page = await agent.get(f"/inbox/{conversation.id}")
    assert f'href="/clients/{client.id}"' in page.text
    # a message answering one that was about a deal joins that deal
    with crm.system() as work:
        first = work.session.scalar(select(Activity).where(Activity.external_id == "m1"))
        first.record_entity, first.record_id = "deal", deal.id
    with crm.system() as work:
        follow = work.channels.ingest(
            InboundMessage(channel="chat", external_id="m2", sender="new.boss@romashka.ru",
                           body="ну что?", thread_refs=("m1",))
        )  # fmt: skip
        assert (follow.record_entity, follow.record_id) == ("deal", deal.id)


async def test_conversations_follow_client_visibility(web, crm):
    owner = await web("agent")
    other = await web("agent")
    manager = await web("manager")
    with crm.acting_as(owner.user) as work:
        factories.organisation(
            work, name="Чужой клиент", contact_points=[{"kind": "email", "value": "c@client.ru"}]
        )
    receive(crm, "c@client.ru", "секрет", 1)
    (conversation,) = conversations(crm)
    assert (await owner.get(f"/inbox/{conversation.id}")).status_code == 200
    assert (await other.get(f"/inbox/{conversation.id}")).status_code == 404
    assert "секрет" not in (await other.get("/inbox")).text
    assert (await other.post(f"/inbox/{conversation.id}/act", {"action": "close"})).status_code in (
        303,
        404,
    )
    assert conversations(crm)[0].status == "open"
    # it cannot be given to someone who does not see the client; to the owner it can
    await manager.post(
        f"/inbox/{conversation.id}/act", {"action": "assign", "assignee_id": other.user.id}
    )
    assert conversations(crm)[0].assignee_id is None
    await manager.post(
        f"/inbox/{conversation.id}/act", {"action": "assign", "assignee_id": owner.user.id}
    )
    assert f'data-id="{conversation.id}"' in (await owner.get("/inbox?view=mine")).text
    with crm.acting_as(owner.user) as work:
        assert [n.kind for n in work.notifications.latest()] == ["conversation.assigned"]


async def test_snooze_needs_a_time_in_the_future(crm):
    receive(crm, "x@example.ru", "hi", 1)
    (conversation,) = conversations(crm)
    from crmkit.errors import ValidationFailed

    with crm.system() as work, pytest.raises(ValidationFailed, match="future"):
        work.conversations.snooze(conversation.id, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


async def test_a_reply_to_all_and_a_refused_copy_that_loses_nothing(web, crm):
    agent = await web("agent")
    with crm.system() as work:
        work.channels.ingest(
            InboundMessage(
                channel="letters", external_id="<l1@client.ru>", sender="anna@client.ru",
                body="Пришлите счёт", subject="Счёт", cc=("boss@client.ru", "acc@client.ru"),
            )
        )  # fmt: skip
    receive(crm, "ivan@example.ru", "Чат", 2)
    letters, chat = conversations(crm)
    page = await agent.get(f"/inbox/{letters.id}")
    # the client's copies are shown, and the reply copies them unless the agent clears it
    assert "boss@client.ru, acc@client.ru" in page.text
    assert 'name="cc" value="boss@client.ru, acc@client.ru"' in page.text
    assert 'name="cc"' not in (await agent.get(f"/inbox/{chat.id}")).text  # no copies there

    refused = await agent.post(
        f"/inbox/{letters.id}/act",
        {"action": "reply", "body": "Счёт во вложении", "cc": "boss@client.ru, бухгалтерия"},
    )
    # shown again with the error and what was typed; nothing queued
    assert refused.status_code == 422
    assert "копия: &#39;бухгалтерия&#39; — неверный адрес" in refused.text  # named, by the field
    assert ">Счёт во вложении</textarea>" in refused.text
    assert 'value="boss@client.ru, бухгалтерия"' in refused.text
    with crm.system() as work:
        assert list(work.session.scalars(select(OutboxItem))) == []

    sent = await agent.post(
        f"/inbox/{letters.id}/act",
        {"action": "reply", "body": "Счёт во вложении", "cc": "Boss <boss@client.ru>; a@firm.ru"},
    )
    assert sent.status_code == 303
    with crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem))
        assert item.payload["to"] == "anna@client.ru"
        assert item.payload["cc"] == ["boss@client.ru", "a@firm.ru"]


async def test_a_reply_carries_files_kept_on_the_client(web, crm):
    from crmkit.model import Attachment

    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        client = factories.organisation(
            work, name="ООО «Ромашка»", contact_points=[{"kind": "email", "value": "a@romashka.ru"}]
        )
    receive(crm, "a@romashka.ru", "Пришлите прайс", 1)
    receive(crm, "stranger@example.ru", "Кто вы?", 2)
    known, stranger = conversations(crm)

    def reply(conversation, name):
        return agent.client.post(
            f"/inbox/{conversation.id}/act",
            data={"action": "reply", "body": "Прайс во вложении", "csrf_token": agent.csrf},
            files=[("files", (name, b"%PDF price", "application/pdf"))],
        )

    # an unknown sender's conversation has no client to keep the file on yet
    refused = await reply(stranger, "Прайс.pdf")
    assert refused.status_code == 422 and "create a lead or attach first" in refused.text
    assert ">Прайс во вложении</textarea>" in refused.text
    sent = await reply(known, "Прайс 2026.pdf")
    assert sent.status_code == 303
    with crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem))
        (stored,) = work.session.scalars(select(Attachment))
        assert item.payload["attachments"] == [stored.id]
        assert (stored.filename, stored.party_id) == ("Прайс 2026.pdf", client.id)
    files = [p for p in crm.storage.root.rglob("*") if p.is_file()]
    assert len(files) == 1  # the refused reply's file was not kept


async def test_a_nul_character_in_a_replys_file_name_is_refused_naming_the_field(web, crm):
    """A plain screen's form goes through form_data, which checked texts but not the names
    of uploaded files: one with a NUL failed on PostgreSQL (a 500) and was kept by SQLite."""
    from crmkit.model import Attachment
    from crmkit.testing.web import multipart

    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        factories.organisation(work, contact_points=[{"kind": "email", "value": "a@romashka.ru"}])
    receive(crm, "a@romashka.ru", "Пришлите прайс", 1)
    (known,) = conversations(crm)
    fields = {"action": "reply", "body": "Прайс во вложении", "csrf_token": agent.csrf}
    content, headers = multipart(fields, [("files", "Пра\x00йс.pdf", b"%PDF price")])
    refused = await agent.client.post(f"/inbox/{known.id}/act", content=content, headers=headers)
    assert refused.status_code == 422
    assert "files: the file name contains a NUL character" in refused.text
    with crm.system() as work:
        assert list(work.session.scalars(select(OutboxItem))) == []
        assert list(work.session.scalars(select(Attachment))) == []


async def test_a_messages_files_are_shown_with_it(web, crm):
    from crmkit.channels import Attachment as Carried

    agent = await web("agent", locale="ru")
    other = await web("agent", locale="ru")
    with crm.acting_as(agent.user) as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "a@romashka.ru"}]
        )
    with crm.system() as work:
        entry = work.channels.ingest(
            InboundMessage(
                channel="letters", external_id="<f1@romashka.ru>", sender="a@romashka.ru",
                body="Акт во вложении", subject="Акт",
                attachments=[Carried("Акт <сверки>.pdf", "application/pdf", b"%PDF" * 512)],
            )
        )  # fmt: skip
        refused = work.channels.ingest(
            InboundMessage(
                channel="letters", external_id="<f2@romashka.ru>", sender="a@romashka.ru",
                body="Второе", subject="Акт",
            )
        )  # fmt: skip
        refused.data = {**refused.data, "dropped_attachments": "big.zip: too large"}
        (file_id,) = entry.data["attachments"]
    (letters,) = conversations(crm)
    link = f'<a href="/files/{file_id}" data-file="{file_id}">📎 Акт &lt;сверки&gt;.pdf</a>'

    # in the contact center, under the message, with its size; a dropped file is named
    page = await agent.get(f"/inbox/{letters.id}")
    assert link in page.text and "2 КБ" in page.text
    assert "Файлы не сохранены: big.zip: too large" in page.text
    # on the client's card, with the mail on the timeline
    card = await agent.get(f"/clients/{client.id}")
    assert link in card.text
    assert (await agent.get(f"/files/{file_id}")).content == b"%PDF" * 512
    # a reply's files are shown with the reply
    sent = await agent.client.post(
        f"/inbox/{letters.id}/act",
        data={"action": "reply", "body": "Подписанный", "csrf_token": agent.csrf},
        files=[("files", ("Подписанный.pdf", b"%PDF signed", "application/pdf"))],
    )
    assert sent.status_code == 303
    with crm.system() as work:
        reply = work.session.scalar(select(Activity).where(Activity.direction == "out"))
        (reply_file,) = reply.data["attachments"]
    assert (
        f'data-file="{reply_file}">📎 Подписанный.pdf</a>'
        in (await agent.get(f"/inbox/{letters.id}")).text
    )
    # a manager sees them too; an agent who may not see this client does not get the file
    manager = await web("manager", locale="ru")
    assert link in (await manager.get(f"/inbox/{letters.id}")).text
    assert (await other.get(f"/files/{file_id}")).status_code == 404


async def test_a_lead_that_looks_like_a_client_is_attached_or_created_anyway(web, crm):
    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        known = factories.person(work, name="Анна Иванова").id
    receive(crm, "anna.new@example.ru", "Здравствуйте", 1, name="Анна Иванова")
    (conversation,) = conversations(crm)

    asked = await agent.post(f"/inbox/{conversation.id}/act", {"action": "lead"})
    # the likely duplicate is offered to attach to, and creating anyway is one click
    assert asked.status_code == 409
    assert "This sender looks like a client you have already" in asked.text
    assert f'name="party_id" value="{known}"' in asked.text
    assert 'data-action="lead-anyway"' in asked.text
    created = await agent.post(
        f"/inbox/{conversation.id}/act",
        {"action": "lead", "confirm": "1", "name": "Анна Иванова"},
    )
    assert created.status_code == 303
    (conversation,) = conversations(crm)
    assert conversation.party_id not in (None, known)


async def test_a_colleagues_deal_is_not_shown_and_the_reply_stays_off_it(web, crm):
    ann = await web("agent", locale="en")
    bob = await web("agent", locale="en")
    with crm.acting_as(ann.user) as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "a@kedr.ru"}]
        )
    with crm.system() as work:  # bob's deal on ann's client, which the client answered
        deal = factories.deal(work, party_id=client.id, owner_id=bob.user.id)
    receive(crm, "a@kedr.ru", "по сделке", 1)
    with crm.system() as work:
        work.session.execute(update(Conversation).values(record_entity="deal", record_id=deal.id))
    (conversation,) = conversations(crm)

    page = await ann.get(f"/inbox/{conversation.id}")
    assert page.status_code == 200 and "data-record-link" not in page.text
    sent = await ann.post(f"/inbox/{conversation.id}/act", {"action": "reply", "body": "Ок"})
    assert sent.status_code == 303
    with crm.system() as work:
        reply = work.session.scalar(select(Activity).where(Activity.direction == "out"))
        assert (reply.party_id, reply.record_id) == (client.id, None)


async def supervised(web, crm, *also):
    """Boris's client writes "hi"; returns boris, a supervisor and the conversation.

    Both are agents, and agents now read every client and conversation (a supervisor:
    reads everything, acts on their own), plus each ``(entity, action)`` of ``also`` on
    every record."""
    with crm.system() as work:
        for entity, action in (("party", "read"), ("conversation", "read"), *also):
            work.permissions.set("agent", entity, action, "all")
    boris, supervisor = await web("agent"), await web("agent")
    with crm.acting_as(boris.user) as work:
        factories.organisation(
            work, name="Client", contact_points=[{"kind": "email", "value": "c@x.ru"}]
        )
    receive(crm, "c@x.ru", "hi", 1)
    (conversation,) = conversations(crm)
    return boris, supervisor, conversation


async def test_one_who_may_only_read_opens_an_unread_conversation(web, crm):
    boris, supervisor, conversation = await supervised(web, crm)
    page = await supervisor.get(f"/inbox/{conversation.id}")
    assert page.status_code == 200 and "hi" in page.text
    assert conversations(crm)[0].unread == 1  # still unread for boris, whose client it is
    await boris.get(f"/inbox/{conversation.id}")
    assert conversations(crm)[0].unread == 0


async def test_the_reply_offers_files_only_to_who_may_keep_them_on_the_client(web, crm):
    """A reply's files go on the client, which takes editing it: a supervisor who reads
    every client but edits only their own gets no file field there (it would be refused)."""
    boris, supervisor, conversation = await supervised(web, crm, ("conversation", "update"))
    mine = await boris.get(f"/inbox/{conversation.id}")
    theirs = await supervisor.get(f"/inbox/{conversation.id}")
    assert 'name="body"' in mine.text and 'name="body"' in theirs.text
    assert 'type="file"' in mine.text
    assert 'type="file"' not in theirs.text


async def test_acting_on_a_page_that_missed_a_new_message_is_refused_and_shows_it(web, crm):
    ann, bob = await web("manager", locale="en"), await web("manager", locale="en")
    receive(crm, "ivan@client.ru", "first question", 1)
    (conversation,) = conversations(crm)
    page = await ann.get(f"/inbox/{conversation.id}")
    receive(crm, "ivan@client.ru", "URGENT: change the address!", 2)  # meanwhile
    shown = page.text.split('name="seen" value="')[1].split('"')[0]
    await ann.get(f"/inbox/{conversation.id}", headers={"X-Live": "inbox"})  # list refreshed
    assert conversations(crm)[0].unread == 1  # not read by a refresh of the list

    refused = await ann.post(
        f"/inbox/{conversation.id}/act", {"action": "close", "seen": shown}, follow_redirects=True
    )
    assert "a new message arrived" in refused.text and "URGENT" in refused.text
    assert conversations(crm)[0].status == "open"
    # bob takes it from a fresh page; ann's "assign to me" from hers names him
    fresh = (await bob.get(f"/inbox/{conversation.id}")).text
    seen = fresh.split('name="seen" value="')[1].split('"')[0]
    taken = {"action": "assign", "assignee_id": "me", "seen": seen, "expected": ""}
    await bob.post(f"/inbox/{conversation.id}/act", taken)
    again = await ann.post(f"/inbox/{conversation.id}/act", taken, follow_redirects=True)
    assert f"{bob.user.label} has taken this conversation meanwhile" in again.text
    assert conversations(crm)[0].assignee_id == bob.user.id


async def test_the_list_is_paged_with_counts_per_view(web, crm):
    agent = await web("manager")
    with crm.system() as work:
        work.channels.ingest_many(
            [
                InboundMessage(channel="chat", external_id=f"w{i}", sender=f"c{i}@x.ru",
                               body="help", subject=f"request {i}")
                for i in range(55)
            ]
        )  # fmt: skip
    first = await agent.get("/inbox?view=unassigned")
    assert 'data-count="unassigned">55<' in first.text
    assert first.text.count('<li class="conversation') == 50 and "request 0<" in first.text
    more = first.text.split('data-page="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    second = await agent.get(more.replace("&amp;", "&"))
    assert second.text.count('<li class="conversation') == 5 and "request 54<" in second.text
    assert 'data-page="next"' not in second.text


async def test_mail_to_ones_own_mailbox_from_a_colleagues_client_is_answered_not_shown(web, crm):
    """Boris's client writes to Anna's own mailbox: Anna opens and answers it, with its
    file, and the page names the sender as the mail does, never the hidden client."""
    from crmkit.channels import Attachment as Carried

    anna = await web("agent", locale="en")
    boris = await web("agent", locale="en")
    with crm.acting_as(boris.user) as work:
        client = factories.organisation(
            work, name="ООО «Тайна»", contact_points=[{"kind": "email", "value": "ivan@tayna.ru"}]
        )
        work.timeline.add_note(party_id=client.id, body="скидка 30%, не говорить")
    with crm.system() as work:
        letter = work.channels.ingest(
            InboundMessage(
                channel="letters", external_id="<t1@tayna.ru>", sender="ivan@tayna.ru",
                sender_name="Иван Петров", body="Анна, помогите", subject="Помощь",
                account="anna-own", owner_id=anna.user.id,
                attachments=[Carried("скан.pdf", "application/pdf", b"%PDF scan")],
            )
        )  # fmt: skip
        (scan,) = letter.data["attachments"]
    (conversation,) = conversations(crm)

    listed = await anna.get("/inbox")
    assert f'data-id="{conversation.id}"' in listed.text and "ООО «Тайна»" not in listed.text
    page = await anna.get(f"/inbox/{conversation.id}")
    assert page.status_code == 200
    assert "Анна, помогите" in page.text and "Иван Петров &lt;ivan@tayna.ru&gt;" in page.text
    assert f'data-file="{scan}">📎 скан.pdf</a>' in page.text
    # nothing of the client beyond what the mail says: no name, link, note, file field
    for hidden in ("ООО «Тайна»", "data-party-link", f"/clients/{client.id}", "скидка"):
        assert hidden not in page.text, hidden
    assert 'type="file"' not in page.text and 'data-action="lead"' not in page.text
    assert (await anna.get(f"/files/{scan}")).content == b"%PDF scan"
    assert (await anna.get(f"/clients/{client.id}")).status_code == 404

    sent = await anna.post(f"/inbox/{conversation.id}/act", {"action": "reply", "body": "Да"})
    assert sent.status_code == 303
    with crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem))
        assert (item.payload["to"], item.payload["account"]) == ("ivan@tayna.ru", "anna-own")
        reply = work.session.get(Activity, item.payload["activity_id"])
        assert (reply.party_id, reply.conversation_id) == (client.id, conversation.id)
    assert f'data-id="{conversation.id}"' in (await anna.get("/inbox?view=mine")).text
    # Boris, whose client it is, sees the mail and the reply, with the client
    theirs = await boris.get(f"/inbox/{conversation.id}")
    assert theirs.status_code == 200 and "data-party-link" in theirs.text
    card = await boris.get(f"/clients/{client.id}")
    assert "Анна, помогите" in card.text and "Да" in card.text


@pytest.mark.parametrize("odd", ["abc", "1.5", "²", "9" * 25])
async def test_odd_ids_in_a_conversations_actions_are_named_and_change_nothing(web, crm, odd):
    """An assignee, the page's last message, the expected assignee, a client or a template
    that is no id is refused naming the field (a message on the page), never a 500."""
    import html

    agent = await web("agent", locale="en")
    receive(crm, "anna@example.ru", "Сколько стоит доставка?", 1, name="Анна")
    (conversation,) = conversations(crm)
    act = f"/inbox/{conversation.id}/act"
    for form, field in (
        ({"action": "assign", "assignee_id": odd}, "assignee_id"),
        ({"action": "assign", "assignee_id": "me", "expected": odd}, "expected"),
        ({"action": "close", "seen": odd}, "seen"),
        ({"action": "attach", "party_id": odd}, "party_id"),
    ):
        answer = await agent.post(act, {**form, "view": "unassigned"})
        assert answer.status_code == 303, form
        page = await agent.get(answer.headers["location"])
        assert f"{field}: not an id (1 to 2^63-1)" in html.unescape(page.text), form
    reply = await agent.post(act, {"action": "reply", "body": "Бесплатно", "template_id": odd})
    assert reply.status_code == 422
    assert "template_id: not an id (1 to 2^63-1)" in html.unescape(reply.text)
    (after,) = conversations(crm)
    assert (after.status, after.assignee_id, after.party_id) == ("open", None, None)
    with crm.system() as work:
        assert work.session.scalars(select(OutboxItem)).all() == []


async def test_a_reply_text_is_capped_and_a_long_subjects_re_is_cut_to_fit(web, crm):
    """The contact center's reply reached the sending service without the API's schema: a
    longer text than the API's 200000 characters is refused naming the field, nothing
    queued.  A client's subject of 500 characters (all its column holds) got "Re: " and no
    longer fit (PostgreSQL refused the reply, SQLite kept 504): it is cut to 500."""
    agent = await web("agent", locale="en")
    receive(crm, "ivan@example.ru", "Вопрос", 1, subject="в" * 500)
    (chat,) = conversations(crm)

    refused = await agent.post(f"/inbox/{chat.id}/act", {"action": "reply", "body": "x" * 200001})
    assert refused.status_code == 422
    assert "body: longer than 200000 characters" in refused.text
    with crm.system() as work:
        assert list(work.session.scalars(select(OutboxItem))) == []
        assert list(work.session.scalars(select(Activity).where(Activity.direction == "out"))) == []

    sent = await agent.post(f"/inbox/{chat.id}/act", {"action": "reply", "body": "x" * 200000})
    assert sent.status_code == 303, sent.text
    with crm.system() as work:
        (reply,) = work.session.scalars(select(Activity).where(Activity.direction == "out"))
        assert len(reply.body) == 200000
        assert reply.subject == "Re: " + "в" * 496


async def test_a_template_fills_the_reply_for_the_client_to_read_and_edit(web, crm):
    """Choosing a template showed nothing: the reply went out as the template made it,
    unseen.  Now the template fills the reply's text for this client (the version in their
    language, one entry per template), naming what it could not fill; the agent edits it
    and sends it, still in the thread ("Re: ...")."""
    agent = await web("agent", locale="en")
    receive(crm, "anna@example.ru", "Сколько стоит доставка?", 1, name="Анна")
    (chat,) = conversations(crm)
    await agent.post(f"/inbox/{chat.id}/act", {"action": "lead", "name": "Анна"})
    with crm.system() as work:
        russian = work.message_templates.create(
            {"name": "доставка", "channel": "chat", "language": "ru", "subject": "Доставка",
             "body": "{{ party.name }}, доставка бесплатно. Ваш телефон: {{ party.phone }}"}
        )  # fmt: skip
        work.message_templates.create(
            {"name": "доставка", "channel": "chat", "language": "en", "subject": "Delivery",
             "body": "{{ party.name }}, delivery is free."}
        )  # fmt: skip

    page = await agent.get(f"/inbox/{chat.id}")
    assert page.text.count(">доставка<") == 1  # one entry, whatever its languages
    filled = await agent.get(f"/inbox/{chat.id}?view=unassigned&template={russian.id}")
    assert filled.status_code == 200
    reply = re.search(r'<textarea name="body"[^>]*>([^<]*)</textarea>', filled.text).group(1)
    assert html.unescape(reply) == "Анна, доставка бесплатно. Ваш телефон: "
    assert "Nothing to fill in for this client:" in filled.text and "party.phone" in filled.text

    edited = "Анна, доставка бесплатно. Привезём в среду."
    sent = await agent.post(f"/inbox/{chat.id}/act", {"action": "reply", "body": edited})
    assert sent.status_code == 303
    with crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem))
        assert (item.payload["body"], item.payload["subject"]) == (edited, "Re: Вопрос")

    broken = await agent.get(f"/inbox/{chat.id}?template=99999")  # gone meanwhile
    assert broken.status_code == 200 and "template: not found" in html.unescape(broken.text)


def _text(page):
    body = re.sub(r"(?s)<script.*?</script>", "", page.text)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


#: Russian for the texts these changes add, until the catalogs have them (they are written
#: apart from code changes); the test checks the page asks for them in the reader's language
RUSSIAN = {
    "Open conversations": "Открытые",
    "snoozed": "отложена",
    "closed": "закрыта",
    "Assignee": "Ответственный",
    "nobody": "никто",
    "Assigned to %(user)s.": "Назначено: %(user)s.",
    "Back in the unassigned queue.": "Возвращено в очередь без ответственного.",
    "Reopened.": "Открыто снова.",
}


async def test_a_russian_agent_reads_the_state_and_what_each_action_did(web, crm):
    """The status tab said "Открыть" (the verb), a closed conversation "closed", the
    channel its code; taking a conversation or giving it on said only "Сохранено." and the
    page showed nobody as its assignee.  Now the page names the state, the channel and
    the assignee in the reader's language, and each action says what it did."""
    web.app.state.catalogs["ru"]._catalog.update(RUSSIAN)
    agent = await web("agent", locale="ru", display_name="Анна Смирнова")
    olga = (await web("agent", username="olga", display_name="Ольга Петрова")).user
    receive(crm, "petr@stroy.ru", "Нужны шины", 1, name="Пётр")
    (chat,) = conversations(crm)
    act = f"/inbox/{chat.id}/act"

    shown = await agent.get(f"/inbox/{chat.id}")
    tabs = re.search(r'(?s)<nav class="tabs".*?</nav>', shown.text).group(0)
    assert "Открытые" in tabs and "Открыть" not in tabs
    assert "Ответственный: никто" in _text(shown)

    given = await agent.post(act, {"action": "assign", "assignee_id": olga.id, "expected": ""})
    page = _text(await agent.get(given.headers["location"]))
    assert "Назначено: Ольга Петрова." in page and "Ответственный: Ольга Петрова" in page
    assert "Сохранено." not in page
    back = await agent.post(act, {"action": "assign", "assignee_id": ""})
    assert "Возвращено в очередь без ответственного." in _text(
        await agent.get(back.headers["location"])
    )
    mine = await agent.post(act, {"action": "assign", "assignee_id": "me"})
    assert "Назначено: Анна Смирнова." in _text(await agent.get(mine.headers["location"]))

    closed = await agent.post(act, {"action": "close"})
    page = _text(await agent.get(closed.headers["location"]))
    assert "закрыта" in page and "closed" not in page
    reopened = await agent.post(act, {"action": "reopen"})
    page = _text(await agent.get(reopened.headers["location"]))
    assert "Открыто снова." in page and "открыта" in page
    await agent.post(act, {"action": "snooze", "hours": "4"})
    page = _text(await agent.get(f"/inbox/{chat.id}?status=snoozed"))
    assert "отложена до" in page


async def test_an_unknown_sender_at_a_clients_domain_is_offered_that_client(web, crm):
    """Attaching an unknown sender took a search first (type, Find, Attach).  A colleague
    of a client writing from the client's own domain is offered that client at once: one
    click attaches.  A public mail service's domain (mail.ru, gmail.com) says nothing and
    offers nobody; neither does a client the agent may not see."""
    agent = await web("agent", locale="en")
    other = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        client = factories.organisation(
            work, name="ООО «Ромашка»",
            contact_points=[{"kind": "website", "value": "https://www.romashka.ru/"}],
        )  # fmt: skip
        factories.organisation(
            work, name="ООО «Частник»", contact_points=[{"kind": "email", "value": "boss@mail.ru"}]
        )
    with crm.acting_as(other.user) as work:
        hidden = factories.organisation(
            work, name="ООО «Ромашка-Юг»",
            contact_points=[{"kind": "email", "value": "yug@romashka.ru"}],
        )  # fmt: skip
    receive(crm, "new.boss@romashka.ru", "Это наш новый адрес", 1, name="Новый Директор")
    receive(crm, "someone@mail.ru", "Вопрос", 2)
    romashka, public = conversations(crm)

    page = await agent.get(f"/inbox/{romashka.id}")
    assert f'name="party_id" value="{client.id}"' in page.text
    assert "Attach to ООО «Ромашка»" in _text(page)
    assert "Clients at the sender's domain:" in _text(page)
    assert (await agent.get(f"/clients/{hidden.id}")).status_code == 404  # a colleague's
    assert f'name="party_id" value="{hidden.id}"' not in page.text
    assert 'data-action="attach"' not in (await agent.get(f"/inbox/{public.id}")).text

    attached = await agent.post(
        f"/inbox/{romashka.id}/act", {"action": "attach", "party_id": client.id}
    )
    assert attached.status_code == 303
    assert conversations(crm)[0].party_id == client.id


async def test_an_empty_reply_is_refused_in_russian_naming_the_text(web, crm):
    """Sending an empty reply said "текст: the message is empty" to a Russian agent; the
    reply box is now required (the browser asks for a text first) and the refusal is a
    catalog text."""
    web.app.state.catalogs["ru"]._catalog.update({"the message is empty": "сообщение пустое"})
    agent = await web("agent", locale="ru")
    receive(crm, "petr@stroy.ru", "Нужны шины", 1, name="Пётр")
    (chat,) = conversations(crm)
    page = await agent.get(f"/inbox/{chat.id}")
    assert re.search(r'<textarea name="body"[^>]*\brequired\b', page.text)
    refused = await agent.post(f"/inbox/{chat.id}/act", {"action": "reply", "body": "  "})
    assert refused.status_code == 422
    assert "текст: сообщение пустое" in _text(refused)


async def test_send_and_close_in_one_click_unless_the_client_wrote_meanwhile(web, crm):
    """Answering and closing took two forms (send, then close further down).  "Send and
    close" does both; when the client wrote again since the page was shown, neither is done
    and the page shows the new message with the reply still typed."""
    agent = await web("agent", locale="en")
    receive(crm, "petr@stroy.ru", "Нужны шины", 1, name="Пётр")
    (chat,) = conversations(crm)
    page = await agent.get(f"/inbox/{chat.id}")
    assert 'data-action="reply-close"' in page.text
    seen = re.search(r'class="reply".*?name="seen" value="(\d+)"', page.text, re.S).group(1)

    receive(crm, "petr@stroy.ru", "И ещё диски", 2)  # while the agent types
    form = {"action": "reply", "body": "Шины есть.", "then": "close", "seen": seen}
    refused = await agent.post(f"/inbox/{chat.id}/act", form)
    assert refused.status_code == 422
    assert "a new message arrived" in refused.text and "И ещё диски" in refused.text
    assert ">Шины есть.</textarea>" in refused.text
    with crm.system() as work:
        assert work.session.scalars(select(OutboxItem)).all() == []
    assert conversations(crm)[0].status == "open"

    seen = re.search(r'class="reply".*?name="seen" value="(\d+)"', refused.text, re.S).group(1)
    done = await agent.post(f"/inbox/{chat.id}/act", {**form, "seen": seen})
    assert done.status_code == 303
    assert "Reply queued and the conversation closed." in _text(
        await agent.get(done.headers["location"])
    )
    (after,) = conversations(crm)
    assert (after.status, after.assignee_id) == ("closed", agent.user.id)
    with crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem))
        assert item.payload["body"] == "Шины есть."


async def test_a_clients_conversation_shows_their_open_deals_and_tasks(web, crm):
    """A client's conversation showed a deal only when the mail answered one of its
    messages; the agent answering "what about my order?" had to open the card to find it.
    The client's open deals and tasks (those the agent sees) are linked beside the client;
    closed deals and finished tasks are not."""
    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        client = factories.organisation(
            work, name="ООО «Ромашка»",
            contact_points=[{"kind": "email", "value": "zakaz@romashka.ru"}],
        )  # fmt: skip
        open_deal = factories.deal(work, party_id=client.id, title="Поставка шин")
        closed_deal = factories.deal(work, party_id=client.id, title="Старая поставка")
        task = factories.task(work, party_id=client.id, title="Выставить счёт")
        done = factories.task(work, party_id=client.id, title="Позвонить", status="done")
    with crm.system() as work:
        work.deals.get(closed_deal.id).closed_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    receive(crm, "zakaz@romashka.ru", "Что с заказом?", 1)
    (chat,) = conversations(crm)

    page = await agent.get(f"/inbox/{chat.id}")
    assert f'href="/records/deal/{open_deal.id}"' in page.text
    assert f'href="/records/task/{task.id}"' in page.text
    assert f"/records/deal/{closed_deal.id}" not in page.text
    assert f"/records/task/{done.id}" not in page.text
    assert "Open deals: Поставка шин" in _text(page) and "Open tasks: Выставить счёт" in _text(page)


async def test_snooze_until_tomorrow_morning_or_a_chosen_time(web, crm):
    """Snoozing offered 1, 4 or 24 hours only: "call me back on Monday" could not be
    snoozed till Monday.  Tomorrow at 9:00 (the agent's clock) and a chosen date and time
    are offered; a time gone by is refused naming the field."""
    from zoneinfo import ZoneInfo

    agent = await web("agent", locale="en", timezone="Asia/Yekaterinburg")
    receive(crm, "petr@stroy.ru", "Перезвоните в понедельник", 1, name="Пётр")
    (chat,) = conversations(crm)
    act = f"/inbox/{chat.id}/act"
    page = await agent.get(f"/inbox/{chat.id}")
    assert 'value="tomorrow"' in page.text and 'name="until"' in page.text

    zone = ZoneInfo("Asia/Yekaterinburg")
    await agent.post(act, {"action": "snooze", "hours": "tomorrow"})
    tomorrow = dt.datetime.now(zone).date() + dt.timedelta(days=1)
    expected = dt.datetime.combine(tomorrow, dt.time(9), tzinfo=zone)
    assert conversations(crm)[0].snoozed_until == expected.astimezone(dt.UTC)

    await agent.post(act, {"action": "reopen"})
    chosen = await agent.post(
        act, {"action": "snooze", "hours": "1", "until": "2030-01-07T10:30"}
    )  # a time typed in wins over the hours left at their default
    assert chosen.status_code == 303
    monday = dt.datetime(2030, 1, 7, 10, 30, tzinfo=zone).astimezone(dt.UTC)
    assert (conversations(crm)[0].status, conversations(crm)[0].snoozed_until) == (
        "snoozed",
        monday,
    )
    await agent.post(act, {"action": "reopen"})
    past = await agent.post(act, {"action": "snooze", "hours": "1", "until": "2001-01-01T10:00"})
    shown = _text(await agent.get(past.headers["location"]))
    assert "until: a time in the future" in shown
    assert conversations(crm)[0].status == "open"


async def test_a_bad_copy_address_is_refused_in_russian(web, crm):
    """A mistyped copy address was refused as "копия: 'buh' is not a valid email address"
    to a Russian agent; the refusal is a catalog text with the address and its kind."""
    web.app.state.catalogs["ru"]._catalog.update(
        {"{address} is not a valid {kind} address": "{address} — не адрес ({kind})"}
    )
    agent = await web("agent", locale="ru")
    with crm.system() as work:
        work.channels.ingest(
            InboundMessage(channel="letters", external_id="c1", sender="petr@stroy.ru",
                           body="Нужны шины", sender_name="Пётр")
        )  # fmt: skip
    (letter,) = conversations(crm)
    refused = await agent.post(
        f"/inbox/{letter.id}/act", {"action": "reply", "body": "Есть", "cc": "buh"}
    )
    assert refused.status_code == 422
    assert "копия: 'buh' — не адрес (эл. почта)" in _text(refused)


async def test_the_clients_card_opens_the_conversation_in_the_contact_center(web, crm):
    """The card's conversations led to a bare record page (its columns, "closed", no
    messages, no way to answer).  The card now opens the conversation in the contact
    center, and the record page links there too."""
    agent = await web("agent", locale="en")
    receive(crm, "anna@example.ru", "Сколько стоит доставка?", 1, name="Анна")
    (chat,) = conversations(crm)
    await agent.post(f"/inbox/{chat.id}/act", {"action": "lead", "name": "Анна"})
    (chat,) = conversations(crm)

    card = await agent.get(f"/clients/{chat.party_id}")
    assert f'href="/inbox/{chat.id}"' in card.text
    assert f'href="/records/conversation/{chat.id}"' not in card.text
    record = await agent.get(f"/records/conversation/{chat.id}")
    assert f'href="/inbox/{chat.id}"' in record.text and "Open in the contact center" in record.text


async def test_a_nameless_senders_lead_field_says_what_name_it_gets(web, crm):
    """A sender without a name left the lead's name field empty: nothing said the lead
    would be named by the address.  The field shows the address it falls back to."""
    agent = await web("agent", locale="en")
    receive(crm, "noname@yandex.ru", "Перезвоните мне", 1)
    (chat,) = conversations(crm)
    page = await agent.get(f"/inbox/{chat.id}")
    assert re.search(r'<input name="name" value="" placeholder="noname@yandex.ru"', page.text)
    await agent.post(f"/inbox/{chat.id}/act", {"action": "lead", "name": ""})
    with crm.system() as work:
        assert work.parties.get(conversations(crm)[0].party_id).name == "noname@yandex.ru"


async def test_the_empty_side_of_the_inbox_says_what_to_do(web, crm):
    """Before a conversation was chosen, two thirds of the screen were blank."""
    agent = await web("agent", locale="en")
    receive(crm, "petr@stroy.ru", "Нужны шины", 1, name="Пётр")
    page = _text(await agent.get("/inbox"))
    assert "Choose a conversation to read and answer it." in page
    empty = _text(await agent.get("/inbox?view=mine"))
    assert "No conversations here." in empty
    assert "Choose a conversation" not in empty


async def test_the_list_is_searched_by_sender_and_subject_in_any_case(web, crm):
    agent = await web("agent")
    receive(crm, "anna@example.ru", "Привет", 1, name="Анна Петрова", subject="Доставка")
    receive(crm, "OLEG@Firm.ru", "Добрый день", 2, name="Олег", subject="Счёт на оплату")
    receive(crm, "ivan@example.ru", "Вопрос", 3, name="Иван", subject="Ёлки: 100%_скидка")
    anna, oleg, ivan = conversations(crm)

    def shown(page):
        return {int(i) for i in re.findall(r'class="conversation[^"]*" data-id="(\d+)"', page.text)}

    # mixed-case Cyrillic finds the name and the subject; a Latin address in any case
    for query, found in (
        ("пЕтРоВ", {anna.id}),
        ("СЧЁТ", {oleg.id}),
        ("счет на", {oleg.id}),  # "ё" typed as "е", as clients' names are searched
        ("ДОСТАВ", {anna.id}),
        ("oleg@FIRM", {oleg.id}),
        ("example.RU", {anna.id, ivan.id}),
        ("ёЛКИ", {ivan.id}),
        ("ЕЛКИ", {ivan.id}),
        ("100%_", {ivan.id}),  # LIKE's wildcards are taken as typed
        ("0%", {ivan.id}),
        ("_", {ivan.id}),
    ):
        page = await agent.get("/inbox", params={"q": query})
        assert page.status_code == 200 and shown(page) == found, query
    none = await agent.get("/inbox", params={"q": "Кузнецов"})
    assert shown(none) == set() and "Нет обращений по запросу «Кузнецов»." in html.unescape(
        none.text
    )
    # the conversation chosen from a search keeps the search in the list beside it
    page = await agent.get(f"/inbox/{oleg.id}", params={"q": "олег"})
    assert shown(page) == {oleg.id} and 'value="олег"' in page.text
    with crm.acting_as(agent.user) as work:
        assert [c.id for c in work.conversations.list(search="АННА")] == [anna.id]


async def test_each_tabs_count_follows_the_search_and_switching_tabs_keeps_it(web, crm):
    """A search narrowed the list but the tabs went on counting every conversation
    ("Mine 3" beside one match), and a tab's link dropped the search.  Each tab counts
    what the search finds in it, and its link keeps the search, as the status tabs do."""
    agent = await web("agent", locale="en")
    receive(crm, "anna@example.ru", "Привет", 1, name="Анна", subject="Доставка")
    receive(crm, "oleg@firm.ru", "Добрый день", 2, name="Олег", subject="Счёт")
    receive(crm, "ivan@example.ru", "Вопрос", 3, name="Иван", subject="Доставка шин")
    receive(crm, "petr@stroy.ru", "Вопрос", 4, name="Пётр", subject="Счёт на шины")
    anna, oleg, ivan, petr = conversations(crm)
    for conversation in (anna, oleg):
        await agent.post(f"/inbox/{conversation.id}/act", {"action": "assign", "assignee_id": "me"})

    def count(page, view):
        return int(re.search(rf'data-count="{view}">(\d+)<', page.text).group(1))

    everything = await agent.get("/inbox")
    assert (count(everything, "unassigned"), count(everything, "mine")) == (2, 2)
    found = await agent.get("/inbox", params={"q": "доставка"})  # Anna's (mine), Ivan's
    assert (count(found, "unassigned"), count(found, "mine"), count(found, "team")) == (1, 1, 1)
    tyres = await agent.get("/inbox", params={"q": "шин"})  # Ivan's and Petr's, unassigned
    assert (count(tyres, "unassigned"), count(tyres, "mine")) == (2, 0)
    assert f'data-id="{ivan.id}"' in tyres.text and f'data-id="{petr.id}"' in tyres.text
    # every tab, a view's or a status's, opens with the search kept
    nav = html.unescape(re.search(r'<nav class="tabs".*?</nav>', found.text, re.S).group(0))
    for view in ("unassigned", "mine", "team"):
        assert f'href="/inbox?view={view}&status=open&q=%D0%B4' in nav, view
    for status in ("open", "snoozed", "closed"):
        assert f'href="/inbox?view=unassigned&status={status}&q=%D0%B4' in nav, status
    mine = await agent.get(re.search(r'href="(/inbox\?view=mine[^"]*)"', nav).group(1))
    shown = {int(i) for i in re.findall(r'class="conversation[^"]*" data-id="(\d+)"', mine.text)}
    assert shown == {anna.id} and 'value="доставка"' in mine.text
    # the search found nothing in a tab: it says so, and its count is 0
    closed = await agent.get("/inbox", params={"q": "доставка", "status": "closed"})
    assert count(closed, "mine") == 0 and "No conversation matches" in _text(closed)


async def test_a_reply_files_the_conversation_on_a_chosen_open_deal_or_task(web, crm):
    """A reply went on the deal the thread matched, or on the client: a client with two
    open orders could not be answered about the other one.  The reply form offers the
    client's open deals and tasks the agent may change (the matched one chosen); the
    choice moves the conversation (its messages too) and the reply there, so the client's
    next mail in the thread joins that deal.  A deal the agent may only read, another
    client's deal or a closed one is not offered, and sent anyway it is refused."""
    ann = await web("agent", locale="en")
    bob = await web("agent", locale="en")
    with crm.system() as work:  # agents read every deal, change their own
        work.permissions.set("agent", "deal", "read", "all")
    with crm.acting_as(ann.user) as work:
        client = factories.organisation(
            work, name="ООО «Кедр»", contact_points=[{"kind": "email", "value": "a@kedr.ru"}]
        )
        other = factories.organisation(work, name="ООО «Сосна»")
        matched = factories.deal(work, party_id=client.id, title="Шины летние")
        wanted = factories.deal(work, party_id=client.id, title="Диски")
        task = factories.task(work, party_id=client.id, title="Счёт на диски")
        closed = factories.deal(work, party_id=client.id, title="Старый заказ")
        elsewhere = factories.deal(work, party_id=other.id, title="Чужая сделка")
    with crm.system() as work:
        bobs = factories.deal(work, party_id=client.id, owner_id=bob.user.id, title="Боба")
        work.deals.get(closed.id).closed_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    receive(crm, "a@kedr.ru", "Что с заказом?", 1)
    with crm.system() as work:  # the thread matched the summer tyres
        work.session.execute(update(Activity).values(record_entity="deal", record_id=matched.id))
        work.session.execute(
            update(Conversation).values(record_entity="deal", record_id=matched.id)
        )
    (chat,) = conversations(crm)

    page = await ann.get(f"/inbox/{chat.id}")
    choice = re.search(r'<select name="filed_on".*?</select>', page.text, re.S).group(0)
    offered = re.findall(r'<option value="([^"]*)"', choice)
    assert offered == ["", f"deal:{matched.id}", f"deal:{wanted.id}", f"task:{task.id}"]
    assert re.search(rf'<option value="deal:{matched.id}" selected>', choice)
    assert "Диски" in _text(page) and f"deal:{bobs.id}" not in choice

    def state():
        with crm.system() as work:
            return (work.conversations.get(chat.id).record_id, work.session.scalar(
                select(func.count()).select_from(Activity).where(Activity.direction == "out")
            ))  # fmt: skip

    for refused in (f"deal:{bobs.id}", f"deal:{closed.id}", f"deal:{elsewhere.id}", "deal:x"):
        answer = await ann.post(
            f"/inbox/{chat.id}/act", {"action": "reply", "body": "Ок", "filed_on": refused}
        )
        assert answer.status_code in (404, 422), refused
        assert state() == (matched.id, 0), refused  # nothing sent, nothing moved
    refused = await ann.post(
        f"/inbox/{chat.id}/act", {"action": "reply", "body": "Ок", "filed_on": f"deal:{closed.id}"}
    )
    assert "Ок</textarea>" in refused.text  # the reply typed is shown again

    sent = await ann.post(
        f"/inbox/{chat.id}/act",
        {"action": "reply", "body": "Диски будут в пятницу", "filed_on": f"deal:{wanted.id}"},
    )
    assert sent.status_code == 303
    with crm.system() as work:
        reply = work.session.scalar(select(Activity).where(Activity.direction == "out"))
        assert (reply.record_entity, reply.record_id) == ("deal", wanted.id)
        first = work.session.scalar(select(Activity).where(Activity.external_id == "m1"))
        assert (first.record_entity, first.record_id) == ("deal", wanted.id)
        assert work.conversations.get(chat.id).record_id == wanted.id
    page = await ann.get(f"/inbox/{chat.id}")
    assert "data-record-link>Диски<" in page.text
    # the client's next mail in the thread joins the chosen deal
    with crm.system() as work:
        follow = work.channels.ingest(
            InboundMessage(channel="chat", external_id="m2", sender="a@kedr.ru",
                           body="Спасибо", thread_refs=("m1",))
        )  # fmt: skip
        assert (follow.record_entity, follow.record_id) == ("deal", wanted.id)
    # the task, then the client alone
    await ann.post(
        f"/inbox/{chat.id}/act", {"action": "reply", "body": "Счёт", "filed_on": f"task:{task.id}"}
    )
    assert state() == (task.id, 2)
    await ann.post(f"/inbox/{chat.id}/act", {"action": "reply", "body": "Всё", "filed_on": ""})
    with crm.system() as work:
        last = work.session.scalars(
            select(Activity).where(Activity.direction == "out").order_by(Activity.id.desc())
        ).first()
        assert last.record_id is None and work.conversations.get(chat.id).record_id is None
        assert last.party_id == client.id


async def test_a_reply_without_a_choice_keeps_the_matched_deal(web, crm):
    """Who sends no choice (an old page, the API's way of replying) changes nothing: the
    reply goes on the matched deal, as before; a client with no open work offers none."""
    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "b@bereza.ru"}]
        )
    receive(crm, "b@bereza.ru", "Здравствуйте", 1)
    (chat,) = conversations(crm)
    assert 'name="filed_on"' not in (await agent.get(f"/inbox/{chat.id}")).text
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work, party_id=client.id, title="Берёзы")
    with crm.system() as work:
        work.session.execute(update(Conversation).values(record_entity="deal", record_id=deal.id))
    await agent.post(f"/inbox/{chat.id}/act", {"action": "reply", "body": "Ок"})
    with crm.system() as work:
        reply = work.session.scalar(select(Activity).where(Activity.direction == "out"))
        assert (reply.record_entity, reply.record_id) == ("deal", deal.id)


async def test_a_lead_from_a_nameless_sender_is_named_as_the_field_says(web, crm):
    """A lead from a sender without a name was named by the bare address.  The name field
    proposes (and an empty one gives) the person the local part names, else the company of
    the domain, else the address; the address stays on the lead as its email, and a name
    typed in wins."""
    agent = await web("agent", locale="en")
    for n, (sender, kind, name, first, last) in enumerate(
        [
            ("ivan.petrov@romashka.ru", "person", "Ivan Petrov", "Ivan", "Petrov"),
            ("i_sidorova@mail.ru", "person", "I. Sidorova", "I.", "Sidorova"),
            ("info@kedr-stroy.ru", "organisation", "Kedr-Stroy", None, None),
            ("89161234567@bk.ru", "person", "89161234567@bk.ru", None, None),
        ],
        start=1,
    ):
        receive(crm, sender, "Добрый день", n)
        chat = conversations(crm)[-1]
        page = await agent.get(f"/inbox/{chat.id}")
        assert f'<input name="name" value="" placeholder="{name}"' in page.text, sender
        answer = await agent.post(f"/inbox/{chat.id}/act", {"action": "lead", "name": ""})
        assert answer.status_code == 303, sender
        with crm.system() as work:
            lead = work.parties.get(conversations(crm)[-1].party_id)
            assert (lead.kind, lead.name, lead.first_name, lead.last_name) == (
                kind, name, first, last
            ), sender  # fmt: skip
            assert [p.value for p in lead.contact_points] == [sender]
    receive(crm, "oleg.ivanov@firm.ru", "Здравствуйте", 9)
    chat = conversations(crm)[-1]
    await agent.post(f"/inbox/{chat.id}/act", {"action": "lead", "name": "Олег Иванович"})
    with crm.system() as work:
        assert work.parties.get(conversations(crm)[-1].party_id).name == "Олег Иванович"


def _form(page, action):
    """The hidden inputs of the page's form for ``action``, as a browser would send them."""
    for form in re.findall(r'(?s)<form method="post" action="/inbox/\d+/act".*?</form>', page.text):
        if f'name="action" value="{action}"' in form:
            return {
                name: html.unescape(value)
                for name, value in re.findall(
                    r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form
                )
                if name != "csrf_token"
            }
    raise AssertionError(f"no {action} form")


async def test_every_action_keeps_the_search_the_view_and_the_status(web, crm):
    """The search was kept by the tabs and the way back, but an action's redirect
    (``/inbox/<id>?view=…``) dropped it, and the status tab: the agent lost the list they
    were working through.  Each action comes back to the same list, searched."""
    agent = await web("agent", locale="en")
    colleague = await web("agent", locale="en")
    receive(crm, "anna@example.ru", "Привет", 1, name="Анна", subject="Доставка")
    receive(crm, "ivan@example.ru", "Вопрос", 2, name="Иван", subject="Доставка шин")
    receive(crm, "oleg@firm.ru", "Добрый день", 3, name="Олег", subject="Счёт")
    anna, ivan, oleg = conversations(crm)
    kept = "status=open&q=%D0%B4%D0%BE%D1%81%D1%82%D0%B0%D0%B2%D0%BA%D0%B0"  # "доставка"

    def shown(page):
        return {int(i) for i in re.findall(r'class="conversation[^"]*" data-id="(\d+)"', page.text)}

    async def act(conversation, action, view="team", **values):
        page = await agent.get(
            f"/inbox/{conversation.id}", params={"view": view, "status": "open", "q": "доставка"}
        )
        sent = await agent.post(
            f"/inbox/{conversation.id}/act", {**_form(page, action), "action": action, **values}
        )
        assert sent.status_code == 303, (action, sent.text)
        where = sent.headers["location"]
        back = await agent.get(where)
        assert shown(back) <= {anna.id, ivan.id} and 'value="доставка"' in back.text, action
        return where

    where = await act(anna, "assign", assignee_id=str(colleague.user.id))
    assert where == f"/inbox/{anna.id}?view=team&{kept}"
    where = await act(ivan, "assign", view="unassigned", assignee_id="me")  # taken: mine
    assert where == f"/inbox/{ivan.id}?view=mine&{kept}"
    assert await act(ivan, "reply", view="mine", body="Доставим завтра") == (
        f"/inbox/{ivan.id}?view=mine&{kept}"
    )
    assert await act(ivan, "snooze", view="mine", hours="4") == (
        f"/inbox/{ivan.id}?view=mine&{kept}"
    )
    refused = await act(ivan, "snooze", view="mine", hours="")  # a refusal comes back too
    assert refused == f"/inbox/{ivan.id}?view=mine&{kept}"
    assert await act(anna, "close") == f"/inbox/{anna.id}?view=team&{kept}"
    assert await act(anna, "reopen") == f"/inbox/{anna.id}?view=team&{kept}"
    where = await act(anna, "lead", name="Анна")
    with crm.system() as work:
        lead = work.session.get(Conversation, anna.id).party_id
    assert where == f"/inbox/{anna.id}?view=unassigned&lead={lead}&{kept}"
    # a reply refused is shown again beside the same searched list
    page = await agent.get(
        f"/inbox/{ivan.id}", params={"view": "mine", "status": "open", "q": "доставка"}
    )
    again = await agent.post(
        f"/inbox/{ivan.id}/act", {**_form(page, "reply"), "action": "reply", "body": ""}
    )
    assert again.status_code == 422 and 'value="доставка"' in again.text
    assert f'data-id="{oleg.id}"' not in again.text
    assert 'name="q" value="доставка"' in again.text  # and sent again, kept still
