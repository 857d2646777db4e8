"""Sending a message through a channel (mail, a messenger) from outside the CRM."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import ValidationFailed
from crmkit.schemas.api import MessageRequestSchema
from crmkit.schemas.output import encoder_for, output_schema
from crmkit.web.api.auth import in_thread
from crmkit.web.api.operations import Operation, json_body
from crmkit.web.api.responses import JSONResponse


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
    body = await json_body(request)
    try:
        wanted = MessageRequestSchema().load(body)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages_dict) from None  # type: ignore[arg-type]
    if bool(wanted.get("record_entity")) != bool(wanted.get("record_id")):
        raise ValidationFailed({"record_id": ["give record_entity and record_id together"]})
    entity = request.app.state.crm.entities["activity"]
    encoder = encoder_for(output_schema(entity), entity.model)

    def action(work: Any) -> Response:
        name = wanted["channel"]
        channel = work.crm.channels.get(name)
        if channel is None:
            known = ", ".join(sorted(work.crm.channels)) or "none"
            raise ValidationFailed({"channel": [f"no channel {name!r} (registered: {known})"]})
        record = None
        party_id = wanted.get("party_id")
        if wanted.get("record_entity"):
            if wanted["record_entity"] not in work.crm.entities:
                raise ValidationFailed(
                    {"record_entity": [f"no entity {wanted['record_entity']!r}"]}
                )
            record = (wanted["record_entity"], wanted["record_id"])
            records = work.records(record[0])
            linked = records.get(record[1])
            if party_id is None:
                party_id = records.party_id_of(linked)
        subject, text = wanted.get("subject"), wanted.get("body")
        if wanted.get("template_id") is not None:
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
            attachment_ids=tuple(wanted.get("attachment_ids") or ()),
            cc=tuple(wanted.get("cc") or ()),
        )
        work.flush()
        return JSONResponse(
            encoder.record(activity),
            status_code=201,
            headers={"Location": f"/api/v1/activity/{activity.id}"},
        )

    return await in_thread(request, action)


def operations(crm: Any) -> list[Operation]:
    """Sending messages."""
    activity = output_schema(crm.entities["activity"])
    return [
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
        )
    ]
