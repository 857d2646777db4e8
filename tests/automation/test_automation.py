"""The automation assistant: rules in code and as data, run after the change, signed,
failures recorded without blocking anything."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from crmkit import hookimpl
from crmkit.automation import Action, Rule, Trigger
from crmkit.automation.engine import scan_clock
from crmkit.clock import utcnow
from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.jobs.delivery import deliver_due
from crmkit.model import Activity, Deal, Notification, OutboxItem, Task
from crmkit.services.automation import automation
from crmkit.testing import add_user, factories

CALL = "Call {{ party.name }} about {{ record.title }}"
NOTE = [{"kind": "add_note", "body": "."}]


def timeline(crm, party_id, kind="automation"):
    with crm.system() as work:
        return list(
            work.session.scalars(
                select(Activity).where(Activity.party_id == party_id, Activity.kind == kind)
            )
        )


def test_code_rule_runs_after_the_change_signed_as_the_assistant(app):
    boss = add_user(app, "boss", ["manager"])
    olga = add_user(app, "olga", ["agent"])
    with app.acting_as(olga) as work:
        party = factories.organisation(work, name="ООО «Ромашка»")
        big = factories.deal(work, party_id=party.id, title="Поставка", amount="250000")
        small = factories.deal(work, party_id=party.id, title="Мелочь", amount="1000")
        work.moves.move(big, "qualified")
        work.moves.move(small, "qualified")
        # queued in the change's transaction, not done in it
        assert work.session.scalars(select(Task)).all() == []
    assert deliver_due(app) == {"delivered": 2}
    with app.system() as work:
        [task] = work.session.scalars(select(Task)).all()
        assert task.title == "Call ООО «Ромашка» about Поставка"
        assert task.assignee_id == olga.id and task.record_id == big.id
        [told] = work.session.scalars(select(Notification).where(Notification.user_id == boss.id))
        assert told.text == "Big deal: Поставка" and told.kind == "assistant"
    [entry] = timeline(app, party.id)
    assert entry.by_assistant and entry.subject == "Big deals get a call"
    assert "task" in entry.body and entry.record_id == big.id


def test_admin_rule_as_data_with_enable_disable_and_a_templated_client_message(app, plugin):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        work.message_templates.create(
            name="welcome",
            channel="mail",
            language="ru",
            subject="Здравствуйте, {{ party.name }}",
            body="Спасибо за обращение!",
        )
        automation(work).create(
            "welcome-new-clients",
            {"event": "record.created", "entity": "party"},
            [
                {"kind": "send_message", "channel": "mail", "template": "welcome"},
                {"kind": "add_note", "body": "Отправлено приветствие"},
            ],
            condition={"field": "kind", "op": "eq", "value": "organisation"},
            label="Welcome",
        )
        party = factories.organisation(work, name="ООО «Лютик»")
        person = factories.person(work)
    deliver_due(app)  # the rule, then the mail it queued
    deliver_due(app)
    [mail] = plugin.sent
    assert mail.subject == "Здравствуйте, ООО «Лютик»" and mail.to.endswith("@example.ru")
    notes = timeline(app, party.id, kind="note")
    assert [n.body for n in notes] == ["Отправлено приветствие"] and notes[0].by_assistant
    assert timeline(app, person.id) == []  # condition not met
    with app.acting_as(admin) as work:
        automation(work).set_enabled("welcome-new-clients", False)
        factories.organisation(work)
    assert deliver_due(app) == {}  # disabled: nothing queued
    with app.acting_as(admin) as work:
        [row] = [r for r in automation(work).rules() if r.name == "welcome-new-clients"]
        assert (row.source, row.enabled, row.runs) == ("data", False, 1)  # acted once


def test_bad_rules_are_refused_naming_the_part(app):
    admin = add_user(app, "root", ["admin"])
    agent = add_user(app, "agent", ["agent"])
    with app.acting_as(admin) as work:
        service = automation(work)
        with pytest.raises(ValidationFailed, match="unknown event"):
            service.create("x", {"event": "moon.phase"}, [{"kind": "add_note", "body": "."}])
        with pytest.raises(ValidationFailed, match="unknown action"):
            service.create("x", {"event": "record.created"}, [{"kind": "format_disk"}])
        with pytest.raises(ValidationFailed, match="move needs to"):
            service.create("x", {"event": "record.created"}, [{"kind": "move"}])
        with pytest.raises(ValidationFailed, match="defined in code"):
            service.create(
                "qualified-big-deal",
                {"event": "record.created"},
                [{"kind": "add_note", "body": "."}],
            )
    with app.acting_as(agent) as work, pytest.raises(PermissionDenied):
        automation(work).create(
            "x", {"event": "record.created"}, [{"kind": "add_note", "body": "."}]
        )


def test_a_failing_rule_never_blocks_the_change_and_is_shown_to_the_admin(app):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "impossible-move",
            {"event": "record.created", "entity": "deal"},
            [{"kind": "move", "to": "won"}],  # new -> won is not an allowed move
        )
        deal = factories.deal(work, amount="10")
    assert deliver_due(app) == {"dead": 1}  # a refused move is not retried
    with app.system() as work:
        assert work.session.get(Deal, deal.id).stage == "new"  # the deal is there, unmoved
        [item] = work.session.scalars(select(OutboxItem).where(OutboxItem.kind == "automation"))
        assert item.status == "dead"
    with app.acting_as(admin) as work:
        [failure] = automation(work).failures()
        assert failure.rule == "impossible-move" and failure.record_id == deal.id
        assert failure.error == "MoveRefused: no move from “New” to “Won” in Sales"
        [row] = [r for r in automation(work).rules() if r.name == "impossible-move"]
        assert row.failures == 1


def test_roles_and_teams_stand_for_their_active_users_first_by_username(app, plugin):
    admin = add_user(app, "root", ["admin"])
    anna = add_user(app, "anna", ["manager"])  # first in every order, but blocked
    vera = add_user(app, "vera", ["manager"])
    boris = add_user(app, "boris", ["manager"])
    with app.acting_as(admin) as work:
        work.users.create_team("Продажи", members=[anna.id, vera.id])
        work.notifications.set_preference("mail", "anna@home.example", user_id=anna.id)
        work.notifications.set_preference("mail", "vera@home.example", user_id=vera.id)
        work.users.block(anna.id)
        automation(work).create(
            "new-clients",
            {"event": "record.created", "entity": "party"},
            [
                {"kind": "assign", "user": "role:manager"},
                {"kind": "create_task", "title": "Позвонить", "assignee": "role:manager"},
                {"kind": "notify", "to": "role:manager", "text": "New client {{ party.name }}"},
                {"kind": "notify", "to": "team:Продажи", "text": "Для команды"},
            ],
        )
        party = factories.organisation(work, name="ООО «Ромашка»")
    assert deliver_due(app) == {"delivered": 1}  # the rule ran: nobody blocked was chosen
    deliver_due(app)  # what it forwarded
    with app.system() as work:
        assert work.parties.get(party.id).owner_id == boris.id
        [task] = work.session.scalars(select(Task)).all()
        assert task.assignee_id == boris.id
        told = work.session.scalars(select(Notification).where(Notification.kind == "assistant"))
        by_user = sorted((n.user_id, n.text) for n in told)
    assert by_user == sorted(
        [
            (boris.id, "New client ООО «Ромашка»"),
            (vera.id, "New client ООО «Ромашка»"),
            (vera.id, "Для команды"),
        ]
    )
    assert sorted(m.to for m in plugin.sent) == ["vera@home.example", "vera@home.example"]


def test_booking_reminder_the_day_before_is_queued_once(app):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "remind-day-before",
            {"event": "booking.upcoming", "hours": 24},
            [{"kind": "add_note", "body": "Напомнить клиенту о визите"}],
        )
        party = factories.person(work)
        starts = utcnow() + dt.timedelta(hours=20)
        work.calendar.create(
            {
                "title": "ТО",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + dt.timedelta(hours=1)).isoformat(),
                "party_id": party.id,
            }
        )
        later = utcnow() + dt.timedelta(days=3)
        work.calendar.create(
            {
                "title": "Ремонт",
                "starts_at": later.isoformat(),
                "ends_at": (later + dt.timedelta(hours=1)).isoformat(),
                "party_id": party.id,
            }
        )
    assert scan_clock(app) == 1
    assert scan_clock(app) == 0  # the same booking is not queued twice
    deliver_due(app)
    assert [n.body for n in timeline(app, party.id, kind="note")] == ["Напомнить клиенту о визите"]


def test_rules_do_not_trigger_on_the_assistants_own_changes(app):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "note-on-every-party",
            {"event": "record.created", "entity": "party"},
            [{"kind": "create_task", "title": "Знакомство", "assignee": "root"}],
        )
        factories.organisation(work)
    deliver_due(app)
    assert deliver_due(app) == {}  # the task the assistant created started nothing
    with app.system() as work:
        assert len(work.session.scalars(select(Task)).all()) == 1


def test_payment_received_acts_on_the_record_the_event_names(make_crm):
    class PaidPlugin:
        crmkit_plugin_name = "test_paid"

        @hookimpl
        def crmkit_register_automations(self):
            return [
                Rule(
                    "paid-deal-qualifies",
                    Trigger("payment.received"),
                    (Action("move", {"to": "qualified"}),),
                    subject=("deal", "order_id"),
                    condition={"field": "event.amount", "op": "gte", "value": 100},
                )
            ]

    app = make_crm(plugins=[PaidPlugin()])
    olga = add_user(app, "olga", ["agent"])
    with app.acting_as(olga) as work:
        deal = factories.deal(work, amount="500")
        small = factories.deal(work, amount="500")
        # what the finance plugin raises when a payment is taken for an order
        work.emit("payment.received", "finance_payment", 1, order_id=deal.id, amount="500.00")
        work.emit("payment.received", "finance_payment", 2, order_id=small.id, amount="5.00")
    deliver_due(app)
    with app.system() as work:
        assert work.session.get(Deal, deal.id).stage == "qualified"
        assert work.session.get(Deal, small.id).stage == "new"


def test_a_rule_on_task_overdue_runs_when_the_task_becomes_overdue(app):
    from crmkit.jobs.reminders import raise_overdue

    admin = add_user(app, "root", ["admin"])
    olga = add_user(app, "olga", ["agent"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "chase-overdue",
            {"event": "task.overdue"},
            [{"kind": "notify", "to": "root", "text": "Просрочена: {{ record.title }}"}],
        )
    with app.acting_as(olga) as work:
        party = factories.person(work)
        factories.task(
            work,
            title="Перезвонить",
            party_id=party.id,
            deadline=(utcnow() - dt.timedelta(minutes=5)).isoformat(),
        )
    assert raise_overdue(app)["overdue"] == 1
    assert deliver_due(app) == {"delivered": 1}  # the rule ran
    with app.system() as work:
        told = work.session.scalars(
            select(Notification).where(
                Notification.user_id == admin.id, Notification.kind == "assistant"
            )
        ).all()
        assert [n.text for n in told] == ["Просрочена: Перезвонить"]
    [entry] = timeline(app, party.id)
    assert entry.by_assistant and entry.subject == "chase-overdue"
    assert deliver_due(app) == {}  # what the rule did started nothing more


def _idle_rule(app):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "wake-up-idle",
            {"event": "record.idle", "entity": "party", "days": 30},
            [{"kind": "add_note", "body": "Давно не общались"}],
        )


def test_every_idle_client_is_reached_however_many_there_are(app):
    from sqlalchemy import insert

    from crmkit.model import Party

    _idle_rule(app)
    with app.system() as work:
        work.session.execute(
            insert(Party),
            [
                {"kind": "person", "name": f"Клиент {n}", "name_key": f"клиент {n}"}
                for n in range(1005)
            ],
        )
        clients = set(work.session.scalars(select(Party.id)))
    month_later = utcnow() + dt.timedelta(days=31)
    scans = [scan_clock(app, now=month_later) for _ in range(3)]
    assert scans[0] >= 1000 and sum(scans) == 1005 and scans[2] == 0
    with app.system() as work:
        queued = [
            item.payload["record_id"]
            for item in work.session.scalars(
                select(OutboxItem).where(OutboxItem.kind == "automation")
            )
        ]
    assert sorted(queued) == sorted(clients)  # each client once, the 1001st too


def test_a_clock_rule_with_a_long_name_queues_each_record_once(app):
    """A rule may be named with 200 characters; its clock key still fits the outbox's
    200-character key (PostgreSQL refused every scan of such a rule)."""
    admin = add_user(app, "root", ["admin"])
    name = "Напомнить о клиентах, с которыми давно не общались " * 4
    with app.acting_as(admin) as work:
        automation(work).create(
            name[:200],
            {"event": "record.idle", "entity": "party", "days": 30},
            [{"kind": "add_note", "body": "Давно не общались"}],
        )
        client = factories.person(work)
    month_later = utcnow() + dt.timedelta(days=31)
    assert [scan_clock(app, now=month_later) for _ in range(2)] == [1, 0]
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, client.id, kind="note")] == ["Давно не общались"]


def test_an_idle_client_merged_away_does_not_act_on_its_survivor(app):
    _idle_rule(app)
    with app.system() as work:
        survivor = factories.person(work)
        merged = factories.person(work)
        work.merges.merge(survivor.id, merged.id)
    assert scan_clock(app, now=utcnow() + dt.timedelta(days=31)) == 1
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, survivor.id, kind="note")] == ["Давно не общались"]
    with app.system() as work:  # idle when scanned, merged before the rule ran
        late = factories.person(work)
    assert scan_clock(app, now=utcnow() + dt.timedelta(days=62)) == 2
    with app.system() as work:
        work.merges.merge(survivor.id, late.id)
    deliver_due(app)
    notes = [n.body for n in timeline(app, survivor.id, kind="note")]
    assert notes == ["Давно не общались"] * 2  # its own second idle month only


@pytest.mark.parametrize(
    ("trigger", "actions", "named"),
    [
        ({"event": "booking.upcoming", "hours": float("nan")}, NOTE, "hours: not a number"),
        ({"event": "booking.upcoming", "hours": float("inf")}, NOTE, "hours: not a number"),
        ({"event": "record.idle", "days": 1e6}, NOTE, "days: 1000000.0 is out of range"),
        ({"event": "record.idle", "days": -3}, NOTE, "days: -3 is out of range"),
        (
            {"event": "record.created"},
            [{"kind": "create_task", "title": "x", "due_in_hours": "2ч"}],
            "create_task due_in_hours: not a number",
        ),
        (
            {"event": "record.created"},
            [{"kind": "create_reminder", "text": "x", "in_hours": 1e9}],
            "create_reminder in_hours: 1000000000.0 is out of range",
        ),
    ],
)
def test_numbers_of_rules_are_checked_when_the_rule_is_made(app, trigger, actions, named):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work, pytest.raises(ValidationFailed, match=named):
        automation(work).create("bad-numbers", trigger, actions)


def test_one_failing_clock_rule_does_not_stop_the_others(app, monkeypatch):
    from crmkit.automation import engine

    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        for name in ("a-broken", "b-reminder"):
            automation(work).create(
                name,
                {"event": "booking.upcoming", "hours": 24},
                [{"kind": "add_note", "body": name}],
            )
        party = factories.person(work)
        starts = utcnow() + dt.timedelta(hours=5)
        work.calendar.create(
            {
                "title": "ТО",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + dt.timedelta(hours=1)).isoformat(),
                "party_id": party.id,
            }
        )
    candidates = engine._clock_candidates

    def failing(work, rule, moment):
        if rule.name == "a-broken":
            raise RuntimeError("disk on fire")
        return candidates(work, rule, moment)

    monkeypatch.setattr(engine, "_clock_candidates", failing)
    assert scan_clock(app) == 1  # the second rule was queued all the same
    deliver_due(app)
    assert [n.body for n in timeline(app, party.id, kind="note")] == ["b-reminder"]
    with app.acting_as(admin) as work:
        [failure] = automation(work).failures()
        assert failure.rule == "a-broken" and "disk on fire" in failure.error


def test_paused_inside_a_unit_of_work_queues_no_rule(app):
    from crmkit.automation import paused

    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "note-on-new-clients", {"event": "record.created", "entity": "party"}, NOTE
        )
    with app.acting_as(admin) as work:
        with paused():
            past = factories.organisation(work, name="Прошлое")
        now = factories.organisation(work, name="Сейчас")
    assert deliver_due(app) == {"delivered": 1}
    assert timeline(app, past.id, kind="note") == []
    assert len(timeline(app, now.id, kind="note")) == 1


def test_paused_around_a_whole_unit_of_work_queues_no_rule(app):
    from crmkit.automation import paused

    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "note-on-new-clients", {"event": "record.created", "entity": "party"}, NOTE
        )
    with paused(), app.acting_as(admin) as work:  # the changes and their commit inside
        past = factories.organisation(work, name="Прошлое")
    assert deliver_due(app) == {}
    assert timeline(app, past.id, kind="note") == []


def test_conditions_on_computed_fields_ask_the_database_about_the_record(make_crm):
    """A rule may name what a list filters on but a record has no column for: the ``tag``
    and ``group`` of the core and a plugin's ``FilterField``, checked for that one record
    when the rule runs (not when the change was made)."""
    from sqlalchemy import func

    from crmkit.filters import FilterField

    def open_tasks(entity, op, value):
        count = (
            select(func.count(Task.id))
            .where(
                Task.record_entity == "deal",
                Task.record_id == entity.model.id,
                Task.status == "open",
            )
            .scalar_subquery()
        )
        return {"eq": count == int(value), "gt": count > int(value)}[op]

    class CallPlugin:
        crmkit_plugin_name = "test_call_vip"

        @hookimpl
        def crmkit_register_filter_fields(self):
            return [FilterField("open_tasks", "deal", open_tasks, kind="number")]

        @hookimpl
        def crmkit_register_automations(self):
            return [
                Rule(
                    "call-vip-once",
                    Trigger("stage.entered", entity="deal", stage="qualified"),
                    (Action("create_task", {"title": CALL}),),
                    condition={
                        "all": [
                            {"field": "tag", "op": "has", "value": "vip"},
                            {"field": "open_tasks", "op": "eq", "value": 0},
                        ]
                    },
                )
            ]

    app = make_crm(plugins=[CallPlugin()])
    olga = add_user(app, "olga", ["agent"])
    with app.acting_as(olga) as work:
        party = factories.organisation(work, name="ООО «Ромашка»")
        vip = factories.deal(work, party_id=party.id, title="Большая поставка")
        busy = factories.deal(work, party_id=party.id, title="Поставка с задачей")
        plain = factories.deal(work, party_id=party.id, title="Обычная поставка")
        for deal in (vip, busy):
            work.records("deal").set_tags(deal, ["vip"])
        work.tasks.create(
            {
                "title": "Уже звоним",
                "assignee_id": olga.id,
                "record_entity": "deal",
                "record_id": busy.id,
            }
        )
        for deal in (vip, busy, plain):
            work.moves.move(deal, "qualified")
    assert deliver_due(app) == {"delivered": 3}
    with app.system() as work:
        titles = sorted(t.title for t in work.session.scalars(select(Task)))
    assert titles == ["Call ООО «Ромашка» about Большая поставка", "Уже звоним"]


def test_a_rule_switched_off_does_not_run_what_was_already_queued(app):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "note-on-new-clients", {"event": "record.created", "entity": "party"}, NOTE
        )
        party = factories.organisation(work)
    with app.acting_as(admin) as work:  # switched off before a worker took the run
        automation(work).set_enabled("note-on-new-clients", False)
    assert deliver_due(app) == {"delivered": 1}
    assert timeline(app, party.id, kind="note") == []
    with app.system() as work:
        [item] = work.session.scalars(select(OutboxItem).where(OutboxItem.kind == "automation"))
        assert item.result == {"skipped": "the rule was deleted or switched off"}


def test_a_custom_field_change_starts_its_rule(app):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        work.custom_fields.define(entity="party", key="segment", label="Сегмент", kind="text")
        work.custom_fields.define(entity="party", key="region", label="Регион", kind="text")
        automation(work).create(
            "segment-changed",
            {"event": "field.changed", "entity": "party", "field": "custom.segment"},
            [{"kind": "add_note", "body": "Сегмент: {{ record['custom.segment'] }}"}],
        )
        party = factories.organisation(work, custom={"segment": "b2c", "region": "Тверь"})
    deliver_due(app)
    with app.acting_as(admin) as work:
        work.parties.update(party.id, {"custom": {"region": "Москва"}})  # another field
    assert deliver_due(app) == {}
    with app.acting_as(admin) as work:
        work.parties.update(party.id, {"custom": {"segment": "vip"}})
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, party.id, kind="note")] == ["Сегмент: vip"]


def test_an_admins_rule_named_like_a_later_code_rule_is_left_out(app, plugin):
    from crmkit.model import AutomationRule

    admin = add_user(app, "root", ["admin"])
    with app.system() as work:  # stored before a plugin brought a rule of the same name
        work.session.add(
            AutomationRule(
                name="qualified-big-deal",
                trigger={"event": "record.created", "entity": "party"},
                actions=NOTE,
                enabled=True,
            )
        )
    from crmkit.automation.engine import forget_rules

    forget_rules(app)
    with app.acting_as(admin) as work:
        party = factories.organisation(work)
    assert deliver_due(app) == {}  # the code rule (stage.entered) is the one by that name
    assert timeline(app, party.id, kind="note") == []


def test_templates_and_webhooks_never_see_private_columns(make_crm):
    from crmkit.model import User

    class UserRule:
        crmkit_plugin_name = "test_user_rule"

        @hookimpl
        def crmkit_register_automations(self):
            return [
                Rule(
                    "tell-about-the-user",
                    Trigger("payment.received"),
                    (
                        Action("notify", {"to": "root", "text": "{{ record }}"}),
                        Action("webhook", {"url": "http://127.0.0.1:9/hook"}),
                    ),
                    subject=("user", "user_id"),
                )
            ]

    app = make_crm(plugins=[UserRule()])
    root = add_user(app, "root", ["admin"])
    with app.system() as work:
        stored_hash = work.session.get(User, root.id).password_hash
    assert stored_hash.startswith("$argon2")
    with app.acting_as(root) as work:
        work.emit("payment.received", "finance_payment", 1, user_id=root.id)
    assert deliver_due(app) == {"delivered": 1}
    with app.system() as work:
        [told] = work.session.scalars(
            select(Notification).where(Notification.kind == "assistant")
        ).all()
        [hook] = work.session.scalars(select(OutboxItem).where(OutboxItem.kind == "webhook"))
    assert "'username': 'root'" in told.text
    assert stored_hash not in told.text and "password_hash" not in told.text
    assert "session_epoch" not in told.text
    sent = hook.payload["json"]["record"]
    assert sent["username"] == "root" and sent["id"] == root.id
    assert not {"password_hash", "session_epoch"} & set(sent)
    assert stored_hash not in str(hook.payload)


def test_a_run_queued_for_a_rule_deleted_and_made_anew_does_not_run_the_new_one(app):
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "greet-new-clients", {"event": "record.created", "entity": "party"}, NOTE
        )
        old = factories.organisation(work, name="До замены")
    with app.acting_as(admin) as work:  # before a worker took the run: gone, and made anew
        automation(work).delete("greet-new-clients")
    with app.acting_as(admin) as work:
        automation(work).create(
            "greet-new-clients",
            {"event": "record.created", "entity": "party"},
            [{"kind": "create_task", "title": "Позвонить {{ party.name }}", "assignee": "root"}],
        )
    assert deliver_due(app) == {"delivered": 1}
    with app.system() as work:
        assert work.session.scalars(select(Task)).all() == []  # the new action: not for it
        [item] = work.session.scalars(select(OutboxItem).where(OutboxItem.kind == "automation"))
        assert item.result == {
            "skipped": "the rule was changed or made anew since the run was queued"
        }
    assert timeline(app, old.id, kind="note") == []  # nor the old one: it is gone
    with app.acting_as(admin) as work:  # the new rule runs for what happens from now on
        new = factories.organisation(work, name="После замены")
    assert deliver_due(app) == {"delivered": 1}
    with app.system() as work:
        assert [t.title for t in work.session.scalars(select(Task))] == ["Позвонить После замены"]
        [row] = [r for r in automation(work).rules() if r.name == "greet-new-clients"]
        assert row.runs == 1
    assert new.id != old.id


def test_a_queued_run_runs_only_if_the_rule_still_has_the_version_it_was_queued_with(app):
    from crmkit.automation.engine import forget_rules
    from crmkit.model import AutomationRule

    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "note-on-new-clients", {"event": "record.created", "entity": "party"}, NOTE
        )
        first = factories.organisation(work, name="Первый")
    with app.acting_as(admin) as work:  # switched off and on again: the same definition
        automation(work).set_enabled("note-on-new-clients", False)
    with app.acting_as(admin) as work:
        automation(work).set_enabled("note-on-new-clients", True)
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, first.id, kind="note")] == ["."]
    with app.acting_as(admin) as work:
        second = factories.organisation(work, name="Второй")
    with app.system() as work:  # its actions edited in place: the same row, a new version
        row = work.session.scalar(
            select(AutomationRule).where(AutomationRule.name == "note-on-new-clients")
        )
        row.actions = [{"kind": "add_note", "body": "Новая заметка"}]
    forget_rules(app)
    assert deliver_due(app) == {"delivered": 1}
    assert timeline(app, second.id, kind="note") == []  # queued for the old actions
    with app.acting_as(admin) as work:
        third = factories.organisation(work, name="Третий")
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, third.id, kind="note")] == ["Новая заметка"]


def test_a_rule_deleted_and_made_anew_as_it_was_is_another_rule_for_queued_runs(app):
    admin = add_user(app, "root", ["admin"])
    rule = ("note-on-new-clients", {"event": "record.created", "entity": "party"}, NOTE)
    with app.acting_as(admin) as work:
        automation(work).create(*rule)
        party = factories.organisation(work)
    with app.acting_as(admin) as work:
        automation(work).delete(rule[0])
    with app.acting_as(admin) as work:  # SQLite may give the new row the old one's id
        automation(work).create(*rule)
    assert deliver_due(app) == {"delivered": 1}
    assert timeline(app, party.id, kind="note") == []


def _booking_rule(app, admin, hours=24, condition=None):
    with app.acting_as(admin) as work:
        automation(work).create(
            "remind-before-visit",
            {"event": "booking.upcoming", "hours": hours},
            [{"kind": "add_note", "body": "Старое напоминание"}],
            condition=condition,
        )


def _booking_in(app, hours):
    with app.system() as work:
        party = factories.person(work)
        starts = utcnow() + dt.timedelta(hours=hours)
        work.calendar.create(
            {
                "title": "ТО",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + dt.timedelta(hours=1)).isoformat(),
                "party_id": party.id,
            }
        )
    return party


def _edit_rule(app, name, **columns):
    """An admin's rule edited in place: the same row, a new version."""
    from crmkit.automation.engine import forget_rules
    from crmkit.model import AutomationRule

    with app.system() as work:
        row = work.session.scalar(select(AutomationRule).where(AutomationRule.name == name))
        for column, value in columns.items():
            setattr(row, column, value)
    forget_rules(app)


