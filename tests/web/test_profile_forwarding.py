"""A user chooses, on their profile, where their notifications are also sent."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmkit import AddressKind, Capability, Channel, DeliveryReceipt, hookimpl
from crmkit.model import NotificationPreference, OutboxItem

pytestmark = pytest.mark.anyio


class MailLike:
    """A sending channel that reaches people at email addresses."""

    crmkit_plugin_name = "test_forward_mail"

    @hookimpl
    def crmkit_register_channels(self):
        return [
            Channel("mail", AddressKind.EMAIL, {Capability.SEND}, lambda crm: self, label="Mail")
        ]

    def send(self, message):
        return DeliveryReceipt("sent-1")


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[MailLike()])


def preferences(crm):
    with crm.system() as work:
        rows = work.session.scalars(select(NotificationPreference)).all()
        return {(row.user_id, row.channel): row.address for row in rows}


async def test_forwarding_is_set_checked_used_and_stopped_from_the_profile(web, crm):
    agent = await web("agent", locale="en")
    page = await agent.get("/profile")
    assert page.status_code == 200 and 'name="forward_mail"' in page.text

    bad = await agent.post("/profile/notifications", {"forward_mail": "not an address"})
    assert bad.status_code in (400, 422) and "forward_mail" in bad.text
    assert preferences(crm) == {}  # nothing saved from a refused form

    saved = await agent.post("/profile/notifications", {"forward_mail": " Ivan@Firm.RU "})
    assert saved.status_code == 303
    assert preferences(crm) == {(agent.user.id, "mail"): "Ivan@Firm.RU"}
    assert 'value="Ivan@Firm.RU"' in (await agent.get("/profile")).text

    # a notification to this user now also leaves through the outbox, to that address
    with crm.system() as work:
        work.notifications.notify(agent.user.id, "mention", "Вас упомянули в заметке")
    with crm.system() as work:
        items = work.session.scalars(select(OutboxItem)).all()
    assert [(item.kind, item.payload["to"]) for item in items] == [("channel.send", "Ivan@Firm.RU")]

    # kinds chosen through the service (or the API) survive a new address from the profile
    with crm.acting_as(agent.user) as work:
        work.notifications.set_preference("mail", "Ivan@Firm.RU", kinds=["reminder"])
    await agent.post("/profile/notifications", {"forward_mail": "ivan@other.ru"})
    with crm.system() as work:
        (row,) = work.session.scalars(select(NotificationPreference)).all()
        assert (row.address, row.kinds) == ("ivan@other.ru", ["reminder"])

    stopped = await agent.post("/profile/notifications", {"forward_mail": ""})
    assert stopped.status_code == 303 and preferences(crm) == {}
