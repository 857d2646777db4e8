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
``dead`` after the last attempt (the dead-letter list an admin sees), or ``cancelled``
when the handler found it must not go out any more (:class:`crmkit.jobs.Cancelled`: its
reason is kept as ``last_error``; nothing failed, so nothing is retried).  An item whose
last attempt killed its worker (no outcome was ever written) is made ``dead`` by the next
claim instead of being delivered again.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import logging
import random
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, String, bindparam, cast, func, literal, select, update

from crmkit.channels import PermanentFailure
from crmkit.clock import utcnow
from crmkit.jobs import Cancelled, Delivery
from crmkit.model import OutboxItem

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

#: how to renew the claim this thread works under (an outbox item's, a schedule run's)
_claim: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "crmkit_outbox_claim", default=None
)


class ClaimLost(RuntimeError):
    """The lease ran out and another worker took the work over: stop, it goes on there."""


def keep_claim() -> None:
    """Renew the lease of the work this thread does: the outbox item it delivers (for
    another ``outbox.lease_seconds``), or the schedule it runs (for the schedule's
    ``lease_seconds``).

    A handler, job or scheduled job that may run longer than the lease (a mass mailing, a
    large export, a first mail sync) calls it now and then, well within the lease;
    otherwise another worker takes the work over after the lease and runs it a second time
    beside the first.  Raises :class:`ClaimLost` when that has already happened (the
    caller stops: the other run goes on); does nothing outside a delivery or a scheduled
    run (a job called directly, a test).
    """
    renew = _claim.get()
    if renew is not None:
        renew()


@contextlib.contextmanager
def holding(renew: Callable[[], None]) -> Iterator[None]:
    """Make :func:`keep_claim` call ``renew`` in this thread while the block runs."""
    held = _claim.set(renew)
    try:
        yield
    finally:
        _claim.reset(held)


def _renew_item(crm: CRM, item_id: int, token: str) -> None:
    lease = dt.timedelta(seconds=float(crm.config["outbox.lease_seconds"]))
    with _bookkeeping(crm) as connection:
        kept = connection.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id, OutboxItem.claimed_by == token)
            .values(next_attempt_at=utcnow() + lease)
        ).rowcount
    if not kept:
        raise ClaimLost(f"outbox item {item_id} was taken over by another worker")


PENDING = "pending"
DELIVERING = "delivering"
DELIVERED = "delivered"
DEAD = "dead"
DISCARDED = "discarded"
CANCELLED = "cancelled"

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


@contextlib.contextmanager
def _bookkeeping(crm: CRM) -> Iterator[Connection]:
    """A short transaction for claims and outcomes.

    On PostgreSQL it commits without waiting for the WAL flush: if the server crashed and
    lost such a commit, the item would merely be claimable or delivered again, with the
    same idempotency key (the item itself was written durably with the change).
    """
    with crm.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        yield connection


def claim(crm: CRM, item_id: int) -> tuple[Delivery, str] | None:
    """Claim one due, free item: its delivery and the claim's token, or ``None``."""
    deliveries, token = claim_batch(crm, [item_id])
    return (deliveries[0], token) if deliveries else None


_RETURNED = (
    OutboxItem.id,
    OutboxItem.kind,
    OutboxItem.payload,
    OutboxItem.idempotency_key,
    OutboxItem.attempts,
    OutboxItem.max_attempts,
    OutboxItem.party_id,
    OutboxItem.actor_id,
    OutboxItem.last_error,
)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        item_id=row.id,
        kind=row.kind,
        payload=dict(row.payload or {}),
        idempotency_key=row.idempotency_key,
        attempt=row.attempts,
        max_attempts=row.max_attempts,
        party_id=row.party_id,
        actor_id=row.actor_id,
    )


def claim_batch(crm: CRM, item_ids: Sequence[int]) -> tuple[list[Delivery], str]:
    """Claim those of ``item_ids`` that are due and free; the claimed ones and the token.

    An item whose last attempt never finished (its worker was killed, ran out of memory)
    is given up here instead, with its ``on_dead`` handler run (see :func:`_claim_or_bury`).
    """
    deliveries, token, buried = _claim_or_bury(crm, item_ids)
    _give_up_all(crm, buried)
    return deliveries, token


