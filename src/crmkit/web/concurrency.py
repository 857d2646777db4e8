"""Where a request's blocking database work runs: on the event loop, or in the thread pool.

Endpoints of the web UI and the API come in two kinds.  A coroutine (``async def``) runs
on the event loop; it must not wait long there.  A plain function (``def``) does blocking
work, and :class:`Blocking` runs it: a read on the loop (on a database server, in a
greenlet that gives the loop back while the server works), a write (an unsafe method:
POST, PUT, PATCH, DELETE) and a read marked :func:`long_running` in the thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from crmkit import cooperative

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def long_running(endpoint: F) -> F:
    """Mark a plain read endpoint whose own Python work takes long (an export of the client
    base, a report as a spreadsheet): it runs in the thread pool, bounded like writes, so
    that the event loop serves other requests meanwhile instead of waiting for the file.

    A read on the loop gives the loop back only while it waits for the database; seconds of
    building a workbook would hold up every request of the worker.
    """
    endpoint.crmkit_long_running = True  # type: ignore[attr-defined]
    return endpoint


def is_long_running(endpoint: Callable[..., Any]) -> bool:
    """Whether ``endpoint`` was marked with :func:`long_running`."""
    return bool(getattr(endpoint, "crmkit_long_running", False))


class Blocking:
    """Runs reads on the event loop, writes in the thread pool.

    On SQLite a read is a call into the library in the same process, with no network
    wait: it runs on the event loop as it is, and a thread hop would cost more than the
    query (on the API list benchmark, half the requests/s).  On a database server each
    statement waits a network round trip, and one slow round trip (an autovacuum, a busy
    core, a lock) must hold up only its own request: there a read runs through
    :func:`crmkit.cooperative.run`, in a greenlet on the loop whose every wait for the
    server gives the loop back to other requests.  The earlier design, reads in the
    thread pool, did the same at more CPU per request (the loop and the readers handing
    the GIL to each other) and a longer tail (docs/decisions.md, "Server-database reads
    on the event loop, in greenlets").  A write may wait for a lock (SQLite's one writer: an
    import's batch, say) and runs in the thread pool on both.

    Reads on a server database are at most ``database.pool_size`` at once, the
    connections the process keeps open, and so are writes; the rest wait their turn, in
    order, without a thread.  Unbounded, 32 concurrent requests held up to 15
    connections, and every one above the pool's size was closed when returned and opened
    again for the next request: a new server process per request on PostgreSQL.  The
    engine's overflow leaves room for both at once (:data:`crmkit.db.SPARE_CONNECTIONS`), so
    a read's checkout, which on the loop would stop it while it waits, finds a connection.
    """

    def __init__(self, crm: Any) -> None:
        #: Reads run in greenlets whose waits go to the loop: a read may also make a short
        #: write (a token's last use) without holding up the loop.
        self.cooperative = crm.engine.dialect.name != "sqlite"
        self.at_once = max(1, int(crm.config["database.pool_size"]))
        self._limiter: anyio.CapacityLimiter | None = None
        self._write_limiter: anyio.CapacityLimiter | None = None

    async def read(self, function: Callable[..., T], *args: Any) -> T:
        if not self.cooperative:
            return function(*args)
        if self._limiter is None:  # made in the serving loop, on first use
            self._limiter = anyio.CapacityLimiter(self.at_once)
        async with self._limiter:
            return await cooperative.run(function, *args)

    async def write(self, function: Callable[..., T], *args: Any) -> T:
        """Run a write in the thread pool (a :func:`long_running` read too)."""
        if self._write_limiter is None:  # made in the serving loop, on first use
            self._write_limiter = anyio.CapacityLimiter(self.at_once)
        return await anyio.to_thread.run_sync(function, *args, limiter=self._write_limiter)
