"""The one source of "now" in crmkit: timezone-aware UTC.

Every timestamp the services write comes from :func:`utcnow`, so history can be written
"as of" another moment: demo generators write a year of business day by day, and tests
check what happens next week, with :func:`frozen_at`::

    with frozen_at(dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)):
        work.moves.move(order, "done")          # completed on 2 March 2026

The override is a context variable: it holds in this thread (or task) only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_frozen: ContextVar[dt.datetime | None] = ContextVar("crmkit_frozen_now", default=None)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC (what every timestamp column stores)."""
    frozen = _frozen.get()
    return frozen if frozen is not None else dt.datetime.now(dt.UTC)


def in_utc(moment: dt.datetime) -> dt.datetime:
    """An aware ``moment`` in UTC; :class:`OverflowError` when UTC cannot hold it (the first
    or last hours of years 1 and 9999 given with an offset), :class:`ValueError` if naive."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: give its offset")
    return moment.astimezone(dt.UTC)


@contextmanager
def frozen_at(moment: dt.datetime) -> Iterator[dt.datetime]:
    """Make :func:`utcnow` answer ``moment`` (aware) while the block runs, in this context."""
    if moment.tzinfo is None:
        raise ValueError("frozen_at needs an aware datetime")
    token = _frozen.set(moment.astimezone(dt.UTC))
    try:
        yield moment
    finally:
        _frozen.reset(token)
