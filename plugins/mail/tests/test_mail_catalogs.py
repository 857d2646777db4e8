"""Every text of the mail plugin's screens has its Russian translation."""

from __future__ import annotations

from pathlib import Path

import crmkit_mail
from crmkit_mail import plugin as mail_plugin

from crmkit.testing import make_crm
from crmkit.testing.catalogs import missing_translations


def test_every_text_is_translated_into_russian(tmp_path):
    crm = make_crm(plugins=[mail_plugin], directory=tmp_path / "full")
    base = make_crm(directory=tmp_path / "base")
    package = Path(crmkit_mail.__file__).parent
    missing = missing_translations(package, crm, base=base)
    assert not missing, f"translate in {package}/locale/ru: {missing[:10]}"
    assert missing_translations(package, crm, base=base, language="en") == []
