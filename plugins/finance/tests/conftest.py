"""Fixtures of the finance plugin's tests: an application with the plugin, and a small shop."""

from __future__ import annotations

import pytest
from crmkit_finance import plugin as finance_plugin
from finance_fixtures import Shop, build_shop
from finance_web import clients


@pytest.fixture
def fin_crm(make_crm):
    """A fresh application with the finance plugin."""
    return make_crm(plugins=[finance_plugin])


@pytest.fixture
def shop(fin_crm) -> Shop:
    """A small shop on a fresh application with the finance plugin."""
    return build_shop(fin_crm)


@pytest.fixture
def signed_in(shop):
    """``signed_in(username)``: a web client signed in as one of the shop's staff."""
    return clients(shop.crm)
