"""Periodic schedules: a long run keeps its lease; cron times across daylight saving."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import attrs
from sqlalchemy import update

from crmkit import hookimpl
from crmkit.clock import utcnow
from crmkit.jobs import Job, Schedule
from crmkit.jobs.delivery import ClaimLost, keep_claim
from crmkit.jobs.schedules import claim_slot, current_slot, ensure_rows, run_schedule, states
from crmkit.jobs.worker import SWEEP, Worker
from crmkit.model import JobSchedule


class LongSchedule:
    """A scheduled job that outlasts its lease: it renews it, or finds it was taken over."""

    crmkit_plugin_name = "test_long_schedule"

    def __init__(self):
        self.seen = []
        self.slot = 0
        self.taken_over = False

    @hookimpl
    def crmkit_register_jobs(self):
        return [Job("test.long_run", self.run)]

    @hookimpl
    def crmkit_register_schedules(self):
        return [Schedule("test.long", "test.long_run", every_seconds=60, lease_seconds=30)]

    def run(self, crm):
        with crm.engine.begin() as connection:  # the run goes on past its lease ...
            values = {"lease_until": utcnow() - dt.timedelta(seconds=1)}
            if self.taken_over:  # ... and the next slot's run started meanwhile
                values["holder"] = "another-run"
            connection.execute(
                update(JobSchedule).where(JobSchedule.name == "test.long").values(values)
            )
        try:
            keep_claim()
        except ClaimLost as lost:
            self.seen.append(str(lost))
            raise
        # the next slot comes while this run still works: another worker may not start it
        self.seen.append(claim_slot(crm, "test.long", self.slot + 1, 30))


def state(crm, name):
    return next(row for row in states(crm) if row.name == name)


def test_a_scheduled_run_longer_than_its_lease_keeps_it_and_the_next_slot_skips(make_crm):
    plugin = LongSchedule()
    crm = make_crm(plugins=[plugin])
    ensure_rows(crm, ["test.long"])
    plugin.slot = 100
    assert run_schedule(crm, "test.long", 100)
    assert plugin.seen == [None]  # renewed: no second run beside it
    row = state(crm, "test.long")
    assert (row.last_slot, row.runs, row.last_error, row.holder) == (100, 1, None, None)

    plugin.taken_over, plugin.slot = True, 101
    assert run_schedule(crm, "test.long", 101)
    assert plugin.seen[1] == "schedule test.long was taken over by another run"
    row = state(crm, "test.long")
    assert row.holder == "another-run"  # the other run's lease is left alone


class CountedSchedule:
    """A schedule whose runs are counted; its period is changed between deployments."""

    crmkit_plugin_name = "test_counted_schedule"

    def __init__(self):
        self.runs = 0

    @hookimpl
    def crmkit_register_jobs(self):
        return [Job("test.count", self.run)]

    @hookimpl
    def crmkit_register_schedules(self):
        return [Schedule("test.counted", "test.count", every_seconds=5)]

    def run(self, crm):
        self.runs += 1


def test_a_schedule_goes_on_when_its_period_changes(make_crm):
    plugin = CountedSchedule()
    crm = make_crm(plugins=[plugin], settings={"outbox.sweep_seconds": 5})
    ensure_rows(crm, ["test.counted", SWEEP])
    start = 1_800_000_000.0  # 2027-01-15, a multiple of every period below

    def run_at(seconds_later):
        """What a worker's ticker and the queued run do at that moment."""
        schedule = crm.schedules["test.counted"]
        slot = current_slot(schedule, start + seconds_later, "Europe/Moscow")
        return slot is not None and run_schedule(crm, "test.counted", slot)

    assert run_at(0) and not run_at(1)  # one run per 5-second slot
    # redeployed with a longer period, then with a cron, then with an hourly period:
    # each goes on at its next slot, as the deployment says, instead of never again
    crm.schedules["test.counted"] = attrs.evolve(crm.schedules["test.counted"], every_seconds=30)
    assert run_at(60) and not run_at(61) and run_at(90)
    crm.schedules["test.counted"] = attrs.evolve(
        crm.schedules["test.counted"], every_seconds=None, cron="* * * * *"
    )
    assert run_at(150) and not run_at(170) and run_at(180)
    crm.schedules["test.counted"] = attrs.evolve(
        crm.schedules["test.counted"], every_seconds=3600, cron=None
    )
    assert run_at(3600) and not run_at(3700)
    assert plugin.runs == 6 and state(crm, "test.counted").runs == 6

    # the outbox sweep, every outbox.sweep_seconds across all workers, likewise
    Worker(crm).tick(start)
    assert state(crm, SWEEP).runs == 1
    crm.config.values["outbox.sweep_seconds"] = 30  # the workers restart with it
    worker = Worker(crm)
    for minute in range(1, 4):
        worker.tick(start + 60 * minute)
    assert state(crm, SWEEP).runs == 4
    crm.queue.flush()


def runs_between(cron, zone, first, last):
    """The local times a cron schedule runs at, ticking every minute from first to last (UTC)."""
    schedule = Schedule("test.cron", "test.job", cron=cron)
    start = int(dt.datetime.fromisoformat(first).timestamp()) // 60
    end = int(dt.datetime.fromisoformat(last).timestamp()) // 60
    tz = zoneinfo.ZoneInfo(zone)
    return [
        dt.datetime.fromtimestamp(minute * 60, tz).isoformat(timespec="minutes")
        for minute in range(start, end)
        if current_slot(schedule, minute * 60 + 30.0, zone) is not None
    ]


def test_a_nightly_cron_runs_once_a_night_across_daylight_saving_changes():
    # autumn: 02:00-02:59 comes twice in Berlin; the job runs on the first pass only
    autumn = ("2024-10-26T20:00+00:00", "2024-10-27T06:00+00:00")
    assert runs_between("30 2 * * *", "Europe/Berlin", *autumn) == ["2024-10-27T02:30+02:00"]
    # spring: 02:00-02:59 never comes; the job runs at the first minute after it
    spring = ("2024-03-30T20:00+00:00", "2024-03-31T06:00+00:00")
    assert runs_between("30 2 * * *", "Europe/Berlin", *spring) == ["2024-03-31T03:00+02:00"]
    assert runs_between("0 3 * * *", "Europe/Berlin", *spring) == ["2024-03-31T03:00+02:00"]
    # an hourly job goes by the clock: every hour that passes, the repeated one too
    hourly = runs_between("30 * * * *", "Europe/Berlin", *autumn)
    assert hourly[3:6] == [
        "2024-10-27T01:30+02:00",
        "2024-10-27T02:30+02:00",
        "2024-10-27T02:30+01:00",
    ]
    assert len(hourly) == 10
    # Moscow (the default zone) keeps its clocks: the same night as any other
    assert runs_between("30 2 * * *", "Europe/Moscow", *autumn) == ["2024-10-27T02:30+03:00"]
