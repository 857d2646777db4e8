"""The booking journal: resources (specialists, bays), who is busy when, free windows, bookings.

A booking is a core ``calendar_event`` of kind ``booking`` holding a ``resource`` and naming
the client (``party_id``): the calendar, the client card, iCalendar feeds and access rules
all see it with no table of its own.  ``booking(work)`` is the facade::

    from crmkit_booking import booking

    with crm.acting_as(manager) as work:
        journal = booking(work)
        window = journal.find_free(dt.timedelta(hours=1), since=tomorrow)[0]
        journal.book(party_id=client.id, resource_id=window.resource.id,
                     starts_at=window.starts_at, duration=dt.timedelta(hours=1))

Keeping the journal takes the action ``book`` on ``resource`` (any scope; the manager's and
the admin's as seeded, any role's an admin grants it to): :meth:`BookingService.journal`,
:meth:`~BookingService.find_free`, :meth:`~BookingService.book` and
:meth:`~BookingService.cancel` refuse an actor without it (:class:`PermissionDenied`).

Booking raises the domain event ``booking.made`` (``booking.cancelled`` when cancelled),
which automation rules react to (confirm, remind the day before, ask for a review).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
from sqlalchemy import select

from crmkit.db import lock_row
from crmkit.errors import ValidationFailed
from crmkit.i18n import Moment, message
from crmkit.model import CalendarEvent, Resource, User
from crmkit.services.limits import refuse_long_texts

# the permission cell keeping the journal takes, ``book`` on ``resource`` (any scope): the
# core's, since the calendar takes it too to put an event on a resource
from crmkit.services.tasks import BOOK

BOOKING_MADE = "booking.made"
BOOKING_CANCELLED = "booking.cancelled"
KIND = "booking"
#: The kinds of the client's timeline entries of a booking made and cancelled.
MADE_KIND = "booking"
CANCELLED_KIND = "booking_cancelled"


#: The longest booking, in minutes: a week of one resource.
MAX_MINUTES = 7 * 24 * 60
LONGEST = dt.timedelta(minutes=MAX_MINUTES)


def minutes(value: Any, field: str = "minutes") -> int:
    """A booking's length as typed: a whole number of minutes from 1 to :data:`MAX_MINUTES`."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        raise ValidationFailed(
            {field: [message("{value} is not a whole number of minutes", value=text)]}
        )
    number = int(text)
    if not 1 <= number <= MAX_MINUTES:
        raise ValidationFailed({field: [message("from 1 to {most} minutes", most=MAX_MINUTES)]})
    return number


#: What an event's title holds (``CalendarEvent.title``).
TITLE_LENGTH = 300


def _title(client: str, resource: str) -> str:
    """A booking's title, "client — resource", the client's name shortened (``…``) to fit
    a title: a long name (a state institution's) must not refuse a field nobody typed."""
    tail = f" — {resource}"
    if len(client) + len(tail) <= TITLE_LENGTH:
        return client + tail
    room = max(TITLE_LENGTH - len(tail) - 1, 1)
    return (client[:room].rstrip() + "…" + tail)[:TITLE_LENGTH]


def booking(work: Any) -> BookingService:
    """The booking journal of this unit of work."""
    return work.service("booking", BookingService)


@attrs.frozen
class Window:
    """A free window of a resource."""

    resource: Resource
    starts_at: dt.datetime
    ends_at: dt.datetime


@attrs.frozen
class Held:
    """A stretch of time a booking holds a resource, as the journal shows it.

    A booking the actor may not read is still busy, but ``hidden``: it has no id, title or
    client.
    """

    id: int | None
    resource_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    title: str = ""
    party_id: int | None = None

    @property
    def hidden(self) -> bool:
        """Whether the actor may not read the booking (only that the time is taken)."""
        return self.id is None


@attrs.frozen
class Journal:
    """Who is busy in a period: the resources, the slot times, and bookings per resource.

    ``clients`` names the clients the actor may read; ``closed`` holds the resources shown
    for the bookings they still hold but no longer bookable (their specialist is blocked,
    or the resource is retired: ``active`` false).
    """

    start: dt.datetime
    end: dt.datetime
    resources: Sequence[Resource]
    slots: Sequence[dt.datetime]
    busy: dict[int, list[Held]]
    clients: dict[int, str]
    closed: frozenset[int] = frozenset()

    def at(self, resource_id: int, slot: dt.datetime, minutes: int) -> Held | None:
        """The booking holding ``resource_id`` during the slot starting at ``slot``."""
        end = slot + dt.timedelta(minutes=minutes)
        for event in self.busy.get(resource_id, ()):
            if event.starts_at < end and event.ends_at > slot:
                return event
        return None


