"""Worker processes on Redis and PostgreSQL: nothing lost, nothing delivered twice.

Each test builds a real deployment (a private PostgreSQL schema, a private Redis queue)
and starts real ``crmkit worker`` processes; the peer is a local HTTP server that records
what it received by idempotency key.
"""

from __future__ import annotations

import itertools
import signal
import time

import pytest
from sqlalchemy import insert

from crmkit import testing
from crmkit.clock import utcnow
from crmkit.model import OutboxItem
from crmkit.testing import wait_until
from crmkit.testing.peer import RecordingPeer

from .processes import Deployment

pytestmark = pytest.mark.xdist_group("workers")


@pytest.fixture
def peer():
    with RecordingPeer() as running:
        yield running


@pytest.fixture
def deploy(tmp_path, redis_url):
    testing.require(testing.postgres_reachable(), f"PostgreSQL at {testing.postgres_url()}")
    made = []

    def factory(settings=None, plugins=()):
        deployment = Deployment(tmp_path / f"crm{len(made)}", redis_url, settings or {}, plugins)
        made.append(deployment)
        return deployment

    yield factory
    for deployment in made:
        deployment.close()


def status_of(deployment, item_id):
    return deployment.scalar("SELECT status FROM outbox_item WHERE id = :i", i=item_id)


def test_killed_worker_mid_delivery_is_retried_and_the_peer_acts_once(deploy, peer):
    crm = deploy({"outbox.lease_seconds": 2, "outbox.sweep_seconds": 1})
    first = crm.start_worker(concurrency=1)
    peer.hold()  # the peer accepts the call, then never answers this worker
    with crm.crm.system() as work:
        item_id = work.outbox.add(
            "webhook", {"url": peer.url, "json": {"n": 1}}, idempotency_key="kill-1"
        ).id
    assert peer.wait_for_requests(1, timeout=90), crm.logs()
    assert status_of(crm, item_id) == "delivering"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    peer.release()

    crm.start_worker(concurrency=1)
    assert wait_until(lambda: status_of(crm, item_id) == "delivered", timeout=90), crm.logs()
    assert peer.request_count("kill-1") == 2  # delivered again after the lease ran out...
    assert peer.accepted_count("kill-1") == 1  # ...and the peer acted on it once
    attempts = crm.scalar("SELECT attempts FROM outbox_item WHERE id = :i", i=item_id)
    assert attempts == 2


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_worker_processes_drain_ten_thousand_items_exactly_once(deploy, peer, workers):
    crm = deploy({"outbox.lease_seconds": 30})
    total = 10_000
    now = utcnow()
    rows = [
        {
            "kind": "webhook",
            "payload": {"url": peer.url, "json": {"n": n}},
            "idempotency_key": f"drain-{n}",
            "status": "pending",
            "attempts": 0,
            "max_attempts": 8,
            "created_at": now,
            "next_attempt_at": now,
        }
        for n in range(total)
    ]
    with crm.crm.engine.begin() as connection:
        connection.execute(insert(OutboxItem), rows)
        ids = [row[0] for row in connection.exec_driver_sql("SELECT id FROM outbox_item")]
    crm.crm.queue.wakeup(ids)
    started = time.monotonic()
    processes = [crm.start_worker(concurrency=2) for _ in range(workers)]

    def delivered() -> bool:
        return crm.scalar("SELECT count(*) FROM outbox_item WHERE status = 'delivered'") == total

    assert wait_until(delivered, timeout=240, step=0.5), crm.logs()
    elapsed = time.monotonic() - started
    assert all(p.poll() is None for p in processes), crm.logs()
    assert len(peer.accepted) == total
    assert all(peer.accepted_count(f"drain-{n}") == 1 for n in range(total))
    # no item was even sent twice: claims kept every worker off the others' items
    assert peer.request_count() == total
    print(f"{workers} worker processes: {total / elapsed:.0f} items/s")


