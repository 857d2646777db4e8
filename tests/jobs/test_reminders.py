"""Reminders on time (live, and by channel per preference); overdue and missed raised."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from sqlalchemy import func, select

from crmkit import AddressKind, Capability, Channel, DeliveryReceipt, hookimpl
from crmkit.clock import utcnow
from crmkit.jobs.delivery import deliver_due
from crmkit.jobs.reminders import fire_due_reminders, raise_overdue
from crmkit.jobs.worker import Worker
from crmkit.model import Notification, OutboxItem, Reminder
from crmkit.testing import add_user, factories


class MailAdapter:
    def __init__(self, outbox):
        self.outbox = outbox

    def send(self, message):
        self.outbox.append(message)
        return DeliveryReceipt(f"id-{len(self.outbox)}")


class StaffPlugin:
    crmkit_plugin_name = "test_staff"

    def __init__(self):
        self.mail = []
        self.events = []

    @hookimpl
    def crmkit_register_channels(self):
        return [
            Channel(
                "mail", AddressKind.EMAIL, {Capability.SEND}, lambda crm: MailAdapter(self.mail)
            )
        ]

    @hookimpl
    def crmkit_handle_event(self, event, work):
        if event.name in ("task.overdue", "reminder.fired"):
            self.events.append((event.name, event.record_id))


@pytest.fixture
def plugin():
    return StaffPlugin()


@pytest.fixture
def app(make_crm, plugin):
    return make_crm(plugins=[plugin], settings={"queue.tick_seconds": 0.1})


def notifications(crm, user, kind=None):
    with crm.system() as work:
        query = select(Notification).where(Notification.user_id == user.id)
        if kind:
            query = query.where(Notification.kind == kind)
        return list(work.session.scalars(query.order_by(Notification.id)))


@pytest.mark.sqlite_only
def test_reminder_fires_within_a_second_live_on_the_embedded_queue(app):
    ivan = add_user(app, "ivan", ["agent"])
    remind_at = utcnow() + dt.timedelta(seconds=1.5)
    with app.acting_as(ivan) as work:
        work.reminders.create({"remind_at": remind_at.isoformat(), "text": "Позвонить в 15:00"})
    worker = Worker(app, concurrency=1)
    worker.start()

    async def first_live_message():
        async with app.live.subscribe(ivan.id) as queue:
            message = await asyncio.wait_for(queue.get(), timeout=10)
            return message, utcnow()

    try:
        message, arrived = asyncio.run(first_live_message())
    finally:
        worker.stop()
    assert message["type"] == "notification"
    lateness = (arrived - remind_at).total_seconds()
    assert 0 <= lateness < 1.0, f"fired {lateness:.3f}s after its time"
    [bell] = notifications(app, ivan, "reminder")
    assert bell.text == "Позвонить в 15:00" and bell.id == message["id"]


def test_a_reminder_fires_once_for_people_and_teams_and_by_mail_per_preference(app, plugin):
    olga = add_user(app, "olga", ["agent"], email="olga@firm.ru")
    petr = add_user(app, "petr", ["agent"])
    with app.system() as work:
        team = work.users.create_team("Продажи", members=[petr.id])
    with app.acting_as(olga) as work:
        work.notifications.set_preference("mail", "olga@firm.ru", kinds=["reminder"])
        party = factories.organisation(work)
        work.reminders.create(
            {
                "remind_at": (utcnow() - dt.timedelta(seconds=1)).isoformat(),
                "text": "Отправить КП",
                "party_id": party.id,
                "recipients": [{"user_id": olga.id}, {"team_id": team.id}],
            }
        )
    assert fire_due_reminders(app) == 1
    assert fire_due_reminders(app) == 0  # a second worker finds nothing left to fire
    assert [n.text for n in notifications(app, olga)] == ["Отправить КП"]
    assert [n.text for n in notifications(app, petr)] == ["Отправить КП"]
    assert ("reminder.fired", 1) in plugin.events
    assert deliver_due(app) == {"delivered": 1}
    [mail] = plugin.mail
    assert mail.to == "olga@firm.ru" and mail.body == "Отправить КП"
    # petr has no preference: nothing but the bell
    with app.system() as work:
        assert work.session.scalar(select(func.count()).select_from(OutboxItem)) == 1


def test_blocked_users_are_neither_reminded_nor_mailed_nor_waited_for(app, plugin):
    petr = add_user(app, "petr", ["agent"])
    anna = add_user(app, "anna", ["agent"])
    boss = add_user(app, "boss", ["manager"])
    ivan, old_boss = add_user(app, "ivan", ["agent"]), add_user(app, "old_boss", ["manager"])
    with app.system() as work:
        team = work.users.create_team("Продажи", members=[anna.id, petr.id])
        work.users.update(anna.id, manager_id=boss.id)
        work.users.update(petr.id, manager_id=boss.id)
        work.users.update(ivan.id, manager_id=old_boss.id)
        overdue = (utcnow() - dt.timedelta(days=1)).isoformat()
        work.tasks.create({"title": "Отчёт", "deadline": overdue, "assignee_id": anna.id})
        work.tasks.create({"title": "Звонок", "deadline": overdue, "assignee_id": petr.id})
        work.tasks.create({"title": "Счёт", "deadline": overdue, "assignee_id": ivan.id})
        work.notifications.set_preference("mail", "anna@home.example", user_id=anna.id)
        work.users.block(anna.id)
        work.users.block(old_boss.id)
    told_before = [n.text for n in notifications(app, anna)]
    with app.acting_as(petr) as work:
        reminder = work.reminders.create(
            {
                "remind_at": (utcnow() - dt.timedelta(seconds=1)).isoformat(),
                "text": "Планёрка",
                "recipients": [{"team_id": team.id}],
            }
        )
    assert fire_due_reminders(app) == 1
    assert [n.text for n in notifications(app, petr, "reminder")] == ["Планёрка"]
    assert [n.text for n in notifications(app, anna)] == told_before  # nothing new for her
    assert deliver_due(app) == {} and plugin.mail == []  # nothing forwarded to her mail
    with app.acting_as(petr) as work:
        work.reminders.done(reminder.id)
    with app.system() as work:  # the blocked member is not waited for
        assert work.session.get(Reminder, reminder.id).status == "done"
    counts = raise_overdue(app, now=utcnow() + dt.timedelta(hours=3))
    assert [n.text for n in notifications(app, anna)] == told_before
    assert [n.text for n in notifications(app, petr, "overdue")] == ["Звонок"]
    assert counts["overdue"] == 3
    boss_told = notifications(app, boss, "escalation")
    assert sorted(n.text for n in boss_told) == ["Звонок", "Отчёт"]
    assert notifications(app, old_boss) == []
    assert counts["escalated_tasks"] == 2  # nobody told of ivan's: his manager is blocked
    assert deliver_due(app) == {} and plugin.mail == []


def test_forwards_queued_before_a_user_was_blocked_or_stopped_forwarding_are_cancelled(app, plugin):
    users = {name: add_user(app, name, ["agent"]) for name in ("anna", "petr", "ivan", "olga")}
    with app.system() as work:
        for name, user in users.items():
            work.notifications.set_preference("mail", f"{name}@home.example", user_id=user.id)
            work.notifications.notify(user.id, "mention", "Вас упомянули в заметке")
    with app.system() as work:  # before a worker took the forwards
        work.users.block(users["anna"].id, reason="уволена")
        work.notifications.set_preference("mail", "", user_id=users["petr"].id)
        work.notifications.set_preference("mail", "ivan@new.example", user_id=users["ivan"].id)
    assert deliver_due(app) == {"cancelled": 3, "delivered": 1}
    assert [m.to for m in plugin.mail] == ["olga@home.example"]  # nothing else was sent
    with app.system() as work:
        items = work.session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
        assert [(i.payload["to"], i.status, i.last_error) for i in items] == [
            ("anna@home.example", "cancelled", "not sent: anna is blocked"),
            (
                "petr@home.example",
                "cancelled",
                "not sent: petr no longer forwards mention notifications to mail",
            ),
            (
                "ivan@home.example",
                "cancelled",
                "not sent: ivan forwards mail notifications to another address now",
            ),
            ("olga@home.example", "delivered", None),
        ]
        assert work.outbox.counts() == {"cancelled": 3, "delivered": 1}
        assert work.outbox.failed() == []  # not a failure: nothing to retry
    assert deliver_due(app) == {} and len(plugin.mail) == 1  # and never tried again


def test_snooze_fires_again_and_done_by_everyone_closes_it(app):
    olga = add_user(app, "olga", ["agent"])
    past = utcnow() - dt.timedelta(seconds=1)
    with app.acting_as(olga) as work:
        reminder = work.reminders.create({"remind_at": past.isoformat(), "text": "Счёт"})
    fire_due_reminders(app)
    with app.acting_as(olga) as work:
        work.reminders.snooze(reminder.id, utcnow() + dt.timedelta(minutes=10))
    assert fire_due_reminders(app) == 0  # not yet
    assert fire_due_reminders(app, now=utcnow() + dt.timedelta(minutes=11)) == 1
    assert len(notifications(app, olga, "reminder")) == 2
    with app.acting_as(olga) as work:
        work.reminders.done(reminder.id)
    with app.system() as work:
        assert work.session.get(Reminder, reminder.id).status == "done"
    later = utcnow() + dt.timedelta(hours=3)
    assert raise_overdue(app, now=later)["escalated_reminders"] == 0


def test_overdue_task_raised_to_assignee_then_to_manager(app, plugin):
    boss = add_user(app, "boss", ["manager"])
    olga = add_user(app, "olga", ["agent"], manager_id=boss.id)
    with app.acting_as(olga) as work:
        task = factories.task(work, deadline=(utcnow() - dt.timedelta(minutes=5)).isoformat())
        on_time = factories.task(work, deadline=(utcnow() + dt.timedelta(days=1)).isoformat())
    assert raise_overdue(app)["overdue"] == 1
    assert raise_overdue(app)["overdue"] == 0  # told once
    assert [n.record_id for n in notifications(app, olga, "overdue")] == [task.id]
    assert ("task.overdue", task.id) in plugin.events
    assert notifications(app, boss, "escalation") == []  # not late enough yet

    counts = raise_overdue(app, now=utcnow() + dt.timedelta(minutes=61))
    assert counts["escalated_tasks"] == 1
    [raised] = notifications(app, boss, "escalation")
    assert raised.record_id == task.id and on_time.id != raised.record_id
    assert raise_overdue(app, now=utcnow() + dt.timedelta(minutes=120))["escalated_tasks"] == 0


def test_missed_reminder_raised_to_the_manager(app):
    boss = add_user(app, "boss", ["manager"])
    olga = add_user(app, "olga", ["agent"], manager_id=boss.id)
    with app.acting_as(olga) as work:
        work.reminders.create(
            {"remind_at": (utcnow() - dt.timedelta(seconds=1)).isoformat(), "text": "Договор"}
        )
    fire_due_reminders(app)
    assert raise_overdue(app)["escalated_reminders"] == 0
    counts = raise_overdue(app, now=utcnow() + dt.timedelta(minutes=61))
    assert counts["escalated_reminders"] == 1
    assert [n.text for n in notifications(app, boss, "escalation")] == ["Договор"]
    assert [n.text for n in notifications(app, olga, "missed_reminder")] == ["Договор"]


def test_overdue_runs_as_a_schedule_of_the_worker(app):
    assert app.schedules["crmkit.overdue"].every_seconds == 30
    olga = add_user(app, "olga", ["agent"])
    with app.acting_as(olga) as work:
        factories.task(work, deadline=(utcnow() - dt.timedelta(minutes=5)).isoformat())
    worker = Worker(app, concurrency=1)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not notifications(app, olga, "overdue"):
            time.sleep(0.1)
    finally:
        worker.stop()
    assert len(notifications(app, olga, "overdue")) == 1


def test_a_rescheduled_or_reopened_task_is_reported_overdue_again(app, plugin):
    boss = add_user(app, "boss", ["manager"])
    olga = add_user(app, "olga", ["agent"], manager_id=boss.id)
    with app.acting_as(olga) as work:
        task = factories.task(work, deadline=(utcnow() - dt.timedelta(minutes=5)).isoformat())
    raise_overdue(app, now=utcnow() + dt.timedelta(minutes=61))  # told, and raised to the boss
    assert len(notifications(app, olga, "overdue")) == 1
    assert len(notifications(app, boss, "escalation")) == 1

    later = utcnow() + dt.timedelta(hours=2)
    with app.acting_as(olga) as work:
        work.tasks.update(work.tasks.get(task.id), {"deadline": later.isoformat()})
    assert raise_overdue(app)["overdue"] == 0  # not due yet
    counts = raise_overdue(app, now=later + dt.timedelta(minutes=61))  # missed the new one too
    assert (counts["overdue"], counts["escalated_tasks"]) == (1, 1)
    assert len(notifications(app, olga, "overdue")) == 2
    assert len(notifications(app, boss, "escalation")) == 2

    with app.acting_as(olga) as work:
        work.tasks.complete(work.tasks.get(task.id))
    with app.acting_as(olga) as work:
        work.tasks.update(work.tasks.get(task.id), {"status": "open"})  # not done after all
    assert raise_overdue(app, now=later + dt.timedelta(minutes=62))["overdue"] == 1
    assert len(notifications(app, olga, "overdue")) == 3
    assert plugin.events.count(("task.overdue", task.id)) == 3

    with app.acting_as(olga) as work:  # an earlier deadline, still past: told already
        earlier = later - dt.timedelta(minutes=30)
        work.tasks.update(work.tasks.get(task.id), {"deadline": earlier.isoformat()})
    assert raise_overdue(app, now=later + dt.timedelta(minutes=63))["overdue"] == 0
