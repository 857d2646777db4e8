"""Pages on a database server: one page waiting for a slow round trip holds up no other."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from crmkit.testing import factories
from tests.web.conftest import one_slow_statement

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_slow_card_does_not_hold_up_another_users_page(web, crm):
    if crm.engine.dialect.name == "sqlite":
        pytest.skip("on SQLite reading screens run on the event loop: no network wait")
    owner = await web("agent")
    other = await web("agent")
    with crm.acting_as(owner.user) as work:
        party = factories.organisation(work)
    assert (await owner.get(f"/clients/{party.id}")).status_code == 200
    assert (await other.get("/tasks")).status_code == 200
    finished: list[str] = []

    async def get(browser: Any, url: str) -> None:
        response = await browser.get(url)
        assert response.status_code == 200, response.text
        finished.append(url)

    with one_slow_statement(crm.engine, "FROM party"):  # the card's first read
        async with anyio.create_task_group() as group:
            group.start_soon(get, owner, f"/clients/{party.id}")
            await anyio.sleep(0.3)  # the card now waits for the database
            started = time.monotonic()
            group.start_soon(get, other, "/tasks")
            while "/tasks" not in finished:
                await anyio.sleep(0.01)
            waited = time.monotonic() - started
    assert finished == ["/tasks", f"/clients/{party.id}"]
    assert waited < 1.0


async def test_a_form_waiting_for_a_lock_does_not_hold_up_other_pages(web, crm):
    """A note saved while another writer holds the lock (an import's batch, say) waits for
    it without freezing anyone else's pages, and is saved once the lock is released."""
    author = await web("agent")
    other = await web("agent")
    with crm.acting_as(author.user) as work:
        party = factories.organisation(work)
    assert (await other.get("/tasks")).status_code == 200
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with crm.engine.connect() as connection:
            if crm.engine.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's one writer
            else:
                connection.exec_driver_sql("BEGIN")
                connection.exec_driver_sql("LOCK TABLE activity IN EXCLUSIVE MODE")
            held.set()
            release.wait(10)
            connection.exec_driver_sql("ROLLBACK")

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(10)
    finished: list[str] = []

    async def post_note() -> None:
        response = await author.post(f"/clients/{party.id}/notes", {"body": "после блокировки"})
        assert response.status_code == 303, response.text
        finished.append("note")

    async def open_tasks() -> None:
        response = await other.get("/tasks")
        assert response.status_code == 200, response.text
        finished.append("tasks")

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(post_note)
            await anyio.sleep(0.3)  # the note now waits for the lock
            started = time.monotonic()
            group.start_soon(open_tasks)
            while "tasks" not in finished:
                await anyio.sleep(0.01)
            waited = time.monotonic() - started
            assert finished == ["tasks"]  # the note still waits
            release.set()
    finally:
        release.set()
        holder.join(10)
    assert finished == ["tasks", "note"]
    assert waited < 1.0
    card = await author.get(f"/clients/{party.id}")
    assert "после блокировки" in card.text


async def test_a_long_export_does_not_hold_up_another_users_page(web, crm, monkeypatch):
    """Building a spreadsheet of the client base takes seconds at a million rows; the export
    screen is ``long_running``, so it runs in a thread and other pages go on meanwhile (on
    the loop, as reads run, it would hold up every request of the worker)."""
    from crmkit.services import imports

    exporter = await web("admin")
    other = await web("agent")
    with crm.acting_as(exporter.user) as work:
        factories.organisation(work, name="Экспорт ООО")
    assert (await other.get("/tasks")).status_code == 200
    real = imports.export_parties

    def slow_export(*args: Any, **kwargs: Any) -> bytes:
        time.sleep(3.0)  # stands for seconds of building the workbook
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "export_parties", slow_export)
    finished: list[str] = []

    async def export() -> None:
        response = await exporter.get("/lists/party/export.csv")
        assert response.status_code == 200, response.text
        assert "Экспорт ООО" in response.content.decode("utf-8-sig")
        finished.append("export")

    async def open_tasks() -> None:
        response = await other.get("/tasks")
        assert response.status_code == 200, response.text
        finished.append("tasks")

    async with anyio.create_task_group() as group:
        group.start_soon(export)
        await anyio.sleep(0.2)  # the export is now being built
        started = time.monotonic()
        group.start_soon(open_tasks)
        while "tasks" not in finished:
            await anyio.sleep(0.01)
        waited = time.monotonic() - started
    assert finished == ["tasks", "export"]
    assert waited < 2.5  # well before the export's 3 s, with room for a loaded machine
