"""Funnels and time-in-stage, read from the move history.

Every query is access-scoped: history rows count only for records the actor may read, so
an agent's funnel is their own and an admin's covers everyone.  The built-in plugin
registers these as reports (``pipeline_funnel``, ``pipeline_time_in_stage``,
``pipeline_stage_counts``) for screens and exports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import func, select

from crmkit.errors import ValidationFailed
from crmkit.i18n import Label
from crmkit.model import StageMove
from crmkit.pipeline.definition import Pipeline
from crmkit.reports import Column, ReportResult, share
from crmkit.schemas import MAX_ID

#: The refusal of an ``owner_id`` that is no id (the words of the web forms' id refusal).
NOT_AN_ID = "not an id (1 to 2^63-1)"

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


@attrs.frozen
class FunnelStep:
    """How many records reached a stage in the period, and the conversion to it.

    ``entered`` counts the records that entered the stage going forward (or were placed in
    it); ``moved_back`` those that a backward move took there.  A record is counted once in
    each however often it did so; conversions are shares of ``entered``
    (:func:`crmkit.reports.share`: fractions to four places, rounded half up).
    """

    stage: str
    label: str
    kind: str
    entered: int
    moved_back: int
    from_first: Decimal | None
    from_previous: Decimal | None


def _visible_ids(work: UnitOfWork, pipeline: Pipeline) -> Any:
    entity = work.crm.entities[pipeline.entity]
    return work.records(entity.name).query().with_only_columns(entity.model.id)


def _history(
    work: UnitOfWork,
    pipeline: Pipeline,
    since: dt.datetime | None,
    until: dt.datetime | None,
    owner_id: int | None,
) -> list[Any]:
    records = _visible_ids(work, pipeline)
    if owner_id is not None:
        # the record's owner now, as the lists and the owner's own reports see it (a client
        # handed to another agent counts, with its whole history, for the new owner)
        model = work.crm.entities[pipeline.entity].model
        if not hasattr(model, "owner_id"):
            raise ValidationFailed({"owner_id": [f"{pipeline.entity} records have no owner"]})
        records = records.where(model.owner_id == owner_id)
    conditions = [
        StageMove.pipeline == pipeline.name,
        StageMove.entity == pipeline.entity,
        StageMove.record_id.in_(records),
    ]
    if since is not None:
        conditions.append(StageMove.at >= since)
    if until is not None:
        conditions.append(StageMove.at < until)
    return conditions


def funnel(
    work: UnitOfWork,
    pipeline_name: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner_id: int | None = None,
) -> list[FunnelStep]:
    """Distinct records that entered each stage in ``[since, until)``, in stage order.

    ``owner_id`` keeps the records that user owns now (whoever owned them at each move).

    Moves of a transition declared ``backward`` are counted apart (``moved_back``), not as
    entries: a record moved forward, back and forward again entered each stage once.
    Conversions are shares of the first stage's and of the previous open stage's entries;
    dead ends are reported with their own counts.
    """
    pipeline = work.crm.pipeline(pipeline_name)
    rows = {
        (stage, bool(backward)): count
        for stage, backward, count in work.session.execute(
            select(
                StageMove.to_stage,
                StageMove.backward,
                func.count(StageMove.record_id.distinct()),
            )
            .where(*_history(work, pipeline, since, until, owner_id))
            .group_by(StageMove.to_stage, StageMove.backward)
        )
    }
    steps: list[FunnelStep] = []
    first: int | None = None
    previous: int | None = None
    for stage in pipeline.stages:
        entered = int(rows.get((stage.name, False), 0))
        if first is None:
            first = entered
        is_dead_end = stage.kind.value == "dead_end"
        steps.append(
            FunnelStep(
                stage=stage.name,
                label=pipeline.stage_label(stage.name),
                kind=stage.kind.value,
                entered=entered,
                moved_back=int(rows.get((stage.name, True), 0)),
                from_first=share(entered, first),
                from_previous=None if is_dead_end or not steps else share(entered, previous),
            )
        )
        if not is_dead_end:
            previous = entered
    return steps


def time_in_stage(
    work: UnitOfWork,
    pipeline_name: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner_id: int | None = None,
) -> list[dict[str, Any]]:
    """For each stage: how many records left it in the period and their average stay (seconds)."""
    pipeline = work.crm.pipeline(pipeline_name)
    rows = {
        stage: (count, average)
        for stage, count, average in work.session.execute(
            select(StageMove.from_stage, func.count(), func.avg(StageMove.seconds_in_source))
            .where(
                *_history(work, pipeline, since, until, owner_id), StageMove.from_stage.is_not(None)
            )
            .group_by(StageMove.from_stage)
        )
    }
    return [
        {
            "stage": s.name,
            "label": pipeline.stage_label(s.name),
            "left": int(rows.get(s.name, (0, None))[0]),
            "average_seconds": None
            if rows.get(s.name, (0, None))[1] is None
            else round(float(rows[s.name][1]), 1),
        }
        for s in pipeline.stages
        if not s.terminal
    ]


def stage_counts(
    work: UnitOfWork, pipeline_name: str, *, by_owner: bool = False
) -> list[dict[str, Any]]:
    """Records currently in each stage (optionally per owner), as far as the actor sees."""
    pipeline = work.crm.pipeline(pipeline_name)
    entity = work.crm.entities[pipeline.entity]
    model = entity.model
    columns = [model.stage]
    if by_owner:
        if not hasattr(model, "owner_id"):
            raise ValidationFailed({"by_owner": [f"{entity.name} has no owner"]})
        columns.append(model.owner_id)
    query = (
        work.records(entity.name)
        .query()
        .with_only_columns(*columns, func.count())
        .where(model.pipeline == pipeline.name)
        .group_by(*columns)
    )
    order = {s.name: i for i, s in enumerate(pipeline.stages)}
    result = []
    for row in work.session.execute(query):
        item = {"stage": row[0], "count": int(row[-1])}
        if by_owner:
            item["owner_id"] = row[1]
        result.append(item)
    return sorted(result, key=lambda r: (order.get(r["stage"], 99), r.get("owner_id") or 0))


# -- as registered reports ------------------------------------------------------------------

#: The period parameters of the funnel and time in stage, as their reports declare them
#: (``Report.params``); a plugin's report built on these builders declares the same, and
#: :func:`period_of` reads them.
PERIOD_PARAMS: dict[str, str] = {
    "since": "start (ISO 8601; without an offset, in the deployment's time zone)",
    "until": "end, exclusive (ISO 8601; without an offset, in the deployment's time zone)",
}


def period_of(
    work: UnitOfWork, params: Mapping[str, Any]
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``since`` and ``until`` as aware UTC moments.

    A date or time without an offset (``2025-03-01``, what a date field sends) is read in
    the deployment's time zone (``locale.timezone``): a month's report starts at that
    month's local midnight, not at midnight UTC.
    """
    zone = work.crm.config.zone

    def parse(name: str) -> dt.datetime | None:
        value = params.get(name)
        if value in (None, ""):
            return None
        if isinstance(value, dt.datetime):
            moment = value
        else:
            try:
                moment = dt.datetime.fromisoformat(str(value))
            except ValueError:
                raise ValidationFailed({name: ["not a date or time (ISO 8601)"]}) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(dt.UTC)

    return parse("since"), parse("until")


