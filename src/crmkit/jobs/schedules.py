"""Periodic schedules: time slots, and runs that two workers never make at once.

Every worker's ticker computes each schedule's current *slot*, named by the time it starts
(epoch seconds: ``time`` rounded down to a multiple of ``every_seconds``, or the minute when
a cron expression matches it) and, when the slot is new to it, enqueues a run for it.
Several workers enqueue the same slot; :func:`run_schedule` lets exactly one run start, by
one conditional ``UPDATE`` of the schedule's row in ``job_schedule``: the slot must start
later than the last one started and nobody may hold an unexpired lease.  Slots are named
by their start rather than counted in periods so that a schedule whose period changes (a
longer ``outbox.sweep_seconds``, ``every_seconds`` or a cron instead) goes on at once: a
count of longer periods would stay below the last count of shorter ones for years.
A run longer than the period therefore makes the next slots skip rather than overlap; a
run that may outlast the schedule's ``lease_seconds`` renews the lease by calling
:func:`crmkit.jobs.delivery.keep_claim` now and then, as outbox jobs do.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
import uuid
import zoneinfo
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from crmkit.clock import utcnow
from crmkit.jobs import Schedule
from crmkit.jobs.delivery import ClaimLost, error_text, holding
from crmkit.model import JobSchedule

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)


def _cron_field(spec: str, value: int, low: int, high: int) -> bool:
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = int(first), int(last)
        else:
            start = int(part)
            end = start if step == 1 else high
        if start <= value <= end and (value - start) % step == 0:
            return True
    return False


def cron_matches(expression: str, moment: dt.datetime) -> bool:
    """Whether a 5-field cron expression (minute hour day month weekday) matches ``moment``.

    Weekdays count from 0 = Sunday (7 is Sunday too), as in crontab.
    """
    minute, hour, day, month, weekday = expression.split()
    cron_weekday = (moment.isoweekday()) % 7
    return (
        _cron_field(minute, moment.minute, 0, 59)
        and _cron_field(hour, moment.hour, 0, 23)
        and _cron_field(day, moment.day, 1, 31)
        and _cron_field(month, moment.month, 1, 12)
        and (
            _cron_field(weekday, cron_weekday, 0, 7)
            or (cron_weekday == 0 and _cron_field(weekday, 7, 0, 7))
        )
    )


def local_minutes(minute: int, timezone: str, *, hourly: bool = False) -> list[dt.datetime]:
    """The wall-clock times (naive) a cron reads at epoch minute ``minute``.

    Usually the one local time.  Across daylight-saving changes a cron at fixed hours
    matches each local time of a date once, as cron does: nothing in the hour clocks are
    put back (the second pass of 02:00-02:59 on an autumn change; that time came already),
    and at the first minute after clocks are put forward also the times skipped
    (02:00-02:59 on a spring change), so that a job at 02:30 runs at 03:00 that day
    instead of not at all.  An ``hourly`` cron (its hour field ``*`` or ``*/N``) goes by
    the clock as it is: it runs in both passes of a repeated hour and has no skipped one.
    """
    zone = zoneinfo.ZoneInfo(timezone)
    local = dt.datetime.fromtimestamp(minute * 60, zone)
    wall = local.replace(tzinfo=None)
    if hourly:
        return [wall]
    if local.fold and local.replace(fold=0).utcoffset() != local.utcoffset():
        return []
    previous = dt.datetime.fromtimestamp((minute - 1) * 60, zone).replace(tzinfo=None)
    times = [wall]
    skipped = previous + dt.timedelta(minutes=1)
    while skipped < wall:
        times.append(skipped)
        skipped += dt.timedelta(minutes=1)
    return times


def every_slot(every_seconds: int, now: float) -> int:
    """The slot of a schedule run every ``every_seconds`` at ``now``: its start (epoch
    seconds, a multiple of the period)."""
    return int(now // every_seconds) * every_seconds


def current_slot(schedule: Schedule, now: float, timezone: str) -> int | None:
    """The slot a schedule is in at ``now`` (epoch seconds), named by its start (epoch
    seconds); ``None`` when a cron is idle.

    A cron at fixed hours matches each local time of a date once across daylight-saving
    changes (see :func:`local_minutes`).
    """
    if schedule.every_seconds is not None:
        return every_slot(schedule.every_seconds, now)
    assert schedule.cron is not None
    minute = int(now // 60)
    hourly = schedule.cron.split()[1].startswith("*")
    times = local_minutes(minute, timezone, hourly=hourly)
    return minute * 60 if any(cron_matches(schedule.cron, t) for t in times) else None


def ensure_rows(crm: CRM, names: Iterable[str]) -> None:
    """Create the state rows of these schedules when missing (idempotent, concurrent-safe)."""
    names = list(names)
    if not names:
        return
    dialect = crm.engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(JobSchedule).on_conflict_do_nothing(index_elements=["name"])
    with crm.engine.begin() as connection:
        connection.execute(statement, [{"name": n, "last_slot": 0, "runs": 0} for n in names])


def claim_slot(crm: CRM, name: str, slot: int, lease_seconds: float) -> str | None:
    """Start a run of ``name`` for ``slot`` (its start, epoch seconds) unless a slot
    starting as late or later was started already, or a run holds the schedule now."""
    now = utcnow()
    token = uuid.uuid4().hex
    statement = (
        update(JobSchedule)
        .where(
            JobSchedule.name == name,
            JobSchedule.last_slot < slot,
            or_(JobSchedule.lease_until.is_(None), JobSchedule.lease_until < now),
        )
        .values(
            last_slot=slot,
            holder=token,
            lease_until=now + dt.timedelta(seconds=lease_seconds),
            last_started_at=now,
        )
    )
    with crm.engine.begin() as connection:
        claimed = connection.execute(statement).rowcount
    return token if claimed else None


def renew_slot(crm: CRM, name: str, token: str, lease_seconds: float) -> None:
    """Extend the lease of a run of ``name`` (:func:`crmkit.jobs.delivery.keep_claim` in a
    scheduled job); :class:`~crmkit.jobs.delivery.ClaimLost` when another run took over."""
    statement = (
        update(JobSchedule)
        .where(JobSchedule.name == name, JobSchedule.holder == token)
        .values(lease_until=utcnow() + dt.timedelta(seconds=lease_seconds))
    )
    with crm.engine.begin() as connection:
        kept = connection.execute(statement).rowcount
    if not kept:
        raise ClaimLost(f"schedule {name} was taken over by another run")


def release(crm: CRM, name: str, token: str, error: str | None) -> None:
    """End a run: free the schedule and record how it went."""
    statement = (
        update(JobSchedule)
        .where(JobSchedule.name == name, JobSchedule.holder == token)
        .values(
            holder=None,
            lease_until=None,
            last_finished_at=utcnow(),
            last_error=error,
            runs=JobSchedule.runs + 1,
        )
    )
    with crm.engine.begin() as connection:
        connection.execute(statement)


def run_schedule(crm: CRM, name: str, slot: int) -> bool:
    """Run schedule ``name`` for ``slot`` unless it ran or runs already; whether it ran."""
    schedule = crm.schedules.get(name)
    if schedule is None:
        log.warning("schedule %r is not registered in this worker", name)
        return False
    token = claim_slot(crm, name, slot, schedule.lease_seconds)
    if token is None:
        return False
    error = None
    started = time.monotonic()
    renew = functools.partial(renew_slot, crm, name, token, schedule.lease_seconds)
    try:
        with holding(renew):  # the job's keep_claim() renews the schedule's lease
            crm.jobs[schedule.job].func(crm, **schedule.payload)
    except Exception as exc:
        error = error_text(exc)
        log.exception("schedule %s failed", name)
    finally:
        release(crm, name, token, error)
    log.info("schedule %s ran in %.3fs", name, time.monotonic() - started)
    return True


def states(crm: CRM) -> list[JobSchedule]:
    """The state rows of every schedule (for the admin and ``crmkit jobs schedules``)."""
    with crm.session_factory() as session:
        return list(session.scalars(select(JobSchedule).order_by(JobSchedule.name)))