NEW_NOTE = [{"kind": "add_note", "body": "Новое напоминание"}]


def test_a_time_based_run_skipped_for_an_edit_is_queued_again_under_the_edit_once(app):
    admin = add_user(app, "root", ["admin"])
    _booking_rule(app, admin, hours=24)
    soon = _booking_in(app, hours=20)
    assert scan_clock(app) == 1
    # edited before a worker took the run: the run is for the old actions, so it is skipped
    _edit_rule(app, "remind-before-visit", actions=NEW_NOTE)
    assert deliver_due(app) == {"delivered": 1}
    assert timeline(app, soon.id, kind="note") == []
    # ... and the client is reminded under the rule as it is now, once
    assert scan_clock(app) == 1
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, soon.id, kind="note")] == ["Новое напоминание"]
    assert scan_clock(app) == 0
    assert deliver_due(app) == {}
    # a new delay: the booking is reminded when it is due under it, not at once
    later = _booking_in(app, hours=10)
    assert scan_clock(app) == 1
    _edit_rule(app, "remind-before-visit", trigger={"event": "booking.upcoming", "hours": 2})
    assert deliver_due(app) == {"delivered": 1}
    assert scan_clock(app) == 0  # 10 hours ahead: not due 2 hours before yet
    assert scan_clock(app, now=utcnow() + dt.timedelta(hours=9)) == 1
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, later.id, kind="note")] == ["Новое напоминание"]
    assert scan_clock(app, now=utcnow() + dt.timedelta(hours=9)) == 0
    # the first client, reminded under the edit, is not reminded again by a later edit
    assert [n.body for n in timeline(app, soon.id, kind="note")] == ["Новое напоминание"]


