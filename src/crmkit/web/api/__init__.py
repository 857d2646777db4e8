"""The REST API under ``/api/v1/``: every entity's CRUD, moves, timeline, files, tokens.

:func:`create_api` builds the ASGI application of one CRM; the web application mounts it at
``/api/v1``.  Routes and the OpenAPI document are made from the same
:class:`~crmkit.web.api.operations.Operation` list, so the document always tells the truth.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.orm.exc import StaleDataError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from crmkit.errors import CrmkitError
from crmkit.web.api import account, calendar, files, search, timeline
from crmkit.web.api.auth import BearerAuthMiddleware, authenticate, touch
from crmkit.web.api.openapi import build_spec, render_docs
from crmkit.web.api.operations import Operation
from crmkit.web.api.records import EntityEndpoints
from crmkit.web.api.responses import (
    ApiError,
    JSONResponse,
    is_value_overflow,
    problem,
    problem_for,
)
from crmkit.web.concurrency import Blocking, is_long_running
from crmkit.web.routing import index_routes

log = logging.getLogger("crmkit.api")

MOUNT = "/api/v1"
PUBLIC_PATHS = frozenset({"/openapi.json", "/docs"})


def api_operations(crm: Any) -> list[Operation]:
    """Every operation of the API for this CRM (entities come from its registry)."""
    operations: list[Operation] = []
    operations += account.operations(crm)
    operations += search.operations(crm)
    operations += timeline.operations(crm)
    operations += files.operations(crm)
    operations += calendar.operations(crm)
    for entity in sorted(crm.entities, key=lambda e: e.name):
        operations += EntityEndpoints(entity).operations()
    return _without_shadowed(operations)


def _without_shadowed(operations: list[Operation]) -> list[Operation]:
    """The first operation of each (method, path) wins (special ones precede generic ones)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for op in operations:
        key = (op.method, op.openapi_path)
        if key not in seen:
            seen.add(key)
            kept.append(op)
    return kept


class _ServerErrors:
    """Turns an unexpected exception into a logged 500 problem instead of a bare error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            # Starlette has answered 500 already (through _server_error) and re-raised
            log.exception("API request %s %s failed", scope.get("method"), scope.get("path"))
            if not started and scope["type"] == "http":
                await _server_error(Request(scope), exc)(scope, receive, send)


async def _crmkit_error(request: Request, exc: Exception) -> Response:
    return problem_for(request, exc)


async def _statement_error(request: Request, exc: Exception) -> Response:
    """A statement that could not be sent: a value its driver cannot convert is the
    input's fault (a 422 naming the column); anything else stays a server error."""
    if is_value_overflow(exc):
        return problem_for(request, exc)
    raise exc


def _server_error(request: Request, exc: Exception) -> Response:
    return problem(500, "Internal server error", kind="server-error")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: "not-found", 405: "method-not-allowed"}
    return problem(
        exc.status_code,
        exc.detail or "Error",
        kind=kinds.get(exc.status_code, "bad-request"),
        headers=exc.headers,
    )


def create_api(crm: Any, blocking: Blocking | None = None) -> ASGIApp:
    """The ASGI application of the REST API of ``crm`` (to be mounted at ``/api/v1``).

    ``blocking`` is the web application's, so that pages and the API share one limit of
    reads at once (and with it the connection pool).
    """
    operations = api_operations(crm)
    built: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        # built on first request: it costs more than the rest of the app's set-up together
        if "spec" not in built:
            built["spec"] = build_spec(operations, base=MOUNT)
        return built["spec"]  # type: ignore[no-any-return]

    async def openapi(request: Request) -> Response:
        return JSONResponse(document())

    async def docs(request: Request) -> Response:
        if "docs" not in built:
            built["docs"] = render_docs(document())
        return HTMLResponse(built["docs"])

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    by_path: dict[str, dict[str, Any]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = op.endpoint
    blocking = blocking or Blocking(crm)
    for path, methods in by_path.items():
        routes.append(Route(path, _dispatch(methods, blocking), methods=list(methods)))
    app = Starlette(
        routes=routes,
        exception_handlers={
            CrmkitError: _crmkit_error,
            ApiError: _crmkit_error,
            HTTPException: _http_error,
            DataError: _crmkit_error,
            StatementError: _statement_error,
            OverflowError: _crmkit_error,
            IntegrityError: _crmkit_error,
            StaleDataError: _crmkit_error,
            Exception: _server_error,
        },
    )
    index_routes(app)  # some eighty paths: try only those of the request's first segment
    app.state.crm = crm
    app.state.operations = operations
    app.state.blocking = blocking
    return _ServerErrors(BearerAuthMiddleware(app, PUBLIC_PATHS))


def _dispatch(methods: dict[str, Any], blocking: Blocking) -> Any:
    """One endpoint for a path serving several methods, behind the caller's token check.

    A coroutine handler (a write: it reads the body, then works in the thread pool) is
    awaited; a plain function (a read) runs where ``blocking`` says.  The token is checked
    first, where ``blocking`` runs reads; on a server database the check, the token's
    occasional touch and a plain handler share one cooperative call.
    """
    coroutines = {method: inspect.iscoroutinefunction(h) for method, h in methods.items()}
    long = {method: is_long_running(h) for method, h in methods.items()}

    def checked(handler: Any, request: Request) -> Response:
        owner = authenticate(request)
        if owner.needs_touch:
            touch(request, owner)  # at most every few minutes; its waits yield the loop
        return handler(request)  # type: ignore[no-any-return]

    async def endpoint(request: Request) -> Response:
        method = request.method
        if method not in methods:  # HEAD is answered as GET by Starlette
            method = "GET"
        handler = methods[method]
        if blocking.cooperative and not coroutines[method] and not long[method]:
            return await blocking.read(checked, handler, request)
        owner = await blocking.read(authenticate, request)
        if owner.needs_touch:  # a write: never on the event loop
            await blocking.write(touch, request, owner)
        if coroutines[method]:
            return await handler(request)  # type: ignore[no-any-return]
        if long[method]:
            return await blocking.write(handler, request)  # type: ignore[no-any-return]
        return await blocking.read(handler, request)  # type: ignore[no-any-return]

    return endpoint
