"""Reminders at their time; overdue tasks and missed reminders raised to people.

* :func:`fire_due_reminders` runs on every worker's ticker (``queue.tick_seconds``): a
  pending reminder whose time has come becomes ``fired`` and each recipient gets a
  notification (the bell and a live message; mail or Telegram per their preferences).
  Claiming is the ``UPDATE ... WHERE status = 'pending'`` itself, so several workers
  never fire one reminder twice, and the notifications commit with it.
* :func:`raise_overdue` (the schedule ``crmkit.overdue``, every 30 seconds) tells the
  assignee of a task past its deadline, once, raising the event ``task.overdue`` (as the
  system actor, so that automation rules on it run); after
  ``reminders.escalate_after_minutes`` a still-open task, and a fired reminder someone has
  not dealt with, are raised to the manager of whoever was responsible.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update

from crmkit.clock import utcnow
from crmkit.model import Reminder, Task, User
from crmkit.services.tasks import OPEN_STATUSES

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

TASK_OVERDUE = "task.overdue"
REMINDER_FIRED = "reminder.fired"

_DUE = (
    select(Reminder.id)
    .where(Reminder.status == "pending", Reminder.remind_at <= bindparam("now"))
    .order_by(Reminder.remind_at)
    .limit(200)
)


def fire_due_reminders(crm: CRM, now: dt.datetime | None = None) -> int:
    """Fire every due reminder; how many fired."""
    moment = now or utcnow()
    with crm.engine.connect() as connection:  # a cheap read first: most ticks find nothing
        due = list(connection.scalars(_DUE, {"now": moment}))
    if not due:
        return 0
    fired = 0
    with crm.assistant() as work:
        claimed = list(
            work.session.scalars(
                update(Reminder)
                .where(Reminder.id.in_(due), Reminder.status == "pending")
                # ``version`` as the ORM would bump it: the reminder's ETag changes, so a
                # client holding the pending one re-reads it (If-None-Match) and cannot
                # write over the firing with it (If-Match).
                .values(status="fired", fired_at=moment, version=Reminder.version + 1)
                .returning(Reminder.id)
                .execution_options(synchronize_session=False)
            )
        )
        for reminder in work.session.scalars(select(Reminder).where(Reminder.id.in_(claimed))):
            for user_id in work.reminders.recipients_of(reminder):
                work.notifications.notify(
                    user_id,
                    "reminder",
                    reminder.text,
                    party_id=reminder.party_id,
                    record=_record_of(reminder),
                )
            work.emit(
                REMINDER_FIRED,
                "reminder",
                reminder.id,
                party_id=reminder.party_id,
                about_entity=reminder.record_entity,
                about_id=reminder.record_id,
            )
            fired += 1
    return fired


def _record_of(row: Any) -> tuple[str, int]:
    if row.record_entity and row.record_id:
        return (row.record_entity, row.record_id)
    return (type(row).__tablename__, row.id)


def _managers(work: Any, user_ids: set[int]) -> dict[int, int]:
    if not user_ids:
        return {}
    rows = work.session.execute(
        select(User.id, User.manager_id).where(User.id.in_(user_ids), User.manager_id.is_not(None))
    )
    return {user_id: manager_id for user_id, manager_id in rows}


def raise_overdue(crm: CRM, now: dt.datetime | None = None, **_: Any) -> dict[str, int]:
    """Tell assignees about overdue tasks, then managers about long-overdue tasks and
    missed reminders; counts of each."""
    moment = now or utcnow()
    delay = dt.timedelta(minutes=float(crm.config["reminders.escalate_after_minutes"]))
    counts = {"overdue": 0, "escalated_tasks": 0, "escalated_reminders": 0}
    # As the system, not the assistant: ``task.overdue`` is caused by the clock, and rules
    # ignore what the assistant does (so that they cannot loop), which would drop it.
    with crm.system() as work:
        overdue = list(
            work.session.scalars(
                select(Task)
                .where(
                    Task.status.in_(OPEN_STATUSES),
                    Task.deadline < moment,
                    Task.overdue_notified_at.is_(None),
                )
                .order_by(Task.deadline)
                .limit(500)
                .with_for_update(skip_locked=True)
            )
        )
        for task in overdue:
            task.overdue_notified_at = moment
            if task.assignee_id is not None:
                work.notifications.notify(
                    task.assignee_id,
                    "overdue",
                    task.title,
                    party_id=task.party_id,
                    record=("task", task.id),
                )
            work.emit(
                TASK_OVERDUE,
                "task",
                task.id,
                party_id=task.party_id,
                assignee_id=task.assignee_id,
                deadline=task.deadline.isoformat() if task.deadline else None,
            )
            counts["overdue"] += 1

        late = list(
            work.session.scalars(
                select(Task)
                .where(
                    Task.status.in_(OPEN_STATUSES),
                    Task.deadline < moment - delay,
                    Task.escalated_at.is_(None),
                )
                .order_by(Task.deadline)
                .limit(500)
                .with_for_update(skip_locked=True)
            )
        )
        managers = _managers(work, {t.assignee_id for t in late if t.assignee_id})
        for task in late:
            task.escalated_at = moment
            manager = managers.get(task.assignee_id) if task.assignee_id else None
            if manager is not None and work.notifications.notify(
                manager,
                "escalation",
                task.title,
                party_id=task.party_id,
                record=("task", task.id),
            ):  # a blocked manager is told nothing
                counts["escalated_tasks"] += 1

        missed = list(
            work.session.scalars(
                select(Reminder)
                .where(
                    Reminder.status == "fired",
                    Reminder.fired_at < moment - delay,
                    Reminder.escalated_at.is_(None),
                )
                .limit(500)
                .with_for_update(skip_locked=True)
            )
        )
        for reminder in missed:
            reminder.escalated_at = moment
            waiting = set(work.reminders.recipients_of(reminder))
            if not waiting:
                continue
            managers = _managers(work, waiting)
            for user_id in waiting:
                work.notifications.notify(
                    user_id,
                    "missed_reminder",
                    reminder.text,
                    party_id=reminder.party_id,
                    record=_record_of(reminder),
                )
            for manager in sorted(set(managers.values()) - waiting):
                if work.notifications.notify(
                    manager,
                    "escalation",
                    reminder.text,
                    party_id=reminder.party_id,
                    record=_record_of(reminder),
                ):
                    counts["escalated_reminders"] += 1
    return counts


__all__ = ["REMINDER_FIRED", "TASK_OVERDUE", "fire_due_reminders", "raise_overdue"]
