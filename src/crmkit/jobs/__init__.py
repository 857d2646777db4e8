"""Background work: jobs and schedules that plugins register for the task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Job:
    """A function the task queue may run later: ``func(crm, **payload)``.

    ``retries`` and ``retry_delay`` (seconds, doubled each try, with jitter) govern
    failures; after the last try the job lands in the dead-letter list.
    """

    name: str
    func: Callable[..., Any]
    retries: int = 5
    retry_delay: float = 10.0
    description: str = ""


@attrs.frozen
class Schedule:
    """Run job ``job`` periodically: every ``every_seconds``, or on a ``cron`` expression.

    Two workers never run one schedule at once (a lock is taken for the run).
    """

    name: str
    job: str
    every_seconds: int | None = None
    cron: str | None = None
    payload: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError(f"schedule {self.name!r}: give exactly one of every_seconds or cron")
