"""The start of a user's day: the role's start screen and the workspace of agents and managers."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crmkit.clock import utcnow
from crmkit.web import i18n
from crmkit.web.pages import actor_can, render, screen_path, work


def start(request: Request) -> Response:
    """``/``: go to the start screen of the user's role (``Role.start_screen``).

    A user holding several roles lands where the first role (in registration order) that
    names a start screen they may open sends them; without one, on the workspace.
    """
    crm = request.app.state.crm
    roles = request.state.actor.roles
    with work(request) as unit:
        stored = {r.name: r.start_screen for r in unit.permissions.roles()}
    for name in [*crm.roles, *sorted(stored)]:
        if name not in roles:
            continue
        target = stored.get(name) or (crm.roles[name].start_screen if name in crm.roles else None)
        if not target:
            continue
        screen = crm.screens.get(target)
        if screen is None:
            if target.startswith("/") and target != "/":
                return RedirectResponse(target, status_code=303)
            continue
        if screen.roles and not (set(screen.roles) & roles):
            continue
        if screen.permission is not None and not actor_can(request, *screen.permission):
            continue
        path = screen_path(screen.path)
        if path != "/":
            return RedirectResponse(path, status_code=303)
    return RedirectResponse("/home", status_code=303)


def workspace(request: Request) -> Response:
    """Today's work: overdue and upcoming tasks, reminders, recent clients, team's tasks."""
    user_id = request.state.user.id
    now = utcnow()
    # "today and tomorrow" from the user's midnight, not UTC's
    locale = request.state.locale
    today = locale.local(now).date()
    day_start = dt.datetime.combine(today, dt.time(), tzinfo=locale.zone)
    day_end = dt.datetime.combine(today + dt.timedelta(days=2), dt.time(), tzinfo=locale.zone)
    with work(request) as unit:
        mine = unit.tasks.mine(limit=50)
        reminders = unit.reminders.for_user(user_id)[:20]
        recent = unit.parties.list(filters={"owner_id": user_id}, limit=10)
        team = unit.tasks.team(limit=50) if len(request.state.actor.teammate_ids) > 1 else []
        events = unit.calendar.between(day_start, day_end, owner_id=user_id)
        parties = unit.parties.find_many(
            [t.party_id for t in [*mine, *team] if t.party_id]
            + [r.party_id for r in reminders if r.party_id]
            + [e.party_id for e in events if e.party_id]
        )
        users = {u.id: u for u in unit.users.list()}
    return render(
        request,
        "home.html",
        {
            "title": i18n.lazy("Workspace"),
            "overdue": [t for t in mine if t.deadline and t.deadline < now],
            "upcoming": [t for t in mine if not (t.deadline and t.deadline < now)],
            "reminders": reminders,
            "recent": list(recent),
            "team": [t for t in team if t.assignee_id != user_id],
            "events": events,
            "parties": parties,
            "users": users,
            "now": now,
        },
    )
