"""Where a request's blocking database work runs: on the event loop, or in the thread pool.

Endpoints of the web UI and the API come in two kinds.  A coroutine (``async def``) runs
on the event loop; it must not wait long there.  A plain function (``def``) does blocking
work, and :class:`Blocking` runs it: a read where the database makes it cheapest, a write
(an unsafe method: POST, PUT, PATCH, DELETE) always in the thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class Blocking:
    """Runs reads on the event loop on SQLite and in the thread pool on a database server;
    writes in the thread pool on both.

    On SQLite a read is a call into the library in the same process, with no network
    wait: it runs on the event loop, and a thread hop would cost more than the query (on
    the API list benchmark, half the requests/s).  On a server database each statement
    waits a network round trip; on the loop that wait stalls every other request of the
    worker process, so one slow round trip (an autovacuum, a busy core) holds up every
    request queued behind it.  There reads run in the thread pool, where the waits of
    several requests overlap while the loop goes on parsing and answering.  A write may
    wait for a lock (SQLite's one writer: an import's batch, say), so it never runs on
    the loop.

    Reads in threads are at most ``database.pool_size`` at once, the connections the
    process keeps open; the rest wait their turn, in order, without a thread.  Unbounded
    (the thread pool's 40), 32 concurrent requests held up to 15 connections, and every
    one above the pool's size was closed when returned and opened again for the next
    request: a new server process per request on PostgreSQL, a third of the requests/s
    (docs/decisions.md, "Accepting connections under load; server-database reads no more
    at once than the pool").
    """

    def __init__(self, crm: Any) -> None:
        self.reads_in_threads = crm.engine.dialect.name != "sqlite"
        self.concurrent_reads = max(1, int(crm.config["database.pool_size"]))
        self._limiter: anyio.CapacityLimiter | None = None

    async def read(self, function: Callable[..., T], *args: Any) -> T:
        if self.reads_in_threads:
            if self._limiter is None:  # made in the serving loop, on first use
                self._limiter = anyio.CapacityLimiter(self.concurrent_reads)
            return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)
        return function(*args)

    async def write(self, function: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(function, *args)
