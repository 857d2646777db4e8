"""JSON and problem responses of the API, and the mapping of crmkit errors to HTTP.

Every error is ``application/problem+json`` (RFC 9457): ``type`` links to the section of
the API docs about that kind of problem, ``title`` and ``status`` say what happened, and
extension members carry what a client needs to act (``errors`` per field, the ``reasons``
of a refused move, the ``candidates`` of a possible duplicate).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.orm.exc import StaleDataError
from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import (
    Conflict,
    CrmkitError,
    DuplicatesFound,
    MergedAway,
    MoveRefused,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from crmkit.i18n import Message
from crmkit.services.limits import database_refusals

log = logging.getLogger("crmkit.api")

PROBLEM_TYPE = "application/problem+json"
DOCS = "/api/v1/docs"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal | Message):  # a message in English, as str() gives it
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(content: Any, *, any_keys: bool = False) -> bytes:
    """JSON bytes; datetimes as ISO 8601 with offset and Decimals as strings (as marshmallow).

    ``any_keys`` allows non-string keys (marshmallow numbers the items of a rejected list).
    """
    return orjson.dumps(
        content, default=_default, option=orjson.OPT_NON_STR_KEYS if any_keys else 0
    )


class JSONResponse(Response):
    """A JSON response encoded with orjson (several times faster than the standard library)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


class ApiError(Exception):
    """An HTTP-level problem found by the API itself (bad JSON, no token, body too large)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.headers = dict(headers or {})
        self.extensions = extensions


MEGABYTE = 1024 * 1024


def too_large(what: str, max_bytes: int, setting: str, *, field: str) -> ApiError:
    """The ``413 too-large`` answer to a body past its limit, the same for every limit:
    ``detail`` names the limit and its setting, ``errors`` the refused field (``_schema``
    for a whole body), ``max_bytes`` the limit for a client to act on.

    It closes the connection (``Connection: close``): the refusal may come before the rest
    of the body was read, and a kept connection would make the server read it all anyway.
    """
    whole = max_bytes > 0 and max_bytes % MEGABYTE == 0
    limit = f"{max_bytes // MEGABYTE} MB" if whole else f"{max_bytes} bytes"
    return ApiError(
        413,
        "Content too large",
        f"{what} are limited to {limit} ({setting})",
        kind="too-large",
        headers={"Connection": "close"},
        errors={field: [f"larger than the limit of {limit}"]},
        max_bytes=max_bytes,
    )


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    kind: str,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """An ``application/problem+json`` response."""
    body: dict[str, Any] = {"type": f"{DOCS}#{kind}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extensions.items() if v is not None})
    return Response(
        dumps(body, any_keys=True), status_code=status, headers=headers, media_type=PROBLEM_TYPE
    )


def is_value_overflow(exc: BaseException) -> bool:
    """A statement SQLAlchemy could not send: a driver's conversion overflowed (a moment
    UTC cannot hold, an integer beyond 64 bits)."""
    return isinstance(exc, StatementError) and isinstance(exc.orig, OverflowError)


def problem_for(request: Request, exc: Exception) -> Response:
    """The response for an error raised while serving ``request``."""
    if isinstance(exc, ApiError):
        return problem(
            exc.status,
            exc.title,
            exc.detail,
            kind=exc.kind,
            headers=exc.headers,
            **exc.extensions,
        )
    if isinstance(exc, ValidationFailed):
        return problem(
            422,
            "Validation failed",
            str(exc),
            kind="validation-failed",
            errors=exc.errors,
        )
    if isinstance(exc, NotFound):
        # the same answer for "missing" and "not yours": no hint that a record exists
        return problem(404, "Not found", f"{exc.entity} not found", kind="not-found")
    if isinstance(exc, PermissionDenied):
        return problem(403, "Forbidden", str(exc), kind="forbidden")
    if isinstance(exc, MoveRefused):
        return problem(
            409,
            "Move refused",
            str(exc),
            kind="move-refused",
            reasons=exc.reasons,
            missing_fields=exc.missing_fields,
            missing_documents=exc.missing_documents,
        )
    if isinstance(exc, DuplicatesFound):
        return problem(
            409,
            "Possible duplicates",
            f"{exc}; repeat the request with confirm_duplicates=true to create it anyway",
            kind="duplicates-found",
            candidates=exc.candidates,
        )
    if isinstance(exc, MergedAway):
        # before Conflict: an If-Match does not make it a stale write, nothing can match
        return problem(409, "Merged", str(exc), kind="merged", merged_into=exc.survivor_id)
    if isinstance(exc, Conflict):
        if "if-match" in request.headers:
            return problem(412, "Precondition failed", str(exc), kind="stale-write")
        return problem(409, "Conflict", str(exc), kind="conflict")
    if isinstance(exc, StaleDataError):
        # a row written meanwhile by another request, met by a flush the unit of work did
        # not start itself (an autoflush before a query): the same answer as its Conflict
        return problem(
            409,
            "Conflict",
            "the record was changed by someone else meanwhile; reload and try again",
            kind="conflict",
        )
    if isinstance(exc, DataError) or is_value_overflow(exc):
        # a value the database or its driver cannot hold (a text longer than its column, a
        # moment beyond the year 9999 in UTC): the input's fault, named by its column when
        # the statement tells it (the services refuse these before writing; this is for
        # what still gets through)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        errors: dict[str, Any] = dict(database_refusals(exc)) or {"_schema": [reason]}
        return problem(
            422,
            "Validation failed",
            str(ValidationFailed(errors)),
            kind="validation-failed",
            errors=errors,
        )
    if isinstance(exc, IntegrityError):
        # the services check references and uniqueness first; reaching here means one of
        # them missed a case: answer like a conflict, but leave a trace to fix it
        log.warning("integrity error reached the API: %s", exc)
        return problem(409, "Conflict", "the change conflicts with existing data", kind="conflict")
    if isinstance(exc, OverflowError):  # SQLite's driver, for integers beyond 64 bits
        errors = {"_schema": ["a number is too large"]}
        return problem(
            422,
            "Validation failed",
            "a number is too large",
            kind="validation-failed",
            errors=errors,
        )
    if isinstance(exc, CrmkitError):
        return problem(400, "Bad request", str(exc), kind="bad-request")
    return problem(500, "Internal server error", kind="server-error")
