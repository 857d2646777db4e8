"""Extract the web UI's messages and merge them into the Russian and English catalogs.

    .venv/bin/python scripts/update-catalogs.py

Literal messages come from the templates (``_("...")``) and the code (``gettext``, ``lazy``,
``redirect``/``toast`` messages, screen and menu titles); texts from registries (entity and
stage labels, column names, kinds) come from :func:`crmkit.web.i18n.registry_messages`;
each pipeline's stage titles are written a second time with the pipeline as ``msgctxt``
(left empty, the plain translation shows; fill one where the grammar needs it).
Existing translations are kept; new messages get an empty translation to fill in, and
``tests/web/test_catalogs.py`` fails until every Russian one is filled.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from crmkit.testing import make_crm
from crmkit.testing.catalogs import split_context
from crmkit.web.i18n import LANGUAGES, LOCALE_DIR, registry_messages

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "lazy": None,
    "Label": None,
    "redirect": (3,),
    "toast": (2,),
    "Screen": (3,),
    "MenuItem": (1,),
    "message": (1,),
    "Column": (2,),
    "Report": (2,),
}
METHODS = [
    ("src/crmkit/web/templates/**.html", "jinja2"),
    ("src/crmkit/web/**.py", "python"),
    ("src/crmkit/builtins/web.py", "python"),
    ("src/crmkit/builtins/notify.py", "python"),
    ("src/crmkit/pipeline/**.py", "python"),
    ("src/crmkit/services/**.py", "python"),
    ("src/crmkit/automation/**.py", "python"),
    ("src/crmkit/*.py", "python"),
]


def extracted() -> Catalog:
    template = Catalog(project="crmkit", fuzzy=False)
    for filename, lineno, message, comments, _context in extract_from_dir(
        str(ROOT),
        METHODS,
        keywords=KEYWORDS,
        options_map={"src/crmkit/web/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
    ):
        template.add(message, None, [(filename, lineno)], auto_comments=comments)
    crm = make_crm()
    for text in sorted(registry_messages(crm)):
        context, msgid = split_context(text)
        if template.get(msgid, context=context) is None:
            template.add(msgid, None, [("registries", 0)], context=context)
    crm.close()
    return template


def main() -> None:
    template = extracted()
    for language in LANGUAGES:
        path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as source:
                catalog = read_po(source, locale=language)
        else:
            catalog = Catalog(locale=language, project="crmkit", fuzzy=False)
        catalog.update(template, no_fuzzy_matching=True)
        if language == "en":  # English is the source language: each text stands for itself
            for message in catalog:
                if message.id and not message.string:
                    message.string = message.id
        with path.open("wb") as target:
            write_po(target, catalog, width=100, omit_header=False, ignore_obsolete=True)
        missing = sum(1 for m in catalog if m.id and not m.string and not m.context)
        print(f"{language}: {len(catalog)} messages, {missing} untranslated")


if __name__ == "__main__":
    main()
