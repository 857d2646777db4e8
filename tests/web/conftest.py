"""Pages through the ASGI app (httpx), signed in as users of the test kit."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from crmkit import AddressKind, Capability, Channel, DeliveryReceipt, hookimpl
from crmkit.testing import DEMO_PASSWORD, add_user
from crmkit.web.app import create_app


class ChatChannel:
    """A messenger-like channel for contact-center tests: inbound through ingest, outbound
    through the outbox (every send succeeds)."""

    crmkit_plugin_name = "test_chat"

    @hookimpl
    def crmkit_register_channels(self):
        return [
            Channel(
                "chat",
                AddressKind.EMAIL,
                {Capability.SEND, Capability.RECEIVE},
                lambda crm: self,
                activity_kind="message",
            )
        ]

    def __init__(self):
        self.sent = []  # what the peer was given, in order

    def send(self, message):
        self.sent.append(message)
        return DeliveryReceipt(f"chat-{len(self.sent)}")


class CopiesChannel(ChatChannel):
    """A mail-like channel (``letters``): its messages may carry copies."""

    crmkit_plugin_name = "test_copies"

    @hookimpl
    def crmkit_register_channels(self):
        return [
            Channel(
                "letters",
                AddressKind.EMAIL,
                {Capability.SEND, Capability.RECEIVE, Capability.COPIES},
                lambda crm: self,
                activity_kind="mail",
            )
        ]


class Browser:
    """An httpx client on the app that signs in and sends CSRF tokens like a browser."""

    def __init__(self, app, crm):
        self.app = app
        self.crm = crm
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.0.0.1", 1234)),
            base_url="http://testserver",
            follow_redirects=False,
        )
        self.csrf = ""

    async def login(self, username, password=DEMO_PASSWORD):
        page = await self.client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        response = await self.client.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}
        )
        if response.status_code == 303:
            await self.refresh_csrf()
        return response

    async def refresh_csrf(self):
        page = await self.client.get("/profile")
        found = re.search(r'<meta name="csrf-token" content="([^"]*)"', page.text)
        self.csrf = found.group(1) if found else ""

    async def get(self, url, **kwargs):
        return await self.client.get(url, **kwargs)

    async def post(self, url, data=None, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf)
        return await self.client.post(url, data=data, **kwargs)

    async def post_json(self, url, payload):
        return await self.client.post(
            url,
            json=payload,
            headers={"X-CSRF-Token": self.csrf, "Accept": "application/json"},
        )

    async def close(self):
        await self.client.aclose()


@pytest.fixture
def web(crm):
    """``await web("agent")`` -> a signed-in Browser on the core app (user ``<role>1``)."""
    app = create_app(crm)
    browsers = []
    counter = iter(range(1, 1000))

    async def open_as(*roles, username=None, **values):
        name = username or f"{roles[0] if roles else 'user'}{next(counter)}"
        user = add_user(crm, name, roles or ("agent",), **values)
        browser = Browser(app, crm)
        browser.user = user
        browsers.append(browser)
        response = await browser.login(name)
        assert response.status_code == 303, response.text
        return browser

    open_as.app = app
    yield open_as


@pytest.fixture
def anonymous(crm):
    return Browser(create_app(crm), crm)


@contextlib.contextmanager
def one_slow_statement(engine: Any, fragment: str, seconds: float = 1.5) -> Iterator[None]:
    """The database server is slow (``seconds``) to answer the first statement containing
    ``fragment`` run inside the block; every other statement is answered as usual.

    The wait is the server's (``pg_sleep`` sent on the statement's own connection just
    before it), so the client waits for the network exactly as for a slow query."""
    first = threading.Lock()  # taken once: by the first matching statement

    def round_trip(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if fragment in statement and first.acquire(blocking=False):
            cursor.execute("SELECT pg_sleep(%s)", (seconds,))

    sa.event.listen(engine, "before_cursor_execute", round_trip)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", round_trip)


@contextlib.contextmanager
def statements(engine: Any) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs inside the block (to catch N+1 queries)."""
    seen: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
