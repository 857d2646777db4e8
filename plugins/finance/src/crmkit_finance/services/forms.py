"""One-time form tokens: a money form submitted twice (a double click, a reload, a second
tab) takes the money once.

A screen puts :func:`new_form_token` in a hidden ``form_token`` field; the service claims
the token before it writes anything (:func:`claim`) and records the ids of what it wrote
(:func:`remember`).  A repeat finds the claim and gets the first result back, and the
transaction notes it (:func:`repeated`), so the screen can say the form was already sent.  Two
submissions at once cannot both claim it: the token is unique, so the second insert waits
for the first transaction (PostgreSQL) or for the write lock (SQLite), then finds the claim;
if the first failed and rolled back, the second goes ahead as a first submission.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit_finance.model import FinanceFormToken

TOKEN_LENGTH = 64
#: ``session.info`` key set when a claim found its form already sent (see :func:`repeated`)
REPEATED = "crmkit_finance.form_repeated"


def new_form_token() -> str:
    """A fresh random token for one form (templates call it once per form)."""
    return secrets.token_urlsafe(24)


def claim(session: Any, token: str | None, action: str) -> list[int] | None:
    """``None`` when ``token`` is new (it is claimed now, or there is no token); the ids the
    first submission wrote when it was already used for ``action``."""
    if not token:
        return None
    if len(token) > TOKEN_LENGTH:
        raise ValidationFailed({"form_token": ["not a form token"]})
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
    ).one()
    if row.action != action or row.result is None:
        raise ValidationFailed({"form_token": ["this form was already sent; reload the page"]})
    session.info[REPEATED] = True
    return [int(i) for i in row.result.split(",") if i]


def repeated(session: Any) -> bool:
    """Whether a form claimed in this transaction had been sent before (its first result
    came back instead of a second effect)."""
    return bool(session.info.get(REPEATED))


def remember(session: Any, token: str | None, ids: list[int]) -> None:
    """Record what the submission carrying ``token`` wrote (for its repeats)."""
    if token:
        session.execute(
            update(FinanceFormToken)
            .where(FinanceFormToken.token == token)
            .values(result=",".join(str(i) for i in ids))
        )
