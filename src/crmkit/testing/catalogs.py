"""Translations of a plugin's own texts: extract them, update its catalogs, find gaps.

A plugin ships ``locale/<lang>/LC_MESSAGES/messages.po`` beside its package (merged into
the core's catalogs at start-up).  Its texts are the ``_("...")`` of its templates, the
``gettext``/``lazy``/``redirect``/``toast`` messages and screen and menu titles of its code,
and the labels it adds to the registries (entities, roles, pipelines, stages, menus)::

    from crmkit.testing.catalogs import missing_translations, update_catalogs

    update_catalogs(package_dir, crm, base=crm_without_the_plugin)   # writes the .po files
    assert missing_translations(package_dir, crm, base=...) == []    # in the plugin's tests

Texts the core's catalog (or the ``base`` application's plugins) already translate are left
out, so a plugin's catalog holds only its own.

A pipeline's stage titles are wanted twice: plainly and in the pipeline's message context
(``msgctxt``, :func:`crmkit.i18n.stage_context`), written as ``context\\x04title`` in the
sets below and as a ``msgctxt`` entry in the ``.po`` files.  The contexted entry may stay
empty (the plain translation is shown); fill it where the language needs another form
(``carservice_order`` / ``New`` → «Новый» beside the deals' «Новая»).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from crmkit.i18n import CONTEXT_SEPARATOR, contexted
from crmkit.web.i18n import LANGUAGES, LOCALE_DIR, registry_messages

KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "lazy": None,
    "redirect": (3,),
    "toast": (2,),
    "Screen": (3,),
    "MenuItem": (1,),
    "message": (1,),
}


def package_messages(package_dir: Path) -> set[str]:
    """Literal messages of a package's templates and Python code."""
    methods = [("templates/**.html", "jinja2"), ("**.py", "python")]
    texts = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(package_dir),
        methods,
        keywords=KEYWORDS,
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
    ):
        texts.add(message if isinstance(message, str) else message[0])
    return {t for t in texts if t}


def _translated(path: Path, language: str) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open("rb") as source:
        catalog = read_po(source, locale=language)
    return {
        contexted(m.context or "", str(m.id)): str(m.string) for m in catalog if m.id and m.string
    }


def split_context(text: str) -> tuple[str | None, str]:
    """``(context, msgid)`` of a wanted text (``None`` for a plain one)."""
    context, separator, msgid = text.rpartition(CONTEXT_SEPARATOR)
    return (context, msgid) if separator else (None, text)


def _catalog_path(package_dir: Path, language: str) -> Path:
    return package_dir / "locale" / language / "LC_MESSAGES" / "messages.po"


def wanted_messages(package_dir: Path, crm: Any, base: Any = None) -> set[str]:
    """The package's texts plus the registry labels ``crm`` has and ``base`` lacks."""
    registry = registry_messages(crm) - (registry_messages(base) if base is not None else set())
    return package_messages(package_dir) | registry


def missing_translations(
    package_dir: Path, crm: Any, *, base: Any = None, language: str = "ru"
) -> list[str]:
    """Texts of the package shown untranslated in ``language`` (core catalog included)."""
    have = _translated(LOCALE_DIR / language / "LC_MESSAGES" / "messages.po", language)
    have.update(_translated(_catalog_path(package_dir, language), language))
    missing = wanted_messages(package_dir, crm, base) - set(have)
    # a stage title in its pipeline's context may stay untranslated: the plain one shows
    # (translated here, or by a catalog of ``base``); it is missing only when that one is
    return sorted(
        text
        for text in missing
        if split_context(text)[0] is None or split_context(text)[1] in missing
    )


def update_catalogs(package_dir: Path, crm: Any, *, base: Any = None) -> dict[str, int]:
    """Write the package's catalogs: its texts the core lacks, translations kept.

    Returns the number of untranslated messages per language (English is the source
    language, so each English text stands for itself).
    """
    result = {}
    for language in LANGUAGES:
        core = _translated(LOCALE_DIR / language / "LC_MESSAGES" / "messages.po", language)
        path = _catalog_path(package_dir, language)
        known = _translated(path, language)
        catalog = Catalog(locale=language, project=package_dir.name, fuzzy=False)
        for text in sorted(wanted_messages(package_dir, crm, base) - set(core)):
            context, msgid = split_context(text)
            string = known.get(text) or (msgid if language == "en" else "")
            catalog.add(msgid, string, context=context)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as target:
            write_po(target, catalog, width=100, omit_header=False)
        result[language] = sum(1 for m in catalog if m.id and not m.string and not m.context)
    return result
