"""Signed-in clients of the denaq web UI and API (Starlette's TestClient, real app)."""

from __future__ import annotations

import re
import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette would rather have httpx2
    from starlette.testclient import TestClient

from crmkit.testing import DEMO_PASSWORD


class Client:
    """A TestClient signed in as one user, sending the CSRF token like the pages do."""

    def __init__(self, app: Any, username: str, password: str = DEMO_PASSWORD) -> None:
        self.http = TestClient(app, follow_redirects=False)
        form = self.http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = self.http.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}
        )
        assert signed_in.status_code == 303, signed_in.text
        page = self.http.get("/profile")
        self.csrf = re.search(r'<meta name="csrf-token" content="([^"]*)"', page.text).group(1)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.http.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None) -> Any:
        return self.http.post(url, data={**(data or {}), "csrf_token": self.csrf})

    def menu(self) -> list[str]:
        """The paths of the user's menu."""
        nav = self.get("/profile").text.split("<nav>", 1)[1].split("</nav>", 1)[0]
        return re.findall(r'<a href="([^"]+)"', nav)


def api(app: Any, crm: Any, user: Any) -> TestClient:
    """An API client holding a fresh personal token of ``user``."""
    with crm.acting_as(user) as work:
        secret = work.api_tokens.create("test").secret
    return TestClient(app, headers={"Authorization": f"Bearer {secret}"})
