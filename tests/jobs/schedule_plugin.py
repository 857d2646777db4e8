"""A test plugin with a slow periodic job that writes down when each run starts and ends.

The file named by ``test.runs_file`` receives one line per run: ``pid start end``.  A run
lasts ``test.run_seconds``, longer than the schedule's period, so overlapping runs would
show at once.
"""

from __future__ import annotations

import os
import time
from typing import Any

from crmkit import hookimpl
from crmkit.config import Setting
from crmkit.jobs import Job, Schedule


def slow_job(crm: Any, **_: Any) -> None:
    started = time.time()
    time.sleep(float(crm.config["test.run_seconds"]))
    line = f"{os.getpid()} {started:.4f} {time.time():.4f}\n"
    with open(crm.config["test.runs_file"], "a", encoding="utf-8") as runs:
        runs.write(line)


@hookimpl
def crmkit_register_settings() -> list[Setting]:
    return [
        Setting("test.runs_file", str, "", "Where runs are written down."),
        Setting("test.run_seconds", float, 1.5, "How long a run lasts."),
    ]


@hookimpl
def crmkit_register_jobs() -> list[Job]:
    return [Job("test.slow", slow_job)]


@hookimpl
def crmkit_register_schedules() -> list[Schedule]:
    return [Schedule("test.slow.every_second", "test.slow", every_seconds=1, lease_seconds=3)]
