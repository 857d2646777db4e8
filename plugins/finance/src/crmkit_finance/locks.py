"""Row locks for read-then-write steps that must not interleave (two refunds of a payment).

PostgreSQL locks the row (``SELECT ... FOR UPDATE``): a second transaction wanting the same
row waits until the first commits, then reads what it wrote.  SQLite has one writer at a
time: an empty write takes its write lock now, before the reads, so a concurrent writer
waits for this transaction as a whole (as :func:`crmkit.services.bulk.allocate_ids` does).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session


def lock_row(session: Session, model: Any, row_id: int) -> None:
    """Hold the row ``row_id`` of ``model`` (or, on SQLite, the database) until commit."""
    table = model.__table__
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(table.c.id).where(table.c.id == row_id).with_for_update())
    else:
        # deletes nothing (ids are positive), so no row trigger fires; takes the write lock
        session.execute(table.delete().where(table.c.id == -1))
