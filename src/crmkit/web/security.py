"""Who is asking: session cookies, CSRF tokens and the guard around every page.

The session cookie holds a random token signed with the deployment's ``secret_key``; the
server keeps the session (``signin_session``) and checks it, and the user, on every
request (see :mod:`crmkit.services.signin`).  Every state-changing request (POST, PUT,
PATCH, DELETE) must carry the session's CSRF token, as a ``csrf_token`` form field or an
``X-CSRF-Token`` header (htmx sends it from ``hx-headers`` on ``<body>``).  Before sign-in
the login form is protected the same way by a token in a separate signed cookie.
"""

from __future__ import annotations

import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable, Sequence
from functools import wraps

from itsdangerous import BadSignature, Signer
from starlette.requests import Request
from starlette.responses import Response

from crmkit.web.concurrency import is_long_running

SESSION_COOKIE = "crmkit_session"
CSRF_COOKIE = "crmkit_csrf"
LANGUAGE_COOKIE = "crmkit_lang"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Endpoint = Callable[[Request], Awaitable[Response]]


class CookieSigner:
    """Signs and checks cookie values with the deployment's secret key."""

    def __init__(self, secret_key: str, secure: bool) -> None:
        if not secret_key:
            raise ValueError("secret_key is empty: the web UI cannot sign its cookies")
        self.signer = Signer(secret_key, salt="crmkit.cookie")
        self.secure = secure

    def sign(self, value: str) -> str:
        """``value`` with its signature."""
        return self.signer.sign(value.encode()).decode()

    def unsign(self, signed: str | None) -> str | None:
        """The value of a signed cookie, or ``None`` if missing or tampered with."""
        if not signed:
            return None
        try:
            return self.signer.unsign(signed.encode()).decode()
        except BadSignature:
            return None

    def set(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        """Set a signed, HttpOnly, SameSite=Lax cookie."""
        response.set_cookie(
            name,
            self.sign(value),
            max_age=max_age,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/",
        )


def login_csrf(request: Request) -> tuple[str, bool]:
    """The CSRF token of the sign-in form, and whether its cookie must be (re)set."""
    signer: CookieSigner = request.app.state.signer
    token = signer.unsign(request.cookies.get(CSRF_COOKIE))
    if token:
        return token, False
    return secrets.token_urlsafe(24), True


async def submitted_csrf(request: Request) -> str:
    """The CSRF token a request carries (header first, then form field)."""
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    if _is_form(request):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


def _is_form(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


def tokens_match(expected: str, given: str) -> bool:
    """Constant-time comparison of two tokens."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


class CsrfFailed(Exception):
    """A state-changing request without the right CSRF token."""


class SignInRequired(Exception):
    """The request needs a signed-in user."""


def guarded(
    endpoint: Endpoint,
    roles: Sequence[str] = (),
    public: bool = False,
    permission: tuple[str, str] | None = None,
) -> Endpoint:
    """Wrap an endpoint: resume the session, check roles, permission and CSRF, set the locale.

    Without a session a page redirects to the sign-in form (htmx and API-like requests get
    401).  A user without any of ``roles``, or without ``permission`` (an ``(entity,
    action)`` cell of the permission table), gets 404, exactly like a missing page.
    """
    from crmkit.web.pages import NotFoundPage, actor_can, attach_user, form_data

    coroutine = inspect.iscoroutinefunction(endpoint)
    long = is_long_running(endpoint)

    async def run(request: Request) -> Response:
        if coroutine:
            return await endpoint(request)  # type: ignore[no-any-return]
        blocking = request.app.state.blocking
        if request.method in UNSAFE_METHODS:
            # a plain function cannot await the body: it reads it with posted(request)
            request.state.form = await form_data(request) if _is_form(request) else {}
            try:
                return await blocking.write(endpoint, request)  # type: ignore[no-any-return]
            finally:
                await request.close()  # the uploads a multipart form spooled
        request.state.form = {}
        if long:
            return await blocking.write(endpoint, request)  # type: ignore[no-any-return]
        return await blocking.read(endpoint, request)  # type: ignore[no-any-return]

    @wraps(endpoint)
    async def guard(request: Request) -> Response:
        await attach_user(request)
        if not public:
            user = request.state.user
            if user is None:
                raise SignInRequired()
            if roles and not (set(roles) & request.state.actor.roles):
                raise NotFoundPage()
            if permission is not None and not actor_can(request, *permission):
                raise NotFoundPage()
            if request.method in UNSAFE_METHODS and not tokens_match(
                request.state.csrf_token, await submitted_csrf(request)
            ):
                raise CsrfFailed()
        return extend_session_cookie(request, await run(request))

    return guard


def extend_session_cookie(request: Request, response: Response) -> Response:
    """Set the session cookie again, for ``security.session_days`` from now, when this
    request moved the session's expiry on (at most every few minutes, see
    :data:`crmkit.services.signin.TOUCH_EVERY`): the browser keeps the cookie as long as the
    server keeps the session.  A response that sets or deletes the cookie itself is left be.
    """
    state = request.state
    if not getattr(state, "session_extended", False) or not state.session_token:
        return response
    prefix = f"{SESSION_COOKIE}="
    if any(c.startswith(prefix) for c in response.headers.getlist("set-cookie")):
        return response
    days = int(request.app.state.crm.config["security.session_days"])
    request.app.state.signer.set(response, SESSION_COOKIE, state.session_token, days * 86400)
    return response
