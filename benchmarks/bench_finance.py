"""Finance plugin (issue "plugins/finance"): the director's report over 1,000,000 orders
with 3,000,000 lines.

``python -m benchmarks --only finance [--size N] [--db sqlite,postgresql]``

Builds (once, then reuses) a database of N (``--size``) completed orders with three lines
each over two years, then times ``finance.director`` (revenue by month and service category, orders,
average check, cost and margin) through the services, as a director, against a hand-written
SQL query computing the same figures on the raw driver in the same run.  Targets: <= 2 s on
SQLite, <= 1 s on PostgreSQL, and within 1.5x of the hand-written query.  The query plans
of both statements are printed: they must read only the covering indexes.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from crmkit_finance import plugin as finance_plugin
from crmkit_finance.reports import director_report

from benchmarks.harness import Context, Row
from crmkit import CRM, Config
from crmkit.testing import postgres_reachable, postgres_url

ROOT = Path(__file__).resolve().parents[1]
START = dt.date(2024, 1, 1)
DAYS = 730
SERVICE_CATEGORIES = 12
GOODS_CATEGORIES = 4
ITEMS = 240
CLIENTS = 20_000
TARGETS = {"sqlite": 2.0, "postgresql": 1.0}
RATIO = 1.5


def application(db: str, orders: int) -> CRM:
    """The benchmark's application on its own database (a file, or a schema of its own)."""
    if db == "sqlite":
        directory = ROOT / "var" / "bench"
        directory.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{directory / f'finance_{orders}.sqlite3'}"
        engine = None
    else:
        from crmkit.db import make_engine

        schema = f"bench_finance_{orders}"
        admin = sa.create_engine(postgres_url())
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        admin.dispose()
        url = postgres_url()
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    config = Config.from_mapping(
        {"database.url": url, "secret_key": "bench", "security.argon2_profile": "CHEAPEST"},
        root=Path(tempfile.gettempdir()),
        environ={},
    )
    return CRM(config, plugins=[finance_plugin], load_entry_points=False, engine=engine)


#: the tables whose covering indexes the report reads
LOADED = ("finance_order_line", "finance_order_completion")


def loaded(crm: CRM, orders: int) -> bool:
    """Whether the database already holds this data set."""
    try:
        with crm.engine.connect() as connection:
            count = connection.scalar(sa.text("SELECT count(*) FROM finance_order"))
            done = connection.scalar(sa.text("SELECT count(*) FROM finance_order_completion"))
            return count == done == orders
    except sa.exc.DBAPIError:
        return False


