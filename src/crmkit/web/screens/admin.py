"""Administration: users (roles, blocking, passwords), the permission table, teams, custom
fields, pipelines with their stage graph, and the audit log."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.access.rules import ACTIONS, Scope
from crmkit.clock import utcnow
from crmkit.errors import NotFound
from crmkit.web import i18n
from crmkit.web.forms import as_list, id_list, optional_id, required_id
from crmkit.web.pages import actor_can, posted, redirect, render, work
from crmkit.web.screens.lists import Cell, audit_references
from crmkit.web.stage_graph import stage_graph

#: What the audit log says of its actions, in the reader's language; another action (a
#: plugin's) is shown through ``gettext`` with its underscores as spaces.
AUDIT_ACTIONS = {
    "create": i18n.lazy("created"),
    "update": i18n.lazy("changed"),
    "delete": i18n.lazy("deleted"),
    "restore": i18n.lazy("restored"),
    "move": i18n.lazy("moved"),
    "sign_in": i18n.lazy("signed in"),
    "sign_out_everywhere": i18n.lazy("signed out everywhere"),
    "password": i18n.lazy("password changed"),
    "merged_into": i18n.lazy("merged into another"),
    "file_on": i18n.lazy("conversation filed on a record"),
}
#: Bookkeeping columns the log keeps but a reader does not need to see changed.
AUDIT_NOISE = frozenset(
    {"id", "version", "created_at", "updated_at", "created_by_id", "last_activity_at", "custom"}
)


def _readable(value: Any) -> Any:
    """A logged value as shown: a list joined, a yes/no as the word."""
    if isinstance(value, bool):
        return i18n.gettext("yes") if value else i18n.gettext("no")
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return value


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def audit_lines(unit: Any, rows: list[Any], references: dict[str, Any]) -> list[dict[str, Any]]:
    """The audit ``rows`` as a reader reads them (call within the reader's language): who,
    the translated action, the record by its label and title (linked, from
    :func:`~crmkit.web.screens.lists.audit_references`; a deleted one by the title it had),
    and the changed fields by their labels as ``(label, field, old, new)``, ``old`` left
    ``None`` when nothing was there before.  A deletion lists no fields (all would go to
    nothing), a creation only the fields it set; bookkeeping columns (keys, stamps,
    versions) are left out.  A sign-in is its user's: the system writes it."""
    crm = unit.crm
    lines = []
    for row in rows:
        entity = crm.entities.by_name.get(row.entity)
        kind = i18n.gettext(entity.label) if entity is not None and entity.label else row.entity
        record = references.get(row.entity, {}).get("", {}).get(row.record_id)
        changes = row.changes or {}
        if record is None and row.record_id:
            # gone since (or out of the reader's reach): the title the entry itself names
            title = changes.get(entity.title_attr) if entity is not None else None
            if isinstance(title, list) and len(title) == 2:
                title = title[0] if row.action == "delete" else title[1]
            record = Cell(str(title) if isinstance(title, str) and title else f"#{row.record_id}")
        action = AUDIT_ACTIONS.get(row.action)
        shown_action = i18n.gettext(action or row.action.replace("_", " "))
        fields = []
        if row.action != "delete":
            for field, change in changes.items():
                if field in AUDIT_NOISE or field.endswith("_key"):
                    continue
                pair = isinstance(change, list) and len(change) == 2
                old, new = change if pair else (None, change)
                if _empty(old) and _empty(new):
                    continue
                old, new = _readable(old), _readable(new)
                fields.append((i18n.gettext(field), field, None if _empty(old) else old, new))
        who = row.actor_label
        if row.actor_id is None and who == "system":
            who = i18n.gettext("system")
        if row.action == "sign_in" and record is not None:
            who = record.text
        lines.append(
            {
                "row": row,
                "who": who,
                "kind": kind,
                "record": record,
                "action": shown_action,
                "fields": fields,
            }
        )
    return lines


def index(request: Request) -> Response:
    """The administrator's start screen: a tile for each administration screen the user may
    open (each takes its own cell of the permission table) and the latest changes."""
    crm = request.app.state.crm
    tiles = {
        name: actor_can(request, *screen.permission) if screen.permission else True
        for name, screen in crm.screens.items()
        if name.startswith("admin_")
    }
    with work(request) as unit:
        users = unit.users.list()
        audit = unit.audit_log.latest(limit=10) if tiles.get("admin_audit") else []
        with i18n.activate(request.state.locale):
            references = audit_references(unit, audit)
            lines = audit_lines(unit, audit, references)
    return render(
        request,
        "admin/index.html",
        {
            "title": i18n.lazy("Administration"),
            "tiles": tiles,
            "user_count": len(users),
            "blocked": sum(1 for u in users if u.blocked),
            "pipelines": list(crm.pipelines.values()),
            "audit": audit,
            "lines": lines,
            "references": references,
            "users": {u.id: u for u in users},
        },
    )


def users(request: Request) -> Response:
    """Every user; POST creates one."""
    crm = request.app.state.crm
    if request.method == "POST":
        data = posted(request)
        with work(request) as unit:
            created = unit.users.create(
                username=str(data.get("username", "")).strip(),
                display_name=str(data.get("display_name", "")).strip(),
                email=str(data.get("email", "")).strip() or None,
                roles=as_list(data.get("roles")),
                password=str(data.get("password", "")) or None,
            )
        return redirect(request, f"/admin/users/{created.id}", "User created.")
    with work(request) as unit:
        rows = unit.users.list()
    return render(
        request,
        "admin/users.html",
        {
            "title": i18n.lazy("Users"),
            "rows": rows,
            "roles": crm.roles.values(),
            # the roles column says the roles' titles, as the form does, not their codes
            "role_titles": {r.name: r.label or r.name for r in crm.roles.values()},
        },
    )


def user(request: Request) -> Response:
    """One user: profile and roles, block/unblock, new password, sign out everywhere,
    their API tokens (revoked one by one)."""
    crm = request.app.state.crm
    user_id = int(request.path_params["user_id"])
    if request.method == "POST":
        data = posted(request)
        action = data.get("action")
        with work(request) as unit:
            if action == "block":
                unit.users.block(user_id, reason=str(data.get("reason", "")))
                message = i18n.lazy(
                    "User blocked: their sessions ended and their API tokens stopped working."
                )
            elif action == "unblock":
                unit.users.unblock(user_id)
                message = i18n.lazy("User unblocked.")
            elif action == "password":
                unit.users.set_password(user_id, str(data.get("password", "")))
                message = i18n.lazy(
                    "Password set; their sessions ended and their API tokens were revoked."
                )
            elif action == "sign_out":
                unit.signin.end_everywhere(user_id)
                message = i18n.lazy("Signed out everywhere; their API tokens were revoked.")
            elif action == "revoke_token":
                token_id = required_id(data.get("token_id"), "token_id")
                # only a token of this user: the page's form names no one else's
                unit.api_tokens.revoke(token_id, owner_id=user_id)
                message = i18n.lazy("Token revoked.")
            else:
                unit.users.update(
                    user_id,
                    display_name=str(data.get("display_name", "")).strip(),
                    email=str(data.get("email", "")).strip() or None,
                    roles=as_list(data.get("roles")),
                )
                message = "Saved."
        return redirect(request, f"/admin/users/{user_id}", message)
    with work(request) as unit:
        target = unit.users.get(user_id)
        teams = [t for t in unit.users.teams() if target in unit.users.team_members(t.id)]
        api_tokens = unit.api_tokens.list(user=target.id)
    return render(
        request,
        "admin/user.html",
        {
            "title": target.label,
            "target": target,
            "roles": crm.roles.values(),
            "teams": teams,
            "api_tokens": api_tokens,
            "now": utcnow(),
        },
    )


def permissions(request: Request) -> Response:
    """The role x entity x action table; POST sets one cell."""
    crm = request.app.state.crm
    if request.method == "POST":
        data = posted(request)
        with work(request) as unit:
            unit.permissions.set(
                str(data.get("role")),
                str(data.get("entity")),
                str(data.get("action")),
                str(data.get("scope")),
            )
        return redirect(request, "/admin/permissions", "Saved.", role=data.get("role"))
    with work(request) as unit:
        roles = unit.permissions.roles()
        role = request.query_params.get("role") or (roles[0].name if roles else "")
        table = unit.permissions.effective(role)
    entities = sorted(crm.entities.by_name.values(), key=lambda e: e.name)
    # the generic actions first, then those some entities add (refund, block...), their
    # pipelines' transitions take (a car service's pay) or plugins seed (booking's book)
    added = {a for e in entities for a in crm.actions_of(e.name)} - set(ACTIONS)
    actions = [*ACTIONS, *sorted(added)]
    return render(
        request,
        "admin/permissions.html",
        {
            "title": i18n.lazy("Roles and permissions"),
            "roles": roles,
            "role": role,
            "entities": entities,
            "actions": actions,
            "table": table,
            "scopes": [s.label for s in Scope],
        },
    )


def teams(request: Request) -> Response:
    """Teams and their members; POST creates a team or sets its members."""
    if request.method == "POST":
        data = posted(request)
        members = id_list(data.get("members"), "members")
        team_id = optional_id(data.get("team_id"), "team_id")
        with work(request) as unit:
            if team_id:
                unit.users.set_team_members(team_id, members)
            else:
                unit.users.create_team(str(data.get("name", "")), members)
        return redirect(request, "/admin/teams", "Saved.")
    with work(request) as unit:
        rows = [(t, unit.users.team_members(t.id)) for t in unit.users.teams()]
        people = [u for u in unit.users.list() if not u.blocked]
    return render(
        request, "admin/teams.html", {"title": i18n.lazy("Teams"), "rows": rows, "people": people}
    )


def fields(request: Request) -> Response:
    """Custom fields of every entity that has them; POST defines one."""
    crm = request.app.state.crm
    entities = [e for e in crm.entities if e.custom_fields]
    if request.method == "POST":
        data = posted(request)
        choices = [c.strip() for c in str(data.get("choices", "")).split(",") if c.strip()]
        values: dict[str, Any] = {
            "entity": str(data.get("entity", "")),
            "key": str(data.get("key", "")).strip(),
            "label": str(data.get("label", "")).strip(),
            "kind": str(data.get("kind", "text")),
            "required": bool(data.get("required")),
        }
        if choices:
            values["choices"] = choices
        if data.get("ref_entity"):
            values["ref_entity"] = str(data["ref_entity"])
        with work(request) as unit:
            unit.custom_fields.define(values)
        return redirect(request, "/admin/fields", "Field added.")
    with work(request) as unit:
        defined = [(e, list(unit.custom_fields.definitions(e.name).values())) for e in entities]
    return render(
        request,
        "admin/fields.html",
        {
            "title": i18n.lazy("Custom fields"),
            "defined": defined,
            "kinds": (
                "text",
                "number",
                "money",
                "date",
                "boolean",
                "choice",
                "multi_choice",
                "reference",
            ),
            "all_entities": sorted(crm.entities.by_name),
        },
    )


def pipelines(request: Request) -> Response:
    """Every pipeline: stages, moves with their rules, and the rendered stage graph."""
    crm = request.app.state.crm
    items = [(p, stage_graph(p)) for p in crm.pipelines.values()]
    return render(
        request, "admin/pipelines.html", {"title": i18n.lazy("Pipelines"), "items": items}
    )


def audit(request: Request) -> Response:
    """The audit log, newest first, filtered by entity and user, 100 entries a page."""
    params = request.query_params
    with work(request) as unit:
        rows = unit.audit_log.latest(
            entity=params.get("entity") or None,
            actor_id=optional_id(params.get("actor_id"), "actor_id"),
            before_id=optional_id(params.get("before"), "before"),
            limit=100,
        )
        people = unit.users.list()
        with i18n.activate(request.state.locale):
            references = audit_references(unit, rows)
            lines = audit_lines(unit, rows, references)
    if params.get("entity") and params["entity"] not in request.app.state.crm.entities:
        raise NotFound("entity", params["entity"])
    return render(
        request,
        "admin/audit.html",
        {
            "title": i18n.lazy("Audit log"),
            "rows": rows,
            "lines": lines,
            "references": references,
            "users": {u.id: u for u in people},
            "people": people,
            "params": params,
            "entities": sorted(request.app.state.crm.entities.by_name),
            "next_before": rows[-1].id if len(rows) == 100 else None,
        },
    )
