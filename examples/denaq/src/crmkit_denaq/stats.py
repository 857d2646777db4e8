"""The admin's statistics, as crmkit reports (tables with Chart.js charts).

The funnel, conversion and time in stage come from the core's pipeline reports; this module
adds the splits a dealer-acquisition team asks for: the funnel per agent, leads by source
and by creator, and each agent's calls, mails and notes per week.  Every query goes through
the services' scoped queries, so an agent running them sees only their own records.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from babel.dates import format_interval
from sqlalchemy import case, func

from crmkit import Column, Report, ReportResult
from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.model import Activity, Party, StageMove
from crmkit.pipeline.reports import (
    PERIOD_PARAMS,
    funnel_report,
    period_of,
    time_in_stage_report,
)
from crmkit.reports import share
from crmkit.web import i18n
from crmkit_denaq.pipeline import DEALERS, NAME, REASON_FIELD, REFUSAL_REASONS

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

#: Timeline kinds counted as an agent's work.
WORK_KINDS = ("call", "mail", "note")
WEEKS = 8
MAX_WEEKS = 52
#: The funnel by agent's column of backward moves (no stage is called so).
BACK = "back"
#: How a week's days are written in its label, by language (Babel's skeletons): a Russian
#: reader writes days as ``23.11``, others as their language's short month and day.
WEEK_SKELETONS = {"ru": "MMdd"}
WEEK_SKELETON = "MMMd"


def week_label(monday: dt.date, language: str | None = None) -> str:
    """A week's label for a reader of ``language`` (by default the active reader's, as the
    page builds the report): its Monday to Sunday, ``23.11–29.11`` in Russian, ``Nov 23 –
    29`` in English; with no reader (a download, the API) the Monday's ISO date, which a
    spreadsheet reads as a date."""
    if language is None:
        reader = i18n.current()
        if reader is None:
            return monday.isoformat()
        language = reader.language
    skeleton = WEEK_SKELETONS.get(language, WEEK_SKELETON)
    return format_interval(monday, monday + dt.timedelta(days=6), skeleton, locale=language)


def _users(work: UnitOfWork) -> dict[int, str]:
    return {u.id: u.label for u in work.users.list()}


#: The role whose holders the funnel by agent shows (the core's).
AGENT = "agent"


def funnel_by_agent(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """For each agent: how many records they moved into each stage, and conversion to client.

    Only holders of the ``agent`` role (blocked ones included, for their past moves) are
    shown: the lead creators, who enter thousands of leads and move nothing else, and the
    admin would flatten the agents' bars.

    Counted by who made the move (``StageMove.actor_id``), so a firm handed to another agent
    still counts for the one who brought it there; a new lead counts for whoever entered it.
    Backward moves (a firm back to lead, a refused firm reopened, an account that gave up;
    ``StageMove.backward``, as the core funnel counts them) are not entries: they are
    counted apart, in ``back``.  Conversion is the records moved
    into Client over those entered as leads (or, for someone who entered none, over the
    stage they moved most records into).
    """
    entry = case((StageMove.backward, BACK), else_=StageMove.to_stage).label("entry")
    rows = work.session.execute(
        work.parties.query()
        .join(StageMove, (StageMove.record_id == Party.id) & (StageMove.entity == "party"))
        .with_only_columns(StageMove.actor_id, entry, func.count(StageMove.record_id.distinct()))
        .where(StageMove.pipeline == NAME)
        .group_by(StageMove.actor_id, entry)
    )
    by_actor: dict[int | None, dict[str, int]] = {}
    for actor, stage, count in rows:
        by_actor.setdefault(actor, {})[stage] = int(count)
    names = {u.id: u.label for u in work.users.list(role=AGENT)}
    stages = DEALERS.stage_names()
    table = []
    agents = ((a, c) for a, c in by_actor.items() if a in names)
    for actor, counts in sorted(agents, key=lambda i: names[i[0]]):
        row: dict[str, Any] = {"owner": names[actor]}
        row.update({stage: counts.get(stage, 0) for stage in stages})
        row[BACK] = counts.get(BACK, 0)
        entered = counts.get("lead", 0) or max(row[stage] for stage in stages)
        row["conversion"] = share(counts.get("client", 0), entered)
        table.append(row)
    return ReportResult(
        columns=[
            Column("owner", "Agent"),
            *(Column(s.name, s.title, "number") for s in DEALERS.stages),
            Column(BACK, "Moved back", "number"),
            Column("conversion", "Conversion to client", "percent"),
        ],
        rows=table,
        chart={
            "type": "bar",
            "labels": [r["owner"] for r in table],
            "datasets": [
                {"label": s.title, "data": [r[s.name] for r in table], "backgroundColor": s.color}
                for s in DEALERS.stages
            ],
        },
    )


def _leads_by(
    work: UnitOfWork, column: Any, label: str, names: Mapping[Any, str], blank: str = "—"
) -> ReportResult:
    """Dealer records counted by ``column``, each value named by ``names`` (else itself),
    the records without one under ``blank`` (a message id: the page translates it)."""
    rows = work.session.execute(
        work.parties.query()
        .with_only_columns(column, func.count())
        .where(Party.pipeline == NAME)
        .group_by(column)
        .order_by(func.count().desc())
    )
    table = [{"key": names.get(key, key) or blank, "count": int(count)} for key, count in rows]
    return ReportResult(
        columns=[Column("key", label), Column("count", "Leads", "number")],
        rows=table,
        chart={
            "type": "pie",
            "labels": [r["key"] for r in table],
            "datasets": [{"label": "Leads", "data": [r["count"] for r in table]}],
        },
        # no text in the first cell: the page and the downloads label the row "Total"
        totals={"count": sum(r["count"] for r in table)},
    )


#: How the leads entered without a source are counted (a lone "—" read as a source's name).
NO_SOURCE = "no source given"


def leads_by_source(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """Every dealer record by where it was found."""
    return _leads_by(work, Party.source, "Source", {}, blank=NO_SOURCE)


#: How the leads nobody entered are counted (imported, or made by the system), as
#: :data:`NO_SOURCE` is: words, not a lone "—" read as somebody's name.
NO_CREATOR = "no creator given"


def leads_by_creator(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """Every dealer record by who entered it."""
    return _leads_by(work, Party.created_by_id, "Entered by", _users(work), blank=NO_CREATOR)


def _weeks(value: Any) -> int:
    """The ``weeks`` parameter: a whole number from 1 to 52 (``WEEKS`` when not given)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return WEEKS
    try:
        weeks = int(str(value).strip())
    except ValueError:
        weeks = 0
    if not 1 <= weeks <= MAX_WEEKS:
        raise ValidationFailed({"weeks": [f"a whole number of weeks from 1 to {MAX_WEEKS}"]})
    return weeks


