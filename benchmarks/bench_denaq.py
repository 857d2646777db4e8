"""denaq figures (issue "examples/denaq"), on the demo base (``crmkit demo denaq``):

1. Generating the demo base: companies per second (history, people, timeline, papers and
   plans included) vs the core's own bulk path inserting the same number of companies.
2. The admin's statistics: the funnel by agent through the report (access predicate, the
   session, the rows turned into the table and chart) vs the same GROUP BY as a bare
   SQLAlchemy Core statement.  Target: <= 3x.
3. The same for each agent's calls, mails and notes per week.  Target: <= 3x.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from benchmarks.data import fresh_crm, organisation_rows
from benchmarks.harness import Context, Row, median, timed
from crmkit.clock import utcnow
from crmkit.model import Activity, Party, StageMove

SIZE = 5000
RUNS = 7


def run(context: Context) -> list[Row]:
    from crmkit_denaq import plugin
    from crmkit_denaq.demo import generate

    size = min(context.size, SIZE)
    rows: list[Row] = []
    for database in context.databases:
        with fresh_crm(database, plugins=[plugin]) as crm:
            seconds, _ = timed(lambda crm=crm: generate(crm, size=size, seed=1))
            with fresh_crm(database) as bare:

                def bulk(bare: Any = bare) -> None:
                    with bare.system() as work:
                        work.parties.bulk_create(organisation_rows(size, [None]))

                baseline, _ = timed(bulk)
            rows.append(
                Row(
                    "denaq",
                    database,
                    f"demo base of {size} companies",
                    f"{size / seconds:,.0f} companies/s",
                    f"{size / baseline:,.0f}/s bare bulk create",
                    round(baseline / seconds, 2),
                )
            )
            rows += _reports(crm, database)
    return rows


def _reports(crm: Any, database: str) -> list[Row]:
    from crmkit_denaq import stats

    figures = (
        ("funnel by agent", lambda work: stats.funnel_by_agent(work, {}), _funnel_core()),
        ("activity per week", lambda work: stats.activity_by_week(work, {}), _activity_core()),
    )
    admin = _admin(crm)
    rows = []
    for figure, build, statement in figures:
        report_times, core_times = [], []
        for _ in range(RUNS):
            with crm.acting_as(admin) as work:
                report_times.append(timed(lambda work=work, build=build: build(work))[0])
            with crm.engine.connect() as connection:
                core_times.append(timed(lambda c=connection, s=statement: c.execute(s).all())[0])
        value, baseline = median(report_times), median(core_times)
        ratio = round(value / baseline, 2)
        rows.append(
            Row(
                "denaq",
                database,
                f"statistics: {figure}",
                f"{value * 1000:.1f} ms",
                f"{baseline * 1000:.1f} ms bare Core",
                ratio,
                "<= 3x",
                ratio <= 3,
            )
        )
    return rows


def _funnel_core() -> Any:
    """The same counts in one bare statement: by who moved, backward moves apart."""
    from crmkit_denaq.stats import BACK

    party, move = Party.__table__, StageMove.__table__
    entry = sa.case((move.c.backward, BACK), else_=move.c.to_stage)
    return (
        sa.select(move.c.actor_id, entry, sa.func.count(move.c.record_id.distinct()))
        .select_from(move.join(party, party.c.id == move.c.record_id))
        .where(move.c.entity == "party", move.c.pipeline == "dealer")
        .where(party.c.merged_into_id.is_(None))
        .group_by(move.c.actor_id, entry)
    )


def _activity_core() -> Any:
    from crmkit_denaq.stats import WEEKS, WORK_KINDS

    activity = Activity.__table__
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - dt.timedelta(days=today.weekday())
    starts = [monday - dt.timedelta(weeks=n) for n in range(WEEKS - 1, -1, -1)]
    buckets = [
        sa.func.sum(
            sa.case(
                (
                    (activity.c.occurred_at >= start)
                    & (activity.c.occurred_at < start + dt.timedelta(weeks=1)),
                    1,
                ),
                else_=0,
            )
        )
        for start in starts
    ]
    return (
        sa.select(activity.c.actor_id, activity.c.kind, *buckets)
        .where(activity.c.kind.in_(WORK_KINDS), activity.c.actor_id.is_not(None))
        .where(activity.c.occurred_at >= starts[0])
        .group_by(activity.c.actor_id, activity.c.kind)
    )


def _admin(crm: Any) -> int:
    with crm.system() as work:
        return next(u.id for u in work.users.list() if u.username == "admin")