def test_a_time_based_run_skipped_while_its_rule_was_off_runs_when_it_is_on_again(app):
    admin = add_user(app, "root", ["admin"])
    _booking_rule(app, admin, hours=24)
    party = _booking_in(app, hours=20)
    assert scan_clock(app) == 1
    with app.acting_as(admin) as work:
        automation(work).set_enabled("remind-before-visit", False)
    assert deliver_due(app) == {"delivered": 1}  # skipped: switched off
    assert scan_clock(app) == 0  # off: nothing is queued
    assert timeline(app, party.id, kind="note") == []
    with app.acting_as(admin) as work:
        automation(work).set_enabled("remind-before-visit", True)
    assert scan_clock(app) == 1  # on again while the booking is still ahead
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, party.id, kind="note")] == ["Старое напоминание"]
    assert scan_clock(app) == 0


def test_a_time_based_run_skipped_for_a_new_condition_is_judged_by_it_once(app):
    admin = add_user(app, "root", ["admin"])
    _booking_rule(app, admin, hours=24)
    party = _booking_in(app, hours=20)
    assert scan_clock(app) == 1
    # the new condition no longer holds for the booking: judged by it, and then done with
    _edit_rule(app, "remind-before-visit", condition={"field": "title", "op": "eq", "value": "x"})
    assert deliver_due(app) == {"delivered": 1}
    assert scan_clock(app) == 1
    assert deliver_due(app) == {"delivered": 1}
    assert timeline(app, party.id, kind="note") == []
    with app.system() as work:
        results = [
            item.result
            for item in work.session.scalars(
                select(OutboxItem).where(OutboxItem.kind == "automation").order_by(OutboxItem.id)
            )
        ]
    assert results == [
        {"skipped": "the rule was changed or made anew since the run was queued"},
        {"skipped": "condition not met"},
    ]
    assert scan_clock(app) == 0


