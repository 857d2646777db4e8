"""Fixtures of denaq's tests: the CRM with the deployment plugin and its people."""

from __future__ import annotations

import pytest
from crmkit_denaq import plugin as denaq_plugin
from denaq_fixtures import Staff

from crmkit.testing import add_user


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
