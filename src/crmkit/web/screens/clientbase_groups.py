"""Groups and imports screens: the group tree with live counts, a group's members and
actions, exports; uploading a file, mapping its columns, preview and progress."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import ValidationFailed
from crmkit.web import i18n
from crmkit.web.api.params import text_param
from crmkit.web.concurrency import long_running
from crmkit.web.forms import optional_id, refuse_nul, required_id
from crmkit.web.pages import error_text, posted, redirect, render, work


def _depth(group: Any) -> int:
    return group.path.count("/") - 2


def groups_page(request: Request) -> Response:
    """Every group, nested, each with the number of members the user may see."""
    error = None
    if request.method == "POST":
        data = posted(request)
        try:
            rules_text = str(data.get("rules", "")).strip()
            rules = json.loads(rules_text) if rules_text else None
        except ValueError:
            rules, error = None, i18n.lazy("The rules are not valid JSON.")
        if error is None:
            try:
                with work(request) as unit:
                    group = unit.groups.create(
                        str(data.get("name", "")),
                        optional_id(data.get("parent_id"), "parent_id"),
                        rules=rules,
                        price_level=str(data.get("price_level", "")).strip() or None,
                    )
                    group_id = group.id
                return redirect(request, f"/groups/{group_id}", "Group created.")
            except ValidationFailed as failed:
                error = error_text(request, failed)
    with work(request) as unit:
        tree = unit.groups.tree()
        counts = unit.groups.counts(tree)
        may_create = unit.access.can("party_group", "create")
    return render(
        request,
        "groups.html",
        {
            "title": i18n.lazy("Groups"),
            "tree": [(g, _depth(g), counts[g.id]) for g in tree],
            "may_create": may_create,
            "error": error,
        },
        status=422 if error else 200,
    )


def group_page(request: Request) -> Response:
    """A group's members (a page at a time), its live count and the group actions."""
    group_id = int(request.path_params["group_id"])
    with work(request) as unit:
        group = unit.groups.get(group_id)
        page = unit.groups.members(group_id, after=request.query_params.get("after"), limit=50)
        count = unit.groups.count(group_id)
        groups = [g for g in unit.groups.tree() if not g.smart and g.id != group_id]
        users = [u for u in unit.users.list() if not u.blocked]
        stages = [
            (p.name, s.name, s.title)
            for p in request.app.state.crm.pipelines_for("party")
            for s in p.stages
        ]
        may_export = unit.access.can("party", "export")
    return render(
        request,
        "group.html",
        {
            "title": group.name,
            "group": group,
            "members": list(page),
            "next": page.next_cursor,
            "count": count,
            "groups": groups,
            "users": users,
            "stages": stages,
            "may_export": may_export,
            "rules": json.dumps(group.rules, ensure_ascii=False, indent=1) if group.rules else "",
        },
    )


def group_action(request: Request) -> Response:
    """Apply an action to every member: copy or move to a group, assign, tag, change stage."""
    group_id = int(request.path_params["group_id"])
    data = posted(request)
    action = str(data.get("action", ""))
    with work(request) as unit:
        groups = unit.groups
        if action == "copy":
            changed = groups.copy_members(group_id, required_id(data.get("to_group"), "to_group"))
        elif action == "move":
            changed = groups.move_members(group_id, required_id(data.get("to_group"), "to_group"))
        elif action == "assign":
            changed = groups.assign_members(group_id, optional_id(data.get("owner_id"), "owner_id"))
        elif action == "tag":
            names = [t.strip() for t in str(data.get("tags", "")).split(",") if t.strip()]
            changed = groups.tag_members(group_id, names)
        elif action == "stage":
            result = groups.move_members_to_stage(group_id, str(data.get("stage", "")))
            changed = len(result.moved)
        elif action == "settings":
            rules_text = str(data.get("rules", "")).strip()
            try:
                rules = json.loads(rules_text) if rules_text else None
            except ValueError:
                raise ValidationFailed({"rules": ["not valid JSON"]}) from None
            groups.update(
                group_id,
                name=str(data.get("name", "")) or None,
                rules=rules,
                price_level=str(data.get("price_level", "")),
            )
            changed = 0
        else:
            raise ValidationFailed({"action": [f"unknown action {action!r}"]})
    return redirect(request, f"/groups/{group_id}", "Done.", changed=changed)


@long_running
def group_export(request: Request) -> Response:
    """The group's members as CSV or XLSX (what the user may see)."""
    from crmkit.services.imports import export_parties

    group_id = int(request.path_params["group_id"])
    fmt = request.path_params["fmt"]
    with work(request) as unit:
        data = export_parties(unit, fmt, where=unit.groups.condition(group_id))
    return _download(data, f"group-{group_id}.{fmt}", fmt)


