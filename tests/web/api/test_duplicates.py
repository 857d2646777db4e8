"""409 with candidates when screening finds likely duplicates; confirming creates anyway.

Duplicate screening proper belongs to its own plugin; this tiny plugin raises
``DuplicatesFound`` the way it will (``create(..., confirm_duplicates=False)``), over the
``party`` model, so the API side of the contract is tested on its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from crmkit import EntityType, hookimpl
from crmkit.errors import DuplicatesFound
from crmkit.identity import name_key
from crmkit.model import Party
from crmkit.schemas import PartySchema
from crmkit.services.parties import PartyService
from crmkit.testing import add_user
from tests.web.api.conftest import problem


class ScreenedPartyService(PartyService):
    """Refuses a party whose folded name exists already, unless confirmed."""

    def create(self, data: Any = None, *, confirm_duplicates: bool = False, **values: Any) -> Any:
        wanted = {**(data or {}), **values}
        if not confirm_duplicates:
            key = name_key(wanted.get("name") or "", wanted.get("kind", "organisation"))
            same = self.session.scalars(
                self.query().where(Party.name_key == key).order_by(Party.id)
            ).all()
            if same:
                raise DuplicatesFound(
                    "party", [{"id": p.id, "name": p.name, "score": 100} for p in same]
                )
        return super().create(wanted)


class ScreeningPlugin:
    @hookimpl
    def crmkit_register_entities(self):
        return [
            EntityType(
                "screened_party",
                Party,
                label="Screened client",
                schema=PartySchema,
                service=ScreenedPartyService,
                owner_attrs=("owner_id",),
                party_attr="id",
                title_attr="name",
            )
        ]

    @hookimpl
    def crmkit_register_permissions(self):
        from crmkit import Permission, Scope

        return [Permission("agent", "screened_party", "*", Scope.OWN)]


@pytest.mark.parametrize("confirm", ["query", "body"])
def test_duplicates_answer_409_until_confirmed(make_crm, client_for_crm, confirm):
    crm = make_crm(plugins=[ScreeningPlugin()])
    api = client_for_crm(crm, add_user(crm, "ann", ["agent"]))
    first = api.post("screened_party", json={"name": "ООО «Ромашка»"})
    assert first.status_code == 201, first.text

    again = problem(api.post("screened_party", json={"name": "Ромашка ООО"}), 409)
    assert again["type"].endswith("#duplicates-found")
    assert again["candidates"] == [
        {"id": first.json()["id"], "name": "ООО «Ромашка»", "score": 100}
    ]
    with crm.system() as work:
        assert work.session.scalar(select(Party.id).where(Party.name == "Ромашка ООО")) is None

    if confirm == "query":
        confirmed = api.post(
            "screened_party", params={"confirm_duplicates": "true"}, json={"name": "Ромашка ООО"}
        )
    else:
        confirmed = api.post(
            "screened_party", json={"name": "Ромашка ООО", "confirm_duplicates": True}
        )
    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json()["name"] == "Ромашка ООО"


def test_services_without_screening_ignore_the_flag(crm, client_for):
    api = client_for(add_user(crm, "ann", ["agent"]))
    created = api.post("party", params={"confirm_duplicates": "true"}, json={"name": "Ромашка"})
    assert created.status_code == 201, created.text
    bad = api.post("party", json={"name": "Ромашка", "confirm_duplicates": "yes"})
    assert "confirm_duplicates" in problem(bad, 422)["errors"]
