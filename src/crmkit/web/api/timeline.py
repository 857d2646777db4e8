"""A party's timeline, notes with @mentions, and messages sent through channels."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import NotFound, ValidationFailed
from crmkit.schemas.api import (
    CallRequestSchema,
    MessageRequestSchema,
    NoteRequestSchema,
    page_schema,
)
from crmkit.schemas.output import encoder_for, output_schema
from crmkit.web.api.auth import acting, in_thread
from crmkit.web.api.operations import Operation, linked, loaded_body, query_parameter
from crmkit.web.api.params import next_link, parse_id, parse_limit, timeline_kinds
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
    _, encoder = _activities(request.app.state.crm)
    with acting(request) as work:
        kinds = timeline_kinds(work, params)
        page = work.timeline.list(
            party_id,
            kinds=kinds or None,
            after=params.get("after") or None,
            limit=parse_limit(params),
        )
        items = encoder.records(page.items)
    headers = {"Link": next_link(request, page.next_cursor)} if page.next_cursor else {}
    return JSONResponse({"items": items, "next": page.next_cursor}, headers=headers)


def _paired_record(body: dict[str, Any]) -> None:
    """A record is named by its entity and id together."""
    if bool(body.get("record_entity")) != bool(body.get("record_id")):
        raise ValidationFailed({"record_id": ["give record_entity and record_id together"]})


def _record_of(work: Any, body: dict[str, Any]) -> tuple[str, int] | None:
    """The ``(entity, id)`` a body names, its entity checked."""
    if not body.get("record_entity"):
        return None
    entity = work.crm.entities.by_name.get(body["record_entity"])
    if entity is None:
        raise ValidationFailed({"record_entity": [f"no entity {body['record_entity']!r}"]})
    return (body["record_entity"], body["record_id"])


def _check_links(work: Any, body: dict[str, Any]) -> None:
    """The party and record a body names, each a 422 naming its field when missing or
    hidden (the service would say 404, as for the path's own record)."""
    record = _record_of(work, body)
    if record is not None:
        with linked("record_id"):
            work.records(record[0]).get(record[1])
    if body.get("party_id") is not None:
        with linked("party_id"):
            work.parties.get(body["party_id"])


def _created(encoder: Any, activity: Any) -> Response:
    """201 with a new timeline entry and where to read it again."""
    return JSONResponse(
        encoder.record(activity),
        status_code=201,
        headers={"Location": f"/api/v1/activity/{activity.id}"},
    )


async def add_note(request: Request) -> Response:
    """Write a note; every @mentioned colleague is notified."""
    note = await loaded_body(request, NoteRequestSchema)
    _paired_record(note)
    _, encoder = _activities(request.app.state.crm)

    def action(work: Any) -> Response:
        _check_links(work, note)
        activity = work.timeline.add_note(
            party_id=note.get("party_id"),
            body=note["body"],
            record=_record_of(work, note),
            pinned=bool(note.get("pinned")),
            mention=note.get("mention") or (),
        )
        work.flush()
        return _created(encoder, activity)

    return await in_thread(request, action)


async def add_call(request: Request) -> Response:
    """Record a phone call made to the client in the path, as the card's form does."""
    party_id = parse_id(request.path_params["id"])
    if party_id is None:
        raise NotFound("party", request.path_params["id"])
    call = await loaded_body(request, CallRequestSchema)
    _, encoder = _activities(request.app.state.crm)

    def action(work: Any) -> Response:
        activity = work.timeline.add_call(
            party_id, outcome=call["outcome"], body=call.get("body") or ""
        )
        work.flush()
        return _created(encoder, activity)

    return await in_thread(request, action)


def _recipient(work: Any, channel: Any, party_id: int | None) -> str | None:
    """The party's first address a channel can reach (its kind, and its messenger)."""
    if party_id is None:
        return None
    party = work.parties.get(party_id)
    for point in party.contact_points:
        same_service = channel.service is None or (point.service or "") == channel.service
        if point.kind == channel.address_kind.value and point.value and same_service:
            return str(point.value)
    return None


async def send_message(request: Request) -> Response:
    """Queue a message: its timeline entry now, the delivery by a worker."""
    wanted = await loaded_body(request, MessageRequestSchema)
    _paired_record(wanted)
    _, encoder = _activities(request.app.state.crm)

    def action(work: Any) -> Response:
        name = wanted["channel"]
        channel = work.crm.channels.get(name)
        if channel is None:
            known = ", ".join(sorted(work.crm.channels)) or "none"
            raise ValidationFailed({"channel": [f"no channel {name!r} (registered: {known})"]})
        party_id = wanted.get("party_id")
        record = _record_of(work, wanted)
        if record is not None:
            records = work.records(record[0])
            with linked("record_id"):
                target = records.get(record[1])
            if party_id is None:
                party_id = records.party_id_of(target)
        if party_id is not None:
            with linked("party_id"):
                work.parties.get(party_id)
        attachment_ids = tuple(wanted.get("attachment_ids") or ())
        with linked("attachment_ids"):
            for attachment_id in attachment_ids:
                work.attachments.get(attachment_id)
        subject, text = wanted.get("subject"), wanted.get("body")
        if wanted.get("template_id") is not None:
            with linked("template_id"):
                work.message_templates.get(wanted["template_id"])
            rendered = work.message_templates.render_for(
                wanted["template_id"], channel=name, party_id=party_id, record=record
            )
            subject = rendered.subject if subject is None else subject
            text = rendered.body if text is None else text
        to = (wanted.get("to") or "").strip() or _recipient(work, channel, party_id)
        if not to:
            raise ValidationFailed(
                {
                    "to": [
                        f"no recipient: give `to`, or a party with a {channel.address_kind} address"
                    ]
                }
            )
        activity = work.channels.send(
            name,
            to=to,
            body=text or "",
            subject=subject,
            party_id=party_id,
            record=record,
            attachment_ids=attachment_ids,
            cc=tuple(wanted.get("cc") or ()),
        )
        work.flush()
        return _created(encoder, activity)

    return await in_thread(request, action)


def operations(crm: Any) -> list[Operation]:
    """The timeline's operations."""
    entity, _ = _activities(crm)
    activity = output_schema(entity)
    return [
        Operation(
            "GET",
            "/party/{id:id}/timeline",
            timeline,
            "timeline_of_party",
            "The timeline of a client",
            "Timeline",
            description="Calls, mails, messages, notes, moves, payments, files: newest first.",
            parameters=[
                query_parameter(
                    "kind",
                    "Only these kinds, comma-separated (note,call), of those declared: "
                    + ", ".join(f"`{kind}`" for kind in sorted(crm.timeline_kinds))
                    + ".",
                ),
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
            errors=(403, 422),
        ),
        Operation(
            "POST",
            "/party/{id:id}/calls",
            add_call,
            "add_call",
            "Record a call",
            "Timeline",
            description=(
                'A phone call made to the client (outgoing), as the card\'s "Record a call" '
                "writes it: how it ended (`outcome`) and what was said (`body`). Needs "
                "`activity` `create` and a client the user may see (else 404)."
            ),
            body=CallRequestSchema,
            responses={201: ("The call (an activity of kind `call`).", activity)},
            errors=(403, 404, 422),
        ),
        Operation(
            "POST",
            "/messages",
            send_message,
            "send_message",
            "Send a message",
            "Timeline",
            description=(
                "Through a registered channel (`mail`, ...): written by hand or from a template "
                "(`template_id`, in the client's language), to `to` or the party's first "
                "address of the channel's kind, with copies (`cc`) and files stored before. "
                "Answers the timeline entry (`status` `queued`); a worker delivers it through "
                "the outbox and the entry becomes `sent` or `failed` (GET /activity/{id})."
            ),
            body=MessageRequestSchema,
            responses={201: ("The message's timeline entry.", activity)},
            errors=(403, 404, 422),
        ),
    ]
