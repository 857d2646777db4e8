"""The finance screens speak Russian and English: every message has a translation."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from babel.messages.pofile import read_po
from finance_web import clients

from crmkit.web.i18n import LANGUAGES

PLUGIN = Path(__file__).resolve().parents[1]
LOCALE = PLUGIN / "src" / "crmkit_finance" / "locale"


def _extracted():
    spec = importlib.util.spec_from_file_location(
        "finance_update_catalogs", PLUGIN / "scripts" / "update-catalogs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extracted()


def test_every_message_is_translated_in_every_language():
    wanted = {m.id for m in _extracted() if m.id}
    assert len(wanted) > 200
    for language in LANGUAGES:
        with (LOCALE / language / "LC_MESSAGES" / "messages.po").open("rb") as source:
            catalog = read_po(source, locale=language)
        translated = {m.id for m in catalog if m.id and m.string}
        missing = sorted(str(m) for m in wanted - translated)
        assert not missing, (
            f"{language}: run plugins/finance/scripts/update-catalogs.py; {missing[:10]}"
        )


def test_the_cash_desk_in_russian_and_in_english(shop):
    cashier = clients(shop.crm)("cashier")
    cashier.post("/language", {"language": "ru", "next": "/"})
    page = cashier.get("/finance/cashdesk")
    assert "Открыть смену" in page.text and "Касса" in cashier.get("/profile").text
    cashier.post("/language", {"language": "en", "next": "/"})
    page = cashier.get("/finance/cashdesk")
    assert "Open the shift" in page.text
    assert not re.search(r"Открыть смену|Касса", page.text)


def test_no_translation_shown_by_a_template_holds_a_bare_percent_sign():
    # Jinja's _() formats its text with %, so "скидка, %" would break a page
    with (LOCALE / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale="ru")
    for message in catalog:
        if message.id and "%" in str(message.string):
            assert all(path.endswith("reports.py") for path, _line in message.locations), message.id
