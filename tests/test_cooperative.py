"""Plain database code on the event loop (crmkit.cooperative): the loop goes on while
PostgreSQL works, and nothing about the connection changes outside it."""

from __future__ import annotations

import asyncio
import contextvars
import time

import psycopg
import pytest
import sqlalchemy as sa

from crmkit import cooperative, testing
from crmkit.db import make_engine


@pytest.fixture
def engine():
    testing.require(testing.postgres_reachable(), f"PostgreSQL at {testing.postgres_url()}")
    engine = make_engine(testing.postgres_url(), pool_size=2, max_overflow=0)
    yield engine
    engine.dispose()


def _sleep_on_server(engine: sa.Engine, seconds: float) -> float:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT pg_sleep(:s), :s"), {"s": seconds}).one()[1]


async def _ticking(seconds: float, work: object) -> tuple[object, int]:
    """Await ``work`` while a task counts 10 ms ticks: how often the loop was free."""
    ticks = 0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        result = await work  # type: ignore[misc]
    finally:
        stop.set()
        await ticker
    return result, ticks


def test_the_loop_goes_on_while_the_server_works(engine):
    result, ticks = asyncio.run(_ticking(0.5, cooperative.run(_sleep_on_server, engine, 0.5)))
    assert result == 0.5
    assert ticks >= 10  # about 50 in half a second when idle; a blocked loop counts 0 or 1


def test_a_plain_call_still_blocks_as_psycopg_always_did(engine):
    """The control: the same function called straight on the loop stops it."""

    async def straight() -> float:
        return _sleep_on_server(engine, 0.3)

    result, ticks = asyncio.run(_ticking(0.3, straight()))
    assert result == 0.3
    assert ticks <= 2


def test_two_reads_wait_for_the_server_at_the_same_time(engine):
    """On a fresh engine, so both also open their connections at once: the first one's
    set-up (SQLAlchemy's server inspection, under a thread lock) must not give the loop
    to the second, which would wait on that lock forever."""

    async def both() -> list[float]:
        return list(
            await asyncio.gather(
                cooperative.run(_sleep_on_server, engine, 0.5),
                cooperative.run(_sleep_on_server, engine, 0.5),
            )
        )

    started = time.monotonic()
    assert asyncio.run(both()) == [0.5, 0.5]
    assert time.monotonic() - started < 0.9  # not 1.0 and more: the waits overlapped


def test_connections_are_cooperative_and_work_in_threads_too(engine):
    with engine.connect() as connection:
        assert isinstance(connection.connection.dbapi_connection, cooperative.CooperativeConnection)
    assert not cooperative.cooperating()
    assert _sleep_on_server(engine, 0.01) == 0.01  # no loop at all: psycopg's own wait


def test_a_statement_error_is_raised_and_leaves_the_connection_usable(engine):
    def failing() -> None:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1 / 0"))

    with pytest.raises(sa.exc.DataError, match="division by zero"):
        asyncio.run(cooperative.run(failing))
    assert asyncio.run(cooperative.run(_sleep_on_server, engine, 0.01)) == 0.01


def test_a_cancelled_read_closes_its_busy_connection_and_the_pool_replaces_it(engine):
    seen: list[psycopg.Connection] = []

    def long_read() -> None:
        with engine.connect() as connection:
            seen.append(connection.connection.dbapi_connection)
            connection.execute(sa.text("SELECT pg_sleep(5)"))

    async def cancel_it() -> None:
        task = asyncio.create_task(cooperative.run(long_read))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(cancel_it())
    assert time.monotonic() - started < 2  # not the statement's 5 s
    assert seen[0].closed  # mid-statement: closed, not handed to the next request
    with engine.connect() as connection:  # the pool gives a working one
        assert connection.execute(sa.text("SELECT 2")).scalar() == 2
    assert engine.pool.checkedout() == 0


def test_context_variables_are_the_calling_tasks():
    language = contextvars.ContextVar("language", default="en")

    def read_and_set() -> str:
        seen = language.get()
        language.set("de")
        return seen

    async def request() -> tuple[str, str]:
        language.set("ru")
        seen = await cooperative.run(read_and_set)
        return seen, language.get()

    assert asyncio.run(request()) == ("ru", "de")  # as if called directly


def test_suspend_outside_run_is_refused():
    async def never() -> None:  # pragma: no cover - not awaited
        pass

    awaitable = never()
    with pytest.raises(RuntimeError, match=r"only possible inside crmkit\.cooperative\.run"):
        cooperative.suspend(awaitable)
    awaitable.close()
