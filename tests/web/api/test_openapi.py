"""The OpenAPI document: complete, valid, browsable, and true under fuzzing.

schemathesis generates requests from ``/api/v1/openapi.json`` for every operation and
checks that none of them makes the server fail (no 5xx), and that what the API answers
matches the documented statuses and media types.  Runs are bounded (a few examples per
operation) to keep the suite fast; raise ``CRMKIT_FUZZ_EXAMPLES`` for a deeper run.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from crmkit import CRM, Config
from crmkit.testing import add_user, factories
from crmkit.web.app import create_app
from tests.sample_plugin import plugin as sample_plugin
from tests.web.api.conftest import token_for

EXAMPLES = int(os.environ.get("CRMKIT_FUZZ_EXAMPLES", "8"))


def test_every_entity_gets_endpoints_plugins_included(make_crm, client_for_crm):
    crm = make_crm(plugins=[sample_plugin])
    api = client_for_crm(crm)
    spec = api.get("openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for entity in crm.entities:
        assert f"/{entity.name}" in spec["paths"], entity.name
    assert "post" not in spec["paths"]["/sample_visit"]  # no input schema: read-only
    assert {"get", "post"} <= set(spec["paths"]["/party"])
    assert {"get", "patch"} <= set(spec["paths"]["/party/{id}"])
    assert "/deal/{id}/move" in spec["paths"]
    party = spec["components"]["schemas"]["Party"]["properties"]
    assert "name" in party and "owner_id" in party
    assert "password_hash" not in spec["components"]["schemas"]["User"]["properties"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_docs_page_is_rendered_on_the_server(crm, client_for):
    page = client_for().get("docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    for anchor in ('id="stale-write"', 'id="move-refused"', 'id="list_party"', "If-Match"):
        assert anchor in html
    assert "<script" not in html and "cdn" not in html.lower()


class CurrentApp:
    """An ASGI app forwarding to the application of the running test.

    schemathesis loads the OpenAPI document when this module is imported; each test then
    points this at its own application (with its own fresh database).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _document_only_app() -> Any:
    config = Config.from_mapping(
        {"database.url": "sqlite:///:memory:", "secret_key": "only-for-the-document"},
        root=tempfile.gettempdir(),
        environ={},
    )
    return create_app(CRM(config, load_entry_points=False))


def _fuzzing_only() -> schemathesis.Config:
    # the coverage phase sends dozens of boundary cases per operation whatever
    # max_examples says; property-based generation alone keeps the run bounded
    config = schemathesis.Config()
    config.projects.default.phases.coverage.enabled = False
    return config


CURRENT = CurrentApp(_document_only_app())
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", CURRENT, config=_fuzzing_only())


@pytest.fixture
def fuzzed(crm):
    """The web app with an admin's token and some records for ids to land on."""
    admin = add_user(crm, "root", ["admin"])
    with crm.acting_as(admin) as work:
        for _ in range(3):
            deal = factories.deal(work, amount="100.00")
            work.timeline.add_note(party_id=deal.party_id, body="@root заметка")
            factories.task(work, party_id=deal.party_id)
    previous = CURRENT.app
    CURRENT.app = create_app(crm)
    yield token_for(crm, admin)
    CURRENT.app = previous


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_breaks_the_server(case, fuzzed):
    secret = fuzzed
    headers = {"Authorization": f"Bearer {secret}"}
    if case.headers:
        case.headers.pop("Authorization", None)
    response = case.call(headers=headers)
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance],
        headers=headers,
    )
