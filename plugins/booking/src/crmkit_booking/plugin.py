"""Hook implementations of the booking plugin (entry point ``crmkit: booking``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from crmkit import Setting, TimelineKind, hookimpl
from crmkit.access.rules import Scope, grant
from crmkit.web.contributions import MenuItem, Screen
from crmkit_booking.services import BOOK, CANCELLED_KIND, MADE_KIND

crmkit_plugin_name = "booking"

#: Keeping the journal (its screens and menu item, and ``BookingService``'s journal, free
#: windows, booking and cancelling) is the action ``book`` on ``resource`` (``BOOK``), any
#: scope: a cell the admin hands to any role.  Editing the bays and specialists stays
#: ``resource`` ``update``.  The roles seeded with ``book``: those that kept the journal
#: when it was theirs by name.
BOOKING_ROLES = ("manager", "admin")


def _time_of_day(text: str) -> str | None:
    try:
        dt.time.fromisoformat(text)
    except ValueError:
        return f"must be a time of day such as 09:00, got {text!r}"
    return None


@hookimpl
def crmkit_register_settings() -> list[Setting]:
    return [
        Setting(
            "booking.day_start",
            str,
            "09:00",
            "When the journal's day opens (local time); before booking.day_end.",
            check=_time_of_day,
            below="booking.day_end",
            order=dt.time.fromisoformat,
        ),
        Setting(
            "booking.day_end",
            str,
            "20:00",
            "When the journal's day closes (local time).",
            check=_time_of_day,
        ),
        Setting(
            "booking.slot_minutes",
            int,
            30,
            "Length of one row of the journal, in minutes.",
            minimum=5,
            maximum=24 * 60,
        ),
    ]


@hookimpl
def crmkit_register_permissions() -> list[Any]:
    # managers keep the journal and add bays and specialists (everyone may read them); the
    # admin's ``* / *`` gives it the same, named so the power is a cell to read and hand out
    return [
        *grant("manager", "resource", ("create", "update"), Scope.ALL),
        *[p for role in BOOKING_ROLES for p in grant(role, *BOOK, Scope.ALL)],
    ]


@hookimpl
def crmkit_register_timeline_kinds() -> list[TimelineKind]:
    # a booking made and one cancelled, on the client's timeline (shown by these names,
    # which the plugin's catalog translates)
    return [TimelineKind(MADE_KIND), TimelineKind(CANCELLED_KIND)]


@hookimpl
def crmkit_register_screens() -> list[Screen]:
    from crmkit_booking import screens

    return [
        Screen("booking", "/booking", "Booking journal", screens.journal, permission=BOOK),
        Screen(
            "booking-new",
            "/booking/new",
            "New booking",
            screens.new,
            permission=BOOK,
            methods=("GET", "POST"),
        ),
        Screen(
            "booking-cancel",
            "/booking/{event_id:id}/cancel",
            "Cancel booking",
            screens.cancel,
            permission=BOOK,
            methods=("POST",),
        ),
    ]


@hookimpl
def crmkit_register_menu_items() -> list[Any]:
    return [MenuItem("Booking journal", "booking", permission=BOOK, order=55, icon="🗓")]
