"""The task queue: Huey, on a SQLite file (embedded) or on Redis (``queue.url``).

The queue carries *wake-ups*, never the only copy of anything: an outbox item's id to
deliver, a schedule to run for a time slot.  Everything that must survive a crash lives in
the database (the outbox table, the schedule states), so a lost queue message costs at
most a short delay until the sweep (:func:`crmkit.jobs.delivery.sweep`) finds the item.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from huey import RedisHuey, SqliteHuey

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

#: Ids per wake-up message: few messages for big batches, still spread over workers.
WAKEUP_CHUNK = 25

#: File of the embedded queue, in the deployment directory.
EMBEDDED_FILENAME = "queue.sqlite3"


def is_redis_url(url: str) -> bool:
    """Whether ``url`` names a Redis server."""
    return url.startswith(("redis://", "rediss://", "unix://"))


class TaskQueue:
    """One application's Huey instance and the tasks crmkit runs on it."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        url = crm.config["queue.url"] or ""
        name = f"{crm.namespace}-queue"
        self.huey: Any
        if is_redis_url(url):
            self.huey = RedisHuey(name, url=url, results=False, utc=True, blocking=True)
            self.kind = "redis"
        elif url:
            from crmkit.errors import ConfigError

            raise ConfigError(f"queue.url must be empty or redis://..., got {url!r}")
        else:
            path = crm.config.root / EMBEDDED_FILENAME
            self.huey = SqliteHuey(name, filename=str(path), results=False, utc=True)
            self.kind = "sqlite"
        self._deliver = self.huey.task(name="crmkit.outbox.deliver")(self._deliver_ids)
        self._schedule = self.huey.task(name="crmkit.schedule.run")(self._run_schedule)
        self._waiting: queue.Queue[list[int] | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()

    # -- tasks (run in a worker) ------------------------------------------------------

    def _deliver_ids(self, ids: Sequence[int]) -> None:
        from crmkit.jobs.delivery import deliver_batch

        try:
            deliver_batch(self.crm, list(ids))
        except Exception:  # the database went away, say: the sweep retries the items
            log.exception("delivering outbox items %s failed", list(ids))

    def _run_schedule(self, name: str, slot: int) -> None:
        from crmkit.jobs.schedules import run_schedule

        run_schedule(self.crm, name, slot)

    # -- enqueueing (any process) -----------------------------------------------------

    def wakeup(self, ids: Sequence[int], eta: dt.datetime | None = None) -> None:
        """Ask a worker to deliver these outbox items (at ``eta``, or now)."""
        ids = list(ids)
        for start in range(0, len(ids), WAKEUP_CHUNK):
            chunk = ids[start : start + WAKEUP_CHUNK]
            if eta is None:
                self._deliver(chunk)
            else:
                self._deliver.schedule((chunk,), eta=eta)

    def wakeup_soon(self, ids: Sequence[int]) -> None:
        """Wake a worker for these items from a background thread; returns at once.

        Used after commit, so that a change never waits for the queue's round trip: a
        wake-up is only a hint (the outbox row is the truth), and one lost with the process
        is made good by the sweep.  Wake-ups of many transactions go out together.
        """
        with self._sender_lock:
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(
                    target=self._send_forever, name="crmkit-wakeups", daemon=True
                )
                self._sender.start()
        self._waiting.put(list(ids))

    def _send_forever(self) -> None:
        while True:
            batch = self._waiting.get()
            if batch is None:
                self._waiting.task_done()
                return
            ids = list(batch)
            taken = 1
            while True:  # gather whatever else is waiting, to send it together
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if more is None:
                    self._waiting.put(None)
                    self._waiting.task_done()
                    taken -= 1
                    break
                ids.extend(more)
            try:
                self.wakeup(ids)
            except Exception:  # Redis away: the sweep finds these items later
                log.exception("could not wake workers for outbox items %s", ids[:10])
            for _ in range(taken):
                self._waiting.task_done()

    def flush_wakeups(self) -> None:
        """Wait until every wake-up handed to :meth:`wakeup_soon` has been sent."""
        if self._sender is not None and self._sender.is_alive():
            self._waiting.join()

    def run_schedule(self, name: str, slot: int) -> None:
        """Ask a worker to run schedule ``name`` for time slot ``slot``."""
        self._schedule(name, slot)

    def pending_count(self) -> int:
        """Messages waiting in the queue (not counting scheduled ones)."""
        self.flush_wakeups()
        return int(self.huey.pending_count())

    def flush(self) -> None:
        """Drop every queued message (tests; the outbox keeps the truth)."""
        self.huey.flush()

    def close(self) -> None:
        """Send the wake-ups still waiting, then release the storage's connections."""
        if self._sender is not None and self._sender.is_alive():
            self._waiting.put(None)
            self._sender.join(timeout=5)
        storage = self.huey.storage
        close = getattr(storage, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing a connection that is gone already
                log.debug("closing the queue storage failed", exc_info=True)
        pool = getattr(getattr(storage, "conn", None), "connection_pool", None)
        if pool is not None:
            pool.disconnect()
