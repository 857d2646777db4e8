"""Extract the finance plugin's UI messages and merge them into its Russian and English
catalogs (``src/crmkit_finance/locale``).

    .venv/bin/python plugins/finance/scripts/update-catalogs.py

Messages come from the plugin's templates and screens (``_``, ``gettext``, ``redirect`` and
``attempt`` messages, screen titles, menu labels), its services' refusals (the templates of
``crmkit.i18n.message``), its reports (labels, column headers, what a report ``guard``
names), texts marked ``crmkit.i18n.Label("...")`` (the system accounts' names, a report's
fixed cells and chart labels) and its registries (entity, stage and field names).
Messages the core's catalogs already translate are left to them.  Each of the plugin's
pipelines' stage titles is written a second time with the pipeline as ``msgctxt`` (left
empty, the plain translation shows; fill one where the grammar needs it).
``tests/test_finance_catalogs.py`` fails until every Russian one is filled in.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from crmkit.testing import make_crm
from crmkit.testing.catalogs import split_context
from crmkit.web.i18n import LANGUAGES, LOCALE_DIR, registry_messages

PLUGIN = Path(__file__).resolve().parents[1] / "src" / "crmkit_finance"
KEYWORDS = {
    "_": None,
    "gettext": None,
    "lazy": None,
    "redirect": (3,),
    "attempt": (4,),
    "Screen": (3,),
    "MenuItem": (1,),
    "Column": (2,),
    "_report": (2,),
    "Role": (2,),
    "message": (1,),
    "guard": (4,),
    "Label": None,
}
#: Texts the screens show through ``_(value)``: methods, kinds, states, parameters.
DYNAMIC = (
    *("cash", "card", "transfer", "cashback"),
    *("payment", "refund", "void", "accrual", "manual", "restored", "receivable"),
    *("issued", "paid", "cancelled", "ordered", "partially_received", "received", "reversed"),
    *("start", "end", "grain", "by", "as_of", "location_id", "shift_id", "paid_from", "limit"),
    *("expiry_days",),
    *("day", "week", "category", "item", "worker"),
    *("cash_difference", "cash_out", "cash_in", "payment_void", "order_charge", "order_credit"),
    *("order_reopen", "salary_accrual", "salary_payout", "salary_reversal", "supplier_payment"),
    *("cashback_accrual", "cashback_expiry", "cashback_withdrawal", "amortization"),
    "asset_purchase",
    *("queued", "sent", "failed"),
)
METHODS = [
    ("templates/**.html", "jinja2"),
    ("screens/**.py", "python"),
    ("services/**.py", "python"),
    ("ledger.py", "python"),
    ("memos.py", "python"),
    ("money.py", "python"),
    ("reports.py", "python"),
    ("access.py", "python"),
    ("plugin.py", "python"),
]


def core_messages() -> set[str]:
    """Messages the core's Russian catalog translates."""
    with (LOCALE_DIR / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return {m.id for m in read_po(source, locale="ru") if m.id and m.string}


def extracted() -> Catalog:
    """Every message of the plugin the core does not translate."""
    from crmkit_finance import plugin

    known = core_messages()
    template = Catalog(project="crmkit-finance", fuzzy=False)
    for filename, lineno, message, comments, _context in extract_from_dir(
        str(PLUGIN),
        METHODS,
        keywords=KEYWORDS,
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
    ):
        if message not in known:
            template.add(message, None, [(filename, lineno)], auto_comments=comments)
    for text in DYNAMIC:
        if text not in known and text not in template:
            template.add(text, None, [("shown by value", 0)])
    core = make_crm()
    with_finance = make_crm(plugins=[plugin])
    for text in sorted(registry_messages(with_finance) - registry_messages(core)):
        context, msgid = split_context(text)
        if context is None and text in known:
            continue
        if template.get(msgid, context=context) is None:
            template.add(msgid, None, [("registries", 0)], context=context)
    core.close()
    with_finance.close()
    return template


def main() -> None:
    template = extracted()
    for language in LANGUAGES:
        path = PLUGIN / "locale" / language / "LC_MESSAGES" / "messages.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as source:
                catalog = read_po(source, locale=language)
        else:
            catalog = Catalog(locale=language, project="crmkit-finance", fuzzy=False)
        catalog.update(template, no_fuzzy_matching=True)
        if language == "en":  # English is the source language
            for message in catalog:
                if message.id and not message.string:
                    message.string = message.id
        with path.open("wb") as target:
            write_po(target, catalog, width=100, omit_header=False, ignore_obsolete=True)
        missing = sum(1 for m in catalog if m.id and not m.string and not m.context)
        print(f"{language}: {len(catalog)} messages, {missing} untranslated")


if __name__ == "__main__":
    main()
