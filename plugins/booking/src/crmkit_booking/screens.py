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
from crmkit.i18n import message
from crmkit.web import i18n
from crmkit.web.forms import as_id, optional_id
from crmkit.web.i18n import Locale
from crmkit.web.pages import error_text, posted, redirect, render, work
from crmkit_booking.services import booking
from crmkit_booking.services import minutes as booking_minutes

#: The kinds of a booking's entries on the client's timeline (``services.MADE_KIND`` and
#: ``CANCELLED_KIND``), spelled out here for the catalog tools: the card shows them translated.
TIMELINE_KINDS = (i18n.lazy("booking"), i18n.lazy("booking_cancelled"))
#: Fields the plugin's refusals name (shown through ``gettext``), listed for the catalogs.
REFUSAL_FIELDS = (i18n.lazy("event_id"), i18n.lazy("since"))
#: Field names a refusal names (``minutes: from 1 to 10080 minutes``): listed so the
#: catalog gives them the words the form shows.
FIELD_NAMES = (i18n.lazy("minutes"), i18n.lazy("duration"))
#: What the form says of a client or a resource not chosen (both in the core's catalog).
NOT_CHOSEN = {
    "party_id": i18n.lazy("choose a client"),
    "resource_id": i18n.lazy("Missing data for required field."),
}


#: The days the journal opens on: a week shown, the one before and after it linked, and
#: the free windows of the week after must all be dates (``date.min`` and ``date.max``
#: are not the days of any station).  A day outside them is no day: the journal opens
#: on today, as for a day that is no date.
FIRST_DAY = dt.date.min + dt.timedelta(days=15)
LAST_DAY = dt.date.max - dt.timedelta(days=15)


def _day(text: str | None, zone: Any) -> dt.date:
    today = utcnow().astimezone(zone).date()
    try:
        day = dt.date.fromisoformat(text) if text else today
    except ValueError:
        return today
    return day if FIRST_DAY <= day <= LAST_DAY else today


def _starts(text: str, zone: Any, fold: Any = "") -> dt.datetime:
    """The form's start, the station's wall time (or with its own offset), in UTC; a
    ``ValueError`` for a text that is no date and time, or one UTC cannot hold.

    A wall time the clocks go back over comes twice: ``fold`` ``1`` (which the journal's
    links to the second one carry) takes the second.  One the clocks go forward over
    does not exist, and is refused on ``starts_at`` (it used to be booked an hour later).
    """
    starts = dt.datetime.fromisoformat(text)
    try:
        if starts.tzinfo is not None:
            return starts.astimezone(dt.UTC)
        local = starts.replace(tzinfo=zone, fold=1 if str(fold) == "1" else 0)
        moment = local.astimezone(dt.UTC)
        if moment.astimezone(zone).replace(tzinfo=None) != starts:
            raise ValidationFailed(
                {
                    "starts_at": [
                        message(
                            "{time} does not exist in {zone}: the clocks go forward then",
                            time=text,
                            zone=zone.key,
                        )
                    ]
                }
            )
        return moment
    except OverflowError:  # 0001-01-01T00:00 in Moscow is still year 0 in UTC
        raise ValueError(text) from None


def _ids(values: dict[str, Any]) -> tuple[int, int]:
    """The form's client and resource, each an id (``optional_id``): a missing or broken
    one is refused naming its field, both at once."""
    errors: dict[str, list[str]] = {}
    chosen = {}
    for field, missing in NOT_CHOSEN.items():
        try:
            chosen[field] = optional_id(values.get(field), field)
        except ValidationFailed as exc:
            errors.update(exc.errors)
            continue
        if chosen[field] is None:
            errors[field] = [missing]
    if errors:
        raise ValidationFailed(errors)
    return chosen["party_id"], chosen["resource_id"]


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
        # opened for a client ("Book a visit" on their card): say who, keep them day to day
        party_id = as_id(params.get("party_id"))
        party = unit.parties.find(party_id) if party_id else None
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
            "party": party,
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
                party_id, resource_id = _ids(values)
                starts = _starts(str(values.get("starts_at", "")), service.zone, values.get("fold"))
                service.book(
                    party_id=party_id,
                    resource_id=resource_id,
                    starts_at=starts,
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
        try:
            party_id = optional_id(values.get("party_id"), "party_id")
        except ValidationFailed as exc:  # "abc" or 25 digits in the link: said on the form
            party_id = None
            if error is None:
                error, status = error_text(request, exc, _zone(request)), 422
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
