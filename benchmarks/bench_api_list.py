"""API list endpoint under wrk: 50 parties as an agent, out of 1,000,000 owned by 50 agents.

``GET /api/v1/party?limit=50`` (bearer token, access rules, keyset page, output schema) is
served by ``crmkit.web.server`` under uvicorn as ``crmkit serve`` runs it (its event loop,
``crmkit.web.eventloop``: uvloop accepting every waiting connection at once; httptools)
with 1 and 2 workers and
loaded by ``wrk -c32`` (two threads) from the same machine, in alternating rounds (medians shown).
The baseline, measured in the same run, is a bare Starlette endpoint running the same SQL
through SQLAlchemy Core (no token, no access policy, no schema) and returning the same rows,
encoded by the same JSON library, under the same uvicorn and event loop.
Targets: requests/s >= 0.5x the baseline; p99 <= 50 ms.  The servers' CPU time per request
is shown too: on a machine shared with other work, requests/s and latencies move with the
neighbours' load, while CPU per request (and its ratio) does not.

    python -m benchmarks --only api_list [--db sqlite|postgresql]

``BENCH_API_ROUNDS`` (3), ``BENCH_API_SECONDS`` (10) and ``BENCH_API_WRK_THREADS`` (2) change
the rounds, their length and wrk's threads.

The data set is generated once through ``work.parties.bulk_create`` and kept (SQLite under
``var/bench``, PostgreSQL in the schema ``crmkit_bench_api`` of ``CRMKIT_BENCH_PG_URL``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks.harness import Context, Row, median
from crmkit.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "var" / "bench"
AGENTS = 50
PARTIES = 1_000_000
SCHEMA = "crmkit_bench_api"
BATCH = 50_000
CONNECTIONS = 32
ROUNDS = int(os.environ.get("BENCH_API_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_API_SECONDS", "10"))
WRK_THREADS = int(os.environ.get("BENCH_API_WRK_THREADS", "2"))


# -- the data set ---------------------------------------------------------------------------


def deployment(db: str) -> Path:
    """The benchmark deployment directory (its ``crmkit.toml`` names the database)."""
    directory = BENCH_DIR / f"api-list-{db}"
    directory.mkdir(parents=True, exist_ok=True)
    if db == "sqlite":
        url = "sqlite:///api-list.sqlite3"
    else:
        base = os.environ.get(
            "CRMKIT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
        engine = sa.create_engine(base)
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
        engine.dispose()
        url = f"{base}?options=-csearch_path%3D{SCHEMA}"
    (directory / "crmkit.toml").write_text(
        f'secret_key = "benchmark-only"\n\n[database]\nurl = "{url}"\n',
        encoding="utf-8",
    )
    return directory


def prepare(directory: Path, parties: int) -> tuple[str, int, dict[str, Any]]:
    """Generate the data set unless it is there; a token and the id of the first agent."""
    from crmkit.app import CRM
    from crmkit.model import Party

    # the plugins the served application will load (every installed one), so that their
    # tables exist and their schedules run in the server's embedded worker as in production
    crm = CRM.from_directory(directory)
    try:
        crm.create_schema()
        with crm.system() as work:
            agents = [u for u in work.users.list(role="agent")]
            if len(agents) < AGENTS:
                for index in range(len(agents), AGENTS):
                    work.users.create(username=f"agent{index + 1:02d}", roles=["agent"])
        with crm.system() as work:
            agents = sorted(work.users.list(role="agent"), key=lambda u: u.id)[:AGENTS]
            have = work.session.scalar(sa.select(sa.func.count()).select_from(Party)) or 0
        if have < parties:
            print(f"generating {parties - have:,} parties (once; kept in {directory})", flush=True)
            started = time.perf_counter()
            for start in range(have, parties, BATCH):
                rows = [
                    {
                        "kind": "organisation",
                        "name": f"ООО «Клиент {index + 1}»",
                        "owner_id": agents[index % AGENTS].id,
                        "source": ("site", "call", "referral")[index % 3],
                    }
                    for index in range(start, min(start + BATCH, parties))
                ]
                with crm.system() as work:
                    work.parties.bulk_create(rows, source="benchmark")
                done = min(start + BATCH, parties)
                rate = (done - have) / (time.perf_counter() - started)
                print(f"  {done:,} parties ({rate:,.0f}/s)", flush=True)
            with crm.engine.begin() as connection:
                # this table only: the server may hold other people's schemas
                connection.exec_driver_sql("ANALYZE party")
        agent = agents[0]
        with crm.acting_as(agent) as work:
            secret = work.api_tokens.create("benchmark").secret
        with crm.system() as work:
            owned = work.session.scalar(
                sa.select(sa.func.count()).select_from(Party).where(Party.owner_id == agent.id)
            )
        info = {
            "agent": agent.username,
            "owned": owned,
            "users": AGENTS,
            "url": crm.config.database_url,
        }
        return secret, int(agent.id), info
    finally:
        crm.close()


# -- servers and load -------------------------------------------------------------------------


def serve(target: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """uvicorn serving an app factory, as ``crmkit serve`` does (its loop, httptools)."""
    from crmkit.web.server import SERVING_LOOP

    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        SERVING_LOOP,
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT)


def wait_until_up(url: str, headers: dict[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout} s")
        time.sleep(0.3)


def check_rows(url: str, headers: dict[str, str]) -> int:
    """How many rows the endpoint answers (both must answer the same 50)."""
    import orjson

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        body = orjson.loads(r.read())
    return len(body["items"])


def load(url: str, headers: dict[str, str], duration: int) -> dict[str, float]:
    """wrk's requests/s and p99 latency (ms) for ``url``."""
    header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    base = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", "--latency", *header_args, url]
    run = subprocess.run([*base[:1], f"-d{duration}s", *base[1:]], capture_output=True, check=True)
    output = run.stdout.decode()
    if "Non-2xx" in output:
        raise RuntimeError(f"error answers under load:\n{output}")
    timeouts = re.search(r"timeout (\d+)", output)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    served = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    assert p99 is not None, output
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {
        "requests": float(served),
        "rps": rps,
        "p99": float(p99.group(1)) * scale,
        "timeouts": float(timeouts.group(1)) if timeouts else 0.0,
    }


