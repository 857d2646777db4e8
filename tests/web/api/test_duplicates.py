"""409 with candidates when screening finds likely duplicates; confirming creates anyway."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmkit.model import Party
from crmkit.testing import add_user
from tests.web.api.conftest import problem


@pytest.mark.parametrize("confirm", ["query", "body"])
def test_duplicates_answer_409_until_confirmed(crm, client_for, confirm):
    api = client_for(add_user(crm, "ann", ["agent"]))
    first = api.post(
        "party",
        json={
            "name": "ООО «Ромашка»",
            "contact_points": [{"kind": "phone", "value": "8 (916) 123-45-67"}],
        },
    )
    assert first.status_code == 201, first.text

    again = problem(api.post("party", json={"name": "Ромашка ООО"}), 409)
    assert again["type"].endswith("#duplicates-found")
    [candidate] = again["candidates"]
    assert candidate["id"] == first.json()["id"]
    assert candidate["name"] == "ООО «Ромашка»"
    assert candidate["score"] == 100 and candidate["reasons"] == ["name"]
    assert candidate["owner_name"] == "ann" and candidate["visible"] is True

    by_phone = problem(
        api.post(
            "party",
            json={
                "name": "Совсем другое имя",
                "contact_points": [{"kind": "phone", "value": "+7 916 1234567"}],
            },
        ),
        409,
    )
    assert by_phone["candidates"][0]["reasons"] == ["phone"]
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == 1

    if confirm == "query":
        confirmed = api.post(
            "party", params={"confirm_duplicates": "true"}, json={"name": "Ромашка ООО"}
        )
    else:
        confirmed = api.post("party", json={"name": "Ромашка ООО", "confirm_duplicates": True})
    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json()["name"] == "Ромашка ООО"


def test_candidates_hide_what_the_caller_may_not_see(crm, client_for):
    ann = client_for(add_user(crm, "ann", ["agent"]))
    bob = client_for(add_user(crm, "bob", ["agent"]))
    assert ann.post("party", json={"name": "ЗАО «Альфа-Строй»"}).status_code == 201
    answer = problem(bob.post("party", json={"name": "Alfa Stroy LLC"}), 409)
    [candidate] = answer["candidates"]
    assert candidate["name"] == "ЗАО «Альфа-Строй»"
    assert candidate["visible"] is False
    assert candidate["owner_id"] is None and candidate["owner_name"] is None
    assert bob.get(f"party/{candidate['id']}").status_code == 404


def test_a_bad_confirmation_flag_is_named(crm, client_for):
    api = client_for(add_user(crm, "ann", ["agent"]))
    created = api.post("party", params={"confirm_duplicates": "true"}, json={"name": "Ромашка"})
    assert created.status_code == 201, created.text
    bad = api.post("party", json={"name": "Ромашка", "confirm_duplicates": "yes"})
    assert "confirm_duplicates" in problem(bad, 422)["errors"]


def test_a_merged_away_id_resolves_to_the_survivor(crm, client_for):
    api = client_for(add_user(crm, "boss", ["admin"]))
    keep = api.post("party", json={"name": "ООО «Гранит»"}).json()["id"]
    dupe = api.post("party", json={"name": "Гранит", "confirm_duplicates": True}).json()["id"]
    with crm.system() as work:
        work.timeline.add_note(party_id=dupe, body="звонили в понедельник")
        work.merges.merge(keep, dupe)
    answer = api.get(f"party/{dupe}")
    assert answer.status_code == 200 and answer.json()["id"] == keep
    # its timeline too: the survivor's, the merged party's history in it
    timeline = api.get(f"party/{dupe}/timeline")
    assert timeline.status_code == 200, timeline.text
    assert timeline.json()["items"] == api.get(f"party/{keep}/timeline").json()["items"]
    assert "звонили в понедельник" in [e["body"] for e in timeline.json()["items"]]


def test_a_branch_in_another_city_is_created_a_qualified_name_is_not(crm, client_for):
    api = client_for(add_user(crm, "ann", ["agent"]))
    for name in ("Мебельцентр-Тула", "Мебельсервис"):
        assert api.post("party", json={"name": name}).status_code == 201
    branch = api.post("party", json={"name": "Мебельцентр-Уфа"})
    assert branch.status_code == 201, branch.text
    same = problem(api.post("party", json={"name": "ИП Мебельсервис (Уфа)"}), 409)
    assert [c["name"] for c in same["candidates"]] == ["Мебельсервис"]
