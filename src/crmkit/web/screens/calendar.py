"""The calendar: a user's, a team's or a resource's; drag to reschedule; free slots; iCal feed.

FullCalendar draws the page and asks ``/calendar/events`` for the visible range; a drag
posts to ``/calendar/events/{id}/reschedule`` with the new wall times and the version the
event was drawn at, which goes through ``work.calendar.reschedule`` (a resource is never
double-booked and a change made meanwhile is never overwritten: the refusal comes back as
a reason and the event jumps back).  ``/ical/<token>.ics`` is a read-only iCalendar feed of
the user's events for calendar apps, opened by a secret token instead of a session.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crmkit.errors import Conflict, CrmkitError, ValidationFailed
from crmkit.i18n import message
from crmkit.web import i18n
from crmkit.web.forms import as_id, local_time, optional_id
from crmkit.web.links import party_url
from crmkit.web.pages import NotFoundPage, error_text, posted, redirect, render, work

#: Working hours in which free slots of a resource are shown (the user's zone).
WORKING_HOURS = (9, 18)
SLOT = dt.timedelta(minutes=60)
FEED_PAST = dt.timedelta(days=30)
FEED_FUTURE = dt.timedelta(days=365)


#: What ``who`` may be, as its refusal lists it.
WHO_CHOICES = "me, user:<id>, team:<id>, resource:<id>"
#: How a refusal names ``who`` on the calendar (``who`` alone is the tasks' too).
WHO_LABELS = {"who": i18n.lazy("Whose calendar")}


def _scope(who: str, user_id: int) -> dict[str, Any]:
    """Whose calendar ``who`` names (``me``, ``user:<id>``, ``team:<id>``,
    ``resource:<id>``); anything else (an unknown kind, a kind without an id or with a
    value that is no id) is refused naming ``who``, rather than read as ``me``."""
    if who == "me":
        return {"owner_id": user_id}
    kind, _, ident = who.partition(":")
    keys = {"user": "owner_id", "resource": "resource_id", "team": "team_id"}
    if kind in keys and ident.strip():
        return {keys[kind]: optional_id(ident, "who")}
    raise ValidationFailed({"who": [message("one of {choices}", choices=WHO_CHOICES)]})


def calendar_page(request: Request) -> Response:
    """The calendar page (``?who=me|user:<id>|team:<id>|resource:<id>``)."""
    from crmkit.model import Resource

    who = request.query_params.get("who") or "me"
    refusal = None
    try:
        _scope(who, request.state.user.id)
    except ValidationFailed as refused:
        # the page with the refusal and its picker, to choose a calendar there
        refusal = error_text(request, refused, labels=WHO_LABELS)
    with work(request) as unit:
        users = [u for u in unit.users.list() if not u.blocked]
        teams = unit.users.teams()
        resources = (
            list(
                unit.session.scalars(
                    unit.records("resource").query().where(Resource.active.is_(True))
                )
            )
            if unit.access.can("resource", "read")
            else []
        )
    return render(
        request,
        "calendar.html",
        {
            "title": i18n.lazy("Calendar"),
            "who": who,
            "users": users,
            "teams": teams,
            "resources": resources,
            "refusal": refusal,
        },
        status=422 if refusal else 200,
    )


def _parse(value: str | None, field: str, zone: dt.tzinfo = dt.UTC) -> dt.datetime:
    """An ISO time; one without an offset is read in ``zone``."""
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed({field: ["not a valid time"]}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def events(request: Request) -> Response:
    """FullCalendar's event source: visible events in ``[start, end)``, plus free slots.

    The calendar runs in the user's time zone (its ``timeZone`` option): it asks for the
    range in that zone's wall time, without an offset, and is given every time with the
    zone's offset, so that it draws them at the user's hours whatever the browser's zone.
    """
    params = request.query_params
    locale = request.state.locale
    start = _parse(params.get("start"), "start", locale.zone)
    end = _parse(params.get("end"), "end", locale.zone)
    if end - start > dt.timedelta(days=62):
        raise ValidationFailed({"end": ["ask for two months at most"]})
    scope = _scope(params.get("who") or "me", request.state.user.id)
    with work(request) as unit:
        if "team_id" in scope:
            members = [u.id for u in unit.users.team_members(scope["team_id"])]
            rows = unit.calendar.between(start, end, user_ids=members)
        else:
            rows = unit.calendar.between(start, end, **scope)
        slots = []
        if "resource_id" in scope:
            day = locale.local(start).date()
            last = locale.local(end).date()
            while day < last:
                opens = dt.datetime.combine(day, dt.time(WORKING_HOURS[0]), tzinfo=locale.zone)
                closes = dt.datetime.combine(day, dt.time(WORKING_HOURS[1]), tzinfo=locale.zone)
                if day.weekday() < 5:
                    slots += unit.calendar.free_slots(scope["resource_id"], opens, closes, SLOT)
                day += dt.timedelta(days=1)
        # an event read past its client (invited to it) links to no card the reader may
        # not open: its id is not told either
        clients = unit.calendar.readable_clients(event.party_id for event in rows)
    items: list[dict[str, Any]] = [
        {
            "id": str(event.id),
            "title": event.title,
            "start": locale.local(event.starts_at).isoformat(),
            "end": locale.local(event.ends_at).isoformat(),
            "allDay": event.all_day,
            "url": party_url(event.party_id) if event.party_id in clients else None,
            "extendedProps": {"version": event.version, "kind": event.kind},
            "classNames": [f"event-{event.status}"],
        }
        for event in rows
    ]
    items += [
        {
            "start": locale.local(begin).isoformat(),
            "end": locale.local(finish).isoformat(),
            "display": "background",
            "classNames": ["free-slot"],
        }
        for begin, finish in slots
    ]
    return JSONResponse(items)


async def reschedule(request: Request) -> Response:
    """A dragged or resized event: ``{start, end, version}``; a refusal comes with its reason.

    The times are the calendar's wall times, read in the user's zone like the range of
    :func:`events` (one with an offset keeps it); ``version`` is the event's as the calendar
    drew it, and a change made since then is not overwritten.
    """
    event_id = as_id(request.path_params["event_id"])
    if event_id is None:  # past what an id column holds: there is no such event
        raise NotFoundPage()
    data = await request.json()
    zone = request.state.locale.zone
    try:
        starts = _parse(data.get("start"), "start", zone)
        ends = _parse(data.get("end"), "end", zone) if data.get("end") else None
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValidationFailed({"version": ["give the version the event was shown at"]})
        with work(request) as unit:
            event = unit.calendar.get(event_id, action="update")
            if ends is None:
                ends = starts + (event.ends_at - event.starts_at)
            unit.calendar.reschedule(event, starts, ends, expected_version=version)
            version = event.version
    except Conflict:
        with i18n.activate(request.state.locale):
            reason = i18n.gettext(
                "Someone else changed this event meanwhile; it is shown as it is now."
            )
        return JSONResponse({"ok": False, "reason": reason}, status_code=409)
    except CrmkitError as failed:
        return JSONResponse({"ok": False, "reason": error_text(request, failed)}, status_code=409)
    return JSONResponse({"ok": True, "version": version})


def create(request: Request) -> Response:
    """A new event from the calendar's form, or a meeting planned on a client's card.

    An end left empty makes an event of ``SLOT`` (an hour).  The card's form says
    ``back=card``: the agent goes back to the card's meetings, and a refusal (the end
    before the start, a booked resource) is told at the card's top, naming the field, rather
    than on a page of its own that leads only to the start screen.
    """
    data = posted(request)
    locale = request.state.locale
    party_id = optional_id(data.get("party_id"), "party_id")
    card = party_url(party_id) if party_id and data.get("back") == "card" else None
    try:
        starts_at = local_time(data.get("starts_at"), locale, "starts_at")
        ends_at = local_time(data.get("ends_at"), locale, "ends_at")
        if ends_at is None and starts_at is not None:
            ends_at = (dt.datetime.fromisoformat(starts_at) + SLOT).isoformat()
        values: dict[str, Any] = {
            "title": str(data.get("title", "")),
            "starts_at": starts_at,
            "ends_at": ends_at,
        }
        if party_id is not None:
            values["party_id"] = party_id
        resource_id = optional_id(data.get("resource_id"), "resource_id")
        if resource_id is not None:
            values["resource_id"] = resource_id
        with work(request) as unit:
            unit.calendar.create(values)
    except ValidationFailed as refused:
        if card is None:
            raise
        # the card's top, where the refusal is shown (its meetings are far below)
        return redirect(request, card, error_text(request, refused), kind="error")
    if card is not None:
        return redirect(request, card + "#meetings", "Event added.")
    return redirect(request, "/calendar", "Event added.", who=data.get("who") or None)


def ical_feed(request: Request) -> Response:
    """The read-only iCalendar feed of the user owning the token (404 for a wrong token)."""
    from icalendar import Calendar, Event

    crm = request.app.state.crm
    token = request.path_params["token"]
    with crm.system() as unit:
        user_id = unit.calendar_feeds.owner_of(token)
    if user_id is None:
        return Response("not found", status_code=404, media_type="text/plain")
    now = dt.datetime.now(dt.UTC)
    with crm.acting_as(user_id) as unit:
        rows = unit.calendar.between(now - FEED_PAST, now + FEED_FUTURE, owner_id=user_id)
        clients = unit.calendar.readable_clients(row.party_id for row in rows)
    calendar = Calendar()
    calendar.add("prodid", "-//crmkit//calendar feed//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "crmkit")
    host = crm.config["web.base_url"] or str(request.base_url).rstrip("/")
    for row in rows:
        event = Event()
        event.add("uid", row.uid or f"crmkit-event-{row.id}@{request.url.hostname}")
        event.add("summary", row.title)
        event.add("dtstart", row.starts_at)
        event.add("dtend", row.ends_at)
        event.add("dtstamp", row.updated_at or now)
        if row.location:
            event.add("location", row.location)
        if row.description:
            event.add("description", row.description)
        if row.party_id in clients:
            event.add("url", host + party_url(row.party_id))
        event.add("status", "CANCELLED" if row.status == "cancelled" else "CONFIRMED")
        calendar.add_component(event)
    return Response(
        calendar.to_ical(),
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, max-age=300"},
    )
