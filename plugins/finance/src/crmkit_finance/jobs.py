"""Background jobs of the finance plugin (run by the task queue, as the system)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from crmkit.clock import utcnow
from crmkit_finance.services import finance, forms
from crmkit_finance.services.stock import check_low_stock as _check_low_stock


def expire_cashback(crm: Any, **_: Any) -> str:
    """Expire cashback lots past their date."""
    with crm.system() as work:
        expired = finance(work).cashback.expire()
    return f"expired {expired}"


def amortize_last_month(crm: Any, month: str | None = None, **_: Any) -> str:
    """Book the amortization of the month before this one (or of ``month``, YYYY-MM-DD)."""
    with crm.system() as work:
        fin = finance(work)
        if month:
            day = dt.date.fromisoformat(month)
        else:
            first = fin.business_date(utcnow()).replace(day=1)
            day = (first - dt.timedelta(days=1)).replace(day=1)
        total = fin.assets.amortize(day)
    return f"amortized {total} for {day:%Y-%m}"


def check_low_stock(crm: Any, **_: Any) -> str:
    """Remind about every stock level below its minimum."""
    return f"{_check_low_stock(crm)} reminders"


def purge_form_tokens(crm: Any, **_: Any) -> str:
    """Delete the one-time form tokens no repeat of a form can need any more."""
    with crm.system() as work:
        purged = forms.purge(finance(work))
    return f"purged {purged} form tokens"
