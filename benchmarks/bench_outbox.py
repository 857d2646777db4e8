"""Background work figures (issue "Background work"):

1. Outbox delivery to a local no-op HTTP peer (its own process) by 1, 2 and 4
   ``crmkit worker`` processes (2 threads each) on Redis and PostgreSQL: items/s, the CPU
   cores the workers used, and the scaling from 1 to 2 and from 1 to 4 workers (aim >= 1.7x
   from 1 to 2 on 2 cores).
   Raw baseline: the same POSTs sent by one process with httpx, no database, no queue.
2. Enqueue overhead: a change (a party's field updated through the services, one unit of
   work) with one side effect (an outbox item and its wake-up after commit) vs the same
   change without.  Target <= 1.3x, on each database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import insert, text

from benchmarks.data import fresh_crm
from benchmarks.harness import Context, Row, median
from crmkit import testing
from crmkit.app import CRM
from crmkit.clock import utcnow
from crmkit.config import Config
from crmkit.model import OutboxItem, metadata

ITEMS = 3000
WORKER_COUNTS = (1, 2, 4)
CHANGES = 400

ROOT = Path(__file__).resolve().parents[1]


def run(context: Context) -> list[Row]:
    rows: list[Row] = []
    rows += _delivery()
    for database in context.databases:
        rows.append(_enqueue_overhead(database))
    return rows


# -- 1. delivery throughput -------------------------------------------------------------------


@contextlib.contextmanager
def _deployment(redis_url: str) -> Iterator[tuple[Path, CRM]]:
    schema, drop = testing.new_postgres_schema("crmkit_benchq")
    directory = Path(tempfile.mkdtemp(prefix="crmkit-bench-outbox-"))
    url = f"{testing.postgres_url()}?options={quote(f'-csearch_path={schema}')}"
    (directory / "crmkit.toml").write_text(
        f'secret_key = "bench-{os.urandom(6).hex()}"\n'
        f'database.url = "{url}"\nqueue.url = "{redis_url}"\n'
        'security.argon2_profile = "CHEAPEST"\n'
        f"plugins.block = {_installed_plugins()!r}\n",
        encoding="utf-8",
    )
    crm = CRM(Config.load(directory, environ={}), load_entry_points=False)
    metadata.create_all(crm.engine)
    crm.migrations.stamp()  # `crmkit worker` refuses a database not at the code's revisions
    try:
        yield directory, crm
    finally:
        crm.queue.flush()
        crm.close()
        drop()


def _installed_plugins() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(e.name for e in entry_points(group="crmkit"))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _noop_peer() -> Iterator[str]:
    """A no-op HTTP peer in its own process (so that it never shares a GIL with us)."""
    port = testing.free_port()
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.noop_peer", str(port)], cwd=ROOT)
    try:
        testing.wait_until(lambda: testing.listening(port), timeout=30, step=0.1)
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _drain(directory: Path, crm: CRM, peer_url: str, workers: int) -> tuple[float, float]:
    """Items/s and cores used by ``workers`` processes delivering ITEMS webhooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMKIT_")}
    env["CRMKIT_CONFIG"] = str(directory)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "crmkit.cli", "worker", "-c", "2"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        _wait_idle(processes)  # every worker started (imports done, ticking) before the work
        with crm.engine.begin() as connection:
            connection.execute(text("DELETE FROM outbox_item"))
            now = utcnow()
            connection.execute(
                insert(OutboxItem),
                [
                    {
                        "kind": "webhook",
                        "payload": {"url": peer_url, "json": {"n": n}},
                        "idempotency_key": f"w{workers}-{n}",
                        "status": "pending",
                        "attempts": 0,
                        "max_attempts": 8,
                        "created_at": now,
                        "next_attempt_at": now,
                    }
                    for n in range(ITEMS)
                ],
            )
            ids = list(connection.scalars(text("SELECT id FROM outbox_item")))
        cpu_before = sum(_cpu_seconds(p.pid) for p in processes)
        started = time.perf_counter()
        crm.queue.wakeup(ids)
        while True:
            with crm.engine.connect() as connection:
                done = connection.scalar(
                    text("SELECT count(*) FROM outbox_item WHERE status = 'delivered'")
                )
            if done >= ITEMS:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = sum(_cpu_seconds(p.pid) for p in processes) - cpu_before
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
    return ITEMS / elapsed, cpu / elapsed


