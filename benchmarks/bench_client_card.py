"""The client card of a party with 5,000 timeline entries: server time per request.

Target: <= 50 ms server time (median) on each database, in-process through the ASGI app,
signed in as the party's owner (an agent: the access predicate is in every query).  The
baseline is the raw work a card cannot avoid, measured in the same run: the party and its
newest 30 timeline entries read with the bare driver (sqlite3, psycopg) and nothing else.
Printed: both medians and the ratio.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.harness import Context, Row
from crmkit.model import Activity
from crmkit.testing import add_user, factories, make_crm, postgres_url, private_schema
from crmkit.web.app import create_app

ENTRIES = 5000
RUNS = 60


def build(directory: Path, db: str):  # type: ignore[no-untyped-def]
    crm = make_crm(db=db, directory=directory)
    agent = add_user(crm, "agent", ["agent"])
    add_user(crm, "colleague", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="ООО «Большая история»")
        for n in range(5):
            factories.task(work, party_id=party.id, title=f"Задача {n}")
            factories.deal(work, party_id=party.id)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    kinds = ("call", "mail", "message", "note", "payment")
    rows = [
        {
            "party_id": party.id,
            "kind": kinds[n % len(kinds)],
            "occurred_at": start + dt.timedelta(minutes=17 * n),
            "actor_id": agent.id,
            "subject": f"Запись {n}",
            "body": "Текст записи " * 5,
            "data": {},
            "by_assistant": False,
            "pinned": False,
        }
        for n in range(ENTRIES)
    ]
    with crm.system() as work:  # bulk: the unit of work would take minutes for 5,000 rows
        work.session.execute(Activity.__table__.insert(), rows)
    if db == "postgresql":
        with crm.engine.begin() as connection:  # as autovacuum would have, long before
            connection.exec_driver_sql("ANALYZE activity")
    return crm, party.id


async def card_times(crm, party_id: int) -> list[float]:  # type: ignore[no-untyped-def]
    from tests.web.conftest import Browser

    browser = Browser(create_app(crm), crm)
    response = await browser.login("agent")
    assert response.status_code == 303
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        page = await browser.get(f"/clients/{party_id}")
        times.append(time.perf_counter() - started)
        assert page.status_code == 200 and "Запись 4999" in page.text
    await browser.close()
    return times[5:]  # warm caches first


PARTY = "SELECT * FROM party WHERE id = {0}"
TIMELINE = "SELECT * FROM activity WHERE party_id = {0} ORDER BY occurred_at DESC, id DESC LIMIT 31"


def baseline_times(db: str, folder: Path, party_id: int) -> list[float]:
    """The party and its newest 31 entries with the bare driver (one connection, kept)."""
    if db == "sqlite":
        connection: Any = sqlite3.connect(folder / "crm.sqlite3")
        mark = "?"
    else:
        connection = psycopg.connect(
            postgres_url().replace("+psycopg", ""),
            options=f"-csearch_path={private_schema()}",
            autocommit=True,
        )
        mark = "%s"
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        connection.execute(PARTY.format(mark), (party_id,)).fetchone()
        connection.execute(TIMELINE.format(mark), (party_id,)).fetchall()
        times.append(time.perf_counter() - started)
    connection.close()
    return times[5:]


def run(context: Context) -> list[Row]:
    results = []
    for db in [db for db in ("sqlite", "postgresql") if db in context.databases]:
        with tempfile.TemporaryDirectory() as folder:
            crm, party_id = build(Path(folder), db)
            try:
                card = statistics.median(asyncio.run(card_times(crm, party_id)))
                raw = statistics.median(baseline_times(db, Path(folder), party_id))
            finally:
                crm.close()
        driver = "sqlite3" if db == "sqlite" else "psycopg"
        results.append(
            Row(
                f"client card, {ENTRIES:,} timeline entries",
                db,
                "median server time",
                f"{card * 1000:.1f} ms",
                f"{raw * 1000:.2f} ms (raw {driver}: party + 30 rows)",
                card / raw,
                "<= 50 ms",
                card <= 0.050,
            )
        )
    return results
