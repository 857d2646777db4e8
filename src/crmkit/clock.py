"""The one source of "now" in crmkit: timezone-aware UTC."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC (what every timestamp column stores)."""
    return dt.datetime.now(dt.UTC)
