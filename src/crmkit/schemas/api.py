"""marshmallow schemas of the REST API's own request and response bodies.

Records are described by their entities' schemas (input: ``EntityType.schema``; output:
:mod:`crmkit.schemas.output`); these are the bodies around them: moves, notes, tokens,
search results, problems.  The OpenAPI document is generated from them.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from crmkit.schemas import MAX_ID, Moment, StrictSchema
from crmkit.services.limits import MAX_MOVE_COMMENT, MAX_SENT_TEXT, MAX_WRITTEN_TEXT
from crmkit.services.timeline import CALL_OUTCOMES


class ProblemSchema(StrictSchema):
    """An error, as ``application/problem+json`` (RFC 9457).

    ``errors`` maps each rejected field to its messages; a refused stage move adds
    ``reasons``, ``missing_fields`` and ``missing_documents``; possible duplicates add
    ``candidates``; a client merged into another (409) ``merged_into``; a body or file over
    its limit (413) ``max_bytes``.  Every member a problem may carry is declared here (the
    document says no other appears); a test checks real answers against it.
    """

    type = fields.String(metadata={"description": "A link to this kind of problem's docs."})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), metadata={"description": "field -> messages"})
    reasons = fields.List(fields.String())
    missing_fields = fields.List(fields.String())
    missing_documents = fields.List(fields.String())
    candidates = fields.List(fields.Dict())
    merged_into = fields.Integer(
        metadata={"description": "The client this one was merged into (409 `merged`)."}
    )
    max_bytes = fields.Integer(
        metadata={"description": "The size limit that was exceeded, in bytes (413)."}
    )


class MoveRequestSchema(StrictSchema):
    """Move a record to another stage of its pipeline."""

    to = fields.String(required=True, validate=validate.Length(min=1, max=64))
    comment = fields.String(validate=validate.Length(max=MAX_MOVE_COMMENT), allow_none=True)
    fields_ = fields.Dict(
        data_key="fields",
        attribute="fields",
        keys=fields.String(),
        metadata={"description": "Fields to set with the move (those a stage requires)."},
    )


class MoveOptionSchema(StrictSchema):
    """A stage the record can move to next."""

    stage = fields.String(
        metadata={"description": "The stage's key (its name), the same in every language."}
    )
    title = fields.String(
        metadata={
            "description": "The stage's title in the caller's language: their own setting, "
            "else `Accept-Language`, else the deployment's."
        }
    )
    kind = fields.String()
    allowed = fields.Boolean(metadata={"description": "Whether the caller's roles allow it."})
    backward = fields.Boolean()
    requires_comment = fields.Boolean()
    requires_fields = fields.List(fields.String())


class StageMoveSchema(StrictSchema):
    """One move in a record's stage history."""

    id = fields.Integer()
    pipeline = fields.String()
    from_stage = fields.String(allow_none=True)
    to_stage = fields.String()
    actor_id = fields.Integer(allow_none=True)
    at = fields.AwareDateTime()
    comment = fields.String(allow_none=True)
    backward = fields.Boolean(
        metadata={"description": "Whether the move took a transition declared backward."}
    )


class NoteRequestSchema(StrictSchema):
    """A note on a party's timeline (and/or on a record); ``@username`` mentions notify."""

    body = fields.String(required=True, validate=validate.Length(min=1, max=MAX_WRITTEN_TEXT))
    party_id = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=MAX_ID))
    record_entity = fields.String(allow_none=True, validate=validate.Length(max=64))
    record_id = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=MAX_ID))
    pinned = fields.Boolean()
    mention = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=MAX_ID)),
        validate=validate.Length(
            max=100, error="at most 100 users may be mentioned"
        ),  # MAX_MENTIONS
        metadata={"description": "User ids to notify besides the @mentioned ones (100 at most)."},
    )


class CallRequestSchema(StrictSchema):
    """A phone call made to the client in the path, as the card's "Record a call" writes it."""

    outcome = fields.String(
        required=True,
        validate=validate.OneOf(CALL_OUTCOMES),
        metadata={"description": "How the call ended."},
    )
    body = fields.String(
        validate=validate.Length(max=MAX_WRITTEN_TEXT),
        metadata={"description": "What was said, what comes next (may be empty)."},
    )


class MessageRequestSchema(StrictSchema):
    """A message to send through a channel (queued in the outbox)."""

    channel = fields.String(required=True, validate=validate.Length(min=1, max=64))
    to = fields.String(
        validate=validate.Length(max=320),
        metadata={"description": "Default: the party's first address of the channel's kind."},
    )
    cc = fields.List(
        fields.String(validate=validate.Length(max=320)),
        validate=validate.Length(max=100),
        metadata={"description": "Copies (channels that can send them; at most 20 addresses)."},
    )
    subject = fields.String(allow_none=True, validate=validate.Length(max=500))
    body = fields.String(validate=validate.Length(max=MAX_SENT_TEXT))
    template_id = fields.Integer(
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={
            "description": "Fills subject and body (those given win), in the party's language."
        },
    )
    party_id = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=MAX_ID))
    record_entity = fields.String(allow_none=True, validate=validate.Length(max=64))
    record_id = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=MAX_ID))
    attachment_ids = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=MAX_ID)),
        validate=validate.Length(max=50),
        metadata={"description": "Files stored before (POST /attachment) to send with it."},
    )


class SnoozeRequestSchema(StrictSchema):
    """Remind again later."""

    until = Moment(required=True)


class TokenRequestSchema(StrictSchema):
    """A new personal API token."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    expires_at = Moment(allow_none=True)
    user_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "Whose token (admins only; default: the caller)."},
    )


class TokenSchema(StrictSchema):
    """A personal API token (its secret is never shown again after creation)."""

    id = fields.Integer()
    user_id = fields.Integer()
    name = fields.String()
    prefix = fields.String(metadata={"description": "The secret's first characters."})
    created_at = fields.AwareDateTime()
    expires_at = fields.AwareDateTime(allow_none=True)
    last_used_at = fields.AwareDateTime(allow_none=True)
    revoked_at = fields.AwareDateTime(allow_none=True)


class NewTokenSchema(TokenSchema):
    """A token just created, with its secret: send it as ``Authorization: Bearer <secret>``."""

    secret = fields.String()


class SearchHitSchema(StrictSchema):
    """A record found by a search."""

    entity = fields.String()
    id = fields.Integer()
    title = fields.String()


class SearchResultSchema(StrictSchema):
    """Records matching a search text, per entity, as far as the caller may see."""

    q = fields.String()
    hits = fields.List(fields.Nested(SearchHitSchema))


class AttachmentUploadSchema(StrictSchema):
    """A file upload (``multipart/form-data``)."""

    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})
    party_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    record_entity = fields.String(validate=validate.Length(max=64))
    record_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    document_type = fields.String(validate=validate.Length(max=64))


def page_schema(name: str, item: Any) -> Any:
    """The schema of a page of ``item`` records: ``items`` and the ``next`` cursor."""
    from marshmallow import Schema

    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next": fields.String(
                allow_none=True,
                required=True,
                metadata={"description": "Cursor of the next page (`after=`); null at the end."},
            ),
        },
        name=name,
    )