def _clock(text: str, setting: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ValidationFailed({setting: [f"not a time of day: {text!r}"]}) from None


class BookingService:
    """Resources, the journal grid, free windows, booking and cancelling."""

    def __init__(self, work: Any) -> None:
        self.work = work
        config = work.crm.config
        self.zone = config.zone
        self.opens = _clock(str(config["booking.day_start"]), "booking.day_start")
        self.closes = _clock(str(config["booking.day_end"]), "booking.day_end")
        self.slot_minutes = int(config["booking.slot_minutes"])

    # -- resources --------------------------------------------------------------------

    def resources(self, kind: str | None = None, *, retired: bool = False) -> list[Resource]:
        """Active resources (of one kind: ``specialist``, ``bay``...), by name; with
        ``retired``, those taken out of service (``active`` false) too."""
        self.work.access.require("resource", "read")
        statement = select(Resource)
        if not retired:
            statement = statement.where(Resource.active.is_(True))
        if kind:
            statement = statement.where(Resource.kind == kind)
        return list(self.work.session.scalars(statement.order_by(Resource.kind, Resource.name)))

    def bookable(self, kind: str | None = None) -> list[Resource]:
        """Active resources that can be booked: those whose specialist is blocked (has
        left) are left out."""
        resources = self.resources(kind)
        closed = self._closed(resources)
        return [r for r in resources if r.id not in closed]

    def _closed(self, resources: Sequence[Resource]) -> frozenset[int]:
        """Ids of ``resources`` whose person is blocked."""
        people = {r.user_id for r in resources if r.user_id is not None}
        if not people:
            return frozenset()
        blocked = set(
            self.work.session.scalars(
                select(User.id).where(User.id.in_(people), User.blocked.is_(True))
            )
        )
        return frozenset(r.id for r in resources if r.user_id in blocked)

    def add_resource(self, name: str, kind: str = "specialist", user_id: int | None = None) -> Any:
        """A new bookable resource (a bay, or a specialist linked to their user, who must
        exist and not be blocked)."""
        self.work.access.require("resource", "create")
        if not name.strip():
            raise ValidationFailed({"name": [message("a name is required")]}, entity="resource")
        if user_id is not None:
            user = self.work.session.get(User, user_id)
            if user is None:
                raise ValidationFailed(
                    {"user_id": [message("no user {user}", user=user_id)]}, entity="resource"
                )
            if user.blocked:
                raise ValidationFailed(
                    {"user_id": [message("user {user} is blocked", user=user.username)]},
                    entity="resource",
                )
        resource = Resource(name=name.strip(), kind=kind, user_id=user_id, active=True)
        self.work.session.add(resource)
        self.work.flush()
        self.work.audit("resource", resource.id, "create", {"name": [None, resource.name]})
        return resource

    def require_book(self) -> None:
        """Refuse an actor who may not keep the journal (``resource`` ``book``)."""
        self.work.access.require(*BOOK)

    # -- the journal ------------------------------------------------------------------

    def day_bounds(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """Opening and closing of a business day, in UTC."""
        opens = dt.datetime.combine(day, self.opens, self.zone).astimezone(dt.UTC)
        closes = dt.datetime.combine(day, self.closes, self.zone).astimezone(dt.UTC)
        return opens, closes

    def journal(
        self, day: dt.date, days: int = 1, resource_ids: Sequence[int] | None = None
    ) -> Journal:
        """Bookings of each resource over ``days`` business days from ``day``.

        Every booking holds its time, whoever may see it; one the actor may not read is
        shown only as busy (:class:`Held` without id, title or client), and a client is
        named only to an actor who may read them.  A resource whose specialist is blocked,
        or which is retired (``active`` false), is shown only while it holds bookings in
        the period, as ``closed``.
        """
        self.require_book()
        # a retired resource still holding bookings is shown (closed) on their days: the
        # desk sees whom to move or call, where they would otherwise vanish from the journal
        resources = self.resources(retired=True)
        if resource_ids:
            resources = [r for r in resources if r.id in set(resource_ids)]
        start = self.day_bounds(day)[0]
        end = self.day_bounds(day + dt.timedelta(days=days - 1))[1]
        live = (
            CalendarEvent.resource_id.in_([r.id for r in resources]),
            CalendarEvent.status != "cancelled",
            CalendarEvent.starts_at < end,
            CalendarEvent.ends_at > start,
        )
        # the time is taken whoever may see the booking: read without the access rules
        rows = self.work.session.execute(
            select(
                CalendarEvent.id,
                CalendarEvent.resource_id,
                CalendarEvent.starts_at,
                CalendarEvent.ends_at,
            )
            .where(*live)
            .order_by(CalendarEvent.starts_at, CalendarEvent.id)
        ).all()
        readable: dict[int, CalendarEvent] = {}
        if rows and self.work.access.can("calendar_event", "read"):
            readable = {
                e.id: e for e in self.work.session.scalars(self.work.calendar.query().where(*live))
            }
        busy: dict[int, list[Held]] = {r.id: [] for r in resources}
        for row in rows:
            event = readable.get(row.id)
            if event is None:
                held = Held(None, row.resource_id, row.starts_at, row.ends_at)
            else:
                held = Held(
                    event.id,
                    row.resource_id,
                    row.starts_at,
                    row.ends_at,
                    event.title,
                    event.party_id,
                )
            busy[row.resource_id].append(held)
        closed = self._closed(resources) | {r.id for r in resources if not r.active}
        resources = [r for r in resources if r.id not in closed or busy[r.id]]
        parties = self.work.parties.find_many(
            h.party_id for held in busy.values() for h in held if h.party_id
        )
        clients = {party_id: party.name for party_id, party in parties.items()}
        slots = []
        for offset in range(days):
            opens, closes = self.day_bounds(day + dt.timedelta(days=offset))
            cursor = opens
            while cursor < closes:
                slots.append(cursor)
                cursor += dt.timedelta(minutes=self.slot_minutes)
        return Journal(
            start, end, resources, slots, busy, clients, closed & {r.id for r in resources}
        )

    def find_free(
        self,
        duration: dt.timedelta,
        *,
        since: dt.datetime,
        days: int = 7,
        resource_ids: Sequence[int] | None = None,
        kind: str | None = None,
        limit: int = 20,
    ) -> list[Window]:
        """The earliest free windows of ``duration`` within opening hours, soonest first.

        Windows start on the slot grid (``booking.slot_minutes``).  Every resource is busy
        where *any* booking holds it, whoever may see that booking; a specialist who is
        blocked has no window.
        """
        self.require_book()
        if duration <= dt.timedelta(0):
            raise ValidationFailed({"duration": [message("a duration is positive")]})
        if since.tzinfo is None:  # whose wall clock? the station's and the server's differ
            raise ValidationFailed({"since": [message("Not a valid aware datetime.")]})
        resources = self.bookable(kind)
        if resource_ids:
            resources = [r for r in resources if r.id in set(resource_ids)]
        step = dt.timedelta(minutes=self.slot_minutes)
        found: list[Window] = []
        first_day = since.astimezone(self.zone).date()
        for offset in range(days):
            try:
                opens, closes = self.day_bounds(first_day + dt.timedelta(days=offset))
            except OverflowError:  # past the last day a date holds: no more days
                break
            for resource in resources:
                free = self.work.calendar.free_slots(resource.id, opens, closes, duration)
                for free_start, free_end in free:
                    start = max(free_start, since)
                    # round up to the slot grid, counted from the opening
                    steps = -((opens - start) // step)
                    start = opens + steps * step
                    if start + duration <= free_end:
                        found.append(Window(resource, start, start + duration))
                        break
            if len(found) >= limit:
                break
        found.sort(key=lambda w: (w.starts_at, w.resource.name))
        return found[:limit]

    # -- booking ----------------------------------------------------------------------

    def book(
        self,
        *,
        party_id: int,
        resource_id: int,
        starts_at: dt.datetime,
        duration: dt.timedelta | None = None,
        ends_at: dt.datetime | None = None,
        title: str = "",
        description: str = "",
        owner_id: int | None = None,
        record: tuple[str, int] | None = None,
    ) -> CalendarEvent:
        """Book a resource for a client; a clash with another booking is refused.

        The booking is the specialist's (the resource's user) unless ``owner_id`` says
        otherwise.  A resource that cannot be booked is refused by the core calendar's
        check (:meth:`~crmkit.services.tasks.CalendarService.check_bookable`) on
        ``resource_id``: one taken out of service (``active`` false) naming the resource,
        a specialist who is blocked (has left) naming the resource and the person.

        The calendar's clash check holds the resource's row (:func:`crmkit.db.lock_row`),
        which serializes bookings of one resource on both databases, so two people booking
        the same slot at once cannot both succeed.
        """
        self.require_book()
        self.work.access.require("calendar_event", "create")
        if ends_at is None:
            if duration is None:
                raise ValidationFailed({"ends_at": [message("give an end or a duration")]})
            if not dt.timedelta(0) < duration <= LONGEST:
                raise ValidationFailed(
                    {"duration": [message("from 1 to {most} minutes", most=MAX_MINUTES)]}
                )
            try:
                ends_at = starts_at + duration
            except OverflowError:  # a start at the end of the calendar: no end to hold
                raise ValidationFailed({"starts_at": [message("Not a valid datetime.")]}) from None
        elif starts_at.tzinfo and ends_at.tzinfo and ends_at - starts_at > LONGEST:
            # as long as a duration may be: a mistyped year would hold the resource a year
            raise ValidationFailed(
                {"ends_at": [message("at most {most} minutes after the start", most=MAX_MINUTES)]}
            )
        resource = self.work.session.get(Resource, resource_id)
        if resource is None:
            raise ValidationFailed({"resource_id": [message("no resource {id}", id=resource_id)]})
        party = self.work.parties.get(party_id)
        values: dict[str, Any] = {
            "title": title or _title(party.name, resource.name),
            "description": description,
            "starts_at": starts_at.isoformat(),
            "ends_at": ends_at.isoformat(),
            "kind": KIND,
            "party_id": party_id,
            "resource_id": resource_id,
        }
        # the core calendar's check: a retired resource or a blocked specialist is refused
        # here as on the calendar's form and the API (and again when the event is made)
        specialist = self.work.calendar.check_bookable(resource)
        if owner_id is not None:
            values["owner_id"] = owner_id
        elif specialist is not None:
            values["owner_id"] = specialist.id
        if record is not None:
            values["record_entity"], values["record_id"] = record
        event = self.work.calendar.create(values)
        self._on_timeline(MADE_KIND, event, resource)
        self.work.emit(
            BOOKING_MADE,
            "calendar_event",
            event.id,
            party_id=party_id,
            resource_id=resource_id,
            starts_at=event.starts_at.isoformat(),
            ends_at=event.ends_at.isoformat(),
        )
        return event

    def cancel(self, event_id: int, reason: str = "") -> CalendarEvent:
        """Cancel a booking: its slot is free again.

        The reason goes into the audit entry and onto the client's timeline (one longer
        than ``MAX_WRITTEN_TEXT`` characters is refused naming ``reason``); a booking
        cancelled already is refused on ``status`` (so ``booking.cancelled``, and whatever
        tells the client, happens once).
        """
        self.require_book()
        calendar = self.work.calendar
        event = calendar.get(event_id, "update")
        # hold the booking, then read it again: of two cancelling it at once, the second
        # waits for the first and is told it is cancelled already (not a stale write)
        lock_row(self.work.session, CalendarEvent, event.id)
        self.work.session.refresh(event)
        if event.kind != KIND:
            raise ValidationFailed(
                {"event_id": [message("“{event}” is not a booking", event=event.title)]}
            )
        if event.status == "cancelled":
            raise ValidationFailed(
                {
                    "status": [
                        message(
                            "the booking at {time} is cancelled already",
                            time=Moment(event.starts_at.astimezone(self.zone)),
                        )
                    ]
                }
            )
        reason = reason.strip()
        refuse_long_texts(reason=reason)  # a hand-written text: 20000 characters at most
        with self.work.savepoint():
            changes = calendar.stage_changes(event, {"status": "cancelled"})
            if reason:
                changes["reason"] = [None, reason]
            calendar.record_update(event, changes)
        resource = self.work.session.get(Resource, event.resource_id) if event.resource_id else None
        self._on_timeline(CANCELLED_KIND, event, resource, reason)
        self.work.emit(
            BOOKING_CANCELLED,
            "calendar_event",
            event.id,
            party_id=event.party_id,
            resource_id=event.resource_id,
            reason=reason,
        )
        return event

    def _on_timeline(
        self, kind: str, event: CalendarEvent, resource: Resource | None, body: str = ""
    ) -> None:
        """Tell the client's timeline that a booking was made or cancelled: the resource
        and the station's time, linked to the booking (whoever may not read the booking
        does not see the entry on timelines that follow record access)."""
        if event.party_id is None:
            return
        when = Moment(event.starts_at.astimezone(self.zone))
        self.work.timeline.add(
            kind,
            party_id=event.party_id,
            subject=f"{resource.name}, {when}" if resource is not None else str(when),
            body=body,
            record=("calendar_event", event.id),
            data={
                "resource_id": event.resource_id,
                "starts_at": event.starts_at.isoformat(),
                "ends_at": event.ends_at.isoformat(),
            },
        )

    def of_party(self, party_id: int, *, upcoming_only: bool = True) -> list[CalendarEvent]:
        """A client's bookings (the upcoming ones by default), soonest first."""
        statement = self.work.calendar.query().where(
            CalendarEvent.party_id == party_id,
            CalendarEvent.kind == KIND,
            CalendarEvent.status != "cancelled",
        )
        if upcoming_only:
            from crmkit.clock import utcnow

            statement = statement.where(CalendarEvent.ends_at > utcnow())
        return list(self.work.session.scalars(statement.order_by(CalendarEvent.starts_at)))
