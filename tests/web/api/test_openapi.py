"""The OpenAPI document: complete, valid, browsable, and true under fuzzing.

schemathesis generates requests from ``/api/v1/openapi.json`` for every operation and
checks that none of them makes the server fail (no 5xx), and that what the API answers
matches the documented statuses and media types.  Runs are bounded (a few examples per
operation) to keep the suite fast; raise ``CRMKIT_FUZZ_EXAMPLES`` for a deeper run.
"""

from __future__ import annotations

import pytest

from crmkit.testing import add_user, factories
from crmkit.testing.fuzz import api_schema, check, fuzz_settings
from crmkit.web.app import create_app
from tests.sample_plugin import plugin as sample_plugin
from tests.web.api.conftest import token_for


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


def test_the_document_says_what_the_endpoints_do(crm, client_for):
    """One name per schema (no apispec `...1` twins), PATCH bodies without the fields an
    edit refuses, and the timeline's pages linked like every list's."""
    import re

    admin = add_user(crm, "root", ["admin"])
    spec = client_for().get("openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert [name for name in schemas if re.search(r"\d$", name)] == []
    for name in ("PartyPatch", "DealPatch"):
        assert not {"pipeline", "stage"} & set(schemas[name]["properties"]), name
    assert "stage" in schemas["DealInput"]["properties"]  # a create may still place it
    with crm.acting_as(admin) as work:
        party = factories.organisation(work, name="Timeline")
        notes = [work.timeline.add_note(party_id=party.id, body=f"n{i}").id for i in range(3)]
    api = client_for(admin)
    first = api.get(f"party/{party.id}/timeline", params={"limit": 2, "kind": "note"})
    link = first.headers["link"]
    assert link.endswith('; rel="next"') and "kind=note" in link
    url = link[link.index("<") + 1 : link.index(">")].removeprefix("/api/v1/")
    second = api.get(url)
    assert [e["id"] for e in first.json()["items"] + second.json()["items"]] == notes[::-1]
    assert "link" not in second.headers


def test_docs_page_is_rendered_on_the_server(crm, client_for):
    page = client_for().get("docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    for anchor in ('id="stale-write"', 'id="move-refused"', 'id="list_party"', "If-Match"):
        assert anchor in html
    assert "<script" not in html and "cdn" not in html.lower()


schema, CURRENT = api_schema()


def fuzzed_app(crm):
    """The web app and an admin with some records for ids to land on."""
    admin = add_user(crm, "root", ["admin"])
    with crm.acting_as(admin) as work:
        for _ in range(3):
            deal = factories.deal(work, amount="100.00")
            work.timeline.add_note(party_id=deal.party_id, body="@root заметка")
            factories.task(work, party_id=deal.party_id)
    return create_app(crm), admin


@pytest.fixture
def fuzzed(module_crm):
    """The app built once per module and backend (the check holds whatever earlier requests
    left: no 5xx, documented answers) and a token of its own (a request may revoke one)."""
    crm, (app, admin) = module_crm(fuzzed_app)
    with CURRENT.serving(app):
        yield token_for(crm, admin)


@schema.parametrize()
@fuzz_settings()
def test_no_generated_request_breaks_the_server(case, fuzzed):
    check(case, fuzzed)
