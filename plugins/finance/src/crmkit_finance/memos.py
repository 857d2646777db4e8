"""The memos the plugin writes on its transactions, shown in the reader's language.

A transaction's memo is stored as the services write it, in English with the order's number,
the lot's id or the reason typed in (``cashback for order A-12``, ``salary 2026-10 Ivan``);
:func:`shown_memo` finds which of the plugin's memos it is and shows it from the catalog
(``кешбэк за заказ A-12``).  A memo typed by a user (an expense's note, a cashback reason)
matches none and is shown as typed.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from crmkit.web import i18n

#: (pattern, catalog text) per memo the services write; a pattern's groups are the text's
#: placeholders.  ``month`` (``YYYY-MM``) is shown as the month's name, ``method`` and
#: ``result`` as their own catalog texts, ``memo`` as a memo again.
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.DOTALL), text)
    for pattern, text in (
        (r"cashback for order (?P<number>.+)", i18n.lazy("cashback for order %(number)s")),
        (r"cashback lot (?P<lot>\d+) expired", i18n.lazy("cashback lot %(lot)s expired")),
        (
            r"(?P<method>cash|card|transfer|cashback) payment for order (?P<number>.+)",
            i18n.lazy("%(method)s payment for order %(number)s"),
        ),
        (r"(?P<method>cash|card|transfer|cashback) payment", i18n.lazy("%(method)s payment")),
        (r"order (?P<number>[^:]+): (?P<memo>.*)", i18n.lazy("order %(number)s: %(memo)s")),
        (r"order (?P<number>[^:]+)", i18n.lazy("order %(number)s")),
        (r"salary (?P<month>\d{4}-\d{2}) (?P<name>.+)", i18n.lazy("salary of %(month)s: %(name)s")),
        (r"salary reversed: (?P<reason>.*)", i18n.lazy("salary accrual reversed: %(reason)s")),
        (r"salary payout", i18n.lazy("salary payout")),
        (r"supplier payment", i18n.lazy("supplier payment")),
        (r"cash to bank", i18n.lazy("cash to bank")),
        (r"cash in", i18n.lazy("cash in")),
        (r"line removed", i18n.lazy("line removed")),
        (r"refund of payment (?P<payment>\d+)", i18n.lazy("refund of payment %(payment)s")),
        (r"void: (?P<reason>.*)", i18n.lazy("payment voided: %(reason)s")),
        (
            r"reversal of #(?P<transaction>\d+)",
            i18n.lazy("reversal of transaction %(transaction)s"),
        ),
        (r"equipment: (?P<name>.+)", i18n.lazy("equipment: %(name)s")),
        (
            r"amortization (?P<month>\d{4}-\d{2}): (?P<name>.+)",
            i18n.lazy("amortization of %(month)s: %(name)s"),
        ),
        (
            r"client (?P<merged>\d+) merged into (?P<survivor>\d+)",
            i18n.lazy("client %(merged)s merged into %(survivor)s"),
        ),
        (
            r"opening count of shift (?P<shift>\d+): (?P<result>surplus|shortage)",
            i18n.lazy("count at the opening of shift %(shift)s: %(result)s"),
        ),
        (
            r"closing count of shift (?P<shift>\d+): (?P<result>surplus|shortage)",
            i18n.lazy("count at the closing of shift %(shift)s: %(result)s"),
        ),
    )
)

#: How a count of the drawer came out (the shift's memos): catalog texts.
RESULTS = (i18n.lazy("surplus"), i18n.lazy("shortage"))

#: Who did what when nobody signed in did (the daily jobs): the actor's stored label.
SYSTEM_LABEL = "system"


def shown_memo(memo: str | None) -> str:
    """``memo`` in the language of the page being rendered (as stored outside a page)."""
    text = memo or ""
    locale = i18n.current()
    if locale is None or not text:
        return text
    for pattern, template in PATTERNS:
        found = pattern.fullmatch(text)
        if found is None:
            continue
        values: dict[str, Any] = dict(found.groupdict())
        if "month" in values:
            month = dt.date.fromisoformat(values["month"] + "-01")
            values["month"] = locale.date(month, "LLLL y")
        for key in ("method", "result"):
            if key in values:
                values[key] = locale.gettext(values[key])
        if "memo" in values:
            values["memo"] = shown_memo(values["memo"])
        return locale.gettext(template) % values
    return text


def shown_actor(label: str | None) -> str:
    """Who booked a transaction: the jobs' ``system`` in the page's language."""
    text = label or ""
    locale = i18n.current()
    if locale is not None and text == SYSTEM_LABEL:
        return locale.gettext(text)
    return text
