"""The outbox: side effects written in the transaction that caused them.

A service that must send a mail, a message, place a call or call a webhook never does it
itself: it adds an outbox item here, in its own transaction.  If the transaction rolls back
the item is gone with it; if it commits, a worker delivers it (see :mod:`crmkit.jobs`),
retrying with backoff and recording the peer's answer.  The idempotency key makes a
duplicate item (the same change submitted twice) collapse into one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.model import Activity, OutboxItem

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


def _insert_statement(dialect: str) -> Any:
    statement = _INSERTS.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        statement = _INSERTS[dialect] = (
            insert(OutboxItem.__table__)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(OutboxItem.__table__.c.id)
        )
    return statement


_INSERTS: dict[str, Any] = {}

#: Attempts an item gets unless its adder or its job says otherwise.
DEFAULT_ATTEMPTS = 8


class OutboxService:
    """Adding items to the outbox and reading their state."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work
        self._wake: list[int] = []
        self._later: list[tuple[int, dt.datetime]] = []

    def add(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        party_id: int | None = None,
        max_attempts: int | None = None,
        due: dt.datetime | None = None,
    ) -> OutboxItem:
        """Queue a side effect; an item with the same idempotency key is returned instead.

        ``due`` delays the first attempt (a reminder's message, a job to run later).
        ``max_attempts`` defaults to 8, and for a ``job`` item to its job's ``Job.retries``
        and one (as :meth:`run_job` queues it).
        """
        if max_attempts is None:
            max_attempts = self._attempts_of(kind, payload)
        key = idempotency_key or f"{kind}:{uuid.uuid4()}"
        now = utcnow()
        values = {
            "kind": kind,
            "payload": payload,
            "idempotency_key": key,
            "status": "pending",
            "attempts": 0,
            "party_id": party_id,
            "actor_id": self.work.actor.user_id,
            "max_attempts": max_attempts,
            "created_at": now,
            "next_attempt_at": due or now,
        }
        # One INSERT on the unit of work's connection, no ORM bookkeeping: this is on the
        # path of every change with a side effect.  A repeated key inserts nothing.
        connection = self.work.session.connection()
        item_id = connection.execute(_insert_statement(connection.dialect.name), values).scalar()
        if item_id is None:
            existing = self.work.session.scalar(
                select(OutboxItem).where(OutboxItem.idempotency_key == key)
            )
            assert existing is not None
            return existing
        self._wake_after_commit(item_id, due if due and due > now else None)
        return OutboxItem(id=item_id, **values)

    def run_job(
        self,
        job: str,
        payload: dict[str, Any] | None = None,
        *,
        due: dt.datetime | None = None,
        idempotency_key: str | None = None,
    ) -> OutboxItem:
        """Run registered job ``job`` in a worker after commit (or at ``due``).

        Failures are retried ``Job.retries`` times with backoff, then dead-lettered.
        """
        registered = self.work.crm.jobs.get(job)
        if registered is None:
            raise ValidationFailed({"job": [f"no job {job!r} is registered"]})
        return self.add(
            "job", {"job": job, "payload": payload or {}}, idempotency_key=idempotency_key, due=due
        )

    def _attempts_of(self, kind: str, payload: dict[str, Any]) -> int:
        """The attempts an item gets unless told: a job's ``retries`` and one, else 8."""
        if kind == "job":
            registered = self.work.crm.jobs.get(str(payload.get("job")))
            if registered is not None:
                return registered.retries + 1
        return DEFAULT_ATTEMPTS

    def _wake_after_commit(self, item_id: int, due: dt.datetime | None = None) -> None:
        # One wake-up call per transaction, whatever the number of items it queued.
        if not self._wake and not self._later:
            self.work.after_commit(self._send_wakeups)
        if due is None:
            self._wake.append(item_id)
        else:
            self._later.append((item_id, due))

    def _send_wakeups(self) -> None:
        ids, self._wake = self._wake, []
        later, self._later = self._later, []
        if ids:
            self.work.crm.outbox_wakeup(*ids)
        for item_id, due in later:
            self.work.crm.queue.wakeup([item_id], eta=due)

    def get(self, item_id: int) -> OutboxItem | None:
        """An outbox item by id (system and admins)."""
        self.work.access.require("outbox_item", "read")
        return self.work.session.get(OutboxItem, item_id)

    # -- the dead-letter list (admins) ----------------------------------------------------

    def failed(self, limit: int = 200, kind: str | None = None) -> list[OutboxItem]:
        """Dead items, newest first: what an admin must retry or discard."""
        self.work.access.require("outbox_item", "read")
        query = select(OutboxItem).where(OutboxItem.status == "dead")
        if kind:
            query = query.where(OutboxItem.kind == kind)
        query = query.order_by(OutboxItem.id.desc()).limit(limit)
        return list(self.work.session.scalars(query))

    def cancelled(self, limit: int = 50) -> list[OutboxItem]:
        """Items a handler cancelled (not to go out any more), newest first, each with its
        reason as ``last_error``: nothing failed, there is nothing to retry."""
        self.work.access.require("outbox_item", "read")
        query = select(OutboxItem).where(OutboxItem.status == "cancelled")
        return list(self.work.session.scalars(query.order_by(OutboxItem.id.desc()).limit(limit)))

    def counts(self) -> dict[str, int]:
        """How many items are in each status."""
        self.work.access.require("outbox_item", "read")
        rows = self.work.session.execute(
            select(OutboxItem.status, func.count()).group_by(OutboxItem.status)
        )
        return {status: int(count) for status, count in rows}

    def _dead(self, item_ids: Sequence[int]) -> list[OutboxItem]:
        self.work.access.require("outbox_item", "update")
        items = list(
            self.work.session.scalars(
                select(OutboxItem).where(OutboxItem.id.in_(list(item_ids))).with_for_update()
            )
        )
        found = {item.id for item in items}
        missing = [i for i in item_ids if i not in found]
        if missing:
            raise NotFound("outbox_item", missing[0])
        alive = [item.id for item in items if item.status != "dead"]
        if alive:
            raise ValidationFailed(
                {"status": [f"outbox item {alive[0]} is not in the dead-letter list"]}
            )
        return items

    def retry(self, item_ids: Sequence[int]) -> list[OutboxItem]:
        """Put dead items back in the queue with a fresh set of attempts.

        The timeline entry of a message given up (``channel.send``) is ``queued`` again,
        without the error, until the worker sends it or gives it up once more.
        """
        items = self._dead(item_ids)
        now = utcnow()
        for item in items:
            item.status = "pending"
            item.attempts = 0
            item.next_attempt_at = now
            item.claimed_by = None
            self.work.audit("outbox_item", item.id, "retry", {"status": ["dead", "pending"]})
            self._wake_after_commit(item.id)
            if item.kind == "channel.send":
                self._requeue_message((item.payload or {}).get("activity_id"))
        self.work.flush()
        return items

    def _requeue_message(self, activity_id: Any) -> None:
        activity = self.work.session.get(Activity, activity_id) if activity_id else None
        if activity is not None and activity.status == "failed":
            activity.status = "queued"
            activity.data = {k: v for k, v in (activity.data or {}).items() if k != "error"}

    def discard(self, item_ids: Sequence[int]) -> list[OutboxItem]:
        """Give dead items up for good (they stay listed as discarded, with their error)."""
        items = self._dead(item_ids)
        for item in items:
            item.status = "discarded"
            self.work.audit("outbox_item", item.id, "discard", {"status": ["dead", "discarded"]})
        self.work.flush()
        return items
