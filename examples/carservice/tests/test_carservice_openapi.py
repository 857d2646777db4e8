"""The finance, booking and car service endpoints under fuzzing: no 5xx, every answer as
the OpenAPI document describes it (``CRMKIT_FUZZ_EXAMPLES`` for a deeper run)."""

from __future__ import annotations

import httpx
import pytest
from service_fixtures import PLUGINS, build_station

from crmkit.testing import add_user
from crmkit.testing.fuzz import api_schema, check, document_app, fuzz_settings
from crmkit.web.app import create_app

schema, CURRENT = api_schema(PLUGINS, path_regex="^/(finance_|booking_|carservice_)")


def fuzzed_station(crm):
    """A small car service (records for ids to land on), its web app and an admin."""
    build_station(crm)
    return create_app(crm), add_user(crm, "fuzz-root", ["admin"])


@pytest.fixture
def fuzzed(module_crm):
    """The station built once per module and backend (the check holds whatever earlier
    requests left: no 5xx, documented answers) and a token of the admin's own."""
    crm, (app, admin) = module_crm(fuzzed_station, plugins=PLUGINS)
    with crm.acting_as(admin) as work:
        secret = work.api_tokens.create("fuzzing").secret
    with CURRENT.serving(app):
        yield secret


@schema.parametrize()
@fuzz_settings()
def test_no_generated_request_breaks_the_station_api(case, fuzzed):
    check(case, fuzzed)


async def test_number_bounds_in_the_document_are_numbers():
    # apispec wrote a string Decimal field's range as strings, which stopped validators
    transport = httpx.ASGITransport(app=document_app(PLUGINS))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    order = document["components"]["schemas"]
    discount = next(
        s["properties"]["discount_percent"]
        for s in order.values()
        if "discount_percent" in s.get("properties", {})
        and "maximum" in s["properties"]["discount_percent"]
    )
    assert (discount["minimum"], discount["maximum"]) == (0, 100)


@pytest.fixture
def anyio_backend():
    return "asyncio"


pytestmark = pytest.mark.anyio
