"""Where API reads run: a slow round trip to a database server holds up only its request."""

from __future__ import annotations

import time

import anyio
import pytest

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