@long_running
def list_export(request: Request) -> Response:
    """All clients the user may see (optionally matching ``q``) as CSV or XLSX."""
    from crmkit.services.imports import export_parties

    fmt = request.path_params["fmt"]
    with work(request) as unit:
        data = export_parties(unit, fmt, search=text_param(request.query_params, "q"))
    return _download(data, f"clients.{fmt}", fmt)


def _download(data: bytes, filename: str, fmt: str) -> Response:
    media = (
        "text/csv; charset=utf-8"
        if fmt == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# -- import ---------------------------------------------------------------------------------


async def import_page(request: Request) -> Response:
    """Upload a CSV or XLSX file of clients."""
    error = None
    if request.method == "POST":
        form = await request.form()
        upload = form.get("file")
        content = b""
        if upload is not None and not isinstance(upload, str):
            content = await upload.read()
        await form.close()
        try:
            refuse_nul(form)
            if upload is None or isinstance(upload, str) or not upload.filename:
                raise ValidationFailed({"file": ["choose a file"]})
            with work(request) as unit:
                run = unit.imports.start(
                    upload.filename,
                    content,
                    source=str(form.get("source", "")).strip(),
                    on_duplicate=str(form.get("on_duplicate", "skip")),
                    dry_run=bool(form.get("dry_run")),
                )
                run_id = run.id
            return redirect(request, f"/import/{run_id}")
        except ValidationFailed as failed:
            error = error_text(request, failed)
    with work(request) as unit:
        unit.access.require("party", "create")
    return render(
        request,
        "import.html",
        {"title": i18n.lazy("Import clients"), "error": error},
        status=422 if error else 200,
    )


def _fields(unit: Any) -> list[tuple[str, str]]:
    from crmkit.services.imports import FIELDS

    custom = [(f"custom.{k}", d.label) for k, d in unit.custom_fields.definitions("party").items()]
    return [("", "—"), *((f, f) for f in FIELDS), *custom]


def import_run_page(request: Request) -> Response:
    """Map columns, preview, choose per duplicate row, start; then the progress."""
    from crmkit.services.imports import reason_text
    from crmkit.web.screens.clientbase import STATUSES

    run_id = int(request.path_params["run_id"])
    error = None
    if request.method == "POST":
        data = posted(request)
        mapping = {
            key[len("map.") :]: str(value) for key, value in data.items() if key.startswith("map.")
        }
        try:
            choices = {
                optional_id(key[len("choice.") :], key) or 0: str(value)
                for key, value in data.items()
                if key.startswith("choice.") and key[len("choice.") :].strip()
            }
            with work(request) as unit:
                unit.imports.configure(
                    run_id,
                    mapping=mapping or None,
                    on_duplicate=str(data.get("on_duplicate") or "") or None,
                    dry_run=bool(data.get("dry_run")),
                    choices=choices,
                )
                if data.get("start"):
                    unit.imports.queue(run_id)
            return redirect(request, f"/import/{run_id}")
        except ValidationFailed as failed:
            error = error_text(request, failed)
    with work(request) as unit:
        run = unit.imports.get(run_id)
        preview = unit.imports.preview(run_id) if run.status in ("new", "dry_run") else []
        duplicates = unit.parties.find_many(p["duplicate_of"] for p in preview)
        fields = _fields(unit)
    return render(
        request,
        "import_run.html",
        {
            "title": i18n.lazy("Import clients"),
            "run": run,
            "preview": preview,
            "duplicates": duplicates,
            "reason": lambda line: reason_text(line, i18n.gettext),
            "fields": fields,
            "statuses": STATUSES,
            "error": error,
        },
        status=422 if error else 200,
    )


def import_progress(request: Request) -> Response:
    """The progress bar alone (htmx polls it while the import runs)."""
    from crmkit.web.screens.clientbase import STATUSES

    with work(request) as unit:
        run = unit.imports.get(int(request.path_params["run_id"]))
    return render(request, "import_progress.html", {"run": run, "statuses": STATUSES})


def import_errors(request: Request) -> Response:
    """The error report (row; column; reason) as CSV."""
    run_id = int(request.path_params["run_id"])
    with work(request) as unit, i18n.activate(request.state.locale):
        data = unit.imports.error_report(run_id, i18n.gettext)
    return _download(data, f"import-{run_id}-errors.csv", "csv")
