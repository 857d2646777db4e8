"""API operations: each endpoint with what the OpenAPI document says about it.

An :class:`Operation` is the one place an endpoint is declared: the Starlette route is made
from it and so is its entry in ``/api/v1/openapi.json``, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import orjson
from marshmallow import ValidationError
from starlette.requests import Request

from crmkit.errors import Conflict, NotFound, ValidationFailed
from crmkit.web.api.responses import ApiError, too_large

_CONVERTER = re.compile(r"\{(\w+)(:\w+)?\}")


@attrs.frozen
class Operation:
    """One method on one path.

    ``path`` is relative to ``/api/v1`` in Starlette syntax (``/party/{id:id}``);
    ``body`` is a marshmallow schema (class or instance) of a JSON body, or a mapping of
    media types to OpenAPI content objects; ``responses`` map a status to a description
    and a schema (or ``None`` for no body).  ``errors`` are the problem statuses it may
    answer besides 401.
    """

    method: str
    path: str
    endpoint: Callable[[Request], Any]
    operation_id: str
    summary: str
    tag: str
    description: str = ""
    parameters: Sequence[Mapping[str, Any]] = ()
    body: Any = None
    responses: Mapping[int, tuple[str, Any]] = attrs.field(factory=dict)
    errors: Sequence[int] = ()
    public: bool = False
    etag: bool = False

    @property
    def openapi_path(self) -> str:
        """``/party/{id:id}`` -> ``/party/{id}``."""
        return _CONVERTER.sub(lambda m: "{" + m.group(1) + "}", self.path)

    @property
    def path_parameters(self) -> list[str]:
        """Names of the parameters in the path."""
        return [m.group(1) for m in _CONVERTER.finditer(self.path)]


def query_parameter(
    name: str, description: str, schema: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """An OpenAPI query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": dict(schema or {"type": "string"}),
        **extra,
    }


def header_parameter(name: str, description: str) -> dict[str, Any]:
    """An OpenAPI header parameter (a string)."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


IF_MATCH = header_parameter(
    "If-Match",
    'The ETag of the version you changed (e.g. `"3"`); a newer version answers 412 '
    "instead of being overwritten.",
)
IF_NONE_MATCH = header_parameter(
    "If-None-Match", "The ETag you hold; answers 304 Not Modified while it is current."
)


# -- ETags ---------------------------------------------------------------------------------


def etag_of(record: Any) -> str | None:
    """The ETag of a record: its version, for entities that keep one."""
    version = getattr(record, "version", None)
    return None if version is None else f'"{version}"'


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def _version(tag: str) -> int | None:
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip().strip('"')
    try:
        return int(tag)
    except ValueError:
        return None


def expected_version(request: Request, record: Any) -> int | None:
    """The version the client's ``If-Match`` expects, checked against ``record``.

    ``None`` means "no condition" (no header, or ``*``).  An ETag that is not the record's
    current one raises :class:`~crmkit.errors.Conflict` (answered 412); for a record
    without versions any ETag but ``*`` fails, since none can match.  A header that holds
    no ETag at all (``If-Match: garbage``, an empty one) is the client's mistake, not a
    stale write: 400 naming the header.
    """
    header = request.headers.get("if-match")
    if header is None:
        return None
    tags = _tags(header)
    if tags == ["*"]:
        return None
    malformed = [t for t in tags if _version(t) is None]
    if malformed or not tags:
        shown = malformed[0] if malformed else header
        raise ApiError(
            400,
            "Bad request",
            f"If-Match: {shown!r} is not an ETag of this API (a version as the ETag "
            'header gives it, such as "3"; or *)',
            kind="bad-request",
            errors={"If-Match": [f"{shown!r} is not an ETag"]},
        )
    current = getattr(record, "version", None)
    wanted = [_version(t) for t in tags]
    if current is None or current not in wanted:
        raise Conflict(
            "record",
            getattr(record, "id", None),
            "the record changed since you read it (its ETag is no longer "
            f"{', '.join(tags)}); read it again and reapply your change",
        )
    return int(current)


def not_modified(request: Request, record: Any) -> bool:
    """Whether ``If-None-Match`` names the record's current ETag (answer 304)."""
    header = request.headers.get("if-none-match")
    tag = etag_of(record)
    if header is None or tag is None:
        return False
    tags = _tags(header)
    return "*" in tags or any(_version(t) == record.version for t in tags)


def _json_too_large(limit: int) -> ApiError:
    return too_large("JSON bodies", limit, "api.max_json_bytes", field="_schema")


async def _limited_body(request: Request) -> bytes:
    """The body, read as it arrives and refused (413) once it passes ``api.max_json_bytes``:
    a client cannot make a worker hold an endless body in memory."""
    limit = int(request.app.state.crm.config["api.max_json_bytes"])
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _json_too_large(limit)
    chunks: list[bytes] = []
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _json_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; a clear 400/413/415/422 otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise ApiError(
            415,
            "Unsupported media type",
            f"send JSON (Content-Type: application/json), not {content_type}",
            kind="unsupported-media-type",
        )
    raw = await _limited_body(request)
    if not raw.strip():
        return {}

    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, "Bad request", f"the body is not valid JSON: {exc}", kind="bad-json"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "Validation failed",
            "the body must be a JSON object",
            kind="validation-failed",
            errors={"_schema": ["the body must be a JSON object"]},
        )
    return data


async def loaded_body(request: Request, schema: Any) -> dict[str, Any]:
    """The request's JSON object loaded by a marshmallow ``schema`` (a class); a refused
    value is a 422 naming its field."""
    body = await json_body(request)
    try:
        return schema().load(body)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise ValidationFailed(exc.messages_dict) from None  # type: ignore[arg-type]


@contextmanager
def linked(field: str) -> Iterator[None]:
    """A body's link to something missing or hidden is a 422 naming the field, not a 404
    (the 404 of an endpoint is about the record in its path)."""
    try:
        yield
    except NotFound as exc:
        raise ValidationFailed({field: [str(exc)]}) from None
