"""Calendar ranges and reminder actions (their CRUD is the generic one)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.clock import in_utc
from crmkit.errors import NotFound, ValidationFailed
from crmkit.schemas.api import SnoozeRequestSchema, page_schema
from crmkit.schemas.output import detail_schema, encoder_for, output_schema
from crmkit.web.api.auth import acting, in_thread
from crmkit.web.api.operations import (
    IF_MATCH,
    Operation,
    expected_version,
    loaded_body,
    query_parameter,
)
from crmkit.web.api.params import parse_id
from crmkit.web.api.records import hide_unreadable_clients, record_response
from crmkit.web.api.responses import JSONResponse
from crmkit.web.forms import optional_id

#: The longest range one calendar request may span.
MAX_RANGE = dt.timedelta(days=366)


def _moment(request: Request, name: str) -> dt.datetime:
    raw = request.query_params.get(name)
    if not raw:
        raise ValidationFailed({name: ["required (ISO 8601 with offset)"]})
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed({name: ["not a valid date and time (ISO 8601)"]}) from None
    if moment.tzinfo is None:
        raise ValidationFailed({name: ["give a time with its offset (…+03:00 or …Z)"]})
    try:
        return in_utc(moment)
    except OverflowError:
        raise ValidationFailed({name: ["out of range (years 1 to 9999 in UTC)"]}) from None


def calendar(request: Request) -> Response:
    """Events overlapping a time range: a user's, or a resource's."""
    start, end = _moment(request, "start"), _moment(request, "end")
    if end <= start:
        raise ValidationFailed({"end": ["must be after the start"]})
    if end - start > MAX_RANGE:
        raise ValidationFailed({"end": ["ask for at most a year at a time"]})
    owner_id = optional_id(request.query_params.get("owner_id"), "owner_id")
    resource_id = optional_id(request.query_params.get("resource_id"), "resource_id")
    entity = request.app.state.crm.entities["calendar_event"]
    encoder = encoder_for(output_schema(entity), entity.model)
    with acting(request) as work:
        events = work.calendar.between(start, end, owner_id=owner_id, resource_id=resource_id)
        items = hide_unreadable_clients(work, entity, list(encoder.records(events)))
    return JSONResponse({"items": items, "next": None})


def _reminder_action(kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        reminder_id = parse_id(request.path_params["id"])
        if reminder_id is None:
            raise NotFound("reminder", request.path_params["id"])
        until = None
        if kind == "snooze":
            until = (await loaded_body(request, SnoozeRequestSchema))["until"]

        def action(work: Any) -> Response:
            service = work.reminders
            row = service.get(reminder_id, action="update" if kind == "snooze" else "read")
            # checked here, and again by the row's optimistic lock when it is written
            expected_version(request, row)
            row = service.snooze(row, until) if kind == "snooze" else service.done(row)
            work.flush()
            return record_response(work, service.entity, row)

        return await in_thread(request, action)

    endpoint.__name__ = f"reminder_{kind}"
    return endpoint


def operations(crm: Any) -> list[Operation]:
    """Calendar and reminder operations."""
    events = crm.entities["calendar_event"]
    reminders = crm.entities["reminder"]
    return [
        Operation(
            "GET",
            "/calendar",
            calendar,
            "calendar_range",
            "Events in a time range",
            events.label_plural or "Calendar",
            description="Events overlapping [start, end): everyone's you may see, one user's "
            "(`owner_id`: owned or attending) or a resource's (`resource_id`).",
            parameters=[
                query_parameter(
                    "start",
                    "Range start (ISO 8601 with offset).",
                    {"type": "string", "format": "date-time"},
                    required=True,
                ),
                query_parameter(
                    "end",
                    "Range end (ISO 8601 with offset).",
                    {"type": "string", "format": "date-time"},
                    required=True,
                ),
                query_parameter(
                    "owner_id", "One user's calendar.", {"type": "integer", "minimum": 1}
                ),
                query_parameter(
                    "resource_id", "One resource's bookings.", {"type": "integer", "minimum": 1}
                ),
            ],
            responses={
                200: (
                    "Events by start time.",
                    # not the list's `CalendarEventPage`: one name, one schema
                    page_schema("CalendarRange", output_schema(events)),
                )
            },
            errors=(403, 422),
        ),
        Operation(
            "POST",
            "/reminder/{id:id}/snooze",
            _reminder_action("snooze"),
            "snooze_reminder",
            "Remind again later",
            reminders.label_plural or "Reminders",
            parameters=[IF_MATCH],
            body=SnoozeRequestSchema,
            responses={200: ("The reminder.", detail_schema(reminders))},
            errors=(403, 404, 412, 422),
            etag=True,
        ),
        Operation(
            "POST",
            "/reminder/{id:id}/done",
            _reminder_action("done"),
            "dismiss_reminder",
            "Mark a reminder done (for you)",
            reminders.label_plural or "Reminders",
            parameters=[IF_MATCH],
            responses={200: ("The reminder.", detail_schema(reminders))},
            errors=(400, 403, 404, 412),  # 400: a malformed If-Match
            etag=True,
        ),
    ]
