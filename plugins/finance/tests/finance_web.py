"""Signed-in HTTP clients on the finance plugin's web UI (Starlette's TestClient)."""

from __future__ import annotations

import re
import warnings
from typing import Any

with warnings.catch_warnings():
    # Starlette would rather have httpx2; the TestClient works the same on httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from crmkit.testing import DEMO_PASSWORD
from crmkit.web.app import create_app


class Client:
    """A TestClient signed in as one user, sending the CSRF token like the pages do."""

    def __init__(self, app: Any, username: str) -> None:
        self.http = TestClient(app, follow_redirects=False)
        form = self.http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = self.http.post(
            "/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": token}
        )
        assert signed_in.status_code == 303, signed_in.text
        page = self.http.get("/profile")
        self.csrf = re.search(r'<meta name="csrf-token" content="([^"]*)"', page.text).group(1)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.http.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None) -> Any:
        """A form post; returns the response (a 303 to where the form goes back)."""
        return self.http.post(url, data={**(data or {}), "csrf_token": self.csrf})

    def submit(self, url: str, data: dict[str, Any] | None = None) -> Any:
        """A form post followed to the page it leads to (where its message shows)."""
        response = self.post(url, data)
        assert response.status_code == 303, (response.status_code, response.text[:500])
        return self.get(response.headers["location"])

    def refused(self, url: str, data: dict[str, Any] | None = None) -> Any:
        """A form post refused with its page shown again (a 422: the form as it was sent,
        the reason beside it), as the warehouse's forms are."""
        response = self.post(url, data)
        assert response.status_code == 422, (response.status_code, response.text[:500])
        return response

    def menu(self) -> list[str]:
        """The paths of the user's menu."""
        page = self.get("/profile")
        nav = page.text.split("<nav>", 1)[1].split("</nav>", 1)[0]
        return re.findall(r'<a href="([^"]+)"', nav)


def clients(crm: Any) -> Any:
    """``signed_in("cashier")`` -> a :class:`Client` on a fresh app of ``crm``."""
    app = create_app(crm)
    return lambda username: Client(app, username)
