"""Fixtures of the car service's tests: an application with every plugin it is built from."""

from __future__ import annotations

import pytest
from crmkit_booking import plugin as booking_plugin
from crmkit_carservice import plugin as carservice_plugin
from crmkit_finance import plugin as finance_plugin
from service_fixtures import Station, build_station

PLUGINS = [finance_plugin, booking_plugin, carservice_plugin]


@pytest.fixture
def station_crm(make_crm):
    """A fresh application with the finance, booking and car service plugins."""
    return make_crm(plugins=PLUGINS)


@pytest.fixture
def station(station_crm) -> Station:
    """A small car service: staff of every role, a branch, a price list, a client with a car."""
    return build_station(station_crm)
