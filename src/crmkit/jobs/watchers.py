"""Watchers: long-lived connections that the workers keep running, each exactly once.

A :class:`Watcher` names the things it watches (``keys(crm)``: one per mailbox, say) and
how to watch one (``run(crm, key, stop)``, which blocks until ``stop`` is set, or raises).
Every worker runs a :class:`Supervisor`, whose thread wakes every third of
``queue.watcher_lease_seconds`` to

* re-read every watcher's keys, so that a mailbox added or switched off is picked up
  without a restart (a key that disappeared has its run stopped);
* renew the leases it holds and stop a run whose lease it lost;
* claim the keys nobody holds and start a thread for each.

The lease of a key is a row of ``job_schedule`` (the table that keeps periodic schedules
from running twice) named ``watcher:<watcher>:<key>``: a worker claims it with one
conditional ``UPDATE`` that succeeds only while nobody holds an unexpired lease, so of
several workers exactly one runs each key.  A worker that dies stops renewing, and
another one claims the key once the lease has run out.

A run that raises is logged, its error recorded on the row (``last_error``, shown on the
*Failed deliveries* screen and by ``crmkit jobs watchers``) and started again after a
backoff (one second, doubled after each further failure up to
``queue.watcher_retry_max_seconds``) while the worker keeps the lease.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import delete, or_, select, update

from crmkit.clock import utcnow
from crmkit.model import JobSchedule

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

#: Prefix of the ``job_schedule`` rows that hold watchers' leases.
PREFIX = "watcher:"
_NAME_LIMIT = 200  # job_schedule.name


@attrs.frozen
class Watcher:
    """Something workers keep watching, once per key, across all workers.

    ``keys(crm)`` lists what to watch now (strings, one per mailbox, bot, PBX...); it is
    called again every few seconds.  ``run(crm, key, stop)`` watches one key: it blocks
    until the ``threading.Event`` ``stop`` is set, then returns soon (within a second or
    two: a worker waits for it when shutting down), or raises when the connection fails,
    to be started again after a backoff.
    """

    name: str
    keys: Callable[[Any], Iterable[str]]
    run: Callable[[Any, str, threading.Event], None]
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"watcher {self.name!r}: give a name without ':'")


def lease_name(watcher: str, key: str) -> str:
    """The ``job_schedule`` row holding the lease of ``key`` of ``watcher``."""
    name = f"{PREFIX}{watcher}:{key}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: _NAME_LIMIT - 17]}~{digest}"


def holder_id() -> str:
    """A new lease holder name: host and process (for the admin), and a random part."""
    return f"{socket.gethostname()[:40]}/{os.getpid()}/{secrets.token_hex(4)}"


# -- leases ------------------------------------------------------------------------------


def ensure_rows(crm: CRM, names: Iterable[str]) -> None:
    """Create the lease rows when missing (idempotent, concurrent-safe)."""
    from crmkit.jobs.schedules import ensure_rows as ensure_schedule_rows

    ensure_schedule_rows(crm, names)


def claim(crm: CRM, name: str, holder: str, lease_seconds: float) -> bool:
    """Take the lease of ``name`` if nobody holds an unexpired one; whether it was taken."""
    now = utcnow()
    statement = (
        update(JobSchedule)
        .where(
            JobSchedule.name == name,
            or_(JobSchedule.lease_until.is_(None), JobSchedule.lease_until < now),
        )
        .values(
            holder=holder,
            lease_until=now + dt.timedelta(seconds=lease_seconds),
            last_started_at=now,
            runs=JobSchedule.runs + 1,
        )
    )
    with crm.engine.begin() as connection:
        return bool(connection.execute(statement).rowcount)


def renew(crm: CRM, held: dict[str, str], lease_seconds: float) -> set[str]:
    """Extend the leases ``held`` (name to holder); returns the names no longer held."""
    if not held:
        return set()
    until = utcnow() + dt.timedelta(seconds=lease_seconds)
    lost = set()
    with crm.engine.begin() as connection:
        for name, holder in held.items():
            statement = update(JobSchedule).where(*_held(name, holder)).values(lease_until=until)
            if not connection.execute(statement).rowcount:
                lost.add(name)
    return lost


def _held(name: str, holder: str) -> tuple[Any, ...]:
    """The conditions matching the row of ``name`` while ``holder`` holds its lease."""
    return (JobSchedule.name == name, JobSchedule.holder == holder)


def _update_held(crm: CRM, name: str, holder: str, values: dict[str, Any]) -> bool:
    """Set ``values`` on the row of ``name`` if ``holder`` still holds it; whether it did."""
    statement = update(JobSchedule).where(*_held(name, holder)).values(values)
    with crm.engine.begin() as connection:
        return bool(connection.execute(statement).rowcount)


def record_failure(crm: CRM, name: str, holder: str, error: str) -> None:
    """Note that the run of ``name`` ended with ``error`` (the lease stays held)."""
    _update_held(crm, name, holder, {"last_error": error, "last_finished_at": utcnow()})


def record_restart(crm: CRM, name: str, holder: str) -> bool:
    """Note a new run of ``name``; False if the lease was lost meanwhile."""
    return _update_held(
        crm, name, holder, {"last_started_at": utcnow(), "runs": JobSchedule.runs + 1}
    )


def forget(crm: CRM, name: str, holder: str) -> None:
    """Drop the row of a key no longer watched (a mailbox deleted or switched off)."""
    with crm.engine.begin() as connection:
        connection.execute(delete(JobSchedule).where(*_held(name, holder)))


def release(crm: CRM, name: str, holder: str) -> None:
    """Give the lease of ``name`` up (another worker may claim it at once)."""
    released = {"holder": None, "lease_until": None, "last_finished_at": utcnow()}
    _update_held(crm, name, holder, released)


@attrs.frozen
class WatcherState:
    """Where one watched key stands, as the admin screen and ``crmkit jobs watchers`` show."""

    watcher: str
    key: str
    holder: str | None
    running: bool
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    last_error: str | None
    runs: int


def states(crm: CRM) -> list[WatcherState]:
    """Every key that a worker watches or watched (the rows of registered watchers)."""
    with crm.session_factory() as session:
        rows = list(
            session.scalars(
                select(JobSchedule)
                .where(JobSchedule.name.startswith(PREFIX, autoescape=True))
                .order_by(JobSchedule.name)
            )
        )
    now = utcnow()
    found = []
    for row in rows:
        watcher, _, key = row.name[len(PREFIX) :].partition(":")
        if watcher not in crm.watchers:
            continue
        lease_until = row.lease_until
        if lease_until is not None and lease_until.tzinfo is None:
            lease_until = lease_until.replace(tzinfo=dt.UTC)
        found.append(
            WatcherState(
                watcher=watcher,
                key=key,
                holder=row.holder,
                running=row.holder is not None and lease_until is not None and lease_until > now,
                started_at=row.last_started_at,
                finished_at=row.last_finished_at,
                last_error=row.last_error,
                runs=row.runs,
            )
        )
    return found


# -- the supervisor ----------------------------------------------------------------------


@attrs.define(eq=False)
class _Run:
    watcher: Watcher
    key: str
    name: str
    holder: str
    stop: threading.Event = attrs.field(factory=threading.Event)
    thread: threading.Thread | None = None
    unwanted: bool = False
    renewed_at: float = attrs.field(factory=time.monotonic)


class Supervisor:
    """Runs this worker's share of the watchers: claims keys, keeps and restarts their runs."""

    def __init__(self, crm: CRM, watchers: Iterable[Watcher] | None = None) -> None:
        self.crm = crm
        self.watchers = list(crm.watchers.values() if watchers is None else watchers)
        self.lease_seconds = float(crm.config["queue.watcher_lease_seconds"])
        self.retry_max_seconds = float(crm.config["queue.watcher_retry_max_seconds"])
        self.retry_base_seconds = min(1.0, self.retry_max_seconds)
        self.scan_seconds = self.lease_seconds / 3
        self.holder = holder_id()
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="crmkit-watchers", daemon=True)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervising thread (it claims and starts the runs)."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every run and give their leases up; waits up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:  # a scan that was claiming when stop() began may have added some
            runs = list(self._runs.values())
        for run in runs:
            run.stop.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))
                if run.thread.is_alive():
                    log.warning("watcher %s %r did not stop in time", run.watcher.name, run.key)

    def running(self) -> list[tuple[str, str]]:
        """The (watcher, key) pairs this worker runs now."""
        with self._lock:
            return sorted(
                (r.watcher.name, r.key)
                for r in self._runs.values()
                if r.thread is not None and r.thread.is_alive() and not r.stop.is_set()
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except Exception:  # the database restarting, say: try again next round
                log.exception("watchers: scan failed")
            self._stop.wait(self.scan_seconds)

    # -- one round --------------------------------------------------------------------

    def scan(self) -> None:
        """Renew held leases, stop runs no longer wanted, claim and start free keys."""
        with self._lock:
            for name, run in list(self._runs.items()):
                if run.thread is not None and not run.thread.is_alive():
                    del self._runs[name]
            held = {name: run.holder for name, run in self._runs.items() if not run.stop.is_set()}
        self._renew(held)
        wanted = self._wanted()
        with self._lock:
            for name, run in self._runs.items():
                if name not in wanted:
                    log.info("watcher %s %r: no longer wanted, stopping", run.watcher.name, run.key)
                    run.unwanted = True
                    run.stop.set()
            free = [name for name in wanted if name not in self._runs]
        # every round: the holder of a key that went away deletes its row
        ensure_rows(self.crm, free)
        for name in free:
            if self._stop.is_set():
                return
            watcher, key = wanted[name]
            if claim(self.crm, name, self.holder, self.lease_seconds):
                self._start(_Run(watcher, key, name, self.holder))

    def _renew(self, held: dict[str, str]) -> None:
        started = time.monotonic()
        try:
            lost = renew(self.crm, held, self.lease_seconds)
        except Exception:
            log.exception("watchers: renewing leases failed")
        else:
            with self._lock:
                for name in held:
                    run = self._runs.get(name)
                    if run is None:
                        continue
                    if name in lost:
                        log.warning(
                            "watcher %s %r: lease lost, stopping", run.watcher.name, run.key
                        )
                        run.stop.set()
                    else:
                        run.renewed_at = started
        # a lease not renewed for most of its time may be claimed elsewhere: stop first
        with self._lock:
            for run in self._runs.values():
                if not run.stop.is_set() and started - run.renewed_at > self.lease_seconds * 0.8:
                    log.warning(
                        "watcher %s %r: lease not renewed in time, stopping",
                        run.watcher.name,
                        run.key,
                    )
                    run.stop.set()

    def _wanted(self) -> dict[str, tuple[Watcher, str]]:
        wanted: dict[str, tuple[Watcher, str]] = {}
        for watcher in self.watchers:
            try:
                keys = [str(key) for key in watcher.keys(self.crm)]
            except Exception:
                log.exception("watcher %s: listing its keys failed", watcher.name)
                with self._lock:  # keep what runs rather than stop it for a passing failure
                    keys = [r.key for r in self._runs.values() if r.watcher is watcher]
            for key in keys:
                wanted[lease_name(watcher.name, key)] = (watcher, key)
        return wanted

    def _start(self, run: _Run) -> None:
        with self._lock:
            if self._stop.is_set():
                release(self.crm, run.name, run.holder)
                return
            run.thread = threading.Thread(
                target=self._keep_running,
                args=(run,),
                name=f"crmkit-watch-{run.watcher.name}-{run.key}"[:60],
                daemon=True,
            )
            self._runs[run.name] = run
            run.thread.start()
        log.info("watcher %s %r: started", run.watcher.name, run.key)

    # -- one key's thread -------------------------------------------------------------

    def _keep_running(self, run: _Run) -> None:
        from crmkit.jobs.delivery import error_text

        failures = 0
        try:
            while not run.stop.is_set():
                started = time.monotonic()
                try:
                    run.watcher.run(self.crm, run.key, run.stop)
                except Exception as exc:
                    if run.stop.is_set():  # failing because it was told to stop
                        break
                    error = error_text(exc)
                    log.exception("watcher %s %r failed", run.watcher.name, run.key)
                else:
                    if run.stop.is_set():
                        break
                    error = "returned without being stopped"
                    log.warning("watcher %s %r %s", run.watcher.name, run.key, error)
                if time.monotonic() - started > self.retry_max_seconds:
                    failures = 0  # it ran well for a while: start the backoff again
                failures += 1
                self._quietly(record_failure, run.name, run.holder, error)
                delay = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (failures - 1))
                if run.stop.wait(delay):
                    break
                if self._quietly(record_restart, run.name, run.holder) is False:
                    log.warning(
                        "watcher %s %r: lease lost, not restarting", run.watcher.name, run.key
                    )
                    break
        finally:
            self._quietly(forget if run.unwanted else release, run.name, run.holder)
            log.info("watcher %s %r: stopped", run.watcher.name, run.key)

    def _quietly(self, record: Callable[..., Any], *args: Any) -> Any:
        try:
            return record(self.crm, *args)
        except Exception:  # the database may be down: the run goes on, the lease expires
            log.exception("watchers: %s failed", record.__name__)
            return None
