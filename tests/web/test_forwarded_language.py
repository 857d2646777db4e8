"""A notification forwarded to a user's own address (mail, a messenger) is written in that
user's language, as their bell shows it, whoever caused it and in whatever language."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmkit import AddressKind, Capability, Channel, DeliveryReceipt, hookimpl
from crmkit.model import Party
from crmkit.testing import factories
from crmkit.testing.channel_contract import deliver_outbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Letters:
    """A sending channel that keeps what it was given."""

    crmkit_plugin_name = "test_forward_letters"

    def __init__(self):
        self.sent = []

    @hookimpl
    def crmkit_register_channels(self):
        return [
            Channel("letters", AddressKind.EMAIL, {Capability.SEND}, lambda crm: self, label="Mail")
        ]

    def send(self, message):
        self.sent.append(message)
        return DeliveryReceipt(f"letter-{len(self.sent)}")


@pytest.fixture
def letters():
    return Letters()


@pytest.fixture
def crm(make_crm, letters):
    return make_crm(plugins=[letters])


async def test_each_forwarded_copy_is_in_its_recipients_language(web, crm, letters):
    sender = await web("manager", locale="en")
    olga = await web("agent", locale="ru")
    john = await web("agent", locale="en")
    for reader, address in ((olga, "olga@firm.ru"), (john, "john@firm.com")):
        with crm.acting_as(reader.user) as work:
            work.notifications.set_preference("letters", address)
    with crm.acting_as(sender.user) as work:
        for name in ("ООО «Альфа»", "ООО «Бета»", "ООО «Гамма»", "ООО «Дельта»"):
            factories.organisation(work, name=name)
        ids = [str(i) for i in work.session.scalars(select(Party.id).order_by(Party.id))]
    # the English-speaking manager hands two clients to each of them from the list
    for reader, chosen in ((olga, ids[:2]), (john, ids[2:])):
        answer = await sender.post(
            "/lists/party/bulk",
            {"ids": chosen, "action": "assign", "owner_id": str(reader.user.id)},
        )
        assert answer.status_code == 303
    deliver_outbox(crm)
    body = {message.to: message.body for message in letters.sent}
    who = sender.user.label
    assert body == {
        "olga@firm.ru": f"{who} передаёт вам — Клиенты: 2",
        "john@firm.com": f"{who} handed over to you — Clients: 2",
    }
    # the same words as the bell's page shows each of them
    bell = await olga.get("/notifications")
    assert body["olga@firm.ru"] in bell.text