def _claim_or_bury(
    crm: CRM, item_ids: Sequence[int]
) -> tuple[list[Delivery], str, list[tuple[Delivery, str]]]:
    """Claim the due, free items of ``item_ids``; also the ones given up instead.

    An item still ``delivering`` once its lease ran out had a worker die on it; when that
    was its last attempt (``attempts`` reached ``max_attempts``), delivering it again
    would likely kill the next worker too, for ever: it becomes ``dead`` with an error
    saying so (the dead-letter list), in the claim's transaction.
    """
    now = utcnow()
    token = uuid.uuid4().hex
    lease = dt.timedelta(seconds=float(crm.config["outbox.lease_seconds"]))
    due = (
        OutboxItem.id.in_(list(item_ids)),
        OutboxItem.status.in_(CLAIMABLE),
        OutboxItem.next_attempt_at <= now,
    )
    died = (
        literal("the worker delivering it died (killed, out of memory?) in attempt ")
        + cast(OutboxItem.attempts, String)
        + literal(" of ")
        + cast(OutboxItem.max_attempts, String)
        + func.coalesce(literal("; the error before: ") + OutboxItem.last_error, "")
    )
    bury = (
        update(OutboxItem)
        .where(
            *due,
            OutboxItem.status == DELIVERING,
            OutboxItem.attempts >= OutboxItem.max_attempts,
        )
        .values(status=DEAD, claimed_by=None, last_error=died)
        .returning(*_RETURNED)
    )
    statement = (
        update(OutboxItem)
        .where(*due)
        .values(
            status=DELIVERING,
            claimed_by=token,
            attempts=OutboxItem.attempts + 1,
            next_attempt_at=now + lease,
        )
        .returning(*_RETURNED)
    )
    with _bookkeeping(crm) as connection:
        dead = connection.execute(bury).all()
        rows = connection.execute(statement).all()
    order = {item_id: n for n, item_id in enumerate(item_ids)}
    deliveries = [_delivery(row) for row in sorted(rows, key=lambda r: order.get(r.id, 0))]
    return deliveries, token, [(_delivery(row), str(row.last_error)) for row in dead]


def _give_up_all(crm: CRM, buried: Sequence[tuple[Delivery, str]]) -> dict[int, str]:
    """Run :func:`_given_up` for each item a claim buried; their outcomes (all ``dead``)."""
    for delivery, error in buried:
        _given_up(crm, delivery, error)
    return {delivery.item_id: DEAD for delivery, _ in buried}


def _given_up(crm: CRM, delivery: Delivery, error: str) -> None:
    """Log a dead item and run its kind's ``on_dead`` (mark the message failed...)."""
    log.warning("outbox item %s (%s) is dead: %s", delivery.item_id, delivery.kind, error)
    handler = crm.outbox_handlers.get(delivery.kind)
    if handler is not None and handler.on_dead is not None:
        try:
            handler.on_dead(crm, delivery, error)
        except Exception:
            log.exception("on_dead of outbox kind %s failed", delivery.kind)


def error_text(exc: BaseException) -> str:
    from crmkit.errors import CrmkitError

    text = f"{type(exc).__name__}: {exc}".strip()
    if not isinstance(exc, PermanentFailure | CrmkitError):  # those explain themselves
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    return text[:_ERROR_LIMIT]


def _attempt(crm: CRM, delivery: Delivery) -> dict[str, Any]:
    """Call the handler once; the outcome as the values to write."""
    handler = crm.outbox_handlers.get(delivery.kind)
    try:
        if handler is None:
            raise LookupError(
                f"no outbox handler for kind {delivery.kind!r} "
                "(is the plugin that registers it loaded in this worker?)"
            )
        result = handler.deliver(crm, delivery)
    except Cancelled as exc:
        reason = str(exc)[:_ERROR_LIMIT]
        log.info("outbox item %s (%s) cancelled: %s", delivery.item_id, delivery.kind, reason)
        return {"b_status": CANCELLED, "b_error": reason, "b_due": None, "b_result": None}
    except Exception as exc:
        error = error_text(exc)
        if isinstance(exc, PermanentFailure) or delivery.attempt >= delivery.max_attempts:
            return {"b_status": DEAD, "b_error": error, "b_due": None, "b_result": None}
        delay = retry_delay(
            delivery.attempt,
            float(crm.config["outbox.retry_base_seconds"]),
            float(crm.config["outbox.retry_max_seconds"]),
        )
        due = utcnow() + dt.timedelta(seconds=delay)
        return {"b_status": PENDING, "b_error": error, "b_due": due, "b_result": None}
    return {"b_status": DELIVERED, "b_error": None, "b_due": None, "b_result": result or {}}


