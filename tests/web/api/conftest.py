"""Fixtures of the API tests: the whole web application, clients holding a user's token, and
the hidden client the access tests share (Anna's organisation that Boris may not read)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio.from_thread
import httpx
import pytest

from crmkit.testing import factories
from crmkit.web.app import create_app


class ApiClient:
    """A synchronous httpx client of an ASGI app (requests run on an anyio portal's loop)."""

    def __init__(self, app: Any, portal: Any, headers: dict[str, str]) -> None:
        self.portal = portal
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver/api/v1/",
            headers=headers,
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(lambda: self.client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        self.portal.call(self.client.aclose)


def token_for(crm: Any, user: Any, name: str = "test") -> str:
    """A fresh personal API token secret of ``user``."""
    with crm.acting_as(user) as work:
        return work.api_tokens.create(name).secret


@pytest.fixture
def client_for_crm() -> Iterator[Callable[..., ApiClient]]:
    """``client_for_crm(crm, user)``: an HTTP client of ``crm``'s web app as ``user``."""
    apps: dict[int, Any] = {}
    clients: list[ApiClient] = []
    with anyio.from_thread.start_blocking_portal() as portal:

        def make(crm: Any, user: Any = None, secret: str | None = None) -> ApiClient:
            app = apps.get(id(crm))
            if app is None:
                app = apps[id(crm)] = create_app(crm)
            headers = {}
            if user is not None or secret is not None:
                headers["Authorization"] = f"Bearer {secret or token_for(crm, user)}"
            client = ApiClient(app, portal, headers)
            clients.append(client)
            return client

        yield make
        for client in clients:
            client.close()


@pytest.fixture
def client_for(crm: Any, client_for_crm: Callable[..., ApiClient]) -> Callable[..., ApiClient]:
    """``client_for(user)``: a client of the core CRM's web app with a token of ``user``."""

    def make(user: Any = None, secret: str | None = None) -> ApiClient:
        return client_for_crm(crm, user, secret)

    return make


def problem(response: Any, status: int) -> dict[str, Any]:
    """The problem document of an error response, after checking status and media type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    return body


def hidden_organisation(crm: Any, anna: Any) -> int:
    """Anna's organisation «Тайна»: another agent may not read it."""
    with crm.acting_as(anna) as work:
        return factories.organisation(work, name="ООО «Тайна»").id


def his_organisation(crm: Any, boris: Any) -> int:
    """Boris's own organisation «ИП Борисов»."""
    with crm.acting_as(boris) as work:
        return factories.organisation(work, name="ИП Борисов").id


def person_at(crm: Any, organisation: int, boris: Any) -> int:
    """«Пётр Тайнов», a person at ``organisation`` given to Boris (by an admin)."""
    with crm.system() as work:
        return work.parties.create(
            {
                "kind": "person",
                "name": "Пётр Тайнов",
                "organisation_id": organisation,
                "owner_id": boris.id,
            }
        ).id


def colleague_at(crm: Any, organisation: int, boris: Any) -> int:
    """«Борис Свой», Boris's own person at his ``organisation``."""
    with crm.acting_as(boris) as work:
        return work.parties.create(
            {"kind": "person", "name": "Борис Свой", "organisation_id": organisation}
        ).id


def person_at_hidden_organisation(crm: Any, anna: Any, boris: Any) -> tuple[int, int, int, int]:
    """``(hidden, his, person, colleague)``: Anna's organisation, a person at it that Boris
    owns (an admin gave it to him), and Boris's own organisation with a person of his at it."""
    hidden = hidden_organisation(crm, anna)
    person = person_at(crm, hidden, boris)
    his = his_organisation(crm, boris)
    return hidden, his, person, colleague_at(crm, his, boris)
