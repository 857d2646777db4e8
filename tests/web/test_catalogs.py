"""The Russian and English catalogs are complete: every text the UI shows is translated."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from babel.messages.pofile import read_po

from crmkit.web.i18n import LANGUAGES, LOCALE_DIR

ROOT = Path(__file__).resolve().parents[2]


def _extracted():
    spec = importlib.util.spec_from_file_location(
        "update_catalogs", ROOT / "scripts/update-catalogs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extracted()


def test_every_message_is_translated_in_every_language():
    template = _extracted()
    wanted = {m.id for m in template if m.id}
    assert len(wanted) > 300
    for language in LANGUAGES:
        with (LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as source:
            catalog = read_po(source, locale=language)
        translated = {m.id for m in catalog if m.id and m.string}
        missing = sorted(str(m) for m in wanted - translated)
        assert not missing, (
            f"{language}: run scripts/update-catalogs.py and translate {missing[:10]}"
        )


def test_russian_translations_keep_their_placeholders():
    with (LOCALE_DIR / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale="ru")
    import re

    for message in catalog:
        if message.id and message.string:
            assert set(re.findall(r"%\(\w+\)s", str(message.id))) == set(
                re.findall(r"%\(\w+\)s", str(message.string))
            ), message.id


def test_an_empty_text_is_never_translated_into_the_catalog_header():
    """gettext("") gives a catalog's header (``Project-Id-Version: …``); an empty cell or
    label must stay empty in every language."""
    from crmkit.web import i18n

    for language, catalog in i18n.load_catalogs([LOCALE_DIR]).items():
        locale = i18n.Locale(language, "UTC", "RUB", catalog)
        assert locale.gettext("") == ""
        with i18n.activate(locale):
            assert i18n.gettext("") == ""
        assert locale.gettext("Total") != ""
