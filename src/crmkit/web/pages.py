"""What a screen needs: the signed-in user, a unit of work as them, rendering, redirects.

A screen (core or plugin) is a plain function ``def endpoint(request)``; its guard reads a
posted form (``posted(request)`` gives it) and runs the screen where it holds up no one
(:mod:`crmkit.web.concurrency`: a read on the loop, its database waits given back to it).
An ``async def`` screen runs on the loop; it is for what must be awaited (a streamed
upload, server-sent events)::

    from crmkit.web.pages import render, work

    def cashbox(request):
        with work(request) as w:                      # acting as the signed-in user
            orders = w.records("finance_order").list(limit=20)
        return render(request, "finance/cashbox.html", {"orders": orders})

``render`` adds the layout's context (the user, their menu, the CSRF token, the unread
count, the locale ``l`` for formats and ``_`` for translations).  Records outside the user's
scope raise :class:`~crmkit.errors.NotFound` in the services, which becomes a 404 page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from crmkit.i18n import Label, Message, message, translate
from crmkit.web import i18n
from crmkit.web.security import LANGUAGE_COOKIE, SESSION_COOKIE

FLASH_COOKIE = "crmkit_flash"


class NotFoundPage(Exception):
    """Answer 404 (a missing page, or one the user may not open)."""


async def attach_user(request: Request) -> None:
    """Resume the session of the request's cookie and set ``request.state`` for screens.

    Sets ``user`` (a detached ``User`` or ``None``), ``actor``, ``csrf_token``, ``session_id``,
    ``session_extended`` (the session's expiry moved on: its cookie is set again) and
    ``locale``.  Runs once per request.
    """
    state = request.state
    if getattr(state, "attached", False):
        return
    crm = request.app.state.crm
    token = request.app.state.signer.unsign(request.cookies.get(SESSION_COOKIE))
    resumed = None
    if token:
        # a read: its database waits give the loop back (crmkit.web.concurrency)
        resumed = await request.app.state.blocking.read(_resume, crm, token)
    state.crm = crm
    state.session_token = token if resumed else None
    state.user = resumed.user if resumed else None
    state.actor = resumed.actor if resumed else None
    state.csrf_token = resumed.csrf_token if resumed else ""
    state.session_id = resumed.session_id if resumed else None
    state.session_extended = bool(resumed and resumed.extended)
    state.locale = locale_for(request, state.user)
    state.attached = True


def _resume(crm: Any, token: str) -> Any:
    with crm.system() as unit:
        return unit.signin.resume(token)


def locale_for(request: Request, user: Any) -> i18n.Locale:
    """The user's language and zone; before sign-in the language cookie or the default."""
    config = request.app.state.crm.config
    catalogs = request.app.state.catalogs
    language = (user.locale if user else None) or request.cookies.get(LANGUAGE_COOKIE)
    if language not in i18n.LANGUAGES:
        language = config["locale.default"]
    if language not in i18n.LANGUAGES:
        language = "ru"
    timezone = (user.timezone if user else None) or config["locale.timezone"]
    return i18n.Locale(language, timezone, config["locale.currency"], catalogs[language])


def work(request: Request) -> Any:
    """A unit of work acting as the signed-in user (use it as a context manager)."""
    return request.app.state.crm.acting_as(request.state.actor)


def actor_can(request: Request, entity: str, action: str) -> bool:
    """Whether the signed-in user holds ``action`` on ``entity`` in the permission table."""
    from crmkit.access.policy import scope_in
    from crmkit.access.rules import Scope

    actor = request.state.actor
    if actor is None:
        return False
    if actor.system:
        return True
    if actor.scopes is None:
        with work(request) as unit:
            return bool(unit.access.can(entity, action))
    return scope_in(actor.scopes, entity, action) is not Scope.NONE


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request (it then expects a fragment)."""
    return request.headers.get("hx-request") == "true"


def menu_for(request: Request) -> list[dict[str, Any]]:
    """The signed-in user's menu: items of ``crmkit_register_menu_items`` for their roles.

    An item pointing at a screen is shown only if the user may open the screen, and one
    pointing at the list of an entity (``/lists/deal``) only if they may read the entity.
    """
    crm = request.app.state.crm
    roles = request.state.actor.roles if request.state.actor else frozenset()
    current = request.url.path
    items = []
    listed = {
        item.target[len("/lists/") :].split("?", 1)[0].split("/", 1)[0]
        for item in crm.menu_items
        if item.target.startswith("/lists/")
    }
    with work(request) as unit:  # no query: the actor carries its permission table
        unreadable = {e for e in listed if e in crm.entities and not unit.access.can(e, "read")}
    for item in crm.menu_items:
        if item.roles and not (set(item.roles) & roles):
            continue
        needed = item.required_permission()
        if needed is not None and not actor_can(request, *needed):
            continue
        screen = crm.screens.get(item.target)
        if screen is not None:
            if screen.roles and not (set(screen.roles) & roles):
                continue
            if screen.permission is not None and not actor_can(request, *screen.permission):
                continue
            path = screen_path(screen.path)
        else:
            path = item.target
            listed_entity = path[len("/lists/") :].split("?", 1)[0].split("/", 1)[0]
            if path.startswith("/lists/") and listed_entity in unreadable:
                continue
        active = current == path or (path != "/" and current.startswith(path.rstrip("/") + "/"))
        items.append(
            {
                "label": i18n.gettext(item.label),
                "path": path,
                "icon": item.icon,
                "section": item.section,
                "active": active,
            }
        )
    return items


def screen_path(path: str) -> str:
    """A screen's path with its parameters dropped (``/boards/{pipeline}`` is not linkable)."""
    return path.split("{", 1)[0].rstrip("/") or "/"


def flash_messages(request: Request) -> list[dict[str, str]]:
    """Messages left for this page by the previous request (after a redirect)."""
    raw = request.app.state.signer.unsign(request.cookies.get(FLASH_COOKIE))
    if not raw:
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    return [i for i in items if isinstance(i, dict)]


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a template with the layout's context; returns the HTML response."""
    state = request.state
    locale: i18n.Locale = state.locale
    values: dict[str, Any] = {
        "request": request,
        "crm": request.app.state.crm,
        "user": state.user,
        "actor": state.actor,
        "csrf_token": state.csrf_token,
        "l": locale,
        "htmx": is_htmx(request),
        "languages": i18n.LANGUAGES,
    }
    flashes = flash_messages(request)
    values["flashes"] = flashes
    values.update(context or {})
    with i18n.activate(locale):
        if state.user is not None and not is_htmx(request):
            values["menu"] = menu_for(request)
            with work(request) as unit:
                values["unread"] = unit.notifications.unread_count()
        html = request.app.state.templates.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
    if flashes:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect(
    request: Request,
    path: str,
    message: str | None = None,
    kind: str = "ok",
    *,
    link: tuple[str, str] | None = None,
    **query: Any,
) -> Response:
    """Redirect (303) to ``path``; ``message`` is shown on the next page, followed by
    ``link`` (a path of this site and its text, both as given) when one is given.

    For htmx requests the redirect is an ``HX-Redirect`` header, so the whole page changes.
    """
    target = path + (
        "?" + urlencode({k: v for k, v in query.items() if v is not None}) if query else ""
    )
    if is_htmx(request):
        response: Response = Response(status_code=200, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    if message:
        with i18n.activate(request.state.locale):
            text = i18n.gettext(message)
        flash = {"text": text, "kind": kind}
        if link is not None:
            flash.update(link=link[0], link_text=link[1])
        request.app.state.signer.set(response, FLASH_COOKIE, json.dumps([flash]), max_age=60)
    return response


def toast(request: Request, message: str, kind: str = "ok", status: int = 200) -> Response:
    """An empty htmx answer that shows ``message`` as a toast (``crmkit:toast`` event)."""
    with i18n.activate(request.state.locale):
        text = i18n.gettext(message)
    trigger = json.dumps({"crmkit:toast": {"text": text, "kind": kind}})
    return Response(status_code=status, headers={"HX-Trigger": trigger, "HX-Reswap": "none"})


#: Fields the core's refusals name that are no column (columns are collected from the
#: registries): :func:`error_text` shows a field's name through ``gettext``, so these are
#: listed for the catalogs to collect, and a Russian reader reads "Чем закончился" where
#: the API says ``outcome``.  ``order`` is left out: a list's sort order and a plugin's
#: order (finance) share the name, and one message cannot say both; ``limit`` too (the
#: API's page size, never refused on a page; the finance reports' "number of orders"),
#: and ``expires_at`` (a token's end; the finance's cashback that "burns"), as the core's
#: catalog, read first, would say its meaning for the plugin's too.
REFUSAL_FIELDS = (
    i18n.lazy("actions"),
    i18n.lazy("after"),
    i18n.lazy("attendees"),
    i18n.lazy("by_owner"),
    i18n.lazy("cc"),
    i18n.lazy("condition"),
    i18n.lazy("contact_points"),
    i18n.lazy("end"),
    i18n.lazy("expected"),
    i18n.lazy("filed_on"),
    i18n.lazy("files"),
    i18n.lazy("filter"),
    i18n.lazy("format"),
    i18n.lazy("job"),
    i18n.lazy("mapping"),
    i18n.lazy("merged"),
    i18n.lazy("on_duplicate"),
    i18n.lazy("outcome"),
    i18n.lazy("party_ids"),
    i18n.lazy("q"),
    i18n.lazy("recipients"),
    i18n.lazy("search"),
    i18n.lazy("since"),
    i18n.lazy("template"),
    i18n.lazy("to"),
    i18n.lazy("to_group_id"),
    i18n.lazy("trigger"),
    i18n.lazy("until"),
    i18n.lazy("user"),
    i18n.lazy("view"),
    i18n.lazy("who"),
)


def error_text(
    request: Request, error: Exception, zone: Any = None, labels: Mapping[str, str] | None = None
) -> str:
    """A crmkit error's message in the user's language, field by field for validation errors.

    A message naming a moment (:class:`crmkit.i18n.Moment`) shows it in ``zone``, by
    default the user's.  A field is named by its label in ``labels`` (the form's own, as
    the form shows it: ``{"expiry_days": "Expires after, days"}``), else by the label the
    refusal carries for it (``ValidationFailed.labels``: ``order`` a list's "sort order"),
    else by the label its entity gives it (``EntityType.field_labels``: a finance order's
    ``number`` is its ``order number``), else by its name, all translated.  Marshmallow's
    own refusals (``Length must be between 1 and 20.``) are translated too, their numbers kept
    (:func:`crmkit.web.i18n.validation_message`).
    """
    from crmkit.errors import PermissionDenied, ValidationFailed

    locale = request.state.locale
    zone = zone or locale.zone
    with i18n.activate(locale):
        if isinstance(error, ValidationFailed):
            # a field the refused record's entity names its own way (an order's number)
            entity = (
                request.app.state.crm.entities.by_name.get(error.entity) if error.entity else None
            )
            parts = []
            for field, messages in error.errors.items():
                items = messages if isinstance(messages, list) else [messages]
                text = "; ".join(_flatten(m, zone) for m in items)
                carried = getattr(error, "labels", None) or {}
                named = (
                    (labels or {}).get(field)
                    or carried.get(field)
                    or (entity.field_label(field) if entity else field)
                )
                label = "" if field == "_schema" else translate(named, i18n.gettext, zone)
                label = label and label + ": "
                parts.append(label + text)
            return "; ".join(parts)
        if isinstance(error, PermissionDenied) and error.detail is None:
            # the plain refusal names the action and the entity by their codes: the reader
            # sees the action's and the entity's labels in their language
            entity = request.app.state.crm.entities.by_name.get(error.entity)
            refusal = message(
                "not allowed to {action}: {entity}",
                action=Label(error.action),
                entity=Label((entity.label if entity else "") or error.entity),
            )
            return refusal.translate(i18n.gettext, zone)
        raised = error.args[0] if len(error.args) == 1 else None
        return translate(raised if isinstance(raised, Message) else str(error), i18n.gettext, zone)


def _flatten(messages: Any, zone: Any) -> str:
    if isinstance(messages, Mapping):
        return "; ".join(f"{k}: {_flatten(v, zone)}" for k, v in messages.items())
    if isinstance(messages, list):
        return " ".join(_flatten(m, zone) for m in messages)
    # numbers (a limit), sums of money and days in the reader's way: 9 999 999, 1 300,50 ₽,
    # 1 дек. 2026 г.
    locale = i18n.current()
    return translate(
        messages if isinstance(messages, Message) else i18n.validation_message(str(messages)),
        i18n.gettext,
        zone,
        money=locale.money if locale else None,
        number=locale.number if locale else None,
        date=locale.date if locale else None,
    )


def posted(request: Request) -> dict[str, Any]:
    """The submitted form of a plain-function screen, as :func:`form_data` gives it.

    The screen's guard reads the body before the screen runs (in the thread pool, where
    nothing can be awaited); a GET has an empty form.
    """
    try:
        return request.state.form  # type: ignore[no-any-return]
    except AttributeError:
        raise RuntimeError(
            "posted() is for plain-function screens; an async screen awaits form_data(request)"
        ) from None


async def form_data(request: Request) -> dict[str, Any]:
    """The submitted form as a dict (repeated fields become lists), without the CSRF token.

    A text or an uploaded file's name holding a NUL character is refused naming its field
    (422, :func:`crmkit.web.forms.refuse_nul`), as the API refuses it: PostgreSQL cannot
    store one, and a form screen must not fail with a 500 instead.
    """
    from crmkit.web.forms import refuse_nul

    form = await request.form()
    try:
        refuse_nul(form)
    except Exception:
        await form.close()  # the files a refused multipart form spooled
        raise
    data: dict[str, Any] = {}
    for key in form:
        if key == "csrf_token":
            continue
        values = form.getlist(key)
        data[key] = values if len(values) > 1 or key.endswith("[]") else values[0]
    return {k.removesuffix("[]"): v for k, v in data.items()}
