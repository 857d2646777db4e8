"""Generic endpoints of every registered entity (a plugin's too), made from its EntityType.

For an entity ``e``: ``GET /e`` (list: keyset pages, filters, sort, search), ``POST /e``
(when it has an input schema and a ``create`` action), ``GET /e/{id}``, ``PATCH /e/{id}``,
``DELETE /e/{id}``; pipelined entities add ``POST /e/{id}/move``, ``GET /e/{id}/stages``
and ``GET /e/{id}/history``.  Everything goes through the entity's service acting as the
caller, so access rules apply: a record outside the caller's scope is 404, as if missing.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

from marshmallow import ValidationError, fields
from starlette.requests import Request
from starlette.responses import Response

from crmkit.entities import EntityType
from crmkit.errors import NotFound, ValidationFailed
from crmkit.model import PipelineMixin
from crmkit.schemas.api import (
    MoveOptionSchema,
    MoveRequestSchema,
    StageMoveSchema,
    page_schema,
)
from crmkit.schemas.output import (
    carries_tags,
    column_python_type,
    detail_schema,
    encoder_for,
    model_schema,
    output_schema,
    related_lists,
    schema_name,
)
from crmkit.services.records import PIPELINE_FIELDS, EntityService
from crmkit.web.api.auth import acting, caller_locale, in_thread
from crmkit.web.api.operations import (
    IF_MATCH,
    IF_NONE_MATCH,
    Operation,
    etag_of,
    expected_version,
    json_body,
    not_modified,
    query_parameter,
)
from crmkit.web.api.params import flag, list_refusal, next_link, parse_id, parse_list_query
from crmkit.web.api.responses import JSONResponse

CONFIRM_DUPLICATES = "confirm_duplicates"


def represent(work: Any, entity: EntityType, record: Any) -> dict[str, Any]:
    """One record as the API shows it: its fields, tags and related rows (contact points)."""
    data = dict(encoder_for(output_schema(entity), entity.model).record(record))
    if carries_tags(entity):
        data["tags"] = work.records(entity.name).tags_of(record)
    for key, model in related_lists(entity).items():
        related = encoder_for(model_schema(model), model)
        data[key] = related.records(list(getattr(record, key)))
    (data,) = hide_unreadable_clients(work, entity, [data])
    return data


def _stage_title(locale: Any, option: Any) -> str:
    """A move option's stage title in ``locale``'s language, looked up in its pipeline's
    message context first (``msgctxt``), then plainly, as the web UI's ``stage_label``."""
    pipeline = option.pipeline
    context = pipeline.stage_context if pipeline is not None else ""
    return str(locale.pgettext(context, option.stage.title))


def hide_unreadable_clients(work: Any, entity: EntityType, items: list[Any]) -> list[Any]:
    """``items`` with the client's id ``null`` where the caller may not read that client.

    A conversation that came to the caller's own mailbox, and its messages and files, are
    theirs to read whoever the client is, as is an event they are invited to and a
    reminder they are a recipient of, and a task or deal they hold, whatever its client
    (``EntityService.reads_past_clients``), and a person whose organisation they may not
    read; the contact center's screen then shows the sender and no client, the calendar
    no link to one, the card no organisation, and so does the API: one query per page,
    only for such entities and callers (``EntityService.readable_clients``), for every
    field naming a client (``EntityService.client_attrs``).
    """
    if not items:
        return items
    service = work.records(entity.name)
    keys = service.client_attrs()
    if not keys:
        return items
    readable = service.readable_clients(item.get(key) for item in items for key in keys)
    hidden = [
        {key for key in keys if item.get(key) is not None and item.get(key) not in readable}
        for item in items
    ]
    return [
        {**item, **dict.fromkeys(gone)} if gone else item
        for item, gone in zip(items, hidden, strict=True)
    ]


def record_response(
    work: Any, entity: EntityType, record: Any, status: int = 200, **headers: str
) -> JSONResponse:
    """A single record with its ETag."""
    tag = etag_of(record)
    if tag:
        headers["ETag"] = tag
    return JSONResponse(represent(work, entity, record), status_code=status, headers=headers)


def _record_id(request: Request, entity: EntityType) -> int:
    record_id = parse_id(request.path_params.get("id"))
    if record_id is None:
        raise NotFound(entity.name, request.path_params.get("id"))
    return record_id


def _accepts_confirmation(service: Any) -> bool:
    """Whether the service's ``create`` screens duplicates (takes ``confirm_duplicates``)."""
    try:
        parameters = inspect.signature(service.create).parameters
    except (TypeError, ValueError):
        return False
    return CONFIRM_DUPLICATES in parameters


