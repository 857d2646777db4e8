"""Fixtures of the booking plugin's tests."""

from __future__ import annotations

import pytest
from crmkit_booking import plugin as booking_plugin


@pytest.fixture
def booking_crm(make_crm):
    """A fresh application with the booking plugin."""
    return make_crm(plugins=[booking_plugin])
