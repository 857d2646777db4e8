"""The Russian and English catalogs are complete: every text the UI shows is translated."""

from __future__ import annotations

import importlib.util
import re
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
    # a stage title in its pipeline's context (msgctxt) may stay empty: the plain one shows
    wanted = {m.id for m in template if m.id and not m.context}
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


#: What a refusal names its field by: ``ValidationFailed({"field": ...})`` and the form
#: readers that take the field's name.
_REFUSED_FIELD = re.compile(
    r'ValidationFailed\(\s*\{\s*"([a-z_][a-z0-9_]*)"\s*:'
    r'|\b(?:optional_id|id_list)\([^()]*?,\s*"([a-z_][a-z0-9_]*)"\s*\)'
)
#: Not labels: the form as a whole; names two meanings share (a list's sort order and a
#: finance order; the API's page size and a finance report's number of orders; a token's
#: end and a finance cashback's), left as they are rather than translated wrongly for one.
_NOT_LABELS = {"_schema", "order", "limit", "expires_at"}


def _refused_fields(root: Path) -> set[str]:
    found = set()
    for path in root.rglob("*.py"):
        if "static" not in path.parts:
            found |= {a or b for a, b in _REFUSED_FIELD.findall(path.read_text())}
    return found - _NOT_LABELS


def _translated_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with path.open("rb") as source:
        return {m.id for m in read_po(source, locale="ru") if m.id and m.string}


def test_every_field_a_refusal_names_is_a_message_of_the_catalogs():
    """A refused form names its field through ``gettext`` (``error_text``): a field that is
    no column (those come from the registries) must be a message the catalog tools
    collect, or a Russian reader reads ``outcome:`` where the form said "Чем закончился"."""
    from crmkit.testing.catalogs import package_messages

    core = {m.id for m in _extracted() if m.id}
    missing = sorted(_refused_fields(ROOT / "src" / "crmkit") - core)
    assert not missing, f"list them in crmkit.web.pages.REFUSAL_FIELDS: {missing}"
    for package in sorted((ROOT / "plugins").glob("*/src/crmkit_*")):
        own = package_messages(package) | _translated_ids(
            package / "locale" / "ru" / "LC_MESSAGES" / "messages.po"
        )
        missing = sorted(_refused_fields(package) - core - own)
        assert not missing, f"{package.name}: list them for its catalogs: {missing}"
