"""A worker: Huey's consumer threads plus crmkit's ticker.

``crmkit worker`` runs one in the foreground; ``crmkit serve`` starts one in the web
process (``queue.embedded_workers`` threads) so that a deployment with no configuration
needs no second process.  The ticker, a thread of its own, wakes every
``queue.tick_seconds`` to

* enqueue runs of periodic schedules whose slot changed (:mod:`crmkit.jobs.schedules`);
* sweep the outbox for items whose wake-up was lost, at most every ``outbox.sweep_seconds``
  across all workers (:func:`crmkit.jobs.delivery.sweep`);
* call the registered *tickers*: quick checks that must run often, such as firing due
  reminders (each claims its rows, so several workers may run them together).

Unless ``queue.watchers`` is off, a :class:`~crmkit.jobs.watchers.Supervisor` runs this
worker's share of the registered watchers (long-lived connections, each run by exactly
one worker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crmkit.jobs import schedules
from crmkit.jobs.delivery import sweep
from crmkit.jobs.watchers import Supervisor

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

SWEEP = "crmkit.outbox.sweep"


class Worker:
    """Consumer threads delivering queued work, the ticker thread, and the watchers."""

    def __init__(self, crm: CRM, concurrency: int = 1) -> None:
        self.crm = crm
        self.concurrency = max(1, concurrency)
        self.tick_seconds = float(crm.config["queue.tick_seconds"])
        self.consumer = crm.queue.huey.create_consumer(
            workers=self.concurrency,
            worker_type="thread",
            periodic=False,
            initial_delay=0.05,
            backoff=1.3,
            max_delay=min(1.0, self.tick_seconds * 2),
            scheduler_interval=1,
            check_worker_health=True,
        )
        self.tickers: list[Callable[[CRM], Any]] = list(crm.tickers)
        self._stop = threading.Event()
        self._seen_slots: dict[str, int] = {}
        self._ticker = threading.Thread(target=self._tick_loop, name="crmkit-ticker", daemon=True)
        self.watchers: Supervisor | None = None
        if crm.config["queue.watchers"] and crm.watchers:
            self.watchers = Supervisor(crm)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the consumer, the ticker and the watchers in background threads (embedded mode)."""
        schedules.ensure_rows(self.crm, [*self.crm.schedules, SWEEP])
        self._ticker.start()
        if self.watchers is not None:
            self.watchers.start()
        # Consumer.start() minus its signal handlers, which belong to the host (uvicorn).
        self.consumer.scheduler.start()
        for _, thread in self.consumer.worker_threads:
            thread.start()

    def stop(self) -> None:
        """Stop taking work and the watchers; running deliveries finish (their claims protect
        the rest)."""
        self._stop.set()
        if self.watchers is not None:
            self.watchers.stop()
        self.consumer.stop(graceful=True)
        self._ticker.join(timeout=5)

    def run(self) -> None:
        """Run in the foreground until SIGINT/SIGTERM (``crmkit worker``)."""
        schedules.ensure_rows(self.crm, [*self.crm.schedules, SWEEP])
        self._ticker.start()
        if self.watchers is not None:
            self.watchers.start()
        try:
            self.consumer.run()
        finally:
            self._stop.set()
            if self.watchers is not None:
                self.watchers.stop()
            self._ticker.join(timeout=5)

    # -- the ticker ---------------------------------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick(time.time())
            except Exception:  # the database restarting, say: try again next tick
                log.exception("worker tick failed")
            self._stop.wait(max(0.0, self.tick_seconds - (time.monotonic() - started)))

    def tick(self, now: float) -> None:
        """One round of the ticker at ``now`` (epoch seconds)."""
        timezone = str(self.crm.config["locale.timezone"])
        for name, schedule in self.crm.schedules.items():
            slot = schedules.current_slot(schedule, now, timezone)
            if slot is not None and slot > self._seen_slots.get(name, -1):
                self._seen_slots[name] = slot
                self.crm.queue.run_schedule(name, slot)
        every = max(1, int(self.crm.config["outbox.sweep_seconds"]))
        slot = schedules.every_slot(every, now)
        if slot > self._seen_slots.get(SWEEP, -1):
            self._seen_slots[SWEEP] = slot
            token = schedules.claim_slot(self.crm, SWEEP, slot, lease_seconds=60)
            if token is not None:
                error = None
                try:
                    sweep(self.crm)
                except Exception as exc:
                    error = str(exc)[:2000]
                    raise
                finally:
                    schedules.release(self.crm, SWEEP, token, error)
        for ticker in self.tickers:
            try:
                ticker(self.crm)
            except Exception:
                log.exception("ticker %s failed", getattr(ticker, "__name__", ticker))
