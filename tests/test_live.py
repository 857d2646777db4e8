"""Live messages reach a user's browsers from any process: in process, Redis, PostgreSQL."""

from __future__ import annotations

import asyncio
import threading

import pytest

from crmkit.clock import utcnow
from crmkit.live import LocalHub, PostgresHub, RedisHub
from crmkit.services.conversations import InboundNote


async def _receive_one(hub, user_id, publish):
    async with hub.subscribe(user_id) as queue:
        publish()
        return await asyncio.wait_for(queue.get(), timeout=10)


def test_local_hub_delivers_from_another_thread():
    hub = LocalHub()

    def publish():
        thread = threading.Thread(target=hub.publish, args=(7, {"type": "notification", "id": 1}))
        thread.start()
        thread.join()

    message = asyncio.run(_receive_one(hub, 7, publish))
    assert message == {"type": "notification", "id": 1}


def test_local_hub_keeps_users_apart():
    hub = LocalHub()

    async def scenario():
        async with hub.subscribe(1) as mine, hub.subscribe(2) as theirs:
            hub.publish(2, {"type": "x"})
            assert await asyncio.wait_for(theirs.get(), 5) == {"type": "x"}
            assert mine.empty()

    asyncio.run(scenario())


def test_redis_hub_crosses_processes(redis_url):
    # two hubs stand for two web processes: published on one, received on the other
    receiver, sender = (
        RedisHub(redis_url, "crmkit-test:live"),
        RedisHub(redis_url, "crmkit-test:live"),
    )
    message = asyncio.run(_receive_one(receiver, 5, lambda: sender.publish(5, {"type": "call"})))
    assert message == {"type": "call"}
    receiver.close()
    sender.close()


@pytest.mark.postgres_only
def test_postgres_hub_crosses_processes(crm):
    channel = f"{crm.namespace}_live".replace("-", "_")
    receiver, sender = PostgresHub(crm.engine, channel), PostgresHub(crm.engine, channel)
    message = asyncio.run(
        _receive_one(receiver, 3, lambda: sender.publish(3, {"type": "notification", "id": 9}))
    )
    assert message == {"type": "notification", "id": 9}


def test_a_committed_notification_is_published(crm):
    from crmkit.testing import add_user

    ivan, maria = add_user(crm, "ivan"), add_user(crm, "maria", ["manager"])  # she sees it

    async def scenario():
        async with crm.live.subscribe(maria.id) as queue:
            with crm.acting_as(ivan) as work:
                party = work.parties.create(name="ООО Ромашка")
                work.timeline.add_note(party_id=party.id, body="@maria посмотри")
            return await asyncio.wait_for(queue.get(), 10)

    message = asyncio.run(scenario())
    assert message["type"] == "notification" and message["id"]


def test_a_message_for_everyone_reaches_every_tab_through_redis(redis_url):
    receiver, sender = (
        RedisHub(redis_url, "crmkit-test:live-all"),
        RedisHub(redis_url, "crmkit-test:live-all"),
    )

    async def scenario():
        async with receiver.subscribe(1) as first, receiver.subscribe(2) as second:
            sender.publish_everyone({"type": "inbox"})
            assert await asyncio.wait_for(first.get(), 10) == {"type": "inbox"}
            assert await asyncio.wait_for(second.get(), 10) == {"type": "inbox"}

    asyncio.run(scenario())
    receiver.close()
    sender.close()


def note(address):
    return InboundNote(address, address, None, "?", None, None, utcnow())


def test_a_filed_message_tells_open_inboxes_once_after_commit(crm):
    """Inbound messages announce "inbox changed" once per unit of work, only if committed."""
    published = []
    crm.live.publish = lambda user_id, message: published.append((user_id, message))
    with crm.system() as work:
        for n in range(3):
            work.conversations.note_messages("chat", [note(f"a{n}@example.ru")])
        assert published == []  # not before the commit
    assert published == [(0, {"type": "inbox"})]
    with pytest.raises(RuntimeError), crm.system() as work:
        work.conversations.note_messages("chat", [note("b@example.ru")])
        raise RuntimeError("failed")
    assert len(published) == 1  # a rolled-back message announces nothing
