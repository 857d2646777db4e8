"""The finance screens speak Russian and English: every message has a translation."""

from __future__ import annotations

import ast
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
    # a stage title in its pipeline's context (msgctxt) may stay empty: the plain one shows
    wanted = {m.id for m in _extracted() if m.id and not m.context}
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
        # a placeholder (%(name)s) or an escaped %% is fine; a lone % is not
        bare = re.sub(r"%\(\w+\)s|%%", "", str(message.string))
        if message.id and "%" in bare:
            assert all(path.endswith("reports.py") for path, _line in message.locations), message.id


#: What a user reads of an error: the messages of these exceptions (after the entity and
#: action of ``PermissionDenied`` and ``Conflict``).
_REFUSALS = {"ValidationFailed": 0, "PermissionDenied": 2, "Conflict": 2, "MoveRefused": 0}


def _called(node):
    return getattr(node.func, "id", None) or getattr(node.func, "attr", None)


def _plain_texts(node):
    """String literals and f-strings in ``node`` outside ``message(...)``."""
    if isinstance(node, ast.Call) and _called(node) == "message":
        return []
    if isinstance(node, ast.Dict):  # the keys are field names
        return [text for value in node.values for text in _plain_texts(value)]
    if isinstance(node, ast.DictComp):  # so is the key of {f"rates[{id}]": [...] for ...}
        return _plain_texts(node.value)
    if isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    ):
        return [node]
    return [text for child in ast.iter_child_nodes(node) for text in _plain_texts(child)]


def test_every_refusal_is_a_message_the_catalog_extracts():
    """A refusal written as a plain string is not extracted, so a Russian user would read
    it in English: the plugin's refusals are ``message(...)``, plain ones too."""
    plain = []
    source = PLUGIN / "src" / "crmkit_finance"
    for path in sorted(source.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _called(node) in _REFUSALS:
                told = node.args[_REFUSALS[_called(node)] :]
                told += [k.value for k in node.keywords if k.arg == "detail"]
                for text in (t for arg in told for t in _plain_texts(arg)):
                    plain.append(f"{path.relative_to(source)}:{text.lineno}")
    assert plain == []
    wanted = {m.id for m in _extracted() if m.id}
    assert {"say why the goods are written off", "not allowed to set prices"} <= wanted
    assert {"Written off.", "Count booked.", "Minimum set."} <= wanted  # the warehouse's


def test_a_finance_refusal_reads_in_the_users_language(shop):
    head = clients(shop.crm)("warehouse")  # Russian, as web users are by default
    sent = {"item_id": shop.oil.id, "location_id": shop.branch.id, "qty": "1", "reason": " "}
    page = head.refused("/finance/stock/write_off", sent)
    (flash,) = re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page.text)
    assert flash == "причина: укажите, почему товар списан"
    head.post("/language", {"language": "en", "next": "/"})
    page = head.refused("/finance/stock/write_off", sent)
    (flash,) = re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page.text)
    assert flash == "reason: say why the goods are written off"
