"""Tasks, reminders and calendar events: the entity services with extra behaviour."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, or_, select

from crmkit import events
from crmkit.clock import utcnow
from crmkit.db import lock_row
from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.i18n import Label, Moment, message
from crmkit.model import (
    CalendarEvent,
    EventAttendee,
    Reminder,
    ReminderRecipient,
    Resource,
    Task,
    Team,
    TeamMember,
    User,
)
from crmkit.services.records import EntityService

OPEN_STATUSES = ("open", "in_progress", "waiting")
#: The permission cell putting an event on a resource takes (``book`` on ``resource``),
#: where a plugin seeds it (the booking journal): :meth:`CalendarService.check_may_book`.
BOOK = ("resource", "book")


class TaskService(EntityService):
    """Tasks: the assignee is told; done sets ``done_at``; subtasks hang under a parent
    (one the actor sees, like every link: :meth:`EntityService.check_references`)."""

    def build(self, values: dict[str, Any]) -> Any:
        if values.get("assignee_id") not in (None, self.work.actor.user_id):
            self.check_assignable(values["assignee_id"])
        return super().build(values)

    def after_create(
        self, record: Any, values: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        self._announce(record)

    def after_update(
        self,
        record: Any,
        values: Mapping[str, Any],
        extra: Mapping[str, Any],
        changes: dict[str, Any],
    ) -> None:
        if "status" in changes:
            record.done_at = utcnow() if record.status == "done" else None
        if "assignee_id" in changes:
            self._announce(record)

    def apply_changes(self, record: Any, values: Mapping[str, Any]) -> dict[str, Any]:
        new_assignee = values.get("assignee_id", record.assignee_id)
        if new_assignee != record.assignee_id and new_assignee is not None:
            self.check_assignable(new_assignee)
        deadline, status = record.deadline, record.status
        changes = super().apply_changes(record, values)
        postponed = "deadline" in changes and (
            deadline is None or record.deadline is None or record.deadline > deadline
        )
        reopened = (
            "status" in changes and status not in OPEN_STATUSES and record.status in OPEN_STATUSES
        )
        if postponed or reopened:  # a new deadline: its passing is told (and raised) again
            record.overdue_notified_at = None
            record.escalated_at = None
        return changes

    def _announce(self, task: Task) -> None:
        if task.assignee_id is None:
            return
        self.work.flush()
        self.work.emit(
            events.TASK_ASSIGNED,
            "task",
            task.id,
            party_id=task.party_id,
            assignee_id=task.assignee_id,
        )
        if task.assignee_id != self.work.actor.user_id:
            self.work.notifications.notify(
                task.assignee_id,
                "assignment",
                f"{self.work.actor.label}: {task.title}",
                party_id=task.party_id,
                record=("task", task.id),
            )

    def complete(self, task: Any) -> Task:
        """Mark a task done."""
        return self.update(task, {"status": "done"})

    def mine(self, *, include_done: bool = False, limit: int = 100) -> list[Task]:
        """The actor's tasks, overdue first, then by deadline."""
        statement = self.query().where(Task.assignee_id == self.work.actor.user_id)
        if not include_done:
            statement = statement.where(Task.status.in_(OPEN_STATUSES))
        return list(
            self.session.scalars(
                statement.order_by(Task.deadline.asc().nulls_last(), Task.id).limit(limit)
            )
        )

    def team(self, *, limit: int = 200) -> list[Task]:
        """Open tasks of everyone in the actor's teams (as far as the actor may see)."""
        statement = self.query().where(
            Task.assignee_id.in_(sorted(self.work.actor.teammate_ids)),
            Task.status.in_(OPEN_STATUSES),
        )
        return list(
            self.session.scalars(
                statement.order_by(Task.deadline.asc().nulls_last(), Task.id).limit(limit)
            )
        )

    def overdue(self, *, now: dt.datetime | None = None, limit: int = 1000) -> list[Task]:
        """Open visible tasks past their deadline."""
        moment = now or utcnow()
        return list(
            self.session.scalars(
                self.query()
                .where(Task.status.in_(OPEN_STATUSES), Task.deadline < moment)
                .order_by(Task.deadline)
                .limit(limit)
            )
        )

    def subtasks(self, task: Any) -> list[Task]:
        """A task's visible subtasks."""
        parent = self.get(task)
        return list(
            self.session.scalars(self.query().where(Task.parent_id == parent.id).order_by(Task.id))
        )

    def for_party(self, party_id: int, *, open_only: bool = True) -> list[Task]:
        """Visible tasks about a party."""
        statement = self.query().where(Task.party_id == party_id)
        if open_only:
            statement = statement.where(Task.status.in_(OPEN_STATUSES))
        return list(self.session.scalars(statement.order_by(Task.deadline.asc().nulls_last())))