def _week_bounds(work: UnitOfWork, weeks: int) -> tuple[list[dt.date], list[dt.datetime]]:
    """The Mondays of the last ``weeks`` weeks in the deployment's time zone
    (``locale.timezone``), and the instants (in UTC) the weeks start at, the end of the
    current week last.

    A week runs from Monday midnight to Monday midnight *there*: a call made at 00:30 on a
    Monday in Moscow belongs to that Monday's week, although it is still Sunday in UTC.
    """
    zone = work.crm.config.zone
    today = utcnow().astimezone(zone).date()
    monday = today - dt.timedelta(days=today.weekday())
    mondays = [monday - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    bounds = [
        dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
        for day in (*mondays, monday + dt.timedelta(weeks=1))
    ]
    return mondays, bounds


def activity_by_week(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """Calls, mails and notes of each person per week, the last ``weeks`` weeks.

    Weeks start on Monday at midnight in the deployment's time zone.  Each column is keyed
    by the ISO date of its Monday there and labelled by :func:`week_label`: Monday to
    Sunday in the reader's language on the page, the Monday's date in a download.
    """
    weeks = _weeks(params.get("weeks"))
    mondays, bounds = _week_bounds(work, weeks)
    visible = work.parties.query().with_only_columns(Party.id)
    buckets = [
        func.sum(case(((Activity.occurred_at >= start) & (Activity.occurred_at < end), 1), else_=0))
        for start, end in itertools.pairwise(bounds)
    ]
    rows = work.session.execute(
        work.records("activity")
        .query()
        .with_only_columns(Activity.actor_id, Activity.kind, *buckets)
        .where(
            Activity.kind.in_(WORK_KINDS),
            Activity.actor_id.is_not(None),
            Activity.occurred_at >= bounds[0],
            Activity.party_id.in_(visible),
        )
        .group_by(Activity.actor_id, Activity.kind)
    )
    names = _users(work)
    keys = [monday.isoformat() for monday in mondays]
    labels = [week_label(monday) for monday in mondays]
    table = []
    for actor, kind, *counts in rows:
        row: dict[str, Any] = {"who": names.get(actor, "—"), "kind": kind}
        row.update({key: int(c or 0) for key, c in zip(keys, counts, strict=True)})
        row["total"] = sum(int(c or 0) for c in counts)
        table.append(row)
    table.sort(key=lambda r: (r["who"], WORK_KINDS.index(r["kind"])))
    per_person: dict[str, list[int]] = {}
    for row in table:
        totals = per_person.setdefault(row["who"], [0] * len(keys))
        for index, key in enumerate(keys):
            totals[index] += row[key]
    return ReportResult(
        columns=[
            Column("who", "Agent"),
            Column("kind", "Kind"),
            *(Column(key, label, "number") for key, label in zip(keys, labels, strict=True)),
            Column("total", "Total", "number"),
        ],
        rows=table,
        chart={
            "type": "line",
            "labels": labels,
            "datasets": [{"label": who, "data": data} for who, data in per_person.items()],
        },
    )


#: A day in seconds, and the places a stay in days keeps (one decimal: 33,5 days).
DAY = Decimal(86400)
DAY_PLACES = Decimal("0.1")


def time_in_stage_days(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """The core's time in stage of the dealers, in days (one decimal, rounded half up).

    A dealer is won over weeks: 800 hours reads poorly, 33,3 days well.  The table, the
    chart and the downloads hold the same figure, and the column's header (the chart's
    legend too) says the unit, so a spreadsheet never has to guess it.
    """
    core = time_in_stage_report(work, {**params, "pipeline": NAME})
    rows = [
        {
            **{k: v for k, v in row.items() if k != "average_seconds"},
            "average_days": None
            if row["average_seconds"] is None
            else (Decimal(str(row["average_seconds"])) / DAY).quantize(
                DAY_PLACES, rounding=ROUND_HALF_UP
            ),
        }
        for row in core.rows
    ]
    label = i18n.lazy("Average time, days")
    return ReportResult(
        columns=[
            *(c for c in core.columns if c.key != "average_seconds"),
            Column("average_days", label, "number"),
        ],
        rows=rows,
        chart={
            "type": "bar",
            "labels": [r["label"] for r in rows],
            "datasets": [{"label": label, "data": [r["average_days"] or 0 for r in rows]}],
        },
    )


#: The refusals' dead end, and the row of refusals that hold no reason (older than the list).
REFUSED = "refused"
NO_REASON = "—"


def refusals_by_reason(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """The dealers refused in the period (``since``, ``until``: when they entered the refused
    firms) and refused still, by the reason of their refusal, most first (ties in the list's
    order).  A firm reopened since is no refusal any more (its reason is cleared then)."""
    since, until = period_of(work, params)
    reason = Party.custom[REASON_FIELD].as_string()
    query = (
        work.parties.query()
        .with_only_columns(reason, func.count())
        .where(Party.pipeline == NAME, Party.stage == REFUSED)
        .group_by(reason)
    )
    if since is not None:
        query = query.where(Party.stage_entered_at >= since)
    if until is not None:
        query = query.where(Party.stage_entered_at < until)
    counts = {key or NO_REASON: int(count) for key, count in work.session.execute(query)}
    order = {key: index for index, key in enumerate(REFUSAL_REASONS)}
    table = [
        {"reason": key, "count": count}
        for key, count in sorted(
            counts.items(), key=lambda item: (-item[1], order.get(item[0], len(order)), item[0])
        )
    ]
    return ReportResult(
        columns=[Column("reason", "Refusal reason"), Column("count", "Refusals", "number")],
        rows=table,
        chart={
            "type": "pie",
            "labels": [r["reason"] for r in table],
            "datasets": [{"label": "Refusals", "data": [r["count"] for r in table]}],
        },
        totals={"count": sum(r["count"] for r in table)},
    )


def _dealer(build: Any) -> Any:
    def run(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
        return build(work, {**params, "pipeline": NAME})  # the dealers', whatever is asked

    run.__doc__ = build.__doc__
    return run


STATS = (
    Report(
        "denaq_funnel",
        "Funnel by stage",
        _dealer(funnel_report),
        entity="party",
        description="Dealers that entered each stage, with conversion.",
        # the core funnel's period (its declaration, read by its builder): since, until
        params=PERIOD_PARAMS,
    ),
    Report(
        "denaq_funnel_by_agent",
        "Funnel by agent",
        funnel_by_agent,
        entity="party",
        description="Records each agent moved into each stage.",
    ),
    Report(
        "denaq_time_in_stage",
        "Time in stage",
        time_in_stage_days,
        entity="party",
        description="How long dealers stayed in each stage.",
        # the core's period, as the funnel's: the stays ended (moves made) in it
        params=PERIOD_PARAMS,
    ),
    Report(
        "denaq_refusals",
        "Refusals by reason",
        refusals_by_reason,
        entity="party",
        description="Why the dealers refused: those refused in the period, by reason.",
        params=PERIOD_PARAMS,
    ),
    Report(
        "denaq_leads_by_source",
        "Leads by source",
        leads_by_source,
        entity="party",
        description="Where the leads were found.",
    ),
    Report(
        "denaq_leads_by_creator",
        "Leads by creator",
        leads_by_creator,
        entity="party",
        description="Who entered the leads.",
    ),
    Report(
        "denaq_activity",
        "Activity by week",
        activity_by_week,
        entity="activity",
        description="Calls, mails and notes of each agent per week.",
        params={"weeks": "how many weeks back (1 to 52, 8 by default)"},
    ),
)
