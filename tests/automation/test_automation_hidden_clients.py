"""The assistant runs as the system, but what it tells a colleague is read by that
colleague: a notification (and its forwarded mail), a task's title given to them, a
reminder's text, a message sent to their own address name a client only if they may read
it.  Anna owns «Тайна»; an admin gives Boris, an agent who may not read it, a deal on it."""

from __future__ import annotations

from sqlalchemy import select

from crmkit.jobs.delivery import deliver_due
from crmkit.model import Notification, Reminder, Task
from crmkit.services.automation import automation
from crmkit.testing import add_user, factories

TOLD = "Сделка {{ record.title }}: {{ party.name }} {{ party.email }} #{{ record.party_id }}"


def _told(app, user):
    with app.system() as work:
        return sorted(
            n.text
            for n in work.session.scalars(
                select(Notification).where(
                    Notification.user_id == user.id, Notification.kind == "assistant"
                )
            )
        )


def test_what_the_assistant_tells_a_colleague_names_only_clients_they_read(app, plugin):
    admin = add_user(app, "root", ["admin"])
    boss = add_user(app, "boss", ["manager"])
    anna = add_user(app, "anna", ["agent"])
    boris = add_user(app, "boris", ["agent"])
    with app.acting_as(admin) as work:
        work.notifications.set_preference("mail", "boris@home.example", user_id=boris.id)
        automation(work).create(
            "deal-made",
            {"event": "record.created", "entity": "deal"},
            [
                {"kind": "notify", "to": "owner", "text": TOLD},
                {"kind": "notify", "to": "role:manager", "text": TOLD},
                {"kind": "create_task", "title": "Позвонить {{ party.name }}"},
                {"kind": "create_reminder", "to": "owner", "text": "Про {{ party.name }}"},
            ],
        )
    with app.acting_as(anna) as work:
        hidden = factories.organisation(
            work,
            name="ООО «Тайна»",
            contact_points=[{"kind": "email", "value": "office@tajna.example"}],
        )
    with app.acting_as(admin) as work:
        given = work.deals.create(
            {"title": "Поставка", "party_id": hidden.id, "owner_id": boris.id}
        )
        kept = work.deals.create({"title": "Своя", "party_id": hidden.id, "owner_id": anna.id})
    assert deliver_due(app) == {"delivered": 2}
    deliver_due(app)  # what was forwarded

    named = f"Сделка Поставка: ООО «Тайна» office@tajna.example #{hidden.id}"
    blank = "Сделка Поставка:   #"
    assert _told(app, boris) == [blank]
    assert _told(app, anna) == [named.replace("Поставка", "Своя")]
    assert _told(app, boss) == sorted([named, named.replace("Поставка", "Своя")])
    # forwarded to his mail as the bell shows it, and so is the task given to him
    forwarded = sorted(m.body for m in plugin.sent if m.to == "boris@home.example")
    assert forwarded == sorted([blank, "assistant: Позвонить "])
    with app.system() as work:
        tasks = {t.assignee_id: t.title for t in work.session.scalars(select(Task))}
        reminders = {r.record_id: r.text for r in work.session.scalars(select(Reminder))}
    assert tasks == {boris.id: "Позвонить ", anna.id: "Позвонить ООО «Тайна»"}
    assert reminders == {given.id: "Про ", kept.id: "Про ООО «Тайна»"}


def test_a_rule_on_a_client_tells_only_who_reads_it_its_name(app):
    """A new client told to every agent: its owner reads its name, the other agents a
    blank; a person's organisation they may not read is blank for them too."""
    admin = add_user(app, "root", ["admin"])
    anna = add_user(app, "anna", ["agent"])
    boris = add_user(app, "boris", ["agent"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "client-made",
            {"event": "record.created", "entity": "party"},
            [
                {
                    "kind": "notify",
                    "to": "role:agent",
                    "text": "{{ record.name }}|{{ party.name }}|{{ record.organisation_id }}",
                }
            ],
        )
    with app.acting_as(anna) as work:
        hidden = factories.organisation(work, name="ООО «Тайна»")
    deliver_due(app)
    with app.system() as work:
        person = work.parties.create(
            {
                "kind": "person",
                "name": "Пётр Тайнов",
                "organisation_id": hidden.id,
                "owner_id": boris.id,
            }
        )
    deliver_due(app)
    assert _told(app, anna) == sorted(["ООО «Тайна»|ООО «Тайна»|", "||"])  # not his person
    assert _told(app, boris) == sorted(["||", "Пётр Тайнов|Пётр Тайнов|"])
    with app.system() as work:
        assert work.parties.get(person.id).organisation_id == hidden.id


def test_a_mail_to_a_colleagues_address_names_only_clients_they_read(app, plugin):
    """A rule mailing a fixed address that is a colleague's (their account's email) fills
    its text, or its template, as that colleague reads it; the client's own address and a
    webhook (an admin's external system) get the client as the system reads it."""
    from crmkit.model import OutboxItem

    admin = add_user(app, "root", ["admin"])
    anna = add_user(app, "anna", ["agent"])
    add_user(app, "boris", ["agent"], email="Boris@Corp.example")
    with app.acting_as(admin) as work:
        work.message_templates.create(
            name="brief",
            channel="mail",
            language="ru",
            subject="Клиент {{ party.name }}",
            body="{{ record.title }} {{ party.email }} #{{ record.party_id }}",
        )
        automation(work).create(
            "deal-mailed",
            {"event": "record.created", "entity": "deal"},
            [
                {
                    "kind": "send_message",
                    "channel": "mail",
                    "to": "boris@corp.example",
                    "subject": "О {{ party.name }}",
                    "body": "{{ record.title }}: {{ party.name }}",
                },
                {
                    "kind": "send_message",
                    "channel": "mail",
                    "to": "boris@corp.example",
                    "template": "brief",
                },
                {"kind": "send_message", "channel": "mail", "body": "Для {{ party.name }}"},
                {"kind": "webhook", "url": "http://127.0.0.1:9/hook"},
            ],
        )
    with app.acting_as(anna) as work:
        hidden = factories.organisation(
            work,
            name="ООО «Тайна»",
            contact_points=[{"kind": "email", "value": "office@tajna.example"}],
        )
        work.deals.create({"title": "Поставка", "party_id": hidden.id})
    assert deliver_due(app) == {"delivered": 1}
    deliver_due(app)
    to_boris = sorted((m.subject, m.body) for m in plugin.sent if m.to == "boris@corp.example")
    assert to_boris == sorted([("О ", "Поставка: "), ("Клиент ", "Поставка  #")])
    [to_client] = [m.body for m in plugin.sent if m.to == "office@tajna.example"]
    assert to_client == "Для ООО «Тайна»"
    with app.system() as work:
        [hook] = work.session.scalars(select(OutboxItem).where(OutboxItem.kind == "webhook"))
    assert hook.payload["json"]["record"]["party.name"] == "ООО «Тайна»"
