"""Gap-free numbers (orders, invoices) from counters in the database.

``UPDATE ... SET value = value + 1 RETURNING value`` is atomic on both databases: two
transactions never draw the same number, and a rolled-back transaction gives its number
back, so invoice numbers have no gaps.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from crmkit_finance.model import FinanceSequence


def next_number(session: Any, name: str) -> int:
    """The next value of counter ``name`` (starting at 1)."""
    statement = (
        update(FinanceSequence)
        .where(FinanceSequence.name == name)
        .values(value=FinanceSequence.value + 1)
        .returning(FinanceSequence.value)
    )
    value = session.scalar(statement)
    if value is not None:
        return int(value)
    dialect = session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(FinanceSequence)
    session.execute(insert.values(name=name, value=0).on_conflict_do_nothing())
    value = session.scalar(statement)
    if value is None:  # pragma: no cover - the row exists now
        value = session.scalar(select(FinanceSequence.value).where(FinanceSequence.name == name))
    return int(value)
