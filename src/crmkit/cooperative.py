"""Plain database code run on the event loop, giving the loop back while PostgreSQL works.

A request's read is plain, blocking code: a unit of work, the ORM, Core statements.  On a
database server most of its time is spent waiting for answers.  :func:`run` calls such a
function in a greenlet on the event loop.  Whenever its psycopg connection (a
:class:`CooperativeConnection`, which :func:`crmkit.db.make_engine` gives every
PostgreSQL engine) would wait for the server, the wait is handed to the loop (psycopg's
own asyncio wait), the loop serves other requests, and the function resumes where it was
once the answer has come.  Its Python work runs on the loop, as every read does on SQLite.

Compared with a thread per read this costs no thread switch and no GIL hand-over per
request (on the API list benchmark, half of the CPU time went to the kernel handing the
GIL between the loop and the readers), and a slow statement still holds up only its own
request.  Outside :func:`run` (a thread, a background worker, the CLI) the same
connection waits as psycopg always does.

What must not happen inside :func:`run`: waiting on a thread lock that another read on
the same loop holds across a statement (the holder cannot resume while the loop is
blocked).  crmkit's own locks are never held across a statement; see docs/decisions.md,
"Server-database reads on the event loop, in greenlets".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import greenlet
import psycopg
import sqlalchemy as sa
from psycopg import pq, waiting

T = TypeVar("T")

#: How often psycopg wakes from a wait to check for interruptions (its own default).
WAIT_INTERVAL = 0.1


class _Cooperating(greenlet.greenlet):
    """A greenlet running a plain function for :func:`run`; its parent is the loop's."""


def cooperating() -> bool:
    """Whether the caller runs inside :func:`run`, so that waits go to the event loop."""
    return isinstance(greenlet.getcurrent(), _Cooperating)


async def run(function: Callable[..., T], *args: Any) -> T:
    """Call ``function(*args)`` on the event loop; its database waits let the loop go on.

    Context variables are shared with the calling task, as if the function were called
    directly.  Should the task be cancelled while the function waits, the cancellation
    is raised inside the function at that wait, so its ``finally`` blocks and context
    managers run (a connection in the middle of a statement is closed, see
    :meth:`CooperativeConnection.wait`).
    """
    current = greenlet.getcurrent()
    child = _Cooperating(function, current)
    child.gr_context = current.gr_context
    result: Any = child.switch(*args)
    while not child.dead:
        try:
            value = await result  # an awaitable the function handed over in suspend()
        except BaseException as exc:  # raised inside the function, at its wait
            result = child.throw(type(exc), exc, exc.__traceback__)
        else:
            result = child.switch(value)
    return result  # type: ignore[no-any-return]


def suspend(awaitable: Awaitable[T]) -> T:
    """From inside :func:`run`: let the event loop await ``awaitable``, then go on."""
    current = greenlet.getcurrent()
    if not isinstance(current, _Cooperating):
        raise RuntimeError("suspend() is only possible inside crmkit.cooperative.run()")
    assert current.parent is not None
    return current.parent.switch(awaitable)  # type: ignore[no-any-return]


def enable(engine: sa.Engine) -> None:
    """Make ``engine`` (psycopg) open :class:`CooperativeConnection` connections."""

    @sa.event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        return CooperativeConnection.connect(*cargs, **cparams)

    @sa.event.listens_for(engine, "checkout")
    def handed_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        dbapi_connection.cooperates = True


class CooperativeConnection(psycopg.Connection[Any]):
    """A psycopg connection whose waits go to the event loop inside :func:`run`.

    Only from its first checkout on: while it is being set up, SQLAlchemy inspects the
    server with the engine's first connection under a thread lock, which a second
    greenlet of the same loop would wait on forever if the first one gave the loop away
    in the middle.  A connection's setup waits as psycopg always does (a few ms, once).
    """

    cooperates = False

    def wait(self, gen: Any, interval: float = WAIT_INTERVAL, timeout: float | None = None) -> Any:
        if not (self.cooperates and cooperating()):
            return super().wait(gen, interval, timeout)
        try:
            return suspend(
                waiting.wait_async(gen, self.pgconn.socket, interval=interval, timeout=timeout)
            )
        except BaseException:
            # Interrupted (the request's task cancelled) while the server still works on a
            # statement: the connection is in an unknown state.  Closed, the pool discards
            # it when it comes back.  An error of the statement itself leaves it idle.
            if self.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                self.close()
            raise