def generate(crm: CRM, orders: int, seed: int = 7) -> None:
    """Create the schema and bulk-load parties, catalogue, orders and lines (raw driver)."""
    from crmkit.model import metadata

    metadata.drop_all(crm.engine)
    crm.create_schema()
    rng = random.Random(seed)
    with crm.system() as work:
        work.users.create(username="director", roles=["director"], password="bench-password-1")
    dialect = crm.engine.dialect.name
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    categories = [(i + 1, f"Service group {i + 1}", "service") for i in range(SERVICE_CATEGORIES)]
    categories += [
        (SERVICE_CATEGORIES + i + 1, f"Goods group {i + 1}", "goods")
        for i in range(GOODS_CATEGORIES)
    ]
    items = []
    for item_id in range(1, ITEMS + 1):
        category_id, _, kind = categories[item_id % len(categories)]
        price = rng.randint(5, 300) * 10000  # minor units
        items.append((item_id, kind, f"Item {item_id}", category_id, price))
    started = time.perf_counter()
    raw = crm.engine.raw_connection()
    try:
        cursor = raw.cursor()
        tables: dict[str, tuple[list[str], Any]] = {
            "party": (
                [
                    "id",
                    "kind",
                    "name",
                    "name_key",
                    "description",
                    "custom",
                    "version",
                    "created_at",
                    "updated_at",
                    "last_activity_at",
                ],
                (
                    (i, "person", f"Client {i}", f"client {i}", "", "{}", 1, now, now, now)
                    for i in range(1, CLIENTS + 1)
                ),
            ),
            "finance_item_category": (
                ["id", "name", "kind", "position", "active"],
                ((cid, name, kind, cid, True) for cid, name, kind in categories),
            ),
            "finance_item": (
                [
                    "id",
                    "kind",
                    "name",
                    "category_id",
                    "unit",
                    "price",
                    "currency",
                    "track_stock",
                    "active",
                    "description",
                    "created_at",
                    "updated_at",
                ],
                (
                    (iid, kind, name, cid, "pcs", price, "RUB", False, True, "", now, now)
                    for iid, kind, name, cid, price in items
                ),
            ),
        }
        for table, (columns, rows) in tables.items():
            _load(dialect, cursor, table, columns, rows)
        order_columns = [
            "id",
            "number",
            "party_id",
            "currency",
            "discount_percent",
            "subtotal",
            "discount_total",
            "total",
            "base_total",
            "completed_at",
            "completed_on",
            "pipeline",
            "stage",
            "version",
            "custom",
            "note",
            "created_at",
            "updated_at",
        ]
        line_columns = [
            "id",
            "order_id",
            "position",
            "item_id",
            "kind",
            "category_id",
            "description",
            "main",
            "qty",
            "unit_price",
            "discount",
            "amount",
            "cost",
            "added_at",
            "recognized_on",
            "base_amount",
            "base_cost",
        ]
        completion_columns = ["id", "order_id", "completed_on", "orders", "base_total"]
        batch = 100_000
        line_id = 0
        for first in range(1, orders + 1, batch):
            order_rows, line_rows, completion_rows = [], [], []
            for order_id in range(first, min(first + batch, orders + 1)):
                day = START + dt.timedelta(days=rng.randrange(DAYS))
                moment = dt.datetime.combine(day, dt.time(12), dt.UTC)
                total = 0
                for position in range(1, 4):
                    line_id += 1
                    item_id, kind, name, category_id, price = items[rng.randrange(ITEMS)]
                    cost = price * 6 // 10 if kind == "goods" else 0
                    total += price
                    line_rows.append(
                        (
                            line_id,
                            order_id,
                            position,
                            item_id,
                            kind,
                            category_id,
                            name,
                            position == 1,
                            1000,
                            price,
                            0,
                            price,
                            cost,
                            moment,
                            day,
                            price,
                            cost,
                        )
                    )
                completion_rows.append((order_id, order_id, day, 1, total))
                order_rows.append(
                    (
                        order_id,
                        str(order_id),
                        rng.randrange(1, CLIENTS + 1),
                        "RUB",
                        0,
                        total,
                        0,
                        total,
                        total,
                        moment,
                        day,
                        "finance_order",
                        "done",
                        1,
                        "{}",
                        "",
                        moment,
                        moment,
                    )
                )
            _load(dialect, cursor, "finance_order", order_columns, order_rows)
            _load(dialect, cursor, "finance_order_line", line_columns, line_rows)
            _load(dialect, cursor, "finance_order_completion", completion_columns, completion_rows)
            print(f"  loaded {min(first + batch - 1, orders):,} orders", file=sys.stderr)
        raw.commit()
    finally:
        raw.close()
    if dialect == "postgresql":
        with crm.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in (*("party", "finance_order"), *LOADED):
                connection.execute(sa.text(f"VACUUM ANALYZE {table}"))
    else:
        with crm.engine.connect() as connection:
            connection.execute(sa.text("ANALYZE"))
            connection.commit()
    print(f"  generated in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _load(dialect: str, cursor: Any, table: str, columns: list[str], rows: Any) -> None:
    if dialect == "postgresql":
        quoted = ", ".join(f'"{c}"' for c in columns)
        with cursor.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    values = (
        tuple(
            v.replace(tzinfo=None).isoformat(" ") if isinstance(v, dt.datetime) else v for v in row
        )
        for row in rows
    )
    cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)


def vacuum(crm: CRM) -> None:
    """Set PostgreSQL's visibility map so the covering indexes are read without the heap.

    Autovacuum does this in production; after a bulk load it may not have run yet (and a
    long transaction elsewhere keeps it from marking pages), so the benchmark checks.
    """
    with crm.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in LOADED:
            connection.execute(sa.text(f"VACUUM (ANALYZE) {table}"))
            pages, visible = connection.execute(
                sa.text(
                    "SELECT relpages, relallvisible FROM pg_class "
                    "WHERE oid = CAST(:table AS regclass)"
                ),
                {"table": table},
            ).one()
            if visible < pages * 0.9:
                print(f"  warning: only {visible} of {pages} pages of {table} are all-visible")


