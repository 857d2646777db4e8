"""Fixtures of denaq's tests: the CRM with the deployment plugin and its people, and the
same CRM served over HTTP, with a headless Chromium, for the browser tests."""

from __future__ import annotations

import pytest
from crmkit_denaq import plugin as denaq_plugin
from denaq_fixtures import ARTIFACTS, Staff

from crmkit.testing import add_user, make_crm
from crmkit.testing.web import chromium, served


@pytest.fixture
def denaq(make_crm):
    """A fresh CRM with the denaq deployment plugin."""
    return make_crm(plugins=[denaq_plugin])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(crm, base_url)``: a fresh CRM with the denaq plugin served over HTTP for a browser,
    one per test module (SQLite, as the browser stories run)."""
    from crmkit.web.app import create_app

    crm = make_crm([denaq_plugin], directory=tmp_path_factory.mktemp("denaq"))
    with served(create_app(crm)) as base:
        yield crm, base
    crm.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for the browser tests, one per test module (screenshots go to
    ``ARTIFACTS``)."""
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as launched:
        yield launched


@pytest.fixture
def staff(denaq) -> Staff:
    return Staff(
        admin=add_user(denaq, "boss", ["admin"], display_name="Босс"),
        finder=add_user(denaq, "finder", ["lead_creator"], display_name="Ксения"),
        anna=add_user(denaq, "anna", ["agent"], display_name="Анна"),
        igor=add_user(denaq, "igor", ["agent"], display_name="Игорь"),
    )
