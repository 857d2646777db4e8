"""Core library figures (issue "Core library"):

1. Creating organisations with two contact points each through the services' bulk path
   (normalization, audit and events included), vs SQLAlchemy Core ``executemany`` of the same
   final rows into an empty copy of the tables.  Target: >= 0.3x.
2. An access-scoped list page (50 rows, newest activity first, keyset) over the same base,
   owned by 50 agents, as an agent: p95 <= 10 ms on SQLite, <= 20 ms on PostgreSQL, and
   within 2x of a hand-written SQL query returning the same rows (raw driver).
3. Stage moves with history, audit and events, on SQLite: >= 1,000 moves/s.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import sqlalchemy as sa

from benchmarks.data import fresh_crm, organisation_rows
from benchmarks.harness import Context, Row, percentile, timed
from crmkit.model import (
    AuditEntry,
    ContactPoint,
    MatchWord,
    MatchWordVariant,
    Party,
    PartyMatchKey,
    User,
)
from crmkit.testing import add_user

AGENTS = 50
BATCH = 20_000


def run(context: Context) -> list[Row]:
    rows: list[Row] = []
    if "sqlite" in context.databases:
        # first, in a process that has not yet built a million rows (a server would not
        # have either: a full collection walks every live object)
        rows.append(_moves("sqlite"))
    for database in context.databases:
        with fresh_crm(database) as crm:
            agents = [add_user(crm, f"agent{i}", ["agent"]).id for i in range(AGENTS)]
            rows.append(_bulk_create(crm, database, context.size, agents))
            gc.collect()
            rows += _list_page(crm, database, agents)
    return rows


# -- 1. bulk create ---------------------------------------------------------------------------


def _bulk_create(crm: Any, database: str, size: int, agents: list[int]) -> Row:
    def create() -> int:
        created = 0
        with crm.system() as work:
            created = work.parties.bulk_create(
                organisation_rows(size, agents), batch_size=BATCH
            ).count
        return created

    seconds, created = timed(create)
    if database == "postgresql":  # autovacuum would do it within a minute; measure that state
        with crm.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE party"
            )
    tables = [
        Party.__table__,
        ContactPoint.__table__,
        AuditEntry.__table__,
        PartyMatchKey.__table__,  # screening keys are final rows of a bulk create too
        MatchWord.__table__,
        MatchWordVariant.__table__,
    ]
    with crm.engine.connect() as connection:
        final = {
            t.name: [dict(r._mapping) for r in connection.execute(sa.select(t))] for t in tables
        }
        users = [dict(r._mapping) for r in connection.execute(sa.select(User.__table__))]
    written = sum(len(v) for v in final.values())
    baseline = _core_executemany(database, tables, final, users)
    ours = written / seconds
    ratio = ours / baseline
    return Row(
        "bulk create (org + 2 contacts)",
        database,
        f"{created:,} parties",
        f"{ours:,.0f} rows/s",
        f"{baseline:,.0f} rows/s (Core executemany)",
        ratio,
        ">= 0.30x",
        ratio >= 0.3,
    )


def _core_executemany(
    database: str,
    tables: list[sa.Table],
    final: dict[str, list[dict[str, Any]]],
    users: list[dict[str, Any]],
) -> float:
    """Rows/s of plain Core executemany of ``final`` into empty tables of a fresh database."""
    with fresh_crm(database) as empty:
        with empty.engine.begin() as connection:  # the owners the rows point at; not timed
            connection.execute(sa.insert(User.__table__), users)
        started = time.perf_counter()
        with empty.engine.begin() as connection:
            for table in tables:
                rows = final[table.name]
                for start in range(0, len(rows), BATCH):
                    connection.execute(sa.insert(table), rows[start : start + BATCH])
        seconds = time.perf_counter() - started
    return sum(len(v) for v in final.values()) / seconds


# -- 2. access-scoped list page ---------------------------------------------------------------


def _list_page(crm: Any, database: str, agents: list[int]) -> list[Row]:
    """Both list paths: ORM records (``list``, for Python callers) and plain rows
    (``list_rows``, which the web list screen and the REST API read)."""
    pages_per_agent = 10
    probe_agents = agents[:: max(1, len(agents) // 10)]
    actors = {agent: crm.load_actor(agent) for agent in probe_agents}
    columns = [c.name for c in Party.__table__.columns]

    def records(work: Any, after: Any) -> Any:
        return work.parties.list(limit=50, after=after)

    def plain_rows(work: Any, after: Any) -> Any:
        return work.parties.list_rows(columns, limit=50, after=after)

    def measure(read: Any) -> list[float]:
        samples: list[float] = []
        for agent in probe_agents:
            after = None
            for _ in range(pages_per_agent):
                started = time.perf_counter()
                with crm.acting_as(actors[agent]) as work:
                    page = read(work, after)
                samples.append(time.perf_counter() - started)
                after = page.next_cursor
        return samples

    for read in (records, plain_rows):  # warm: statements built, pages cached by SQLite
        measure(read)
    _raw_pages(crm, database, probe_agents, pages_per_agent)
    # interleaved rounds, so that a busy moment of the machine falls on both sides
    ours: dict[str, list[float]] = {"records": [], "rows": []}
    raw: list[float] = []
    for _ in range(5):
        ours["records"] += measure(records)
        ours["rows"] += measure(plain_rows)
        raw += _raw_pages(crm, database, probe_agents, pages_per_agent)
    raw_p50, raw_p95 = percentile(raw, 0.5) * 1000, percentile(raw, 0.95) * 1000
    limit = 10 if database == "sqlite" else 20
    result = []
    for name, label in (("records", "ORM records"), ("rows", "rows: web list and API")):
        p50, p95 = percentile(ours[name], 0.5) * 1000, percentile(ours[name], 0.95) * 1000
        result += [
            Row(
                f"list page ({label}), 50 of 1M, as an agent",
                database,
                "p95 latency",
                f"{p95:.2f} ms",
                "",
                None,
                f"<= {limit} ms",
                p95 <= limit,
            ),
            Row(
                f"list page ({label}) vs hand-written SQL",
                database,
                "p95 ratio",
                f"{p95:.2f} ms",
                f"{raw_p95:.2f} ms (raw driver)",
                p95 / raw_p95,
                "<= 2.00x",
                p95 / raw_p95 <= 2,
            ),
            Row(
                f"list page ({label}) vs hand-written SQL",
                database,
                "p50 ratio",
                f"{p50:.2f} ms",
                f"{raw_p50:.2f} ms (raw driver)",
                p50 / raw_p50,
                "(p95 is the target)",
                None,
            ),
        ]
    return result


def _raw_pages(crm: Any, database: str, agents: list[int], pages: int) -> list[float]:
    columns = ", ".join(c.name for c in Party.__table__.columns)
    first = (
        f"SELECT {columns} FROM party WHERE merged_into_id IS NULL AND owner_id = {{p}} "
        "ORDER BY last_activity_at DESC, id DESC LIMIT 51"
    )
    later = (
        f"SELECT {columns} FROM party WHERE merged_into_id IS NULL AND owner_id = {{p}} "
        "AND (last_activity_at, id) < ({p}, {p}) "
        "ORDER BY last_activity_at DESC, id DESC LIMIT 51"
    )
    marker = "?" if database == "sqlite" else "%s"
    first, later = first.replace("{p}", marker), later.replace("{p}", marker)
    samples = []
    raw = crm.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for agent in agents:
            key = None
            for _ in range(pages):
                started = time.perf_counter()
                if key is None:
                    cursor.execute(first, (agent,))
                else:
                    cursor.execute(later, (agent, key[0], key[1]))
                fetched = cursor.fetchall()
                samples.append(time.perf_counter() - started)
                last = fetched[49]
                index = list(Party.__table__.columns.keys())
                key = (last[index.index("last_activity_at")], last[index.index("id")])
    finally:
        raw.close()
    return samples


# -- 3. moves -------------------------------------------------------------------------------


def _moves(database: str, count: int = 3000) -> Row:
    with fresh_crm(database) as crm:
        agent = add_user(crm, "mover", ["agent"])
        with crm.acting_as(agent) as work:
            deals = [work.deals.create(title=f"Deal {i}", amount="100").id for i in range(count)]
        actor = crm.load_actor(agent.id)
        started = time.perf_counter()
        for deal_id in deals:
            with crm.acting_as(actor) as work:
                work.moves.move(deal_id, "qualified", entity="deal")
        seconds = time.perf_counter() - started
    rate = count / seconds
    return Row(
        "stage moves, one transaction each",
        database,
        f"{count:,} moves",
        f"{rate:,.0f} moves/s",
        "",
        None,
        ">= 1,000 moves/s",
        rate >= 1000,
    )
