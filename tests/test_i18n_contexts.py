"""Stage titles in their pipeline's message context (msgctxt), falling back to the plain."""

from __future__ import annotations

from babel.messages.pofile import read_po

from crmkit.i18n import Message, StageLabel, contexted, pgettext
from crmkit.testing import make_crm
from crmkit.testing.catalogs import missing_translations, update_catalogs, wanted_messages

CATALOG = {"New": "Новая", contexted("orders", "New"): "Новый"}


def _gettext(text):
    return CATALOG.get(text, text)


def test_a_contexted_translation_wins_and_a_missing_one_falls_back_to_the_plain():
    assert pgettext(_gettext, "orders", "New") == "Новый"
    assert pgettext(_gettext, "sales", "New") == "Новая"
    assert pgettext(_gettext, "", "New") == "Новая"
    assert pgettext(_gettext, "orders", "Lost") == "Lost"


def test_a_stage_label_keeps_its_context_through_json():
    message = Message("moved to “{stage}”", {"stage": StageLabel("New", "orders")})
    again = Message.from_json(message.as_json())
    assert again.translate(_gettext) == "moved to “Новый”"
    assert str(again) == "moved to “New”"


def test_the_catalog_tools_write_each_pipelines_stage_titles_with_their_context(tmp_path):
    crm = make_crm(directory=tmp_path / "crm")
    package = tmp_path / "package"
    package.mkdir()
    wanted = wanted_messages(package, crm)
    assert contexted("sales", "New") in wanted and "New" in wanted
    update_catalogs(package, crm)
    with (package / "locale" / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale="ru")
    entry = catalog.get("New", context="sales")
    assert entry is not None and entry.context == "sales"
    # left empty it is not missing: the plain translation (the core's «Новая») shows
    assert contexted("sales", "New") not in missing_translations(package, crm)
    crm.close()