def hand_written(crm: CRM, start: dt.date, end: dt.date, by: str) -> dict[str, Any]:
    """The same figures from two SQL statements on the raw driver.

    ``by="month"`` groups by a month expression in SQL (the query one writes first);
    ``by="day"`` groups in the covering indexes' order and folds days into months in Python
    (the report's own strategy, without the framework).
    """
    dialect = crm.engine.dialect.name
    if by == "month":
        key = "substr({0}, 1, 7)" if dialect == "sqlite" else "to_char({0}, 'YYYY-MM')"
    else:
        key = "{0}"
    mark = "?" if dialect == "sqlite" else "%s"
    lines_sql = (
        f"SELECT {key.format('recognized_on')} AS k, category_id, "
        "SUM(base_amount), SUM(base_cost) "
        f"FROM finance_order_line WHERE recognized_on >= {mark} AND recognized_on <= {mark} "
        f"GROUP BY {key.format('recognized_on')}, category_id"
    )
    orders_sql = (
        f"SELECT {key.format('completed_on')} AS k, SUM(orders), "
        "SUM(CASE WHEN orders > 0 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN orders > 0 THEN base_total ELSE 0 END) FROM finance_order_completion "
        f"WHERE completed_on >= {mark} AND completed_on <= {mark} "
        f"GROUP BY {key.format('completed_on')}"
    )
    args = (start.isoformat(), end.isoformat()) if dialect == "sqlite" else (start, end)

    def month(value: Any) -> str:
        return value if by == "month" else str(value)[:7]

    raw = crm.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(lines_sql, args)
        revenue: dict[str, int] = defaultdict(int)
        cost: dict[str, int] = defaultdict(int)
        for day, _category, amount, goods_cost in cursor.fetchall():
            revenue[month(day)] += amount
            cost[month(day)] += goods_cost
        cursor.execute(orders_sql, args)
        checks: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for day, count, done, total in cursor.fetchall():
            checks[month(day)][0] += count
            checks[month(day)][1] += done
            checks[month(day)][2] += total
    finally:
        raw.close()
    return {
        "revenue": revenue,
        "cost": cost,
        "checks": checks,
        "plans": (lines_sql, orders_sql, args),
    }


def explain(crm: CRM, plans: tuple[str, str, Any]) -> list[str]:
    """The query plans of the two statements."""
    dialect = crm.engine.dialect.name
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    raw = crm.engine.raw_connection()
    lines = []
    try:
        cursor = raw.cursor()
        for statement in plans[:2]:
            cursor.execute(prefix + statement, plans[2])
            lines += [" | ".join(str(c) for c in row) for row in cursor.fetchall()]
    finally:
        raw.close()
    return lines


def interleaved(functions: dict[str, Any], rounds: int = 5) -> dict[str, tuple[float, Any]]:
    """Median wall time and last result of each function, run in turns after a warm-up.

    Taking turns (A, B, C, A, B, C...) keeps a load change on a shared machine from
    favouring whichever was measured while it was quiet.
    """
    results = {name: function() for name, function in functions.items()}
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            began = time.perf_counter()
            results[name] = function()
            times[name].append(time.perf_counter() - began)
    return {name: (statistics.median(times[name]), results[name]) for name in functions}


def bench(db: str, orders: int) -> list[Row]:
    """Run the benchmark on one database; its result rows."""
    crm = application(db, orders)
    if not loaded(crm, orders):
        print(f"[{db}] generating {orders:,} orders with {3 * orders:,} lines...", file=sys.stderr)
        generate(crm, orders)
    if db == "postgresql":
        vacuum(crm)
    start, end = START, START + dt.timedelta(days=DAYS - 1)
    params = {"start": start.isoformat(), "end": end.isoformat()}

    def report() -> Any:
        with crm.acting_as("director") as work:
            return director_report(work, params)

    measured = interleaved(
        {
            "report": report,
            "month": lambda: hand_written(crm, start, end, "month"),
            "day": lambda: hand_written(crm, start, end, "day"),
        }
    )
    report_time, result = measured["report"]
    by_month_time, by_month = measured["month"]
    by_day_time, by_day = measured["day"]
    for baseline in (by_month, by_day):
        for row in result.rows:  # the report must compute the very same figures
            key = row["month"]
            assert row["revenue"] == Decimal(baseline["revenue"][key]) / 100, key
            assert row["cost"] == Decimal(baseline["cost"][key]) / 100, key
            count, done, total = baseline["checks"][key]
            assert row["orders"] == count, key
            expected = (Decimal(total) / 100 / done).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_UP
            )
            assert row["average_check"] == expected, key
    baseline_time = min(by_month_time, by_day_time)
    ratio = report_time / baseline_time
    print(f"[{db}] query plans (grouped by day, as the report):", file=sys.stderr)
    for line in explain(crm, by_day["plans"]):
        print(f"    {line}", file=sys.stderr)
    crm.close()
    figure = f"director's report, {orders:,} orders / {3 * orders:,} lines"
    return [
        Row(
            "finance",
            db,
            figure,
            f"{report_time * 1000:.0f} ms",
            f"{baseline_time * 1000:.0f} ms (raw SQL, by day)",
            ratio,
            f"<= {TARGETS[db]:.0f} s, <= {RATIO}x",
            report_time <= TARGETS[db] and ratio <= RATIO,
        ),
        Row(
            "finance",
            db,
            "same figures, raw SQL grouped by month",
            f"{by_month_time * 1000:.0f} ms",
            "",
            None,
            "(for comparison)",
        ),
    ]


def run(context: Context) -> list[Row]:
    """Every database of the run; the size is the number of orders."""
    rows: list[Row] = []
    for db in context.databases:
        if db == "postgresql" and not postgres_reachable():
            rows.append(Row("finance", db, "director's report", "skipped: no PostgreSQL"))
            continue
        rows += bench(db, context.size)
    return rows
