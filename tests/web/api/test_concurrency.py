"""Where API reads run: a slow round trip to a database server holds up only its request."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event

from crmkit.testing import add_user
from tests.web.conftest import one_slow_statement


def test_a_slow_database_round_trip_does_not_hold_up_other_requests(crm, client_for):
    if crm.engine.dialect.name == "sqlite":
        pytest.skip("on SQLite reads run on the event loop: no network wait to overlap")
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)
    assert api.get("party").status_code == 200  # the token and the actor are known

    async def both() -> list[str]:
        finished: list[str] = []

        async def get(url: str) -> None:
            response = await api.client.get(url)
            assert response.status_code == 200, response.text
            finished.append(url)

        async with anyio.create_task_group() as group:
            group.start_soon(get, "party")
            await anyio.sleep(0.2)  # the list now waits for the database
            started = time.monotonic()
            group.start_soon(get, "me")
            while "me" not in finished:
                await anyio.sleep(0.01)
            assert time.monotonic() - started < 1.0
        return finished

    with one_slow_statement(crm.engine, "FROM party"):  # this one list
        assert api.portal.call(both) == ["me", "party"]


def test_concurrent_reads_take_no_more_connections_than_the_pool_keeps(
    crm, client_for, monkeypatch
):
    """More requests at once than ``database.pool_size``: the rest wait for a turn instead
    of each opening (and closing) a connection of its own."""
    if crm.engine.dialect.name == "sqlite":
        pytest.skip("on SQLite reads run on the event loop, one at a time")
    monkeypatch.setitem(crm.config.values, "database.pool_size", 3)
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)  # the application is made now, with a pool of 3
    assert api.get("party").status_code == 200
    out = {"now": 0, "most": 0}

    def checked_out(*_: object) -> None:
        out["now"] += 1
        out["most"] = max(out["most"], out["now"])

    def checked_in(*_: object) -> None:
        out["now"] -= 1

    async def many() -> list[int]:
        statuses: list[int] = []

        async def get() -> None:
            statuses.append((await api.client.get("party")).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(24):
                group.start_soon(get)
        return statuses

    sa_event.listen(crm.engine, "checkout", checked_out)
    sa_event.listen(crm.engine, "checkin", checked_in)
    try:
        with one_slow_statement(crm.engine, "FROM party", seconds=0.3):  # they pile up
            statuses = api.portal.call(many)
    finally:
        sa_event.remove(crm.engine, "checkout", checked_out)
        sa_event.remove(crm.engine, "checkin", checked_in)
    assert statuses == [200] * 24
    assert 1 < out["most"] <= 3


def test_concurrent_writes_are_bounded_like_reads(crm, client_for, monkeypatch):
    """Writes run in threads at most ``database.pool_size`` at once too: with reads (token
    checks) bounded the same way, the web never wants more connections than the pool and
    its overflow hold, so a read's checkout on the event loop never waits for one."""
    if crm.engine.dialect.name == "sqlite":
        pytest.skip("on SQLite one write runs at a time (its one writer lock), bound or not")
    monkeypatch.setitem(crm.config.values, "database.pool_size", 3)
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)
    assert api.get("party").status_code == 200
    running = {"now": 0, "most": 0}
    lock = threading.Lock()

    def slow_insert(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO party "):
            with lock:
                running["now"] += 1
                running["most"] = max(running["most"], running["now"])
            time.sleep(0.05)  # in a write's thread: the statement takes a while
            with lock:
                running["now"] -= 1

    async def many() -> list[int]:
        statuses: list[int] = []

        async def post(number: int) -> None:
            response = await api.client.post("party", json={"name": f"Фирма {number:02d}"})
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            for number in range(16):
                group.start_soon(post, number)
        return statuses

    sa_event.listen(crm.engine, "before_cursor_execute", slow_insert)
    try:
        statuses = api.portal.call(many)
    finally:
        sa_event.remove(crm.engine, "before_cursor_execute", slow_insert)
    assert statuses == [201] * 16
    assert 1 < running["most"] <= 3  # 16 without the bound (the thread pool has 40)
    with crm.engine.connect() as connection:
        names = {row.name for row in connection.execute(sa.text("SELECT name FROM party"))}
    assert {f"Фирма {number:02d}" for number in range(16)} <= names