class ReminderService(EntityService):
    """Reminders for several people and teams about any record."""

    extra_fields = ("recipients",)

    def visible(self, action: str = "read") -> Any:
        """Besides the scope, a recipient (in person or through a team) sees the reminder."""
        scoped = super().visible(action)
        user_id = self.work.actor.user_id
        if action != "read" or user_id is None:
            return scoped
        teams = select(TeamMember.team_id).where(TeamMember.user_id == user_id)
        mine = select(ReminderRecipient.reminder_id).where(
            or_(ReminderRecipient.user_id == user_id, ReminderRecipient.team_id.in_(teams))
        )
        return or_(scoped, Reminder.id.in_(mine))

    def build(self, values: dict[str, Any]) -> Any:
        return super().build(values)

    def after_create(
        self, record: Any, values: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        recipients = extra.get("recipients") or [{"user_id": self.work.actor.user_id}]
        for recipient in recipients:
            if recipient.get("user_id") is None and recipient.get("team_id") is None:
                raise ValidationFailed({"recipients": ["a reminder needs someone to remind"]})
            self._check_exists(User, recipient.get("user_id"), "recipients", "user")
            self._check_exists(Team, recipient.get("team_id"), "recipients", "team")
            self.session.add(
                ReminderRecipient(
                    reminder_id=record.id,
                    user_id=recipient.get("user_id"),
                    team_id=recipient.get("team_id"),
                )
            )
        self.work.flush()

    def recipients_of(self, reminder: Reminder) -> list[int]:
        """User ids to remind: the named people plus every member of the named teams,
        blocked users left out."""
        rows = list(
            self.session.scalars(
                select(ReminderRecipient).where(ReminderRecipient.reminder_id == reminder.id)
            )
        )
        users = {r.user_id for r in rows if r.user_id is not None and r.done_at is None}
        team_ids = [r.team_id for r in rows if r.team_id is not None and r.done_at is None]
        if team_ids:
            users |= set(
                self.session.scalars(
                    select(TeamMember.user_id).where(TeamMember.team_id.in_(team_ids))
                )
            )
        dismissed = {r.user_id for r in rows if r.user_id is not None and r.done_at is not None}
        users -= dismissed
        if users:
            users = set(
                self.session.scalars(
                    select(User.id).where(User.id.in_(users), User.blocked.is_(False))
                )
            )
        return sorted(users)

    def snooze(self, reminder: Any, until: dt.datetime) -> Reminder:
        """Remind again at ``until``."""
        if until.tzinfo is None:
            raise ValidationFailed({"until": ["give a time with its time zone"]})
        row = self.get(reminder, action="update")
        row.remind_at = until
        row.status = "pending"
        row.fired_at = None
        row.escalated_at = None
        self.work.audit("reminder", row.id, "snooze", {"remind_at": [None, until.isoformat()]})
        return row

    def done(self, reminder: Any) -> Reminder:
        """The actor has dealt with it; when everyone has, the reminder is done."""
        row = self.get(reminder)
        user_id = self.work.actor.user_id
        recipient = self.session.scalar(
            select(ReminderRecipient).where(
                ReminderRecipient.reminder_id == row.id, ReminderRecipient.user_id == user_id
            )
        )
        if recipient is None:
            recipient = ReminderRecipient(reminder_id=row.id, user_id=user_id)
            self.session.add(recipient)
        recipient.done_at = utcnow()
        self.work.flush()
        if not self.recipients_of(row):
            row.status = "done"
        return row

    def due(self, *, now: dt.datetime | None = None, limit: int = 500) -> list[Reminder]:
        """Pending reminders whose time has come (system use: the reminder job)."""
        moment = now or utcnow()
        return list(
            self.session.scalars(
                self.query()
                .where(Reminder.status == "pending", Reminder.remind_at <= moment)
                .order_by(Reminder.remind_at)
                .limit(limit)
            )
        )

    def for_user(self, user_id: int) -> list[Reminder]:
        """Pending reminders for a user (directly or through a team), less those the user
        has dealt with (:meth:`done` marks a team reminder done for that member alone)."""
        teams = select(TeamMember.team_id).where(TeamMember.user_id == user_id)
        mine = select(ReminderRecipient.reminder_id).where(
            ReminderRecipient.done_at.is_(None),
            or_(ReminderRecipient.user_id == user_id, ReminderRecipient.team_id.in_(teams)),
        )
        dismissed = select(ReminderRecipient.reminder_id).where(
            ReminderRecipient.user_id == user_id, ReminderRecipient.done_at.is_not(None)
        )
        return list(
            self.session.scalars(
                self.query()
                .where(
                    Reminder.id.in_(mine),
                    Reminder.id.not_in(dismissed),
                    Reminder.status != "done",
                )
                .order_by(Reminder.remind_at)
            )
        )


class CalendarService(EntityService):
    """Events and bookings; a resource (a specialist, a bay) is never double-booked."""

    extra_fields = ("attendees",)

    def visible(self, action: str = "read") -> Any:
        """Besides the scope, an invited colleague sees the event."""
        scoped = super().visible(action)
        user_id = self.work.actor.user_id
        if action != "read" or user_id is None:
            return scoped
        invited = select(EventAttendee.event_id).where(EventAttendee.user_id == user_id)
        return or_(scoped, CalendarEvent.id.in_(invited))

    def build(self, values: dict[str, Any]) -> Any:
        # the links first: a resource the actor may not see is "no resource", never
        # "already booked at ..." (which would tell it exists, and when it is busy)
        record = super().build(values)
        self.check_may_book(values.get("resource_id"))
        if values.get("status") != "cancelled":  # a cancelled event holds no slot
            self._check_free(
                values.get("resource_id"), values["starts_at"], values["ends_at"], None
            )
        return record

    def apply_changes(self, record: Any, values: Mapping[str, Any]) -> dict[str, Any]:
        changes = super().apply_changes(record, values)  # the resource is one the actor sees
        if "resource_id" in changes:
            self.check_may_book(record.resource_id)
        return changes

    def check_may_book(self, resource_id: int | None) -> None:
        """Refuse putting an event on a resource (new, or moved onto it) to an actor without
        the permission :data:`BOOK` (``book`` on ``resource``), naming the resource.

        Only where the permission exists: a plugin seeds a cell of it (the booking journal
        does); without one a resource is a column of the calendar, as before.  Called after
        the links are checked, so a resource the actor may not see is never named.
        """
        if resource_id is None or self.work.access.can(*BOOK):
            return
        if BOOK[1] not in self.work.crm.actions_of(BOOK[0]):
            return
        resource = self.session.get(Resource, resource_id)
        raise PermissionDenied(
            *BOOK,
            message(
                "booking “{resource}” takes the permission “{action}” on resources",
                resource=resource.name if resource is not None else str(resource_id),
                action=Label(BOOK[1]),
            ),
        )

    def after_create(
        self, record: Any, values: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        self._set_attendees(record, extra.get("attendees") or ())

    def after_update(
        self,
        record: Any,
        values: Mapping[str, Any],
        extra: Mapping[str, Any],
        changes: dict[str, Any],
    ) -> None:
        moved = {"starts_at", "ends_at", "resource_id"} & set(changes)
        if moved and record.ends_at <= record.starts_at:
            raise ValidationFailed({"ends_at": ["must be after the start"]})
        taken_back = changes.get("status", [None])[0] == "cancelled"
        if record.status != "cancelled" and (moved or taken_back):
            # moved onto the resource or in time on it, or holding it again once taken back:
            # checked as a new event (an edit of other fields or a cancelling is not)
            self._check_free(record.resource_id, record.starts_at, record.ends_at, record.id)
        if "attendees" in extra:
            self._set_attendees(record, extra["attendees"])
            changes["attendees"] = [None, len(extra["attendees"])]

    def _set_attendees(self, event: CalendarEvent, attendees: Sequence[Mapping[str, Any]]) -> None:
        for attendee in attendees:
            self._check_exists(User, attendee.get("user_id"), "attendees", "user")
            party_id = attendee.get("party_id")
            if party_id is not None and self.work.parties.find(party_id) is None:
                raise ValidationFailed({"attendees": [f"no party {party_id}"]})
        self.session.execute(delete(EventAttendee).where(EventAttendee.event_id == event.id))
        for attendee in attendees:
            self.session.add(
                EventAttendee(
                    event_id=event.id,
                    user_id=attendee.get("user_id"),
                    party_id=attendee.get("party_id"),
                    email=attendee.get("email"),
                )
            )
        self.work.flush()

    def _check_free(
        self,
        resource_id: int | None,
        start: dt.datetime,
        end: dt.datetime,
        exclude_id: int | None,
    ) -> None:
        """Refuse a clash with another live event of the resource, or a resource that
        cannot be booked (:meth:`check_bookable`).

        The resource's row is held first (:func:`crmkit.db.lock_row`) so that the check and
        the write that follows are not interleaved with another's: of two people taking one
        hour of a resource at once (a booking, the calendar's form, a drag, the API), the
        second waits for the first and is refused.
        """
        if resource_id is None:
            return
        lock_row(self.session, Resource, resource_id)
        resource = self.session.get(Resource, resource_id)
        if resource is None:
            raise ValidationFailed({"resource_id": [f"no resource {resource_id}"]})
        self.check_bookable(resource)
        clash = select(CalendarEvent.id, CalendarEvent.starts_at).where(
            CalendarEvent.resource_id == resource_id,
            CalendarEvent.status != "cancelled",
            CalendarEvent.starts_at < end,
            CalendarEvent.ends_at > start,
        )
        if exclude_id is not None:
            clash = clash.where(CalendarEvent.id != exclude_id)
        taken = self.session.execute(clash.limit(1)).first()
        if taken is not None:
            # told in the deployment's zone; the web UI shows it at the reader's hours
            when = Moment(taken.starts_at.astimezone(self.work.crm.config.zone))
            raise ValidationFailed(
                {"resource_id": [message("already booked at {time}", time=when)]}
            )

    def check_bookable(self, resource: Resource) -> User | None:
        """The resource's person (``None`` for a bay or a room), refusing on ``resource_id``
        a resource that cannot be booked: the one check of the calendar, the API and
        plugins (the booking journal).

        A resource taken out of service (``active`` false) takes no hour, naming the
        resource; a blocked person (a specialist who left) takes none either, naming the
        resource and the person. Both refuse a new event, one moved onto the resource or
        in time on it, and one taken back from cancelled; the events the resource still
        holds may be edited otherwise, moved to another resource and cancelled.
        """
        if not resource.active:
            raise ValidationFailed(
                {
                    "resource_id": [
                        message(
                            "{resource} is out of service and cannot be booked",
                            resource=resource.name,
                        )
                    ]
                }
            )
        person = self.session.get(User, resource.user_id) if resource.user_id else None
        if person is not None and person.blocked:
            raise ValidationFailed(
                {
                    "resource_id": [
                        message(
                            "{resource}: {user} is blocked and cannot be booked",
                            resource=resource.name,
                            user=person.label,
                        )
                    ]
                }
            )
        return person

    def reschedule(
        self,
        event: Any,
        starts_at: dt.datetime,
        ends_at: dt.datetime,
        *,
        expected_version: int | None = None,
    ) -> CalendarEvent:
        """Move an event in time (drag in the calendar), keeping its resource free of clashes."""
        return self.update(
            event,
            {"starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()},
            expected_version=expected_version,
        )

    def between(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        owner_id: int | None = None,
        resource_id: int | None = None,
        user_ids: Sequence[int] | None = None,
    ) -> list[CalendarEvent]:
        """Visible events overlapping ``[start, end)``, for a user, several users or a resource."""
        statement = self.query().where(CalendarEvent.starts_at < end, CalendarEvent.ends_at > start)
        if owner_id is not None:
            attending = select(EventAttendee.event_id).where(EventAttendee.user_id == owner_id)
            statement = statement.where(
                or_(CalendarEvent.owner_id == owner_id, CalendarEvent.id.in_(attending))
            )
        if user_ids is not None:
            statement = statement.where(CalendarEvent.owner_id.in_(list(user_ids)))
        if resource_id is not None:
            statement = statement.where(CalendarEvent.resource_id == resource_id)
        return list(self.session.scalars(statement.order_by(CalendarEvent.starts_at)))

    def free_slots(
        self, resource_id: int, day_start: dt.datetime, day_end: dt.datetime, duration: dt.timedelta
    ) -> list[tuple[dt.datetime, dt.datetime]]:
        """Free windows of at least ``duration`` for a resource between two times."""
        busy = self.session.execute(
            select(CalendarEvent.starts_at, CalendarEvent.ends_at)
            .where(
                CalendarEvent.resource_id == resource_id,
                CalendarEvent.status != "cancelled",
                and_(CalendarEvent.starts_at < day_end, CalendarEvent.ends_at > day_start),
            )
            .order_by(CalendarEvent.starts_at)
        ).all()
        slots = []
        cursor = day_start
        for start, end in busy:
            if start - cursor >= duration:
                slots.append((cursor, start))
            cursor = max(cursor, end)
        if day_end - cursor >= duration:
            slots.append((cursor, day_end))
        return slots

    def attendees(self, event: Any) -> list[EventAttendee]:
        """Who is invited to a visible event."""
        row = self.get(event)
        return list(
            self.session.scalars(select(EventAttendee).where(EventAttendee.event_id == row.id))
        )


__all__ = ["CalendarService", "ReminderService", "TaskService"]
