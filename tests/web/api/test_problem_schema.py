"""What the API really answers matches its OpenAPI document: every problem (409 merged,
413 too large, 422, refused moves, duplicates...) validates against the declared
``Problem`` schema, which allows no undeclared member, and the members a body may carry
(``confirm_duplicates``) are declared."""

from __future__ import annotations

import jsonschema_rs

from crmkit.testing import add_user, factories


def test_real_problem_answers_validate_against_the_documented_problem(crm, client_for):
    admin = add_user(crm, "root", ["admin"])
    with crm.acting_as(admin) as work:
        kept = factories.organisation(work, name="Альфа").id
        gone = factories.organisation(work, name="Бета").id
        deal = factories.deal(work, party_id=kept).id
    with crm.system() as work:
        work.merges.merge(kept, gone)
    api = client_for(admin)
    spec = api.get("openapi.json").json()
    problem = spec["components"]["schemas"]["Problem"]
    assert problem["additionalProperties"] is False
    validator = jsonschema_rs.validator_for(problem)
    answers = {
        "merged": api.patch(f"party/{gone}", json={"description": "x"}),
        "too large": api.post(
            "party",
            content=b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}',
            headers={"Content-Type": "application/json"},
        ),
        "invalid": api.post("party", json={"kind": "planet"}),
        "move refused": api.post(f"deal/{deal}/move", json={"to": "nowhere"}),
        "duplicates": api.post("party", json={"name": "Альфа", "kind": "organisation"}),
        "not found": api.get("party/999999"),
        "malformed": api.post("party", content=b"{", headers={"Content-Type": "application/json"}),
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "merged": 409,
        "too large": 413,
        "invalid": 422,
        "move refused": 409,
        "duplicates": 409,
        "not found": 404,
        "malformed": 400,
    }
    for name, answer in answers.items():
        body = answer.json()
        errors = [error.message for error in validator.iter_errors(body)]
        assert errors == [], (name, body)
    assert answers["merged"].json()["merged_into"] == kept
    assert answers["too large"].json()["max_bytes"] > 0


def test_a_creates_body_may_carry_the_documented_confirm_duplicates(crm, client_for):
    admin = add_user(crm, "root", ["admin"])
    with crm.acting_as(admin) as work:
        factories.organisation(work, name="Альфа")
    api = client_for(admin)
    spec = api.get("openapi.json").json()
    schemas = spec["components"]["schemas"]
    party_input = schemas["PartyInput"]
    assert party_input["additionalProperties"] is False
    assert party_input["properties"]["confirm_duplicates"]["type"] == "boolean"
    assert "confirm_duplicates" not in schemas["PartyPatch"]["properties"]
    body = {"name": "Альфа", "kind": "organisation", "confirm_duplicates": True}
    document = {"$ref": "#/components/schemas/PartyInput", "components": spec["components"]}
    validator = jsonschema_rs.validator_for(document)
    assert list(validator.iter_errors(body)) == []
    assert api.post("party", json=body).status_code == 201
