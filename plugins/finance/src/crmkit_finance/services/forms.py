"""One-time form tokens: a form that books money or goods, submitted twice (a double click,
a reload, the back button, a second tab), takes effect once.

A screen puts :func:`new_form_token` in a hidden ``form_token`` field; the service claims
the token before it writes anything (:func:`claim`) and records the ids of what it wrote
(:func:`remember`).  A repeat finds the claim and gets the first result back, and the
transaction notes it (:func:`repeated`), so the screen can say the form was already sent.  Two
submissions at once cannot both claim it: the token is unique, so the second insert waits
for the first transaction (PostgreSQL) or for the write lock (SQLite), then finds the claim;
if the first failed and rolled back, the second goes ahead as a first submission.

A token carries the time its form was shown and is good for ``finance.form_token_days``
(7 by default): a form sent later is refused (reload the page), unless it is the repeat of
one already sent.  So a claim older than that can never be needed again, and the daily job
``finance.purge_form_tokens`` deletes it (:func:`purge`): a repeat within the lifetime finds
its claim, which is at least as young as the form; a repeat after it is refused.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit_finance.model import FinanceFormToken

if TYPE_CHECKING:
    from crmkit_finance.services import Finance

TOKEN_LENGTH = 64
#: ``session.info`` key set when a claim found its form already sent (see :func:`repeated`)
REPEATED = "crmkit_finance.form_repeated"
#: ``<when the form was shown, Unix seconds in hex>.<random>``
_DATED = re.compile(r"([0-9a-f]{1,12})\.[A-Za-z0-9_-]+")


def new_form_token() -> str:
    """A fresh random token for one form, dated now (templates call it once per form)."""
    return f"{int(utcnow().timestamp()):x}.{secrets.token_urlsafe(24)}"


def issued_at(token: str) -> dt.datetime | None:
    """When the form carrying ``token`` was shown; ``None`` for a token without a date (one
    a caller made up, or from a page shown before tokens were dated)."""
    match = _DATED.fullmatch(token)
    if match is None:
        return None
    try:
        return dt.datetime.fromtimestamp(int(match.group(1), 16), dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def claim(fin: Finance, token: str | None, action: str) -> list[int] | None:
    """``None`` when ``token`` is new (it is claimed now, or there is no token); the ids the
    first submission wrote when it was already used for ``action``.  A dated token older
    than the lifetime (``finance.form_token_days``) is refused unless it was used."""
    if not token:
        return None
    if len(token) > TOKEN_LENGTH:
        raise ValidationFailed({"form_token": [message("not a form token")]})
    session = fin.work.session
    issued = issued_at(token)
    expired = issued is not None and utcnow() - issued > fin.form_token_lifetime
    if not expired:
        dialect = session.get_bind().dialect.name
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(FinanceFormToken)
        claimed = session.scalar(
            insert.values(token=token, action=action, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["token"])
            .returning(FinanceFormToken.id)
        )
        if claimed is not None:
            return None
    row = session.execute(
        select(FinanceFormToken.action, FinanceFormToken.result).where(
            FinanceFormToken.token == token
        )
    ).one_or_none()
    if row is None:  # an expired form never sent
        raise ValidationFailed(
            {"form_token": [message("this form is too old; reload the page and fill it in again")]}
        )
    if row.action != action or row.result is None:
        raise ValidationFailed(
            {"form_token": [message("this form was already sent; reload the page")]}
        )
    session.info[REPEATED] = True
    return [int(i) for i in row.result.split(",") if i]


def remember(fin: Finance, token: str | None, ids: list[int]) -> None:
    """Record what the submission carrying ``token`` wrote (for its repeats)."""
    if token:
        fin.work.session.execute(
            update(FinanceFormToken)
            .where(FinanceFormToken.token == token)
            .values(result=",".join(str(i) for i in ids))
        )


def repeated(session: Any) -> bool:
    """Whether a form claimed in this transaction had been sent before (its first result
    came back instead of a second effect)."""
    return bool(session.info.get(REPEATED))


def purge(fin: Finance) -> int:
    """Delete the tokens claimed longer ago than a form's lifetime; returns how many.

    Their forms are refused by now (a dated token) or were sent that long ago (one without
    a date), so no repeat needs them.  One statement: after the first purge the table
    holds only the last lifetime's submissions."""
    cutoff = utcnow() - fin.form_token_lifetime
    result = fin.work.session.execute(
        delete(FinanceFormToken).where(FinanceFormToken.created_at < cutoff)
    )
    return int(result.rowcount or 0)
