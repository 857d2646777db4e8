"""The notifications page behind the bell."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from crmkit.web import i18n
from crmkit.web.forms import optional_id
from crmkit.web.links import notification_text, notification_url
from crmkit.web.pages import posted, redirect, render, work


def page(request: Request) -> Response:
    """The user's newest notifications (opening the page does not mark them read)."""
    with work(request) as unit:
        items = unit.notifications.latest(limit=100)
        clients = unit.parties.find_many(n.party_id for n in items if n.party_id)
    return render(
        request,
        "notifications.html",
        {
            "title": i18n.lazy("Notifications"),
            "items": items,
            "url": lambda notification: notification_url(notification, clients),
            "text_of": notification_text,
        },
    )


def mark_read(request: Request) -> Response:
    """Mark one (``id``) or all notifications read; with ``go`` continue to its record."""
    data = posted(request)
    ident = optional_id(data.get("id"), "id")  # none: all of them
    with work(request) as unit:
        unit.notifications.mark_read([ident] if ident else None)
    target = str(data.get("go") or "/notifications")
    if not target.startswith("/") or target.startswith("//"):
        target = "/notifications"
    return redirect(request, target)
