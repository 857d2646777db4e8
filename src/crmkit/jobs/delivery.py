"""Delivering outbox items: claim with a lease, call the handler, record the outcome.

The outbox table is the truth; the task queue only carries wake-ups (item ids).  A worker
that receives a wake-up *claims* the item with one conditional ``UPDATE``::

    status in (pending, delivering) and next_attempt_at <= now
      -> status = delivering, claimed_by = <fresh token>, attempts + 1,
         next_attempt_at = now + lease

so two workers never deliver one item at once; an item whose worker died is claimable
again once its lease ran out (``next_attempt_at`` doubles as the lease's end, so one index
serves both).  The handler then talks to the peer *outside* any transaction, passing the
idempotency key, and the outcome is written only if the claim is still ours
(``claimed_by = token``): delivered, back to pending after a backoff with jitter, or
``dead`` after the last attempt (the dead-letter list an admin sees).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import traceback
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from crmkit.channels import PermanentFailure
from crmkit.clock import utcnow
from crmkit.jobs import Delivery
from crmkit.model import OutboxItem

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

PENDING = "pending"
DELIVERING = "delivering"
DELIVERED = "delivered"
DEAD = "dead"
DISCARDED = "discarded"

#: Statuses a worker may claim (a delivering item only once its lease has run out).
CLAIMABLE = (PENDING, DELIVERING)

_ERROR_LIMIT = 4000


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...).

    Exponential (``base * 2**(attempt-1)``, at most ``cap``) with "equal jitter": half the
    delay is fixed, the other half random, so retries of many items failing together (a
    peer that was down) spread out instead of hitting the peer in waves.
    """
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def claim(crm: CRM, item_id: int) -> tuple[Delivery, str] | None:
    """Claim a due item for delivery; ``None`` when it is not due or someone else has it."""
    now = utcnow()
    token = uuid.uuid4().hex
    lease = dt.timedelta(seconds=float(crm.config["outbox.lease_seconds"]))
    statement = (
        update(OutboxItem)
        .where(
            OutboxItem.id == item_id,
            OutboxItem.status.in_(CLAIMABLE),
            OutboxItem.next_attempt_at <= now,
        )
        .values(
            status=DELIVERING,
            claimed_by=token,
            attempts=OutboxItem.attempts + 1,
            next_attempt_at=now + lease,
        )
        .returning(
            OutboxItem.kind,
            OutboxItem.payload,
            OutboxItem.idempotency_key,
            OutboxItem.attempts,
            OutboxItem.max_attempts,
            OutboxItem.party_id,
            OutboxItem.actor_id,
        )
    )
    with crm.engine.begin() as connection:
        row = connection.execute(statement).first()
    if row is None:
        return None
    delivery = Delivery(
        item_id=item_id,
        kind=row.kind,
        payload=dict(row.payload or {}),
        idempotency_key=row.idempotency_key,
        attempt=row.attempts,
        max_attempts=row.max_attempts,
        party_id=row.party_id,
        actor_id=row.actor_id,
    )
    return delivery, token


def _finish(crm: CRM, item_id: int, token: str, **values: Any) -> bool:
    statement = (
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.claimed_by == token)
        .values(**values)
    )
    with crm.engine.begin() as connection:
        return bool(connection.execute(statement).rowcount)


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    if not isinstance(exc, PermanentFailure):
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    return text[:_ERROR_LIMIT]


def deliver_item(crm: CRM, item_id: int) -> str:
    """Try to deliver one item now.

    Returns what happened: ``delivered``, ``retry`` (failed, due again later), ``dead``
    (given up), or ``skipped`` (not due, or claimed by another worker).
    """
    claimed = claim(crm, item_id)
    if claimed is None:
        return "skipped"
    delivery, token = claimed
    handler = crm.outbox_handlers.get(delivery.kind)
    try:
        if handler is None:
            raise LookupError(
                f"no outbox handler for kind {delivery.kind!r} "
                "(is the plugin that registers it loaded in this worker?)"
            )
        result = handler.deliver(crm, delivery)
    except Exception as exc:
        error = _error_text(exc)
        permanent = isinstance(exc, PermanentFailure)
        if permanent or delivery.attempt >= delivery.max_attempts:
            if _finish(crm, item_id, token, status=DEAD, last_error=error, claimed_by=None):
                log.warning("outbox item %s (%s) is dead: %s", item_id, delivery.kind, error)
                if handler is not None and handler.on_dead is not None:
                    try:
                        handler.on_dead(crm, delivery, error)
                    except Exception:
                        log.exception("on_dead of outbox kind %s failed", delivery.kind)
            return DEAD
        delay = retry_delay(
            delivery.attempt,
            float(crm.config["outbox.retry_base_seconds"]),
            float(crm.config["outbox.retry_max_seconds"]),
        )
        due = utcnow() + dt.timedelta(seconds=delay)
        if _finish(
            crm,
            item_id,
            token,
            status=PENDING,
            last_error=error,
            next_attempt_at=due,
            claimed_by=None,
        ):
            crm.queue.wakeup([item_id], eta=due)
        return "retry"
    _finish(
        crm,
        item_id,
        token,
        status=DELIVERED,
        delivered_at=utcnow(),
        result=result or {},
        last_error=None,
        claimed_by=None,
    )
    return DELIVERED


def due_item_ids(crm: CRM, *, overdue_seconds: float = 0.0, limit: int = 1000) -> list[int]:
    """Ids of items due at least ``overdue_seconds`` ago (pending, or with a lapsed lease)."""
    cutoff = utcnow() - dt.timedelta(seconds=overdue_seconds)
    statement = (
        select(OutboxItem.id)
        .where(OutboxItem.status.in_(CLAIMABLE), OutboxItem.next_attempt_at <= cutoff)
        .order_by(OutboxItem.next_attempt_at)
        .limit(limit)
    )
    with crm.engine.connect() as connection:
        return list(connection.scalars(statement))


def deliver_due(crm: CRM, ids: Iterable[int] | None = None) -> dict[str, int]:
    """Deliver every due item (or those of ``ids``) in this process; counts per outcome.

    What a worker does item by item, here in one loop: for tests, scripts and
    ``crmkit jobs deliver``.
    """
    counts: dict[str, int] = {}
    for item_id in list(ids) if ids is not None else due_item_ids(crm, limit=100_000):
        outcome = deliver_item(crm, item_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def sweep(crm: CRM) -> int:
    """Wake workers for items whose wake-up was lost (a crash, a flushed queue, a dead worker).

    Only items overdue by more than a lease are picked, so that fresh items, which got a
    wake-up at commit, are not enqueued twice.
    """
    grace = float(crm.config["outbox.lease_seconds"])
    ids = due_item_ids(crm, overdue_seconds=min(grace, 5.0), limit=5000)
    if ids:
        crm.queue.wakeup(ids)
    return len(ids)