def _wait_idle(processes: list[subprocess.Popen[bytes]], timeout: float = 120) -> None:
    """Wait until every process has finished starting: it uses almost no CPU any more."""
    deadline = time.monotonic() + timeout
    time.sleep(1)
    while time.monotonic() < deadline:
        before = [_cpu_seconds(p.pid) for p in processes]
        time.sleep(1.0)
        after = [_cpu_seconds(p.pid) for p in processes]
        if all(b - a < 0.1 for a, b in zip(before, after, strict=True)):
            return


def _raw_posts(peer_url: str) -> float:
    with httpx.Client() as client:
        started = time.perf_counter()
        for n in range(ITEMS):
            client.post(peer_url, json={"n": n}, headers={"Idempotency-Key": f"raw-{n}"})
        return ITEMS / (time.perf_counter() - started)


def _delivery() -> list[Row]:
    redis_url = testing.redis_url()
    if not testing.postgres_reachable():
        return [Row("outbox", "postgresql", "delivery", "skipped: no PostgreSQL")]
    rows = []
    with _noop_peer() as peer, _deployment(redis_url) as (directory, crm):
        raw = _raw_posts(peer)
        rates: dict[int, float] = {}
        for workers in WORKER_COUNTS:
            rate, cores = _drain(directory, crm, peer, workers)
            rates[workers] = rate
            rows.append(
                Row(
                    "outbox",
                    "postgresql+redis",
                    f"delivery, {workers} worker(s) x 2 threads, {ITEMS} items",
                    f"{rate:.0f} items/s, {cores:.2f} cores",
                    f"{raw:.0f} POSTs/s (1 process, httpx)",
                    rate / raw,
                )
            )
        cpus = os.cpu_count() or 1
        for low, high, aim in ((1, 2, 1.7), (1, 4, None)):
            factor = rates[high] / rates[low]
            rows.append(
                Row(
                    "outbox",
                    "postgresql+redis",
                    f"scaling {low} -> {high} workers ({cpus} cores)",
                    f"{factor:.2f}x",
                    f"{rates[low]:.0f} items/s",
                    factor,
                    f">= {aim}x" if aim else "",
                    (factor >= aim) if aim else None,
                )
            )
    return rows


# -- 2. enqueue overhead ----------------------------------------------------------------------


def _enqueue_overhead(database: str) -> Row:
    settings: dict[str, Any] = {"queue.url": testing.redis_url()}
    with fresh_crm(database, **settings) as crm:
        with crm.system() as work:
            party = work.parties.create({"kind": "person", "first_name": "Иван", "last_name": "Б"})

        def change(n: int, side_effect: bool) -> None:
            with crm.system() as work:
                row = work.parties.get(party.id)
                work.parties.update(row, {"last_name": f"Б{n}"})
                if side_effect:
                    payload = {"url": "http://127.0.0.1:9/", "json": {"n": n}}
                    work.outbox.add("webhook", payload, party_id=party.id)

        for n in range(50):  # warm up both paths
            change(n, n % 2 == 0)
        plain: list[float] = []
        with_effect: list[float] = []
        # alternate, so drift hits both alike; every change writes a new value (an update to
        # the value already there is a no-op and would make its side of the ratio look cheap)
        for n in range(1000, 1000 + CHANGES):
            started = time.perf_counter()
            change(2 * n, False)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            change(2 * n + 1, True)
            with_effect.append(time.perf_counter() - started)
        crm.queue.flush()
    base, measured = median(plain), median(with_effect)
    ratio = measured / base
    return Row(
        "outbox",
        database,
        "change + 1 side effect vs the change alone (median, Redis queue)",
        f"{measured * 1000:.2f} ms",
        f"{base * 1000:.2f} ms",
        ratio,
        "<= 1.3x",
        ratio <= 1.3,
    )
