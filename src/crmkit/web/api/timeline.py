"""A party's timeline and notes with @mentions."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import NotFound, ValidationFailed
from crmkit.schemas.api import NoteRequestSchema, page_schema
from crmkit.schemas.output import encoder_for, output_schema
from crmkit.web.api.auth import acting, in_thread
from crmkit.web.api.operations import Operation, json_body, query_parameter
from crmkit.web.api.params import parse_id, parse_limit
from crmkit.web.api.responses import JSONResponse


def _activities(crm: Any) -> Any:
    entity = crm.entities["activity"]
    return entity, encoder_for(output_schema(entity), entity.model)


def timeline(request: Request) -> Response:
    """A party's timeline, newest first, optionally only some kinds."""
    party_id = parse_id(request.path_params["id"])
    if party_id is None:
        raise NotFound("party", request.path_params["id"])
    params = request.query_params
    kinds = [k for value in params.getlist("kind") for k in value.split(",") if k.strip()]
    _, encoder = _activities(request.app.state.crm)
    with acting(request) as work:
        page = work.timeline.list(
            party_id,
            kinds=kinds or None,
            after=params.get("after") or None,
            limit=parse_limit(params),
        )
        items = encoder.records(page.items)
    return JSONResponse({"items": items, "next": page.next_cursor})


async def add_note(request: Request) -> Response:
    """Write a note; every @mentioned colleague is notified."""
    body = await json_body(request)
    try:
        note = NoteRequestSchema().load(body)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages_dict) from None  # type: ignore[arg-type]
    if bool(note.get("record_entity")) != bool(note.get("record_id")):
        raise ValidationFailed({"record_id": ["give record_entity and record_id together"]})
    _, encoder = _activities(request.app.state.crm)

    def action(work: Any) -> Response:
        record = None
        if note.get("record_entity"):
            if note["record_entity"] not in work.crm.entities:
                raise ValidationFailed({"record_entity": [f"no entity {note['record_entity']!r}"]})
            record = (note["record_entity"], note["record_id"])
        activity = work.timeline.add_note(
            party_id=note.get("party_id"),
            body=note["body"],
            record=record,
            pinned=bool(note.get("pinned")),
            mention=note.get("mention") or (),
        )
        work.flush()
        return JSONResponse(
            encoder.record(activity),
            status_code=201,
            headers={"Location": f"/api/v1/activity/{activity.id}"},
        )

    return await in_thread(request, action)


def operations(crm: Any) -> list[Operation]:
    """The timeline's operations."""
    entity, _ = _activities(crm)
    activity = output_schema(entity)
    return [
        Operation(
            "GET",
            "/party/{id:int}/timeline",
            timeline,
            "timeline_of_party",
            "The timeline of a client",
            "Timeline",
            description="Calls, mails, messages, notes, moves, payments, files: newest first.",
            parameters=[
                query_parameter("kind", "Only these kinds (comma-separated: note,call,...)."),
                query_parameter("after", "The `next` cursor of the previous page."),
                query_parameter(
                    "limit",
                    "Entries per page (1-500).",
                    {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                ),
            ],
            responses={200: ("A page of entries.", page_schema("TimelinePage", activity))},
            errors=(403, 404, 422),
        ),
        Operation(
            "POST",
            "/notes",
            add_note,
            "add_note",
            "Write a note",
            "Timeline",
            description=(
                "On a party (`party_id`) and/or a record (`record_entity`, `record_id`). "
                "`@username` in the text, and the ids in `mention`, notify those colleagues."
            ),
            body=NoteRequestSchema,
            responses={201: ("The note (an activity of kind `note`).", activity)},
            errors=(403, 404, 422),
        ),
    ]
