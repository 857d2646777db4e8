"""A private column's value (``info={"private": True}``) is "never shown to anyone": not in
the audit log, not in events, their outbox items and webhooks.  What stays is that it
changed (the field's name, its values masked as ``***``)."""

from __future__ import annotations

import json

from sqlalchemy import select

from crmkit import hookimpl
from crmkit.automation import Action, Rule, Trigger
from crmkit.jobs.delivery import deliver_due
from crmkit.model import AuditEntry, OutboxItem
from crmkit.schemas.output import PRIVATE_MASK
from crmkit.testing import add_user, factories
from tests.plain_plugin import plugin as plain

WHEN = "2026-11-20T10:00:00+03:00"


class HookRule:
    crmkit_plugin_name = "test_door_code_hook"

    @hookimpl
    def crmkit_register_automations(self):
        return [
            Rule(
                "door-code-changed",
                Trigger("field.changed", entity="plain_visit", field="door_code"),
                (Action("webhook", {"url": "http://127.0.0.1:9/hook"}),),
            )
        ]


def _audit(crm, entity, record_id):
    with crm.system() as work:
        rows = work.session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity == entity, AuditEntry.record_id == record_id)
            .order_by(AuditEntry.id)
        )
        return [(row.action, row.changes) for row in rows]


def test_the_audit_log_records_that_a_private_column_changed_never_its_value(make_crm):
    crm = make_crm(plugins=[plain])
    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work)
        visit = work.records("plain_visit").create(
            party_id=party.id, visited_at=WHEN, door_code="1234#"
        )
    with crm.acting_as(agent) as work:
        service = work.records("plain_visit")
        service.update(service.get(visit.id), door_code="9876#", outcome="met")
    with crm.acting_as(agent) as work:
        service = work.records("plain_visit")
        service.update(service.get(visit.id), door_code="")
    (_, created), (_, changed), (_, cleared) = _audit(crm, "plain_visit", visit.id)
    assert created["door_code"] == [None, PRIVATE_MASK]
    assert changed == {"door_code": [PRIVATE_MASK, PRIVATE_MASK], "outcome": ["", "met"]}
    assert cleared == {"door_code": [PRIVATE_MASK, ""]}
    stored = json.dumps(_audit(crm, "plain_visit", visit.id))
    assert "1234#" not in stored and "9876#" not in stored


def test_events_outbox_items_and_webhooks_never_carry_a_private_value(make_crm):
    crm = make_crm(plugins=[plain, HookRule()])
    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work)
        visit = work.records("plain_visit").create(party_id=party.id, visited_at=WHEN)
    with crm.acting_as(agent) as work:
        service = work.records("plain_visit")
        service.update(service.get(visit.id), door_code="HOOK-SECRET")
        [event] = [e for e in work.pending_events if e.name == "record.updated"]
        assert event.data["changes"] == {"door_code": ["", PRIVATE_MASK]}
    assert deliver_due(crm) == {"delivered": 1}  # the rule's run queues the webhook
    with crm.system() as work:
        items = list(work.session.scalars(select(OutboxItem)))
    [hook] = [item for item in items if item.kind == "webhook"]
    # the rule still fired on the change, and the body says which field changed
    assert hook.payload["json"]["event"]["changes"] == {"door_code": ["", PRIVATE_MASK]}
    assert "HOOK-SECRET" not in json.dumps([item.payload for item in items])


def test_a_mailbox_password_change_is_audited_by_the_same_rule(make_crm):
    from crmkit_mail import plugin as mail

    crm = make_crm(plugins=[mail])
    admin = add_user(crm, "root", ["admin"])
    with crm.acting_as(admin) as work:
        accounts = work.records("mail_account")
        account = accounts.create(
            name="Sales",
            address="sales@example.ru",
            imap_host="imap.example.ru",
            imap_username="sales",
            imap_password="first-secret",
        )
    with crm.acting_as(admin) as work:
        work.records("mail_account").update(account.id, imap_password="second-secret")
    [(_, changes)] = [e for e in _audit(crm, "mail_account", account.id) if e[0] == "update"]
    assert changes == {"imap_password_sealed": [PRIVATE_MASK, PRIVATE_MASK]}
