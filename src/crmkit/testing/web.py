"""Driving the web UI from tests without a browser: an httpx client on the ASGI app that
signs in and sends CSRF tokens like a browser does.

::

    from crmkit.testing.web import WebClient

    async def test_desk(crm):
        client = WebClient.for_crm(crm)
        assert (await client.login("manager")).status_code == 303
        page = await client.get("/service?q=a123bc77")
        await client.post("/service/intake", {"client_name": "Иван", ...})
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from crmkit.testing import DEMO_PASSWORD

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
