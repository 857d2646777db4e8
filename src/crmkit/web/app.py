"""The Starlette application of one CRM: screens, plugin routes, static files, the API.

Everything a user sees is a *screen* registered through ``crmkit_register_screens`` (the
core's own screens are the built-in plugin :mod:`crmkit.builtins.web`), reached from menus
registered through ``crmkit_register_menu_items``.  Plugin routes from
``crmkit_register_routes`` are mounted beside them.  Every non-public endpoint is wrapped by
:func:`crmkit.web.security.guarded` (session, roles, CSRF, locale).

Templates: a plugin's ``templates/`` folder (beside its module) is searched before the
core's, so it may override a core template; ``default:page.html`` names the core's own
version for ``{% extends %}``.  A plugin's ``static/`` folder is served at
``/static/plugins/<plugin name>/``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from sqlalchemy.orm.exc import StaleDataError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from crmkit.errors import (
    Conflict,
    MergedAway,
    MoveRefused,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from crmkit.web import i18n
from crmkit.web.api import MOUNT, create_api
from crmkit.web.concurrency import Blocking
from crmkit.web.pages import NotFoundPage, attach_user, error_text, is_htmx, render, toast
from crmkit.web.routing import index_routes
from crmkit.web.security import CookieSigner, CsrfFailed, SignInRequired, guarded

WEB_DIR = Path(__file__).parent


def plugin_folders(crm: Any, name: str) -> list[tuple[str, Path]]:
    """``(plugin name, folder)`` for every loaded plugin shipping a folder called ``name``.

    The folder sits beside the plugin's module (``crmkit_finance/templates`` for the plugin
    module ``crmkit_finance.plugin``).  Core built-ins ship theirs inside ``crmkit.web``.
    """
    found = []
    for plugin_name, plugin in crm.pm.list_name_plugin():
        module_file = getattr(plugin, "__file__", None)
        if not module_file or getattr(plugin, "__name__", "").startswith("crmkit."):
            continue
        folder = Path(module_file).parent / name
        if folder.is_dir():
            found.append((plugin_name, folder))
    return found


def make_templates(crm: Any) -> jinja2.Environment:
    """The Jinja environment: plugin templates first, then the core's (also as ``default:``)."""
    core = jinja2.FileSystemLoader(WEB_DIR / "templates")
    loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"default": core}, delimiter=":")]
    loaders += [jinja2.FileSystemLoader(folder) for _, folder in plugin_folders(crm, "templates")]
    loaders.append(core)
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(("html", "svg")),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    # a field's name ("email", "display_name") is lowercase in the catalogs, as it reads
    # inside a sentence ("email: not an address"); as a form's label it starts a line
    env.filters["capfirst"] = lambda value: str(value)[:1].upper() + str(value)[1:]
    env.globals["static"] = static_url
    env.globals["stage_label"] = i18n.stage_title
    env.globals["entry_subject"] = lambda entry: _entry_text(crm, entry, subject=True)
    env.globals["entry_body"] = lambda entry: _entry_text(crm, entry, subject=False)
    env.globals["entry_kind"] = lambda entry: _kind_label(crm, entry.kind)
    return env


def _entry_text(crm: Any, entry: Any, *, subject: bool) -> str | None:
    """A timeline entry's subject or body in the language of the page being rendered."""
    from crmkit.services.timeline import shown_body, shown_subject

    locale = i18n.current()
    if locale is None:
        return entry.subject if subject else entry.body  # type: ignore[no-any-return]
    if subject:
        return shown_subject(entry, crm, locale.gettext, locale.zone, locale.money)
    return shown_body(entry, locale.gettext, locale.zone, locale.money)


def _kind_label(crm: Any, kind: str) -> str:
    """What a timeline entry's kind is called (its declared label, to be translated)."""
    declared = crm.timeline_kinds.get(kind)
    return declared.label if declared is not None else kind


def static_url(path: str) -> str:
    """URL of a core static file, tagged with a digest of its content to defeat stale caches.

    The digest is computed once per file and process (pages link four or five files; the
    package metadata lookup used before cost milliseconds per page).
    """
    return f"/static/{path}?v={_fingerprint(path)}"


@functools.cache
def _fingerprint(path: str) -> str:
    file = importlib.resources.files("crmkit.web") / "static" / path
    try:
        return hashlib.blake2b(file.read_bytes(), digest_size=6).hexdigest()
    except OSError:  # a missing file: the link 404s either way
        return "0"


