"""Where API reads run: a slow round trip to a database server holds up only its request."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from crmkit.testing import add_user


def test_a_slow_database_round_trip_does_not_hold_up_other_requests(crm, client_for):
    if crm.engine.dialect.name == "sqlite":
        pytest.skip("on SQLite reads run on the event loop: no network wait to overlap")
    agent = add_user(crm, "ann", ["agent"])
    api = client_for(agent)
    assert api.get("party").status_code == 200  # the token and the actor are known
    slow = threading.Event()

    @sa.event.listens_for(crm.engine, "before_cursor_execute")
    def round_trip(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if slow.is_set() and "FROM party" in statement:
            slow.clear()
            time.sleep(1.5)  # the server is slow to answer this one list

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

    try:
        slow.set()
        assert api.portal.call(both) == ["me", "party"]
    finally:
        sa.event.remove(crm.engine, "before_cursor_execute", round_trip)
