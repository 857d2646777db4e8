"""Watchers in workers: each key run once across workers, taken over, restarted, stopped.

Two :class:`Worker` objects on one database stand for two worker processes (each has its
own application, engine and lease holder); a test watcher notes which application runs
which key, and when.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from crmkit import CRM, Watcher, hookimpl, testing
from crmkit.config import Config
from crmkit.jobs import watchers
from crmkit.jobs.cli import jobs
from crmkit.jobs.worker import Worker
from crmkit.model import JobSchedule
from crmkit.testing import wait_until

FAST = {
    "queue.watcher_lease_seconds": 1.5,  # renewed and re-scanned every 0.5 s
    "queue.watcher_retry_max_seconds": 0.5,
    "queue.tick_seconds": 0.1,
}


class Watched:
    """A plugin whose watcher ``test.watch`` records every run: which app, which key, when."""

    def __init__(self, *keys: str) -> None:
        self.keys = list(keys)
        self.lock = threading.Lock()
        self.running: dict[str, set[int]] = {}
        self.overlaps: list[tuple[str, set[int]]] = []
        self.starts: list[tuple[str, int, float]] = []
        self.failures_left: Counter[str] = Counter()

    def list_keys(self, crm):
        return list(self.keys)

    def run(self, crm, key, stop):
        me = id(crm)
        with self.lock:
            self.starts.append((key, me, time.monotonic()))
            self.running.setdefault(key, set()).add(me)
            if len(self.running[key]) > 1:
                self.overlaps.append((key, set(self.running[key])))
        try:
            if self.failures_left[key]:
                self.failures_left[key] -= 1
                raise ConnectionError(f"peer of {key} is down")
            stop.wait()
        finally:
            with self.lock:
                self.running[key].discard(me)

    def active(self) -> dict[str, int]:
        """Key -> how many apps run it now."""
        with self.lock:
            return {key: len(apps) for key, apps in self.running.items() if apps}

    def starts_of(self, key: str) -> list[tuple[int, float]]:
        with self.lock:
            return [(app, when) for k, app, when in self.starts if k == key]

    @hookimpl
    def crmkit_register_watchers(self):
        return [Watcher("test.watch", self.list_keys, self.run, description="test")]


@pytest.fixture
def twin(db_backend):
    """``twin(crm, plugins)``: a second application on ``crm``'s database (another worker)."""
    made = []

    def build(crm, plugins):
        config = Config.from_mapping(dict(crm.config.values), root=crm.config.root, environ={})
        engine = None
        if db_backend == "postgresql":
            engine = testing.postgres_engine_for(testing.private_schema())
        other = CRM(config, plugins=plugins, load_entry_points=False, engine=engine)
        made.append(other)
        return other

    yield build
    for other in made:
        other.close()


@pytest.fixture
def workers():
    """``workers(crm, ...)``: started workers, stopped after the test if still running."""
    started = []

    def start(*crms):
        for crm in crms:
            worker = Worker(crm, concurrency=1)
            worker.start()
            started.append(worker)
        return started[-len(crms) :]

    yield start
    for worker in started:
        worker.stop()


def rows(crm):
    with crm.session_factory() as session:
        return {
            row.name: row
            for row in session.scalars(
                select(JobSchedule).where(JobSchedule.name.startswith("watcher:"))
            )
        }


def test_two_workers_run_each_key_once_pick_up_new_keys_and_stop(make_crm, twin, workers):
    plugin = Watched("a", "b", "c")
    first = make_crm(plugins=[plugin], settings=FAST)
    second = twin(first, [plugin])
    one, two = workers(first, second)

    assert wait_until(lambda: plugin.active() == {"a": 1, "b": 1, "c": 1}, timeout=10)
    time.sleep(3 * 1.5)  # a few renewals and scans by both workers
    assert plugin.overlaps == []
    assert plugin.active() == {"a": 1, "b": 1, "c": 1}
    assert sorted(k for k, _, _ in plugin.starts) == ["a", "b", "c"]  # nobody restarted
    ran = sorted(one.watchers.running() + two.watchers.running())
    assert ran == [("test.watch", "a"), ("test.watch", "b"), ("test.watch", "c")]
    held = rows(first)
    assert set(held) == {"watcher:test.watch:a", "watcher:test.watch:b", "watcher:test.watch:c"}
    assert {row.holder for row in held.values()} <= {one.watchers.holder, two.watchers.holder}

    # a key added while the workers run is watched without a restart; a key gone is stopped
    plugin.keys = ["b", "c", "d"]
    assert wait_until(lambda: plugin.active() == {"b": 1, "c": 1, "d": 1}, timeout=5)
    # (its row goes once its run has stopped, which a busy machine may take a moment over)
    assert wait_until(lambda: "watcher:test.watch:a" not in rows(first), timeout=5)

    began = time.monotonic()
    one.stop()
    two.stop()
    assert time.monotonic() - began < 5
    assert plugin.active() == {}
    assert plugin.overlaps == []
    assert all(row.holder is None and row.lease_until is None for row in rows(first).values())


