"""Background work: jobs, schedules and outbox handlers that plugins register.

* :class:`OutboxHandler` delivers outbox items of one ``kind`` (``channel.send``,
  ``webhook``...); workers call it through :mod:`crmkit.jobs.delivery`, which claims each
  item with a lease, retries with backoff and gives up into the dead-letter list.
* :class:`Job` is a function the queue may run later (``work.outbox.add("job", ...)`` or a
  schedule); :class:`Schedule` runs a job periodically, never twice at once.
* :mod:`crmkit.jobs.queue` wraps Huey (SQLite file embedded, Redis at scale) and
  :mod:`crmkit.jobs.worker` runs the consumer (``crmkit worker``, or embedded in
  ``crmkit serve``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Job:
    """A function the task queue may run later: ``func(crm, **payload)``.

    ``retries`` and ``retry_delay`` (seconds, doubled each try, with jitter, up to
    ``outbox.retry_max_seconds`` or ``retry_delay`` if longer) govern failures of the job
    run by the outbox (``work.outbox.run_job``, or ``work.outbox.add("job", ...)`` without
    ``max_attempts``); after the last try the job lands in the dead-letter list.
    """

    name: str
    func: Callable[..., Any]
    retries: int = 5
    retry_delay: float = 10.0
    description: str = ""


@attrs.frozen
class Schedule:
    """Run job ``job`` periodically: every ``every_seconds``, or on a ``cron`` expression.

    Two workers never run one schedule at once (a lock is taken for the run).  A run that
    dies without finishing (a killed worker) frees the schedule after ``lease_seconds``.
    ``cron`` is read in the deployment's time zone (``locale.timezone``); at fixed hours it
    runs once per local time of a date across daylight-saving changes (a time clocks skip
    runs at the first minute after it; see :func:`crmkit.jobs.schedules.local_minutes`).
    """

    name: str
    job: str
    every_seconds: int | None = None
    cron: str | None = None
    payload: dict[str, Any] = attrs.field(factory=dict)
    lease_seconds: int = 600

    def __attrs_post_init__(self) -> None:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError(f"schedule {self.name!r}: give exactly one of every_seconds or cron")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(
                f"schedule {self.name!r}: cron needs 5 fields (minute hour day month weekday)"
            )
        if self.every_seconds is not None and self.every_seconds < 1:
            raise ValueError(f"schedule {self.name!r}: every_seconds must be at least 1")


class Cancelled(Exception):
    """Raised by an outbox handler when the item must not go out any more (a notification
    forwarded to a user blocked since it was queued): the item ends ``cancelled``, with the
    message as its reason (``last_error``), and is neither retried nor dead-lettered."""


@attrs.frozen
class Delivery:
    """One attempt at delivering an outbox item, as its handler sees it.

    ``attempt`` counts from 1; ``idempotency_key`` must reach the peer (a header, a
    message id) so that a retry of something the peer already accepted is not done twice.
    """

    item_id: int
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int
    max_attempts: int
    party_id: int | None = None
    actor_id: int | None = None


@attrs.frozen
class OutboxHandler:
    """Delivers outbox items of one ``kind``: ``deliver(crm, delivery) -> dict | None``.

    Return a JSON-safe mapping (kept as the item's ``result``) when the peer accepted the
    item; raise :class:`crmkit.channels.PermanentFailure` when retrying cannot help,
    :class:`Cancelled` when the item must not go out any more, any other exception to be
    retried later.  ``on_dead(crm, delivery, error)`` runs once when
    the item is given up (mark the message failed on the timeline, say).
    ``on_revived(crm, delivery, result)`` runs when an item given up that way is found
    delivered after all: its last attempt ran past its lease, so another worker took its
    worker for dead and gave the item up, and then the peer accepted it.  It undoes what
    ``on_dead`` did (the message is sent after all).
    """

    kind: str
    deliver: Callable[[Any, Delivery], dict[str, Any] | None]
    description: str = ""
    on_dead: Callable[[Any, Delivery, str], None] | None = None
    on_revived: Callable[[Any, Delivery, dict[str, Any]], None] | None = None

    @property
    def name(self) -> str:
        """The registry key (the kind)."""
        return self.kind
