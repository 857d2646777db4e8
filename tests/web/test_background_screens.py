"""Admin screens of background work: failed deliveries and automation rules, RU and EN."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmkit.jobs.delivery import deliver_due
from crmkit.model import AutomationRule, OutboxItem

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_only]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_dead_letters_show_the_error_and_can_be_retried_or_discarded(crm, web):
    with crm.system() as work:
        first = work.outbox.add("webhook", {"url": "ftp://nowhere/1"}).id
        second = work.outbox.add("webhook", {"url": "ftp://nowhere/2"}).id
    deliver_due(crm)
    agent = await web("agent")
    assert (await agent.get("/admin/dead-letters")).status_code == 404
    admin = await web("admin", locale="en")
    page = await admin.get("/admin/dead-letters")
    assert page.status_code == 200
    assert "Failed deliveries" in page.text and "webhook url must be http(s)" in page.text
    response = await admin.post("/admin/dead-letters", {"ids": [str(first)], "action": "retry"})
    assert response.status_code == 303
    response = await admin.post("/admin/dead-letters", {"ids": [str(second)], "action": "discard"})
    assert response.status_code == 303
    with crm.system() as work:
        statuses = dict(work.session.execute(select(OutboxItem.id, OutboxItem.status)).all())
    assert statuses == {first: "pending", second: "discarded"}
    russian = await web("admin", locale="ru")
    assert "Неудавшиеся доставки" in (await russian.get("/admin/dead-letters")).text


async def test_cancelled_deliveries_are_listed_with_their_reason_not_as_failures(crm, web):
    from crmkit.jobs import Cancelled, OutboxHandler

    def refuse(crm, delivery):
        raise Cancelled(f"not sent: {delivery.payload['who']} is blocked")

    crm.outbox_handlers["test.forward"] = OutboxHandler("test.forward", refuse)
    with crm.system() as work:
        item = work.outbox.add("test.forward", {"who": "anna"}).id
    assert deliver_due(crm) == {"cancelled": 1}
    admin = await web("admin", locale="en")
    page = (await admin.get("/admin/dead-letters")).text
    assert "No failed deliveries." in page and "cancelled: 1" in page
    listed = page.split("Cancelled deliveries")[1].split("</table>")[0]
    assert f"<td>{item}</td>" in listed and "not sent: anna is blocked" in listed
    russian = (await (await web("admin", locale="ru")).get("/admin/dead-letters")).text
    assert "отменено: 1" in russian


async def test_rules_screen_creates_switches_and_shows_failures(crm, web):
    admin = await web("admin", locale="en")
    response = await admin.post(
        "/admin/automation",
        {
            "action": "create",
            "name": "move-new-deals",
            "label": "Impossible move",
            "event": "record.created",
            "entity": "deal",
            "actions": '[{"kind": "move", "to": "won"}]',
        },
    )
    assert response.status_code == 303, response.text
    bad = await admin.post(
        "/admin/automation",
        {"action": "create", "name": "bad", "event": "record.created", "actions": "[{"},
    )
    assert bad.status_code in (400, 422) and "not valid JSON" in bad.text
    hours = await admin.post(
        "/admin/automation",
        {
            "action": "create",
            "name": "bad-hours",
            "event": "booking.upcoming",
            "hours": "abc",
            "actions": '[{"kind": "add_note", "body": "."}]',
        },
    )
    assert hours.status_code == 422 and "hours: not a number: abc" in hours.text
    with crm.system() as work:
        party = work.parties.create({"kind": "organisation", "name": "ООО «Тест»"})
        work.deals.create({"title": "Сделка", "party_id": party.id})
    deliver_due(crm)
    page = await admin.get("/admin/automation")
    assert "Impossible move" in page.text and "MoveRefused" in page.text
    await admin.post("/admin/automation", {"action": "disable", "name": "move-new-deals"})
    with crm.system() as work:
        assert work.session.scalar(select(AutomationRule.enabled)) is False
    russian = await web("admin", locale="ru")
    assert "Автоматизация" in (await russian.get("/admin/automation")).text


async def test_watched_connections_show_who_runs_them_and_the_last_error(crm, web):
    from crmkit import Watcher
    from crmkit.jobs import watchers

    crm.watchers["mail.idle"] = Watcher("mail.idle", lambda crm: [], lambda crm, key, stop: None)
    admin = await web("admin", locale="en")
    assert "Nothing is watched yet" in (await admin.get("/admin/dead-letters")).text

    names = [watchers.lease_name("mail.idle", key) for key in ("sales", "support")]
    watchers.ensure_rows(crm, names)
    assert watchers.claim(crm, names[0], "mx1/4242/ab12", lease_seconds=60)
    assert watchers.claim(crm, names[1], "mx1/4242/ab12", lease_seconds=60)
    watchers.record_failure(crm, names[1], "mx1/4242/ab12", "ImapError: IMAP LOGIN as support")
    watchers.release(crm, names[1], "mx1/4242/ab12")
    page = (await admin.get("/admin/dead-letters")).text
    assert "Watched connections" in page
    sales, support = page.split("<td>sales</td>")[1], page.split("<td>support</td>")[1]
    assert "running</span>" in sales.split("</tr>")[0] and "mx1/4242/ab12" in sales
    assert "not running" in support.split("</tr>")[0]
    assert "ImapError: IMAP LOGIN as support" in support.split("</tr>")[0]
    russian = (await (await web("admin", locale="ru")).get("/admin/dead-letters")).text
    assert "Постоянные подключения" in russian and "не работает" in russian
