"""Tasks: my tasks and my team's, as a list or a kanban by status; overdue ones stand out."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit.schemas import MOST_PRIORITY, TASK_STATUSES
from crmkit.web import i18n
from crmkit.web.forms import local_time, optional_id, optional_int
from crmkit.web.pages import error_text, form_data, is_htmx, posted, redirect, render, work

#: Columns of the task board.
BOARD_STATUSES = ("open", "in_progress", "waiting", "done")
#: Whose tasks the page shows (``?who=``).
WHO = ("mine", "team")
#: How the page shows them (``?view=``).
VIEWS = ("list", "board")
#: How a refusal names ``who`` here (``who`` alone is the calendar's in the catalogs), and
#: ``view`` (the bare word is a section of the site in the catalogs).
LABELS = {"who": i18n.lazy("Whose tasks"), "view": i18n.lazy("Task view")}


def tasks_page(request: Request) -> Response:
    """``?who=mine|team``, ``?view=list|board``."""
    params = request.query_params
    who = params.get("who") or "mine"
    view = params.get("view") or "list"
    now = dt.datetime.now(dt.UTC)
    refusal = None
    errors = {}
    if who not in WHO:
        # the page with the refusal and its tabs, not someone's tasks as if asked for
        errors["who"] = [message("one of {choices}", choices=", ".join(WHO))]
    if view not in VIEWS:
        # nor the list as if it had been asked for; the tabs link to the list
        errors["view"] = [message("one of {choices}", choices=", ".join(VIEWS))]
        view = "list"
    if errors:
        refusal = error_text(request, ValidationFailed(errors), labels=LABELS)
    with work(request) as unit:
        if refusal:
            rows = []
        elif who == "team":
            rows = unit.tasks.team(limit=300)
        else:
            rows = unit.tasks.mine(include_done=view == "board", limit=300)
        users = unit.users.list()
        parties = unit.parties.find_many(t.party_id for t in rows if t.party_id)
    columns = [(status, [t for t in rows if t.status == status]) for status in BOARD_STATUSES]
    return render(
        request,
        "tasks.html",
        {
            "title": i18n.lazy("Tasks"),
            "who": who,
            "view": view,
            "rows": rows,
            "columns": columns,
            "users": {u.id: u for u in users},
            "colleagues": [u for u in users if not u.blocked],
            "parties": parties,
            "now": now,
            "statuses": TASK_STATUSES,
            "refusal": refusal,
        },
        status=422 if refusal else 200,
    )


def create(request: Request) -> Response:
    """A new task (for the user unless assigned to a colleague)."""
    data = posted(request)
    with work(request) as unit:
        unit.tasks.create(
            title=str(data.get("title", "")),
            assignee_id=optional_id(data.get("assignee_id"), "assignee_id")
            or request.state.user.id,
            deadline=local_time(data.get("deadline"), request.state.locale, "deadline"),
            priority=optional_int(data.get("priority"), "priority", low=0, high=MOST_PRIORITY) or 0,
        )
    return redirect(request, "/tasks", "Task added.")


async def set_status(request: Request) -> Response:
    """Change a task's status (the ✓ button, or a drag on the task board)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        data = await request.json()
    else:
        data = await form_data(request)
    task_id = int(request.path_params["task_id"])
    status = str(data.get("status", ""))
    wants_json = request.headers.get("accept", "").startswith("application/json")
    try:
        with work(request) as unit:
            unit.tasks.update(task_id, {"status": status})
    except Exception as failed:
        from crmkit.errors import CrmkitError

        if wants_json and isinstance(failed, CrmkitError):
            return JSONResponse({"ok": False, "reason": error_text(request, failed)}, 409)
        raise
    if wants_json:
        return JSONResponse({"ok": True})
    back = str(data.get("next") or "/tasks")
    if not back.startswith("/") or back.startswith("//"):
        back = "/tasks"
    if is_htmx(request):
        return redirect(request, back)
    return redirect(request, back, "Saved.")


def reminder_done(request: Request) -> Response:
    """The user has dealt with a reminder."""
    with work(request) as unit:
        unit.reminders.done(int(request.path_params["reminder_id"]))
    return redirect(request, "/home", "Done.")