def test_a_dead_workers_lease_is_taken_over_when_it_runs_out(make_crm, workers):
    plugin = Watched("a")
    crm = make_crm(plugins=[plugin], settings=FAST)
    # a worker that claimed "a" and died: its lease runs 1.5 s more and is never renewed
    name = watchers.lease_name("test.watch", "a")
    watchers.ensure_rows(crm, [name])
    assert watchers.claim(crm, name, "dead-host/1/0000", lease_seconds=1.5)
    claimed = time.monotonic()
    (worker,) = workers(crm)

    assert wait_until(lambda: plugin.active() == {"a": 1}, timeout=10)
    ((_, started),) = plugin.starts_of("a")
    assert started - claimed >= 1.4  # not before the dead worker's lease ran out...
    assert started - claimed < 1.5 + 0.5 + 1.5  # ...and at most a scan (and slack) after
    assert rows(crm)[name].holder == worker.watchers.holder


def test_a_live_workers_lease_is_not_taken(make_crm, workers):
    plugin = Watched("a")
    crm = make_crm(plugins=[plugin], settings=FAST)
    name = watchers.lease_name("test.watch", "a")
    watchers.ensure_rows(crm, [name])
    assert watchers.claim(crm, name, "other-host/1/0000", lease_seconds=1.5)
    stop = threading.Event()

    def keep_renewing():  # the other worker is alive: it renews every 0.5 s
        while not stop.wait(0.5):
            watchers.renew(crm, {name: "other-host/1/0000"}, lease_seconds=1.5)

    renewer = threading.Thread(target=keep_renewing, daemon=True)
    renewer.start()
    try:
        workers(crm)
        time.sleep(4)
        assert plugin.starts == []
    finally:
        stop.set()
        renewer.join()
    # the other worker goes away without a word: this one takes over
    assert wait_until(lambda: plugin.active() == {"a": 1}, timeout=5)


def test_a_failing_run_is_recorded_and_restarted_with_backoff(make_crm, workers, caplog):
    plugin = Watched("a")
    plugin.failures_left["a"] = 2
    crm = make_crm(plugins=[plugin], settings=FAST)
    (worker,) = workers(crm)

    assert wait_until(lambda: plugin.active() == {"a": 1}, timeout=10)
    starts = [when for _, when in plugin.starts_of("a")]
    assert len(starts) == 3  # two failures, then a run that keeps going
    assert all(later - earlier >= 0.45 for earlier, later in itertools.pairwise(starts))
    assert "peer of a is down" in caplog.text
    (state,) = watchers.states(crm)
    assert (state.watcher, state.key) == ("test.watch", "a")
    assert state.running and state.holder == worker.watchers.holder
    assert state.runs == 3
    assert state.last_error is not None
    assert state.last_error.startswith("ConnectionError: peer of a is down")

    result = CliRunner().invoke(jobs, ["watchers"], obj=_Env(crm), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "test.watch" in result.output and "running in" in result.output
    assert "last error" in result.output and "peer of a is down" in result.output


def test_watchers_can_be_switched_off(make_crm, workers):
    plugin = Watched("a")
    crm = make_crm(plugins=[plugin], settings={**FAST, "queue.watchers": False})
    (worker,) = workers(crm)
    assert worker.watchers is None
    time.sleep(1)
    assert plugin.starts == []


def test_watcher_names_are_checked():
    with pytest.raises(ValueError, match="without ':'"):
        Watcher("mail:idle", lambda crm: [], lambda crm, key, stop: None)
    long = watchers.lease_name("mail.idle", "x" * 500)
    assert len(long) == 200 and long != watchers.lease_name("mail.idle", "x" * 499)


class _Env:
    def __init__(self, crm):
        self.crm = crm
