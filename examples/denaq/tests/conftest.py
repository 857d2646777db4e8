"""Fixtures of denaq's tests: the CRM with the deployment plugin and its people."""

from __future__ import annotations

import attrs
import pytest
from crmkit_denaq import plugin as denaq_plugin

from crmkit.testing import add_user


@attrs.frozen
class Staff:
    """The people of a small dealer-acquisition team."""

    admin: object
    finder: object
    anna: object
    igor: object


@pytest.fixture
def denaq(make_crm):
    """A fresh CRM with the denaq deployment plugin."""
    return make_crm(plugins=[denaq_plugin])


@pytest.fixture
def staff(denaq) -> Staff:
    return Staff(
        admin=add_user(denaq, "boss", ["admin"], display_name="Босс"),
        finder=add_user(denaq, "finder", ["lead_creator"], display_name="Ксения"),
        anna=add_user(denaq, "anna", ["agent"], display_name="Анна"),
        igor=add_user(denaq, "igor", ["agent"], display_name="Игорь"),
    )


def new_lead(crm, who, name="ООО «Автомир»", **values):
    """A lead entered by ``who`` (similar names allowed: screening is tested elsewhere)."""
    with crm.acting_as(who) as work:
        return work.parties.create(name=name, confirm_duplicates=True, **values).id


def add_person(crm, who, organisation_id, name="Ольга Кедрова"):
    first, last = name.split()
    with crm.acting_as(who) as work:
        return work.parties.create(
            kind="person",
            first_name=first,
            last_name=last,
            organisation_id=organisation_id,
            confirm_duplicates=True,
        ).id


def attach(crm, who, party_id, *documents):
    with crm.acting_as(who) as work:
        for document in documents:
            work.attachments.add(
                f"{document}.pdf", b"%PDF-1.4", party_id=party_id, document_type=document
            )