class _ApiMount(Mount):
    """The API's mount: every path below it is the API's, even one with a line break in a
    segment (Starlette's ``{path:path}`` is ``.*``, which stops at one), so the answer is
    always the API's (problem+json), never the web UI's HTML 404 page."""

    def __init__(self, path: str, app: Any) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def create_app(crm: Any) -> Starlette:
    """The ASGI application of one CRM."""
    from crmkit.web.screens import auth, live

    secret_key = crm.config.require_secret_key()  # a ConfigError naming the setting
    blocking = Blocking(crm)  # one limit of concurrent reads for pages and the API
    routes: list[BaseRoute] = [
        # The REST API: bearer tokens, problem+json; no sessions or CSRF (see crmkit.web.api).
        # First, so that API requests are not matched against every screen's route first.
        _ApiMount(MOUNT, app=create_api(crm, blocking)),
        Route("/login", guarded(auth.login_form, public=True), methods=["GET"], name="login"),
        Route("/login", guarded(auth.login, public=True), methods=["POST"]),
        Route("/logout", guarded(auth.logout), methods=["POST"], name="logout"),
        Route("/language", guarded(auth.language, public=True), methods=["POST"]),
        Route("/live", guarded(live.stream), name="live"),
        Route("/healthz", health),
    ]
    for screen in crm.screens.values():
        routes.append(
            Route(
                screen.path,
                guarded(screen.endpoint, roles=screen.roles, permission=screen.permission),
                methods=list(screen.methods),
                name=screen.name,
            )
        )
    for route in crm.routes:
        routes.append(
            Route(
                route.path,
                guarded(route.endpoint, public=route.public),
                methods=list(route.methods),
                name=route.name,
            )
        )
    static = importlib.resources.files("crmkit.web") / "static"
    for plugin_name, folder in plugin_folders(crm, "static"):
        routes.append(Mount(f"/static/plugins/{plugin_name}", StaticFiles(directory=folder)))
    routes.append(Mount("/static", StaticFiles(directory=str(static)), name="static"))

    app = Starlette(
        routes=routes,
        exception_handlers={
            SignInRequired: sign_in_required,
            CsrfFailed: csrf_failed,
            NotFound: not_found,
            NotFoundPage: not_found,
            PermissionDenied: forbidden,
            ValidationFailed: invalid,
            MoveRefused: invalid,
            Conflict: conflict,
            MergedAway: merged_away,
            # a stale write met by an autoflush rather than by the unit's own flush
            StaleDataError: conflict,
            HTTPException: http_error,
        },
    )
    index_routes(app)  # every screen of every plugin is a route: try only the request's group
    app.state.crm = crm
    app.state.blocking = blocking
    app.state.signer = CookieSigner(secret_key, crm.config["web.secure_cookies"])
    app.state.templates = make_templates(crm)
    app.state.catalogs = i18n.catalogs_of(crm)
    return app


async def health(request: Request) -> JSONResponse:
    """Liveness and database check for load balancers."""
    with request.app.state.crm.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    return JSONResponse({"status": "ok"})


# -- errors as pages ----------------------------------------------------------------------


async def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    await attach_user(request)
    if is_htmx(request):
        return toast(request, message, kind="error", status=200)
    context = {"title": title, "message": message, "back": _way_back(request)}
    return render(request, "error.html", context, status=status)


def _way_back(request: Request) -> str | None:
    """The page of this site a refused form was sent from (its ``Referer``), or ``None``.

    The error page links to it, so the user returns to the form (the browser's back keeps
    what was typed) rather than only to the start screen; another site is no way back.
    """
    if request.method != "POST":
        return None
    came_from = urlsplit(request.headers.get("referer", ""))
    if came_from.netloc != request.url.netloc or came_from.scheme not in ("http", "https"):
        return None
    if not came_from.path.startswith("/") or came_from.path.startswith("//"):
        return None
    return came_from.path + (f"?{came_from.query}" if came_from.query else "")


async def sign_in_required(request: Request, exc: Exception) -> Response:
    if is_htmx(request) or request.url.path.startswith("/live"):
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def csrf_failed(request: Request, exc: Exception) -> Response:
    return await _error_page(
        request,
        403,
        i18n.lazy("Forbidden"),
        i18n.lazy("The form has expired; reload the page and try again."),
    )


async def not_found(request: Request, exc: Exception) -> Response:
    return await _error_page(
        request, 404, i18n.lazy("Not found"), i18n.lazy("This page does not exist.")
    )


async def forbidden(request: Request, exc: Exception) -> Response:
    await attach_user(request)
    return await _error_page(request, 403, i18n.lazy("Forbidden"), error_text(request, exc))


async def invalid(request: Request, exc: Exception) -> Response:
    await attach_user(request)
    # a page asked for with a parameter it refuses saved nothing: it was not shown
    shown = request.method in ("GET", "HEAD")
    title = i18n.lazy("Not shown") if shown else i18n.lazy("Not saved")
    return await _error_page(request, 422, title, error_text(request, exc))


async def conflict(request: Request, exc: Exception) -> Response:
    return await _error_page(
        request,
        409,
        i18n.lazy("Changed meanwhile"),
        i18n.lazy("Someone else changed this record meanwhile; reload and try again."),
    )


async def merged_away(request: Request, exc: Exception) -> Response:
    """A change sent to a client merged into another one: nothing changed, the survivor's
    card says so (a stale form must not edit or delete the client it was merged into)."""
    from crmkit.web.links import party_url
    from crmkit.web.pages import redirect

    assert isinstance(exc, MergedAway)
    await attach_user(request)
    return redirect(
        request,
        party_url(exc.survivor_id),
        "That client was merged into this one; nothing was changed. Make the change here.",
        kind="error",
    )


#: The title and the text of an error page for the HTTP statuses the framework answers
#: itself (an address asked for with a method it does not take, a body too large...), in
#: the reader's language rather than the English reason phrase.
HTTP_ERRORS = {
    400: (i18n.lazy("Bad request"), i18n.lazy("The request could not be understood.")),
    405: (
        i18n.lazy("Request not accepted"),
        i18n.lazy(
            "This address does not take this kind of request; use the page's links and buttons."
        ),
    ),
    413: (i18n.lazy("Too large"), i18n.lazy("What was sent is too large.")),
    429: (
        i18n.lazy("Too many requests"),
        i18n.lazy("Too many requests in a short time; wait a little and try again."),
    ),
}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return await not_found(request, exc)
    title, message = HTTP_ERRORS.get(
        exc.status_code, (i18n.lazy("Error"), i18n.lazy("Something went wrong."))
    )
    try:
        reason = HTTPStatus(exc.status_code).phrase
    except ValueError:
        reason = ""
    if exc.detail and exc.detail != reason:
        message = str(exc.detail)  # a text of its own, not the bare reason phrase
    return await _error_page(request, exc.status_code, title, message)