@cache
def _confirmable(schema: type[Any]) -> type[Any]:
    """``schema`` with the ``confirm_duplicates`` member a create's body may carry (taken
    out before the schema loads it), for the OpenAPI document: it says the body allows no
    other member, so the one the endpoint reads must be declared.  Named like ``schema``
    (``PartyInput``)."""
    flag_field = fields.Boolean(
        load_only=True,
        metadata={"description": "Create even if likely duplicates exist (as the query's)."},
    )
    namespace = {"confirm_duplicates": flag_field, "__module__": schema.__module__}
    return type(schema.__name__, (schema,), namespace)


def _confirmed(request: Request, body: dict[str, Any]) -> bool:
    """``?confirm_duplicates=true`` or ``"confirm_duplicates": true`` in the body (removed)."""
    in_body = body.pop(CONFIRM_DUPLICATES, None)
    if in_body is not None and not isinstance(in_body, bool):
        raise ValidationFailed({CONFIRM_DUPLICATES: ["must be true or false"]})
    return bool(in_body) or flag(request.query_params, CONFIRM_DUPLICATES)


class EntityEndpoints:
    """The endpoints of one entity type."""

    def __init__(self, entity: EntityType) -> None:
        self.entity = entity
        self.name = entity.name
        self.encoder = encoder_for(output_schema(entity), entity.model)

    # -- reading -------------------------------------------------------------------------

    def list(self, request: Request) -> Response:
        entity = self.entity
        with acting(request) as work:
            service = work.records(entity.name)
            query = parse_list_query(request.query_params, entity, _LazyKinds(service))
            options: dict[str, Any] = {
                "filters": query.filters,
                "search": query.search,
                "order": query.order,
                "after": query.after,
                "limit": query.limit,
            }
            try:
                if self.encoder.flat:
                    page = service.list_rows(self.encoder.columns, **options)
                    items = self.encoder.rows(page.items)
                else:
                    page = service.list(**options)
                    items = self.encoder.records(page.items)
                items = hide_unreadable_clients(work, entity, list(items))
            except ValidationFailed as exc:
                # the service's argument is ``search``; the API's parameter is ``q``
                refusal = list_refusal(exc, query, entity.name)
                if refusal is exc:
                    raise
                raise refusal from None
        headers = {}
        if page.next_cursor:
            headers["Link"] = next_link(request, page.next_cursor)
        return JSONResponse({"items": items, "next": page.next_cursor}, headers=headers)

    def read(self, request: Request) -> Response:
        record_id = _record_id(request, self.entity)
        with acting(request) as work:
            record = work.records(self.name).get(record_id)
            if not_modified(request, record):
                return Response(status_code=304, headers={"ETag": etag_of(record) or ""})
            return record_response(work, self.entity, record)

    # -- writing -------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        body = await json_body(request)
        confirmed = _confirmed(request, body)
        entity = self.entity

        def action(work: Any) -> Response:
            service = work.records(entity.name)
            if _accepts_confirmation(service):
                record = service.create(body, confirm_duplicates=confirmed)
            else:
                record = service.create(body)
            work.flush()
            location = f"{request.url.path.rstrip('/')}/{record.id}"
            return record_response(work, entity, record, 201, Location=location)

        return await in_thread(request, action)

    async def update(self, request: Request) -> Response:
        record_id = _record_id(request, self.entity)
        body = await json_body(request)
        entity = self.entity

        def action(work: Any) -> Response:
            service = work.records(entity.name)
            record = service.get(record_id, action="update")
            version = expected_version(request, record)
            record = service.update(record, body, expected_version=version)
            work.flush()
            return record_response(work, entity, record)

        return await in_thread(request, action)

    async def delete(self, request: Request) -> Response:
        record_id = _record_id(request, self.entity)
        entity = self.entity

        def action(work: Any) -> Response:
            service = work.records(entity.name)
            record = service.get(record_id, action="delete")
            expected_version(request, record)
            if entity.name == "attachment":
                work.attachments.delete(record.id)  # removes the stored file too
            else:
                service.delete(record)
            return Response(status_code=204)

        return await in_thread(request, action)

    # -- pipelines -----------------------------------------------------------------------

    async def move(self, request: Request) -> Response:
        record_id = _record_id(request, self.entity)
        body = await json_body(request)
        try:
            wanted = MoveRequestSchema().load(body)
        except ValidationError as exc:
            raise ValidationFailed(exc.messages_dict) from None  # type: ignore[arg-type]
        entity = self.entity

        def action(work: Any) -> Response:
            record = work.records(entity.name).get(record_id, action="move")
            version = expected_version(request, record)
            work.moves.move(
                record,
                wanted["to"],
                comment=wanted.get("comment"),
                fields=wanted.get("fields") or None,
                expected_version=version,
                entity=entity.name,
            )
            work.flush()
            return record_response(work, entity, record)

        return await in_thread(request, action)

    def stages(self, request: Request) -> Response:
        record_id = _record_id(request, self.entity)
        locale = caller_locale(request)
        with acting(request) as work:
            options = work.moves.options(record_id, entity=self.name)
            items = [
                {
                    "stage": option.stage.name,
                    # in the caller's language, in the pipeline's context as the UI shows it
                    "title": _stage_title(locale, option),
                    "kind": str(option.stage.kind.value),
                    "allowed": option.allowed,
                    "backward": option.transition.backward,
                    "requires_comment": option.transition.requires_comment,
                    "requires_fields": list(option.stage.requires_fields),
                }
                for option in options
            ]
        # the titles follow the header for a caller without a language of their own
        return JSONResponse({"items": items}, headers={"Vary": "Accept-Language"})

    def history(self, request: Request) -> Response:
        record_id = _record_id(request, self.entity)
        with acting(request) as work:
            moves = work.moves.history(record_id, entity=self.name)
            items = StageMoveSchema(many=True).dump(moves)
        return JSONResponse({"items": items})

    # -- operations ----------------------------------------------------------------------

    def operations(self) -> list[Operation]:
        """Every operation this entity supports, given its actions, schema and model."""
        entity = self.entity
        name = entity.name
        title = schema_name(entity)
        label = entity.label or name
        plural = entity.label_plural or label
        tag = plural
        out = output_schema(entity)
        detail = detail_schema(entity)
        page = page_schema(f"{title}Page", out)
        collection, item = f"/{name}", f"/{name}/{{id:id}}"
        ops: list[Operation] = []
        if "read" in entity.actions:
            ops.append(
                Operation(
                    "GET",
                    collection,
                    self.list,
                    f"list_{name}",
                    f"List {plural.lower()}",
                    tag,
                    description=(
                        "A keyset page of the records you may see. Any other query parameter "
                        "filters: `field=value`, `field__op=value` (ops: eq, ne, lt, lte, gt, "
                        "gte, in, not_in, contains, startswith, is_null, not_null, has, "
                        "older_than_days, within_days), `custom.key=value` for custom fields."
                    ),
                    parameters=self.list_parameters(),
                    responses={200: ("A page of records; `next` is the cursor of the next.", page)},
                    errors=(403, 422),
                )
            )
            ops.append(
                Operation(
                    "GET",
                    item,
                    self.read,
                    f"get_{name}",
                    f"Read a {label.lower()}",
                    tag,
                    parameters=[IF_NONE_MATCH],
                    responses={
                        200: ("The record; `ETag` is its version.", detail),
                        304: ("Not modified.", None),
                    },
                    errors=(403, 404),
                    etag=True,
                )
            )
        if entity.schema is not None and "create" in entity.actions:
            confirmable = _accepts_confirmation(entity.service or EntityService)
            ops.append(
                Operation(
                    "POST",
                    collection,
                    self.create,
                    f"create_{name}",
                    f"Create a {label.lower()}",
                    tag,
                    description=(
                        "Validated by the entity's schema; each rejected field is named in "
                        "`errors`. When duplicate screening finds likely duplicates the answer "
                        "is 409 with `candidates`; repeat with `?confirm_duplicates=true` (or "
                        '`"confirm_duplicates": true` in the body) to create it anyway.'
                    ),
                    parameters=[
                        query_parameter(
                            CONFIRM_DUPLICATES,
                            "Create even if likely duplicates exist.",
                            {"type": "boolean"},
                        )
                    ],
                    body=_confirmable(entity.schema) if confirmable else entity.schema,
                    responses={
                        201: ("Created; `Location` names it, `ETag` is its version.", detail)
                    },
                    errors=(403, 409, 422),
                    etag=True,
                )
            )
        if entity.schema is not None and "update" in entity.actions:
            ops.append(
                Operation(
                    "PATCH",
                    item,
                    self.update,
                    f"update_{name}",
                    f"Change a {label.lower()}",
                    tag,
                    description=(
                        "Only the fields given change. Send `If-Match` with the ETag you read: "
                        "if someone changed the record since, the answer is 412 and nothing "
                        "is overwritten."
                    ),
                    parameters=[IF_MATCH],
                    body=_patch_schema(entity),
                    responses={200: ("The changed record.", detail)},
                    errors=(403, 404, 409, 412, 422),
                    etag=True,
                )
            )
        if "delete" in entity.actions:
            ops.append(
                Operation(
                    "DELETE",
                    item,
                    self.delete,
                    f"delete_{name}",
                    f"Delete a {label.lower()}",
                    tag,
                    description=(
                        "A record others still refer to (a category of items, a location "
                        "with orders...) is refused with 422, saying why; nothing is deleted."
                        + (
                            " The id of a party merged into another one answers 409 "
                            "`merged` with `merged_into`: the survivor is not deleted."
                            if name == "party"
                            else ""
                        )
                    ),
                    parameters=[IF_MATCH],
                    responses={204: ("Deleted.", None)},
                    # 400: a malformed If-Match
                    errors=(400, 403, 404, 409, 412, 422)
                    if name == "party"
                    else (400, 403, 404, 412, 422),
                )
            )
        if issubclass(entity.model, PipelineMixin):
            ops += [
                Operation(
                    "POST",
                    f"{item}/move",
                    self.move,
                    f"move_{name}",
                    f"Move a {label.lower()} to another stage",
                    tag,
                    description=(
                        "The pipeline's guards apply. A refused move answers 409 with "
                        "`reasons`, and `missing_fields`/`missing_documents` when the stage "
                        "needs them (send the fields in `fields` with the move)."
                    ),
                    parameters=[IF_MATCH],
                    body=MoveRequestSchema,
                    responses={200: ("The moved record.", detail)},
                    errors=(403, 404, 409, 412, 422),
                    etag=True,
                ),
                Operation(
                    "GET",
                    f"{item}/stages",
                    self.stages,
                    f"stages_of_{name}",
                    f"Stages a {label.lower()} can move to",
                    tag,
                    responses={200: ("The next stages.", _items(MoveOptionSchema, "MoveOptions"))},
                    errors=(403, 404, 422),
                ),
                Operation(
                    "GET",
                    f"{item}/history",
                    self.history,
                    f"history_of_{name}",
                    f"Stage history of a {label.lower()}",
                    tag,
                    responses={
                        200: ("Every move, oldest first.", _items(StageMoveSchema, "StageMoves"))
                    },
                    errors=(403, 404),
                ),
            ]
        return ops

    def list_parameters(self) -> list[dict[str, Any]]:
        entity = self.entity
        sortable = sorted({*entity.sort_attrs, "id"})
        params = [
            query_parameter(
                "limit",
                "Rows per page (1-500).",
                {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
            ),
            query_parameter("after", "The `next` cursor of the previous page."),
            query_parameter(
                "order",
                "Comma-separated sort keys, `-` for descending: "
                + ", ".join(f"`{a}`" for a in sortable)
                + f". Default: `{','.join(entity.default_sort)}`.",
            ),
        ]
        if entity.search_attrs:
            params.append(query_parameter("q", "Search text."))
        columns = entity.model.__table__.columns
        for attr in dict.fromkeys([*entity.filter_attrs, *entity.sort_attrs]):
            column = columns.get(attr)
            params.append(
                query_parameter(
                    attr, f"Filter: {attr} equals (or `{attr}__op=`).", _json_type(column)
                )
            )
        return params


def _patch_schema(entity: EntityType) -> Any:
    """A PATCH body: the input schema, every field optional, without the pipeline's fields
    (the stage changes by a move; an edit naming it is refused)."""
    assert entity.schema is not None
    declared = entity.schema._declared_fields
    return entity.schema(partial=True, exclude=[f for f in PIPELINE_FIELDS if f in declared])


class _LazyKinds(dict):  # type: ignore[type-arg]
    """Custom field kinds, read from the database only if a filter asks for one."""

    def __init__(self, service: Any) -> None:
        super().__init__()
        self.service = service
        self.loaded = False

    def get(self, key: Any, default: Any = None) -> Any:
        if not self.loaded:
            self.update(self.service.custom_kinds())
            self.loaded = True
        return super().get(key, default)


def _json_type(column: Any) -> dict[str, Any]:
    import datetime as dt
    from decimal import Decimal

    if column is None:
        return {"type": "string"}
    return {
        bool: {"type": "boolean"},
        int: {"type": "integer", "format": "int64"},
        float: {"type": "number"},
        Decimal: {"type": "string", "format": "decimal"},
        dt.datetime: {"type": "string", "format": "date-time"},
        dt.date: {"type": "string", "format": "date"},
    }.get(column_python_type(column), {"type": "string"})


@cache
def _items(schema: Any, name: str) -> Any:
    from marshmallow import Schema, fields

    return Schema.from_dict({"items": fields.List(fields.Nested(schema), required=True)}, name=name)
