"""Periodic schedules: a long run keeps its lease; cron times across daylight saving."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from crmkit import hookimpl
from crmkit.clock import utcnow
from crmkit.jobs import Job, Schedule
from crmkit.jobs.delivery import ClaimLost, keep_claim
from crmkit.jobs.schedules import claim_slot, ensure_rows, run_schedule, states
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