def _owner_param(params: Mapping[str, Any]) -> int | None:
    """``owner_id``: empty for everyone's records, else a user's id (ASCII digits from 1 to
    2^63-1, what an id column holds); anything else is refused naming ``owner_id`` (a
    typed or cut URL, ``owner_id=abc``, was a 500)."""
    value = params.get("owner_id")
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID)):
        number = int(text)
        if 1 <= number <= MAX_ID:
            return number
    raise ValidationFailed({"owner_id": [NOT_AN_ID]})


def _pipeline_param(params: Mapping[str, Any]) -> str:
    name = params.get("pipeline")
    if not name:
        raise ValidationFailed({"pipeline": ["choose a pipeline"]})
    return str(name)


def funnel_report(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """Report builder: the funnel of a pipeline over a period, backward moves apart."""
    since, until = period_of(work, params)
    steps = funnel(
        work, _pipeline_param(params), since=since, until=until, owner_id=_owner_param(params)
    )
    return ReportResult(
        columns=[
            Column("label", "Stage"),
            Column("entered", "Entered", "number"),
            Column("moved_back", "Moved back", "number"),
            Column("from_first", "From first", "percent"),
            Column("from_previous", "From previous", "percent"),
        ],
        rows=[attrs.asdict(step) for step in steps],
        chart={
            "type": "bar",
            "labels": [s.label for s in steps],
            "datasets": [
                {"label": "Entered", "data": [s.entered for s in steps]},
                {"label": "Moved back", "data": [s.moved_back for s in steps]},
            ],
        },
    )


def time_in_stage_report(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """Report builder: average time spent in each stage."""
    since, until = period_of(work, params)
    rows = time_in_stage(work, _pipeline_param(params), since=since, until=until)
    return ReportResult(
        columns=[
            Column("label", "Stage"),
            Column("left", "Left the stage", "number"),
            Column("average_seconds", "Average time", "duration"),
        ],
        rows=rows,
        chart={
            "type": "bar",
            "labels": [r["label"] for r in rows],
            "datasets": [
                {
                    "label": Label("Average hours"),
                    "data": [round((r["average_seconds"] or 0) / 3600, 1) for r in rows],
                }
            ],
        },
    )


def stage_counts_report(work: UnitOfWork, params: Mapping[str, Any]) -> ReportResult:
    """Report builder: records per stage now (per owner with ``by_owner``)."""
    by_owner = str(params.get("by_owner", "")).lower() in ("1", "true", "yes")
    rows = stage_counts(work, _pipeline_param(params), by_owner=by_owner)
    columns = [Column("stage", "Stage"), Column("count", "Records", "number")]
    if by_owner:
        columns.insert(1, Column("owner_id", "Owner"))
    return ReportResult(columns=columns, rows=rows)
