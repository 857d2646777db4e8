"""The clock can be set to another moment for a block (history written "as of" a day)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from crmkit.clock import frozen_at, utcnow


def test_frozen_at_sets_now_for_the_block_only():
    moment = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    with frozen_at(moment):
        assert utcnow() == moment and utcnow().tzinfo == dt.UTC
        seen = []
        thread = threading.Thread(target=lambda: seen.append(utcnow()))
        thread.start()
        thread.join()
        assert seen[0] > moment  # another thread keeps the real time
    assert utcnow() - dt.datetime.now(dt.UTC) < dt.timedelta(seconds=5)


def test_frozen_at_refuses_a_naive_moment():
    with pytest.raises(ValueError, match="aware"), frozen_at(dt.datetime(2026, 3, 2)):
        pass