_FENCE = (OutboxItem.id == bindparam("b_id")) & (OutboxItem.claimed_by == bindparam("b_token"))
_DELIVERED = (
    update(OutboxItem)
    .where(_FENCE)
    .values(
        status=DELIVERED,
        delivered_at=bindparam("b_at"),
        result=bindparam("b_result"),
        last_error=None,
        claimed_by=None,
    )
)
_RETRY = (
    update(OutboxItem)
    .where(_FENCE)
    .values(
        status=PENDING,
        last_error=bindparam("b_error"),
        next_attempt_at=bindparam("b_due"),
        claimed_by=None,
    )
)
_DEAD = (
    update(OutboxItem)
    .where(_FENCE)
    .values(status=DEAD, last_error=bindparam("b_error"), claimed_by=None)
)
_CANCELLED = (
    update(OutboxItem)
    .where(_FENCE)
    .values(status=CANCELLED, last_error=bindparam("b_error"), claimed_by=None)
)
_UNREACHED = (
    update(OutboxItem)
    .where(_FENCE)
    .values(
        status=PENDING,
        attempts=OutboxItem.attempts - 1,
        next_attempt_at=bindparam("b_due"),
        claimed_by=None,
    )
)


def deliver_batch(crm: CRM, item_ids: Sequence[int]) -> dict[int, str]:
    """Claim and deliver these items; what happened to each claimed one.

    Outcomes: ``delivered``, ``retry`` (failed, due again later), ``dead`` (given up),
    ``cancelled`` (the handler found it must not go out any more).
    Items not due or claimed by another worker are left out.  The batch is claimed in one
    statement and its outcomes written in one transaction; a batch that runs past half
    the lease hands its remaining items back untouched, so that no claim outlives its lease.
    """
    deliveries, token, buried = _claim_or_bury(crm, item_ids)
    outcomes = _give_up_all(crm, buried)
    if not deliveries:
        return outcomes
    budget = float(crm.config["outbox.lease_seconds"]) / 2
    started = time.monotonic()
    done: list[tuple[Delivery, dict[str, Any]]] = []
    unreached: list[Delivery] = []
    for delivery in deliveries:
        if done and time.monotonic() - started > budget:
            unreached.append(delivery)
            continue
        with holding(functools.partial(_renew_item, crm, delivery.item_id, token)):
            done.append((delivery, _attempt(crm, delivery)))
    now = utcnow()
    groups: dict[str, list[dict[str, Any]]] = {DELIVERED: [], PENDING: [], DEAD: [], CANCELLED: []}
    for delivery, values in done:
        groups[values["b_status"]].append(
            {**values, "b_id": delivery.item_id, "b_token": token, "b_at": now}
        )
    back = [{"b_id": d.item_id, "b_token": token, "b_due": now} for d in unreached]
    with _bookkeeping(crm) as connection:
        for statement, rows in (
            (_DELIVERED, groups[DELIVERED]),
            (_RETRY, groups[PENDING]),
            (_DEAD, groups[DEAD]),
            (_CANCELLED, groups[CANCELLED]),
            (_UNREACHED, back),
        ):
            if rows:
                connection.execute(statement, rows)
    for delivery, values in done:
        status = values["b_status"]
        outcomes[delivery.item_id] = "retry" if status == PENDING else status
        if status == DEAD:
            _given_up(crm, delivery, values["b_error"])
    for row in groups[PENDING]:
        crm.queue.wakeup([row["b_id"]], eta=row["b_due"])
    if unreached:
        crm.queue.wakeup([d.item_id for d in unreached])
    return outcomes


def deliver_item(crm: CRM, item_id: int) -> str:
    """Try to deliver one item now.

    Returns what happened: ``delivered``, ``retry`` (failed, due again later), ``dead``
    (given up), ``cancelled`` (not to go out any more), or ``skipped`` (not due, or claimed
    by another worker).
    """
    return deliver_batch(crm, [item_id]).get(item_id, "skipped")


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

    What workers do, here in one loop: for tests, scripts and ``crmkit jobs deliver``.
    """
    counts: dict[str, int] = {}
    chosen = list(ids) if ids is not None else due_item_ids(crm, limit=100_000)
    for start in range(0, len(chosen), 25):
        for outcome in deliver_batch(crm, chosen[start : start + 25]).values():
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
