"""The booking journal's screens: the day/week grid, free windows, the booking form.

The journal is a physical place's: every time on these screens (the grid, the free
windows, the form, a clash) is the station's wall time, in the deployment's zone
(``config.zone``), whatever the user's own zone; the page says so when they differ.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.web import i18n
from crmkit.web.forms import optional_int
from crmkit.web.i18n import Locale
from crmkit.web.pages import error_text, posted, redirect, render, work
from crmkit_booking.services import booking
from crmkit_booking.services import minutes as booking_minutes

#: The kinds of a booking's entries on the client's timeline (``services.MADE_KIND`` and
#: ``CANCELLED_KIND``), spelled out here for the catalog tools: the card shows them translated.
TIMELINE_KINDS = (i18n.lazy("booking"), i18n.lazy("booking_cancelled"))
#: Fields the plugin's refusals name (shown through ``gettext``), listed for the catalogs.
REFUSAL_FIELDS = (i18n.lazy("event_id"),)
#: Field names a refusal names (``minutes: from 1 to 10080 minutes``): listed so the
#: catalog gives them the words the form shows.
FIELD_NAMES = (i18n.lazy("minutes"), i18n.lazy("duration"))


def _day(text: str | None, zone: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(text) if text else utcnow().astimezone(zone).date()
    except ValueError:
        return utcnow().astimezone(zone).date()


def _zone(request: Request) -> Any:
    """The station's time zone: the deployment's."""
    return request.app.state.crm.config.zone


def _station(request: Request) -> Locale:
    """The user's language and formats, at the station's hours."""
    return attrs.evolve(request.state.locale, timezone=_zone(request).key)


def journal(request: Request) -> Response:
    """``/booking?day=2026-11-23&days=7&minutes=60``: the grid, and free windows if asked."""
    params = request.query_params
    with work(request) as unit:
        service = booking(unit)
        day = _day(params.get("day"), service.zone)
        days = 7 if params.get("days") == "7" else 1
        grid = service.journal(day, days)
        length = str(params.get("minutes") or "").strip()
        minutes = booking_minutes(length) if length else None
        windows = []
        if minutes:
            since = max(utcnow(), service.day_bounds(day)[0])
            windows = service.find_free(
                dt.timedelta(minutes=minutes),
                since=since,
                kind=params.get("kind") or None,
            )
    return render(
        request,
        "booking/journal.html",
        {
            "title": i18n.lazy("Booking journal"),
            "grid": grid,
            "day": day,
            "days": days,
            "prev": day - dt.timedelta(days=days),
            "next": day + dt.timedelta(days=days),
            "slot_minutes": service.slot_minutes,
            "station": _station(request),
            "windows": windows,
            "minutes": minutes or "",
            "kind": params.get("kind", ""),
            "party_id": params.get("party_id", ""),
        },
    )


def new(request: Request) -> Response:
    """The booking form: resource, time, duration and the client (searched by name)."""
    values: dict[str, Any] = dict(request.query_params)
    error = None
    status = 200
    if request.method == "POST":
        values = posted(request)
        try:
            with work(request) as unit:
                service = booking(unit)
                starts = dt.datetime.fromisoformat(str(values.get("starts_at", "")))
                if starts.tzinfo is None:
                    starts = starts.replace(tzinfo=service.zone)
                service.book(
                    party_id=int(optional_int(values.get("party_id")) or 0),
                    resource_id=int(optional_int(values.get("resource_id")) or 0),
                    starts_at=starts.astimezone(dt.UTC),
                    duration=dt.timedelta(minutes=booking_minutes(values.get("minutes") or 60)),
                    description=str(values.get("description", "")),
                )
            return redirect(
                request, "/booking", "Booked.", day=starts.astimezone(service.zone).date()
            )
        except ValueError:
            with i18n.activate(request.state.locale):  # gettext reads the active language
                error, status = i18n.gettext("Enter the date and time of the booking."), 422
        except ValidationFailed as exc:
            error, status = error_text(request, exc, _zone(request)), 422
    with work(request) as unit:
        service = booking(unit)
        resources = service.bookable()
        found = []
        query = str(values.get("client_q", "")).strip()
        if query:
            found = list(unit.parties.list(search=query, limit=10))
        party_id = optional_int(values.get("party_id"))
        party = unit.parties.get(party_id) if party_id else None
    return render(
        request,
        "booking/new.html",
        {
            "title": i18n.lazy("New booking"),
            "values": values,
            "resources": resources,
            "found": found,
            "party": party,
            "error": error,
            "station": _station(request),
        },
        status=status,
    )


def cancel(request: Request) -> Response:
    """Cancel a booking from the journal."""
    event_id = int(request.path_params["event_id"])
    data = posted(request)
    try:
        with work(request) as unit:
            booking(unit).cancel(event_id, reason=str(data.get("reason", "")))
    except ValidationFailed as exc:  # cancelled already: said on the journal, not a 422 page
        text = error_text(request, exc, _zone(request))
        return redirect(request, "/booking", text, kind="error", day=data.get("day"))
    return redirect(request, "/booking", "Booking cancelled.", day=data.get("day"))