class Server:
    """A uvicorn server of one app, answering 50 rows at ``url``."""

    def __init__(
        self, target: str, path: str, workers: int, env: dict[str, str], headers: dict[str, str]
    ) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}{path}"
        self.headers = headers
        self.process = serve(target, port, workers, env)
        wait_until_up(self.url, headers)
        header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
        warm_up = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", "-d2s", *header_args, self.url]
        subprocess.run(warm_up, capture_output=True, check=True)
        rows = check_rows(self.url, headers)
        if rows != 50:
            raise RuntimeError(f"{target} answered {rows} rows, not 50")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its worker processes."""
        return sum(_cpu_of(pid) for pid in _tree(self.process.pid))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            queue += [int(child) for child in task.read_text().split()]
    return found


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(
    workers: int, env: dict[str, str], api_headers: dict[str, str], duration: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median figures of the baseline and the API, loaded in turns (B, A, B, A...).

    Alternating the two in one run keeps them under the same conditions even when the
    machine's other load drifts, which on a shared machine it does.
    """
    baseline = Server("benchmarks.api_baseline:create_app", "/party", workers, env, {})
    api = Server(
        "crmkit.web.server:app_from_environment",
        "/api/v1/party?limit=50",
        workers,
        env,
        api_headers,
    )
    try:
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "api": []}
        for _ in range(rounds):
            for name, server in (("baseline", baseline), ("api", api)):
                before = server.cpu_seconds()
                figures = load(server.url, server.headers, duration)
                used = server.cpu_seconds() - before
                # the warm-up's requests are not counted: measured over the timed run only
                figures["cpu_ms"] = 1000 * used / max(figures["requests"], 1)
                runs[name].append(figures)
    finally:
        baseline.stop()
        api.stop()
    return tuple(  # type: ignore[return-value]
        {key: median([run[key] for run in runs[name]]) for key in runs[name][0]}
        for name in ("baseline", "api")
    )


def run(context: Context) -> list[Row]:
    """Both worker counts on each database; requests/s, p99 and CPU per request."""
    if shutil.which("wrk") is None:
        return [
            Row(
                "API list under wrk",
                "-",
                "not measured",
                "wrk is not installed (apt-get install wrk)",
            )
        ]
    rows = []
    for database in context.databases:
        directory = deployment(database)
        secret, agent_id, _info = prepare(directory, context.size)
        env = {"CRMKIT_CONFIG": str(directory), "CRMKIT_BENCH_AGENT": str(agent_id)}
        headers = {"Authorization": f"Bearer {secret}"}
        for workers in (1, 2):
            baseline, api = compare(workers, env, headers, duration=SECONDS, rounds=ROUNDS)
            name = f"API list, 50 of {context.size:,}, {workers} worker(s)"
            ratio = api["rps"] / baseline["rps"]
            rows += [
                Row(
                    name,
                    database,
                    "requests/s",
                    f"{api['rps']:,.0f}",
                    f"{baseline['rps']:,.0f} (bare Starlette + Core)",
                    ratio,
                    ">= 0.50x",
                    ratio >= 0.5,
                ),
                Row(
                    name,
                    database,
                    "p99 at 32 connections",
                    f"{api['p99']:.1f} ms",
                    f"{baseline['p99']:.1f} ms",
                    None,
                    "<= 50 ms",
                    api["p99"] <= 50,
                ),
                Row(
                    name,
                    database,
                    "server CPU per request",
                    f"{api['cpu_ms']:.2f} ms",
                    f"{baseline['cpu_ms']:.2f} ms",
                    baseline["cpu_ms"] / api["cpu_ms"],
                ),
            ]
    return rows