def test_peer_down_retries_then_dead_letter_then_admin_retry(deploy, peer):
    crm = deploy({"outbox.retry_base_seconds": 0.2, "outbox.retry_max_seconds": 0.5})
    crm.start_worker(concurrency=1)
    peer.down = True
    with crm.crm.system() as work:
        item_id = work.outbox.add(
            "webhook", {"url": peer.url}, idempotency_key="down-1", max_attempts=3
        ).id
    assert wait_until(lambda: status_of(crm, item_id) == "dead", timeout=90), crm.logs()
    assert peer.request_count("down-1") == 3 and peer.accepted_count("down-1") == 0

    failed = crm.cli("jobs", "failed")
    assert failed.exit_code == 0, failed.output
    assert str(item_id) in failed.stdout and "HTTP 503" in failed.stdout

    peer.down = False
    retried = crm.cli("jobs", "retry", str(item_id))
    assert retried.exit_code == 0, retried.output
    assert wait_until(lambda: status_of(crm, item_id) == "delivered", timeout=90), crm.logs()
    assert peer.accepted_count("down-1") == 1
    assert "no failed deliveries" in crm.cli("jobs", "failed").stdout


def test_two_workers_never_run_one_schedule_at_once(deploy, tmp_path):
    runs_file = tmp_path / "runs.txt"
    crm = deploy(
        {"test.runs_file": str(runs_file), "test.run_seconds": 1.5},
        plugins=["tests.jobs.schedule_plugin"],
    )
    crm.start_worker(concurrency=2)
    crm.start_worker(concurrency=2)

    def runs():
        if not runs_file.exists():
            return []
        return [
            (int(pid), float(start), float(end))
            for pid, start, end in (line.split() for line in runs_file.read_text().splitlines())
        ]

    assert wait_until(lambda: len(runs()) >= 4, timeout=90), crm.logs()
    ordered = sorted(runs(), key=lambda run: run[1])
    for before, after in itertools.pairwise(ordered):
        assert after[1] >= before[2] - 0.01, f"runs overlap: {before} and {after}"

    def finished():  # a run writes its line, then the schedule's bookkeeping commits
        return crm.scalar(
            "SELECT runs FROM job_schedule"
            " WHERE name = 'test.slow.every_second' AND last_error IS NULL"
        )

    assert wait_until(lambda: (finished() or 0) >= 4, timeout=10), finished()


def test_a_killed_workers_watcher_is_taken_over_and_a_stopped_one_handed_over(deploy, tmp_path):
    watch_file = tmp_path / "watch.txt"
    crm = deploy(
        {"test.watch_file": str(watch_file), "queue.watcher_lease_seconds": 3},
        plugins=["tests.jobs.watcher_plugin"],
    )
    processes = {p.pid: p for p in (crm.start_worker(1), crm.start_worker(1))}

    def notes():
        if not watch_file.exists():
            return []
        return [
            (what, int(pid), float(when))
            for what, pid, when in (line.split() for line in watch_file.read_text().splitlines())
        ]

    assert wait_until(lambda: len(notes()) >= 1, timeout=90), crm.logs()
    time.sleep(4)  # both workers scan and renew several times: still one run
    ((what, holder, _),) = notes()
    assert what == "start" and holder in processes

    processes[holder].send_signal(signal.SIGKILL)
    processes[holder].wait(timeout=10)
    killed = time.time()
    assert wait_until(lambda: len(notes()) >= 2, timeout=30), crm.logs()
    what, successor, started = notes()[1]
    assert what == "start" and successor != holder
    # not before the dead worker's lease ran out (renewed at most 1 s before the kill)...
    assert started - killed >= 3 - 1 - 0.3
    assert started - killed < 3 + 1 + 3  # ...and soon after (one scan, start-up slack)

    processes[successor].send_signal(signal.SIGTERM)
    processes[successor].wait(timeout=15)
    assert [n[0] for n in notes()] == ["start", "start", "stop"]
    row = "SELECT holder FROM job_schedule WHERE name = 'watcher:test.watch:only'"
    assert crm.scalar(row) is None  # given up on the way out: another worker may start at once
