"""Live messages to signed-in users, across processes: the bell, reminders, call pop-ups.

A :class:`LiveHub` delivers small JSON messages addressed to a user to every browser that
user has connected to *any* web process.  Which hub an application uses follows its
deployment (:func:`make_hub`):

* embedded (SQLite, no Redis): :class:`LocalHub`, in process memory;
* ``queue.url`` is Redis: :class:`RedisHub`, Redis pub/sub;
* PostgreSQL without Redis: :class:`PostgresHub`, ``LISTEN``/``NOTIFY``.

Messages are published from ordinary (synchronous) code, typically after a commit
(``crm.publish_notification``), and consumed by the web layer's server-sent events stream.
Each process runs one listener for the broker and fans messages out to its subscribers.
The channel name derives from the deployment's secret key, so deployments sharing a Redis
or a PostgreSQL server never hear each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

#: Messages waiting for a slow browser beyond this many are dropped (it reloads the count).
QUEUE_SIZE = 100

#: The address of a message for every signed-in tab (no user has id 0).  Such messages must
#: carry no data a user may not see: they say "something changed, reload", as the contact
#: center's ``{"type": "inbox"}`` does, and the reload applies the reader's access rules.
EVERYONE = 0


class LocalHub:
    """Delivers messages to subscribers in this process (thread-safe publishing)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]]] = {}

    def publish(self, user_id: int, message: dict[str, Any]) -> None:
        """Send ``message`` to ``user_id``'s browsers (callable from any thread)."""
        self.deliver(user_id, message)

    def publish_everyone(self, message: dict[str, Any]) -> None:
        """Send a content-free ``message`` to every signed-in tab (see :data:`EVERYONE`)."""
        self.publish(EVERYONE, message)

    def deliver(self, user_id: int, message: dict[str, Any]) -> None:
        """Hand a message to this process's subscribers of ``user_id`` (or of everyone)."""
        with self._lock:
            if user_id == EVERYONE:
                targets = [entry for entries in self._subscribers.values() for entry in entries]
            else:
                targets = list(self._subscribers.get(user_id, ()))
        for loop, queue in targets:
            try:
                loop.call_soon_threadsafe(_offer, queue, message)
            except RuntimeError:  # the subscriber's loop is closed: it is going away
                continue

    async def start(self) -> None:
        """Start listening to the broker (nothing to do in process)."""

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: int) -> AsyncIterator[asyncio.Queue[Any]]:
        """A queue receiving ``user_id``'s messages while the block runs."""
        await self.start()
        queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subscribers.setdefault(user_id, set()).add(entry)
        try:
            yield queue
        finally:
            with self._lock:
                entries = self._subscribers.get(user_id)
                if entries is not None:
                    entries.discard(entry)
                    if not entries:
                        del self._subscribers[user_id]

    def close(self) -> None:
        """Release connections (none in process)."""


def _offer(queue: asyncio.Queue[Any], message: dict[str, Any]) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(message)


class _BrokerHub(LocalHub):
    """A hub whose messages go through a broker; one listener task per process."""

    def __init__(self, channel: str) -> None:
        super().__init__()
        self.channel = channel
        self._listener: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._listener is None or self._listener.done() or self._listener.get_loop() is not loop:
            self._ready = asyncio.Event()
            self._listener = loop.create_task(self._listen_forever(self._ready))
        assert self._ready is not None
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def _listen_forever(self, ready: asyncio.Event) -> None:
        while True:
            try:
                await self.listen(ready)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live listener lost its broker; reconnecting")
                await asyncio.sleep(1)

    async def listen(self, ready: asyncio.Event) -> None:
        """Receive broker messages and :meth:`deliver` them; set ``ready`` once listening."""
        raise NotImplementedError

    def received(self, raw: str | bytes) -> None:
        """A raw broker payload: ``{"u": user_id, "m": message}``."""
        try:
            envelope = json.loads(raw)
            self.deliver(int(envelope["u"]), envelope["m"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed live message")

    def envelope(self, user_id: int, message: dict[str, Any]) -> str:
        """The broker payload of a message."""
        return json.dumps({"u": user_id, "m": message}, separators=(",", ":"))


class RedisHub(_BrokerHub):
    """Redis pub/sub: publish from any process, each web process listens once."""

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(channel)
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)

    def publish(self, user_id: int, message: dict[str, Any]) -> None:
        self.client.publish(self.channel, self.envelope(user_id, message))

    async def listen(self, ready: asyncio.Event) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            ready.set()
            async for item in pubsub.listen():
                if item.get("type") == "message":
                    self.received(item["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        self.client.close()


class PostgresHub(_BrokerHub):
    """PostgreSQL ``LISTEN``/``NOTIFY``: no extra server for a PostgreSQL deployment."""

    def __init__(self, engine: Any, channel: str) -> None:
        super().__init__(channel)
        self.engine = engine

    def publish(self, user_id: int, message: dict[str, Any]) -> None:
        from sqlalchemy import text

        with self.engine.begin() as connection:
            connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": self.channel, "payload": self.envelope(user_id, message)},
            )

    async def listen(self, ready: asyncio.Event) -> None:
        import psycopg

        url = self.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
            await connection.execute(f'LISTEN "{self.channel}"')
            ready.set()
            async for notify in connection.notifies():
                self.received(notify.payload)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()


def make_hub(crm: Any) -> LocalHub:
    """The hub fitting the deployment: Redis, PostgreSQL, or in process."""
    channel = f"{crm.namespace}:live"
    queue_url = crm.config["queue.url"] or ""
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHub(queue_url, channel)
    if crm.engine.dialect.name == "postgresql":
        return PostgresHub(crm.engine, channel.replace(":", "_"))
    return LocalHub()
