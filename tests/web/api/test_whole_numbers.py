"""An id or another whole-number field refuses a fraction (``2.9`` was stored as ``2``: a deal
on the wrong client) and a number beyond 64 bits, naming the field, the same way on both
databases, in the core's schemas and in a plugin's ``StrictSchema``."""

from __future__ import annotations

import pytest

from crmkit.model import Deal, Task
from crmkit.testing import add_user, factories
from tests.plain_plugin import plugin as plain

WHEN = "2026-11-20T10:00:00+03:00"


@pytest.fixture
def setup(make_crm, client_for_crm):
    crm = make_crm(plugins=[plain])
    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(agent) as work:
        first = factories.organisation(work).id
        second = factories.organisation(work).id
    return crm, client_for_crm(crm, agent), first, second


def _count(crm, model):
    with crm.system() as work:
        return work.session.query(model).count()


def test_a_fractional_id_is_refused_naming_the_field(setup):
    crm, api, first, second = setup
    for url, body, model in (
        ("deal", {"title": "Поставка", "party_id": second + 0.9}, Deal),
        ("task", {"title": "Позвонить", "party_id": first + 0.5}, Task),
    ):
        response = api.post(url, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"] == {"party_id": ["not a whole number"]}
        assert _count(crm, model) == 0
    response = api.post("task", json={"title": "Позвонить", "priority": 1.5})
    assert response.json()["errors"] == {"priority": ["not a whole number"]}
    # a whole number written with a fraction's notation is that number
    made = api.post("deal", json={"title": "Поставка", "party_id": float(second)})
    assert made.status_code == 201 and made.json()["party_id"] == second


def test_a_plugin_schemas_integer_refuses_fractions_and_numbers_beyond_64_bits(setup):
    crm, api, first, _ = setup
    ok = {"party_id": first, "visited_at": WHEN}
    for party_id, problem in (
        (first + 0.9, "not a whole number"),
        (10**20, "too large (at most 2^63-1)"),
        (str(10**20), "too large (at most 2^63-1)"),
    ):
        response = api.post("plain_visit", json={**ok, "party_id": party_id})
        assert response.status_code == 422, response.text
        assert response.json()["errors"] == {"party_id": [problem]}
    assert api.post("deal", json={"title": "x", "party_id": 10**20}).json()["errors"] == {
        "party_id": ["too large (at most 2^63-1)"]
    }
    assert _count(crm, plain.PlainVisit) == 0
    assert api.post("plain_visit", json=ok).status_code == 201
