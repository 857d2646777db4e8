"""The ``/live`` stream stops telling a user anything once their session has ended."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from crmkit.web.screens import live

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@contextlib.asynccontextmanager
async def opened_stream(browser):
    """The browser's ``/live`` stream, read event by event (raw ASGI: httpx's test
    transport would wait for the end of an endless response)."""
    cookies = "; ".join(f"{name}={value}" for name, value in browser.client.cookies.items())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/live",
        "raw_path": b"/live",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookies.encode())],
        "client": ("10.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    events: asyncio.Queue[str | None] = asyncio.Queue()
    requested, gone = asyncio.Event(), asyncio.Event()

    async def receive():
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.body":
            body = message.get("body", b"").decode()
            for event in body.split("\n\n"):
                if not event or event.startswith("retry:"):
                    continue
                await events.put(event)
            if not message.get("more_body", False):
                await events.put(None)  # the stream ended

    task = asyncio.create_task(browser.app(scope, receive, send))
    try:
        yield events
    finally:
        gone.set()
        await asyncio.wait_for(task, 10)


async def _next(events, seconds=5.0):
    return await asyncio.wait_for(events.get(), seconds)


async def test_a_busy_stream_still_finds_the_session_ended_on_the_clock(web, crm, monkeypatch):
    monkeypatch.setattr(live, "PING_SECONDS", 0.5)
    agent = await web("agent")
    async with opened_stream(agent) as events:
        assert "event: notification" in await _next(events)  # the bell's count
        with crm.system() as work:
            work.signin.end_everywhere(agent.user.id)
        seen = []
        for _ in range(40):  # a message every 0.1 s: the stream is never quiet for 0.5 s
            crm.live.publish(agent.user.id, {"type": "call", "number": "+79990000000"})
            await asyncio.sleep(0.1)
            while not events.empty():
                seen.append(await events.get())
            if None in seen:
                break
        assert any(e.startswith("event: signed-out") for e in seen), seen
        assert seen[-1] is None  # and the stream ended
        assert sum(e.startswith("event: call") for e in seen if e) <= 6  # 0.5 s of them


async def test_a_notification_is_not_sent_once_the_session_has_ended(web, crm):
    agent = await web("agent")
    async with opened_stream(agent) as events:
        assert "event: notification" in await _next(events)
        with crm.system() as work:
            work.signin.end_everywhere(agent.user.id)
        with crm.system() as work:
            work.notifications.notify(agent.user.id, "mention", "Секретный клиент")
        told = await _next(events)
        assert told.startswith("event: signed-out"), told
        assert await _next(events) is None


async def test_a_live_notification_leads_to_no_client_its_reader_may_not_read(web, crm):
    """The bell's live message about a note on a colleague's client (a reminder on it)
    leads to the note alone, as the notifications page does: not to the client's card."""
    from crmkit.testing import factories

    owner = await web("agent")
    agent = await web("agent")
    with crm.acting_as(owner.user) as work:
        party = factories.organisation(work, name="ООО «Тайна»")
        note = work.timeline.add_note(party_id=party.id, body="договор у юриста")
    async with opened_stream(agent) as events:
        assert "event: notification" in await _next(events)
        with crm.system() as work:
            work.notifications.notify(
                agent.user.id,
                "reminder",
                "Спросить",
                party_id=party.id,
                record=("activity", note.id),
            )
        told = await _next(events)
    assert "Спросить" in told and f"/records/activity/{note.id}" in told, told
    assert f"/clients/{party.id}" not in told
