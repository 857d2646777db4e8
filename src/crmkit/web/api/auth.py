"""Bearer-token authentication of API requests, and units of work acting as the caller.

Every request but the public ones (the OpenAPI document and its docs page) must carry
``Authorization: Bearer <personal API token>``.  The token is checked against the database
on every request (one indexed query, run beside the endpoint: :func:`authenticate`), so a
revoked token or a blocked user is refused at once, by every process.  The API never reads
session cookies, so it needs no CSRF defence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from crmkit.services import tokens
from crmkit.web.api.responses import ApiError, problem_for

T = TypeVar("T")

CHALLENGE = 'Bearer realm="crmkit"'


def _unauthorized(detail: str, error: str = "invalid_token") -> ApiError:
    return ApiError(
        401,
        "Unauthorized",
        detail,
        kind="unauthorized",
        headers={"WWW-Authenticate": f'{CHALLENGE}, error="{error}"'},
    )


class BearerAuthMiddleware:
    """Answers 401 to a request without a bearer token; otherwise passes its secret on.

    The secret goes to ``scope["crmkit.bearer"]``; :func:`authenticate` checks it against
    the database where the endpoint runs (see :func:`crmkit.web.api._dispatch`), so that on
    a server database the token check and a read share one cooperative call.
    """

    def __init__(self, app: ASGIApp, public_paths: frozenset[str]) -> None:
        self.app = app
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, root = scope["path"], scope.get("root_path", "")
        if path.startswith(root):
            path = path[len(root) :]  # mounted: the path below /api/v1
        if scope["type"] != "http" or path in self.public_paths:
            await self.app(scope, receive, send)
            return
        try:
            scope["crmkit.bearer"] = bearer_secret(scope)
        except ApiError as exc:
            await problem_for(Request(scope), exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def bearer_secret(scope: Scope) -> str:
    """The secret of the request's ``Authorization: Bearer`` header (401 if there is none)."""
    header = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value
            break
    if not header:
        raise ApiError(
            401,
            "Unauthorized",
            "send a personal API token: Authorization: Bearer <token>",
            kind="unauthorized",
            headers={"WWW-Authenticate": CHALLENGE},
        )
    scheme, _, secret = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise _unauthorized("use the Bearer scheme", "invalid_request")
    return secret.strip()


def authenticate(request: Request) -> tokens.TokenOwner:
    """The owner of the request's token, checked against the database (blocking).

    Puts it in ``scope["crmkit.token"]`` for :func:`caller`; a token unknown, revoked or
    expired, or of a blocked user, raises a 401 :class:`ApiError`.  Whether
    ``last_used_at`` is due for a write is the owner's ``needs_touch``.
    """
    owner = tokens.authenticate(request.app.state.crm.engine, request.scope["crmkit.bearer"])
    if owner is None:
        raise _unauthorized("the token is unknown, revoked or expired, or its user blocked")
    request.scope["crmkit.token"] = owner
    return owner


def touch(request: Request, owner: tokens.TokenOwner) -> None:
    """Record the token's use (a write: never run straight on the event loop)."""
    tokens.touch(request.app.state.crm.engine, owner.token_id)


def caller_id(request: Request) -> int:
    """The id of the user the request's token acts as."""
    return int(request.scope["crmkit.token"].user_id)


def caller(request: Request) -> Any:
    """The caller's :class:`~crmkit.app.Actor`, kept between requests while still exact."""
    owner = request.scope["crmkit.token"]
    return request.app.state.crm.actors.actor(owner.user_id, owner.stamp)


def caller_locale(request: Request) -> Any:
    """The language the caller reads (a :class:`~crmkit.web.i18n.Locale`): their own
    setting (``User.locale``), else the request's ``Accept-Language`` when it names one of
    the UI's languages, else the deployment's (``locale.default``)."""
    from crmkit.web.i18n import locale_of

    crm = request.app.state.crm
    return locale_of(crm, caller(request), request.headers.get("accept-language"))


def acting(request: Request) -> Any:
    """A unit of work acting as the caller (use as a context manager)."""
    return request.app.state.crm.acting_as(caller(request))


async def in_thread(request: Request, action: Callable[[Any], T]) -> T:
    """Run ``action(work)`` in a unit of work acting as the caller, in the thread pool
    (:meth:`~crmkit.web.concurrency.Blocking.write`).

    Writes go through here: on SQLite a write may wait for the database lock, which must
    not stall the event loop.  Read endpoints are plain functions instead, which the API
    runs where :class:`~crmkit.web.concurrency.Blocking` says (on the loop; on a database
    server in a greenlet whose waits give the loop back).
    """
    crm = request.app.state.crm
    actor = caller(request)

    def run() -> T:
        with crm.acting_as(actor) as work:
            return action(work)

    return await request.app.state.blocking.write(run)
