"""Driving the web UI from tests without a browser: an httpx client on the ASGI app that
signs in and sends CSRF tokens like a browser does.

::

    from crmkit.testing.web import WebClient

    async def test_desk(crm):
        client = WebClient.for_crm(crm)
        assert (await client.login("manager")).status_code == 303
        page = await client.get("/service?q=a123bc77")
        await client.post("/service/intake", {"client_name": "Иван", ...})

and with one: :func:`chromium` launches Debian's Chromium through Playwright (which
downloads no browser of its own) and :func:`sign_in` opens a signed-in page on a
:func:`served` application.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from crmkit.testing import DEMO_PASSWORD, free_port, require, wait_until

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


class WebClient:
    """A signed-in (after :meth:`login`) client of one application's web UI."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.0.0.1", 1234)),
            base_url="http://testserver",
            follow_redirects=False,
        )
        self.csrf = ""

    @classmethod
    def for_crm(cls, crm: Any) -> WebClient:
        """A client of a new web application over ``crm``."""
        from crmkit.web.app import create_app

        return cls(create_app(crm))

    async def login(self, username: str, password: str = DEMO_PASSWORD) -> httpx.Response:
        """Sign in through the form; a 303 answer means signed in."""
        page = await self.client.get("/login")
        found = _CSRF_FIELD.search(page.text)
        token = found.group(1) if found else ""
        response = await self.client.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}
        )
        if response.status_code == 303:
            profile = await self.client.get("/profile")
            meta = _CSRF_META.search(profile.text)
            self.csrf = meta.group(1) if meta else ""
        return response

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET a page."""
        return await self.client.get(url, **kwargs)

    async def post(self, url: str, data: Any = None, **kwargs: Any) -> httpx.Response:
        """POST a form (a dict, or a list of pairs for repeated fields) with the CSRF token."""
        pairs = list(data.items()) if isinstance(data, dict) else list(data or [])
        pairs.append(("csrf_token", self.csrf))
        return await self.client.post(
            url,
            content=httpx.QueryParams(pairs).__str__().encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            **kwargs,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


@contextlib.contextmanager
def served(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Serve ``app`` over real HTTP for a browser test; yields its base URL.

    uvicorn on a free port of 127.0.0.1, in a thread, on the event loop ``crmkit serve``
    runs (:mod:`crmkit.web.eventloop`); stopped when the block ends::

        with served(create_app(crm)) as base:
            page.goto(f"{base}/login")
    """
    import uvicorn

    from crmkit.web.server import SERVING_LOOP

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop=SERVING_LOOP,
        log_level="warning",
        lifespan=lifespan,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if not wait_until(lambda: server.started or not thread.is_alive(), timeout=20):
        raise RuntimeError("the test server did not start within 20 s")
    if not server.started:
        raise RuntimeError("the test server stopped while starting (see its log)")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def multipart(
    fields: dict[str, str], files: list[tuple[str, str, bytes]]
) -> tuple[bytes, dict[str, str]]:
    """A ``multipart/form-data`` body and its headers, file names sent as they are.

    httpx percent-encodes what a file name may not carry (``\\x00`` becomes ``%00``); a
    browser or a script may send it raw, so a test of what the server does with such a
    name builds the body itself: ``content, headers = multipart({"a": "1"}, [("file",
    "name.pdf", b"...")])`` then ``client.post(url, content=content, headers=headers)``.
    """
    boundary = "crmkit-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, filename, content in files:
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def id_paths(app: Any, value: str = "9" * 25) -> list[tuple[str, str]]:
    """``(method, path)`` for each method of each route of ``app`` (the web UI's, not the
    API's mount) whose path takes a record's id, ``value`` standing for every ``{name:id}``
    parameter (``party`` for ``{entity}``, ``x`` for other parameters).

    A test requests each to check that a bad id is a 404 on every page a plugin adds::

        for method, path in id_paths(app):
            assert (await client.client.request(method, path)).status_code == 404, path
    """
    from starlette.routing import Route

    from crmkit.web.routing import IdConvertor

    found: list[tuple[str, str]] = []
    for route in app.routes:
        if not isinstance(route, Route):
            continue
        kinds = route.param_convertors
        if not any(isinstance(kind, IdConvertor) for kind in kinds.values()):
            continue

        def stand_in(match: re.Match[str], kinds: dict[str, Any] = kinds) -> str:
            if isinstance(kinds[match.group(1)], IdConvertor):
                return value
            return "party" if match.group(1) == "entity" else "x"

        path = re.sub(r"\{(\w+)(?::\w+)?\}", stand_in, route.path)
        found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


def int_paths(app: Any) -> list[str]:
    """Paths of the routes of ``app`` that take Starlette's ``{name:int}`` (which lets a
    number too large for an id column through): every id route should use ``{name:id}``."""
    from starlette.convertors import IntegerConvertor
    from starlette.routing import Route

    return [
        route.path
        for route in app.routes
        if isinstance(route, Route)
        and any(isinstance(kind, IntegerConvertor) for kind in route.param_convertors.values())
    ]


#: How the tests start Chromium: headless, and without the background connections that this
#: closed network refuses (updates, sync, component downloads).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    """Debian's Chromium (``apt-get install chromium``): on the ``PATH`` or in /usr/bin."""
    return shutil.which("chromium") or "/usr/bin/chromium"


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright ``Browser`` on Debian's Chromium, closed on leaving.

    Without Chromium or Playwright the test is skipped with the reason outside CI and fails
    under CI (:func:`crmkit.testing.require`).
    """
    path = chromium_path()
    require(os.path.exists(path), "Debian chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a dependency of the test extra
        require(False, "Playwright (the test extra's playwright package)")
        raise
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_FLAGS))
        try:
            yield browser
        finally:
            browser.close()


def sign_in(target: Any, base: str, username: str, *, password: str = DEMO_PASSWORD) -> Any:
    """A page signed in as ``username`` on the application served at ``base``.

    ``target`` is a Playwright ``BrowserContext`` (a new page is opened in it) or a ``Page``.
    """
    page = target.new_page() if hasattr(target, "new_page") else target
    page.goto(f"{base}/login")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    page.wait_for_load_state()
    return page