def test_an_idle_client_skipped_for_a_rule_made_anew_is_reached_by_the_new_rule(app):
    _idle_rule(app)
    admin = "root"
    with app.system() as work:
        party = factories.person(work)
    month_later = utcnow() + dt.timedelta(days=31)
    assert scan_clock(app, now=month_later) == 1
    with app.acting_as(admin) as work:  # the screen's way of editing: delete, make anew
        automation(work).delete("wake-up-idle")
    with app.acting_as(admin) as work:
        automation(work).create(
            "wake-up-idle",
            {"event": "record.idle", "entity": "party", "days": 30},
            [{"kind": "add_note", "body": "Позвонить давнему клиенту"}],
        )
    assert deliver_due(app) == {"delivered": 1}
    assert timeline(app, party.id, kind="note") == []
    assert scan_clock(app, now=month_later) == 1
    assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, party.id, kind="note")] == ["Позвонить давнему клиенту"]


def test_today_in_a_rules_text_is_the_deployments_date(make_crm, plugin):
    """A rule run at 01:30 in Moscow (22:30 the day before in UTC) wrote UTC's date."""
    from zoneinfo import ZoneInfo

    from crmkit.clock import frozen_at

    app = make_crm(plugins=[plugin], settings={"locale.timezone": "Europe/Moscow"})
    admin = add_user(app, "root", ["admin"])
    with app.acting_as(admin) as work:
        automation(work).create(
            "dated-note",
            {"event": "record.created", "entity": "party"},
            [{"kind": "add_note", "body": "Занесён {{ today|date }}"}],
        )
    with frozen_at(dt.datetime(2026, 11, 2, 1, 30, tzinfo=ZoneInfo("Europe/Moscow"))):
        with app.acting_as(admin) as work:
            party = factories.organisation(work)
        assert deliver_due(app) == {"delivered": 1}
    assert [n.body for n in timeline(app, party.id, kind="note")] == ["Занесён 02.11.2026"]
