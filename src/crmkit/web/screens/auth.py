"""Signing in and out, and choosing the language before sign-in."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crmkit.services.signin import SignInRefused
from crmkit.web import i18n
from crmkit.web.pages import redirect, render
from crmkit.web.security import (
    CSRF_COOKIE,
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    login_csrf,
    tokens_match,
)


def _safe_next(target: str | None) -> str:
    # only paths of this site: "//evil.example" or "https://..." would leave it
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


def login_form(request: Request) -> Response:
    """The sign-in form (a signed-in user goes straight to their start screen)."""
    if request.state.user is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _form(request, error=None, username="", status=200)


def _form(request: Request, error: str | None, username: str, status: int) -> Response:
    token, fresh = login_csrf(request)
    response = render(
        request,
        "login.html",
        {
            "login_csrf": token,
            "error": error,
            "username": username,
            "next": _safe_next(request.query_params.get("next")),
        },
        status=status,
    )
    if fresh:
        request.app.state.signer.set(response, CSRF_COOKIE, token, max_age=None)
    return response


async def login(request: Request) -> Response:
    """Check the password (argon2, in a worker thread) and open a session."""
    form = await request.form()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    expected, _ = login_csrf(request)
    if not tokens_match(expected, str(form.get("csrf_token", ""))):
        with i18n.activate(request.state.locale):
            error = i18n.gettext("The form has expired; reload the page and try again.")
        return _form(request, error=error, username=username, status=403)
    nul = next((k for k, v in (("username", username), ("password", password)) if "\x00" in v), "")
    if nul:  # no account has one, and PostgreSQL cannot even count the failure
        with i18n.activate(request.state.locale):
            field = i18n.gettext("username") if nul == "username" else i18n.gettext("password")
            error = f"{field}: {i18n.gettext('contains a NUL character')}"
        return _form(request, error=error, username=username.replace("\x00", ""), status=422)
    crm = request.app.state.crm
    address = request.client.host if request.client else None

    def attempt() -> str:
        with crm.system() as unit:
            _, token = unit.signin.sign_in(
                username, password, address=address, user_agent=request.headers.get("user-agent")
            )
        return token

    try:
        token = await run_in_threadpool(attempt)
    except SignInRefused as refused:
        with i18n.activate(request.state.locale):
            error = i18n.gettext(refused.reason)
        status = 429 if refused.retry_after else 401
        response = _form(request, error=error, username=username, status=status)
        if refused.retry_after:
            response.headers["Retry-After"] = str(refused.retry_after)
        return response
    response = RedirectResponse(_safe_next(str(form.get("next", ""))), status_code=303)
    days = int(crm.config["security.session_days"])
    request.app.state.signer.set(response, SESSION_COOKIE, token, max_age=days * 86400)
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


async def logout(request: Request) -> Response:
    """Sign out this browser, or every browser of the user with ``everywhere=1``."""
    form = await request.form()
    crm = request.app.state.crm
    with crm.system() as unit:
        if form.get("everywhere"):
            unit.signin.end_everywhere(request.state.user.id)
        elif request.state.session_token:
            unit.signin.end(request.state.session_token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def language(request: Request) -> Response:
    """Switch the language: saved in the profile when signed in, else in a cookie."""
    form = await request.form()
    chosen = str(form.get("language", ""))
    back = _safe_next(str(form.get("next", "")) or request.headers.get("referer-path"))
    if chosen not in i18n.LANGUAGES:
        return redirect(request, back)
    user = request.state.user
    if user is not None:
        if not tokens_match(request.state.csrf_token, str(form.get("csrf_token", ""))):
            return redirect(request, back)
        with request.app.state.crm.acting_as(request.state.actor) as unit:
            unit.users.update(user.id, locale=chosen)
    response = RedirectResponse(back, status_code=303)
    response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 86400, samesite="lax", path="/")
    return response
