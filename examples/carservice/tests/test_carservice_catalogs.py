"""Every text of the car service's screens has its Russian translation."""

from __future__ import annotations

from pathlib import Path

import crmkit_carservice
from crmkit_booking import plugin as booking_plugin
from crmkit_finance import plugin as finance_plugin
from service_fixtures import PLUGINS

from crmkit.testing import make_crm
from crmkit.testing.catalogs import missing_translations


def test_every_text_is_translated_into_russian(tmp_path):
    crm = make_crm(plugins=PLUGINS, directory=tmp_path / "full")
    base = make_crm(plugins=[finance_plugin, booking_plugin], directory=tmp_path / "base")
    package = Path(crmkit_carservice.__file__).parent
    missing = missing_translations(package, crm, base=base)
    assert not missing, f"translate in {package}/locale/ru: {missing[:10]}"
