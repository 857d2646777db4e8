"""Delivering outbox items: claim with a lease, call the handler, record the outcome.

The outbox table is the truth; the task queue only carries wake-ups (item ids).  A worker
that receives a wake-up *claims* its items with one conditional ``UPDATE``::

    status in (pending, delivering) and next_attempt_at <= now
      -> status = delivering, claimed_by = <fresh token>, next_attempt_at = now + lease

so two workers never deliver one item at once; an item whose worker died is claimable
again once its lease ran out (``next_attempt_at`` doubles as the lease's end, so one index
serves both).  An attempt is counted when the item's delivery *starts*: by the claim for
the first item of the wake-up (delivered at once), and by a short ``UPDATE`` fenced by the
claim for each further one, which also renews its lease; so a worker that dies on one
item has not used an attempt of the items after it.  The handler then talks to the peer
*outside* any transaction, passing the idempotency key, and the outcome is written only
if the claim is still ours (``claimed_by = token``), in the transaction that starts the
next item: delivered, back to pending after a backoff with jitter, or ``dead`` after the
last attempt (the dead-letter list an admin sees), or ``cancelled`` when the handler
found it must not go out any more (:class:`crmkit.jobs.Cancelled`: its reason is kept as
``last_error``; nothing failed, so nothing is retried).  An outcome whose claim was lost
(the lease ran out, another worker took the item over) is not recorded and has no side
effects (no ``on_dead``).

An item whose last attempt killed its worker (no outcome was ever written) is made
``dead`` by the next claim instead of being delivered again; it keeps the dead claim's
token, so that if that worker was only slow (a handler past the lease that did not call
:func:`keep_claim`) and the peer accepted the item after all, its ``delivered`` outcome
still lands: the item becomes ``delivered`` and its kind's ``on_revived`` undoes what
``on_dead`` did (the message is ``sent`` again).
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

from sqlalchemy import Connection, String, bindparam, case, cast, func, literal, select, update

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
            .where(
                OutboxItem.id == item_id,
                OutboxItem.claimed_by == token,
                OutboxItem.status == DELIVERING,
            )
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


def _delivery(row: Any, attempt: int | None = None) -> Delivery:
    return Delivery(
        item_id=row.id,
        kind=row.kind,
        payload=dict(row.payload or {}),
        idempotency_key=row.idempotency_key,
        attempt=row.attempts if attempt is None else attempt,
        max_attempts=row.max_attempts,
        party_id=row.party_id,
        actor_id=row.actor_id,
    )


def claim_batch(crm: CRM, item_ids: Sequence[int]) -> tuple[list[Delivery], str]:
    """Claim those of ``item_ids`` that are due and free; the claimed ones and the token.

    The attempt of the first of ``item_ids`` is counted at once (it is the one delivered
    right away); each other one's only when its delivery starts (:func:`deliver_batch`).
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
    saying so (the dead-letter list), in the claim's transaction.  It keeps the dead
    claim's token: a worker that was only slow may still record that it was delivered.

    Only the first of ``item_ids`` has its attempt counted here; the deliveries of the
    others carry the number their attempt will have once started (:func:`_start`).
    """
    now = utcnow()
    token = uuid.uuid4().hex
    if not item_ids:
        return [], token, []
    first = item_ids[0]
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
        .values(status=DEAD, last_error=died)
        .returning(*_RETURNED)
    )
    statement = (
        update(OutboxItem)
        .where(*due)
        .values(
            status=DELIVERING,
            claimed_by=token,
            attempts=OutboxItem.attempts + case((OutboxItem.id == first, 1), else_=0),
            next_attempt_at=now + lease,
        )
        .returning(*_RETURNED)
    )
    with _bookkeeping(crm) as connection:
        dead = connection.execute(bury).all()
        rows = connection.execute(statement).all()
    order = {item_id: n for n, item_id in enumerate(item_ids)}
    deliveries = [
        _delivery(row, row.attempts if row.id == first else row.attempts + 1)
        for row in sorted(rows, key=lambda r: order.get(r.id, 0))
    ]
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


def _revived(crm: CRM, delivery: Delivery, result: dict[str, Any]) -> None:
    """Log an item given up as dead that was delivered after all; run its ``on_revived``."""
    log.warning(
        "outbox item %s (%s) was given up while its delivery still ran (past its lease); "
        "it was delivered after all",
        delivery.item_id,
        delivery.kind,
    )
    handler = crm.outbox_handlers.get(delivery.kind)
    if handler is not None and handler.on_revived is not None:
        try:
            handler.on_revived(crm, delivery, result)
        except Exception:
            log.exception("on_revived of outbox kind %s failed", delivery.kind)


def error_text(exc: BaseException) -> str:
    from crmkit.errors import CrmkitError

    text = f"{type(exc).__name__}: {exc}".strip()
    if not isinstance(exc, PermanentFailure | CrmkitError):  # those explain themselves
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    return text[:_ERROR_LIMIT]


def _retry_base(crm: CRM, delivery: Delivery) -> float:
    """Seconds to wait after a first failure: a job's own ``Job.retry_delay`` for an item
    of kind ``job``, else ``outbox.retry_base_seconds``."""
    if delivery.kind == "job":
        job = crm.jobs.get(str(delivery.payload.get("job")))
        if job is not None:
            return float(job.retry_delay)
    return float(crm.config["outbox.retry_base_seconds"])


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
        base = _retry_base(crm, delivery)
        cap = max(base, float(crm.config["outbox.retry_max_seconds"]))
        delay = retry_delay(delivery.attempt, base, cap)
        due = utcnow() + dt.timedelta(seconds=delay)
        return {"b_status": PENDING, "b_error": error, "b_due": due, "b_result": None}
    return {"b_status": DELIVERED, "b_error": None, "b_due": None, "b_result": result or {}}


_OURS = (OutboxItem.id == bindparam("b_id")) & (OutboxItem.claimed_by == bindparam("b_token"))
_FENCE = _OURS & (OutboxItem.status == DELIVERING)
_START = (
    update(OutboxItem)
    .where(_FENCE)
    .values(attempts=OutboxItem.attempts + 1, next_attempt_at=bindparam("b_lease"))
)
_DELIVERED_VALUES = {
    "status": DELIVERED,
    "delivered_at": bindparam("b_at"),
    "result": bindparam("b_result"),
    "last_error": None,
    "claimed_by": None,
}
_DELIVERED = update(OutboxItem).where(_FENCE).values(_DELIVERED_VALUES)
#: a delivery that succeeded after a claim took its worker for dead and gave the item up
_REVIVED = update(OutboxItem).where(_OURS & (OutboxItem.status == DEAD)).values(_DELIVERED_VALUES)
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
_OUTCOMES = {DELIVERED: _DELIVERED, PENDING: _RETRY, DEAD: _DEAD, CANCELLED: _CANCELLED}
_UNREACHED = (
    update(OutboxItem)
    .where(_FENCE)
    .values(status=PENDING, next_attempt_at=bindparam("b_due"), claimed_by=None)
)

#: what :func:`_record` returns for a dead item that turned out delivered
_REVIVED_OUTCOME = "revived"

_Outcome = tuple[Delivery, dict[str, Any]]


def _record(connection: Connection, token: str, outcome: _Outcome) -> str | None:
    """Write one item's outcome if its claim is still ours; the status written, or
    ``None`` when another worker has taken the item over (nothing was written)."""
    delivery, values = outcome
    status = values["b_status"]
    params = {**values, "b_id": delivery.item_id, "b_token": token, "b_at": utcnow()}
    if connection.execute(_OUTCOMES[status], params).rowcount:
        return str(status)
    if status == DELIVERED and connection.execute(_REVIVED, params).rowcount:
        return _REVIVED_OUTCOME
    return None


def _start(connection: Connection, token: str, delivery: Delivery, lease: dt.timedelta) -> bool:
    """Count the attempt of a claimed item about to be delivered (and renew its lease);
    whether the claim was still ours."""
    params = {"b_id": delivery.item_id, "b_token": token, "b_lease": utcnow() + lease}
    return bool(connection.execute(_START, params).rowcount)


def _recorded(
    crm: CRM,
    outcome: _Outcome,
    written: str | None,
    outcomes: dict[int, str],
    wakeups: list[tuple[int, dt.datetime]],
) -> None:
    """What follows an outcome once written: its report, ``on_dead``, ``on_revived``."""
    delivery, values = outcome
    if written is None:
        log.warning(
            "the outcome of outbox item %s (%s), %s, was not recorded: its lease ran out "
            "and another worker took it over",
            delivery.item_id,
            delivery.kind,
            values["b_status"],
        )
    elif written == _REVIVED_OUTCOME:
        outcomes[delivery.item_id] = DELIVERED
        _revived(crm, delivery, values["b_result"])
    elif written == PENDING:
        outcomes[delivery.item_id] = "retry"
        wakeups.append((delivery.item_id, values["b_due"]))
    else:
        outcomes[delivery.item_id] = written
        if written == DEAD:
            _given_up(crm, delivery, values["b_error"])


def deliver_batch(crm: CRM, item_ids: Sequence[int]) -> dict[int, str]:
    """Claim and deliver these items; what happened to each claimed one.

    Outcomes: ``delivered``, ``retry`` (failed, due again later), ``dead`` (given up),
    ``cancelled`` (the handler found it must not go out any more).
    Items not due or claimed by another worker are left out, and so is an item whose
    outcome could not be recorded because another worker took it over meanwhile.  The
    batch is claimed in one statement; each item's outcome is written in the short
    transaction that starts the next one (:func:`_start`), so that a worker dying on an
    item leaves the others' outcomes recorded and their attempts unused.  A batch that
    runs past half the lease hands its remaining items back untouched, so that no claim
    outlives its lease.
    """
    deliveries, token, buried = _claim_or_bury(crm, item_ids)
    outcomes = _give_up_all(crm, buried)
    if not deliveries:
        return outcomes
    lease = dt.timedelta(seconds=float(crm.config["outbox.lease_seconds"]))
    budget = lease.total_seconds() / 2
    started = time.monotonic()
    wakeups: list[tuple[int, dt.datetime]] = []
    unreached: list[Delivery] = []
    previous: _Outcome | None = None
    for n, delivery in enumerate(deliveries):
        if n and time.monotonic() - started > budget:
            unreached = deliveries[n:]
        begun = n == 0 and delivery.item_id == item_ids[0]  # counted by the claim
        written = None
        if previous is not None or not begun:
            with _bookkeeping(crm) as connection:
                if previous is not None:
                    written = _record(connection, token, previous)
                if unreached:
                    back = [
                        {"b_id": d.item_id, "b_token": token, "b_due": utcnow()} for d in unreached
                    ]
                    connection.execute(_UNREACHED, back)
                else:
                    begun = _start(connection, token, delivery, lease)
        if previous is not None:
            _recorded(crm, previous, written, outcomes, wakeups)
            previous = None
        if unreached:
            break
        if not begun:
            log.warning(
                "outbox item %s was taken over before its delivery started", delivery.item_id
            )
            continue
        with holding(functools.partial(_renew_item, crm, delivery.item_id, token)):
            previous = (delivery, _attempt(crm, delivery))
    if previous is not None:
        with _bookkeeping(crm) as connection:
            written = _record(connection, token, previous)
        _recorded(crm, previous, written, outcomes, wakeups)
    for item_id, due in wakeups:
        crm.queue.wakeup([item_id], eta=due)
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
