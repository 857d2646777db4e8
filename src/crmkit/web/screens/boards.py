"""Pipeline boards (kanban): one column per stage, drag a card to move it.

The server decides: a drag posts the move, the pipeline's guards run, and a refused move
comes back with its reasons (the card snaps back in the browser) and with the fields it
needs, for which the browser opens a small form and tries again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crmkit.clock import utcnow
from crmkit.errors import Conflict, MoveRefused, NotFound, PermissionDenied, ValidationFailed
from crmkit.i18n import translate
from crmkit.model import Activity, Task
from crmkit.services.tasks import OPEN_STATUSES
from crmkit.web import i18n
from crmkit.web.api.params import text_param
from crmkit.web.forms import optional_version, required_id
from crmkit.web.links import record_url
from crmkit.web.pages import error_text, render, work
from crmkit.web.screens.records import move_fields

COLUMN_SIZE = 50
#: Timeline kinds that are a contact with the client: a card's "last contact".
CONTACT_KINDS = ("call", "mail")


def pipeline_or_404(crm: Any, name: str) -> Any:
    """The pipeline of a URL, or a 404."""
    pipeline = crm.pipelines.get(name)
    if pipeline is None:
        raise NotFound("pipeline", name)
    return pipeline


def index(request: Request) -> Response:
    """Every board the user may open."""
    crm = request.app.state.crm
    with work(request) as unit:
        boards = [p for p in crm.pipelines.values() if unit.access.can(p.entity, "read")]
    return render(request, "boards.html", {"title": i18n.lazy("Boards"), "boards": boards})


def board(request: Request) -> Response:
    """One pipeline's board; ``?mine=1`` shows only the user's records, ``q`` searches."""
    crm = request.app.state.crm
    pipeline = pipeline_or_404(crm, request.path_params["pipeline"])
    entity = crm.entities[pipeline.entity]
    params = request.query_params
    search = text_param(params, "q")  # read as the lists and the API read it
    filters: dict[str, Any] = {"pipeline": pipeline.name}
    if params.get("mine") and "owner_id" in entity.owner_attrs:
        filters["owner_id"] = request.state.user.id
    columns = []
    with work(request) as unit:
        service = unit.records(entity.name)
        may_move = unit.access.can(entity.name, "move")
        users = {u.id: u for u in unit.users.list()}
        for stage in pipeline.stages:
            where = {**filters, "stage": stage.name}
            page = service.list(
                filters=where,
                search=search,
                limit=COLUMN_SIZE,
                internal=True,  # pipeline, stage, owner: whatever the entity offers users
            )
            # a full column: its whole count (the third item, 0 when every card is shown)
            total = (
                service.count(filters=where, search=search, internal=True)
                if page.next_cursor is not None
                else 0
            )
            columns.append((stage, list(page), total))
        # records left in stages a release removed: shown apart, to be dragged out
        page = service.list(
            filters=filters,
            where={"field": "stage", "op": "not_in", "value": pipeline.stage_names()},
            search=search,
            limit=COLUMN_SIZE,
            internal=True,
        )
        stranded = (list(page), page.next_cursor is not None)
        # where each card may be dropped: the moves the user may make (the server decides)
        targets = unit.moves.targets(
            [r for rows in [*(rows for _, rows, _ in columns), stranded[0]] for r in rows],
            entity.name,
        )
        party_ids = [
            getattr(r, entity.party_attr, None)
            for rows in [*(rows for _, rows, _ in columns), stranded[0]]
            for r in rows
            if entity.party_attr and entity.name != "party"
        ]
        parties = unit.parties.find_many(i for i in party_ids if i)
        cards = [r for rows in [*(rows for _, rows, _ in columns), stranded[0]] for r in rows]
        dates = card_dates(unit, entity, cards)
    return render(
        request,
        "board.html",
        {
            "title": pipeline.title,
            "pipeline": pipeline,
            "entity": entity,
            "columns": columns,
            "stranded": stranded,
            "users": users,
            "parties": parties,
            "may_move": may_move,
            "targets": targets,
            "dates": dates,
            "now": utcnow(),
            "record_url": record_url,
            "params": params,
            "rest_url": _rest_url(entity, pipeline, search, filters.get("owner_id")),
        },
    )


def card_dates(unit: Any, entity: Any, records: list[Any]) -> dict[int, tuple[Any, Any]]:
    """Each card's client's next open task's deadline and last contact (``CONTACT_KINDS`` on
    the timeline), by record id: ``(due, contacted)``, either ``None``.

    Read for every card at once, as far as the user may see tasks and the timeline: two
    grouped queries whatever the number of cards (none for an entity without clients)."""
    if entity.name == "party":
        client_of = {r.id: r.id for r in records}
    elif entity.party_attr:
        client_of = {r.id: getattr(r, entity.party_attr, None) for r in records}
    else:
        return {}
    ids = sorted({i for i in client_of.values() if i is not None})
    due: dict[int, Any] = {}
    contacted: dict[int, Any] = {}
    if ids and unit.access.can("task", "read"):
        due = dict(
            unit.session.execute(
                unit.records("task")
                .query()
                .with_only_columns(Task.party_id, func.min(Task.deadline))
                .where(
                    Task.party_id.in_(ids),
                    Task.status.in_(OPEN_STATUSES),
                    Task.deadline.is_not(None),
                )
                .group_by(Task.party_id)
            ).all()
        )
    if ids and unit.access.can("activity", "read"):
        contacted = dict(
            unit.session.execute(
                unit.records("activity")
                .query()
                .with_only_columns(Activity.party_id, func.max(Activity.occurred_at))
                .where(Activity.party_id.in_(ids), Activity.kind.in_(CONTACT_KINDS))
                .group_by(Activity.party_id)
            ).all()
        )
    return {
        record_id: (due.get(client), contacted.get(client))
        for record_id, client in client_of.items()
        if client is not None and (client in due or client in contacted)
    }


def _rest_url(entity: Any, pipeline: Any, search: str | None, owner_id: Any) -> str | None:
    """The list of a column's stage, where the cards beyond the board's first ones are:
    its address without the stage (the template adds it), or ``None`` when the entity's
    list cannot filter by pipeline and stage."""
    if not {"pipeline", "stage"} <= set(entity.filter_attrs):
        return None
    query = {"f.pipeline": pipeline.name}
    if owner_id is not None and "owner_id" in entity.filter_attrs:
        query["f.owner_id"] = str(owner_id)
    if search:
        query["q"] = search
    return f"/lists/{entity.name}?{urlencode(query)}&f.stage="


async def move(request: Request) -> Response:
    """A card was dropped: JSON ``{id, to, version, comment?, field.*?}`` -> moved or refused."""
    crm = request.app.state.crm
    pipeline = pipeline_or_404(crm, request.path_params["pipeline"])
    data = await request.json()
    locale = request.state.locale
    if not isinstance(data, dict):
        return JSONResponse({"moved": False, "reasons": ["bad request"]}, status_code=400)
    try:
        record_id = required_id(data.get("id"), "id")
        version = optional_version(data.get("version"))
    except ValidationFailed as bad:  # "abc", "1.5" or an id no column holds, before any query
        reasons = [error_text(request, bad)]
        return JSONResponse(
            {"moved": False, "reasons": reasons, "missing_fields": []}, status_code=422
        )
    try:
        with work(request) as unit:
            record = unit.records(pipeline.entity).get(record_id)
            if record.pipeline != pipeline.name:
                raise NotFound(pipeline.entity, record_id)
            moved = unit.moves.move(
                record,
                str(data.get("to", "")),
                comment=str(data.get("comment") or "") or None,
                fields=move_fields(data) or None,
                expected_version=version,
            )
            version = moved.record.version
    except MoveRefused as refused:
        entity = crm.entities[pipeline.entity]
        definitions: dict[str, Any] = {}
        if entity.custom_fields and any(f.startswith("custom.") for f in refused.missing_fields):
            with work(request) as unit:
                definitions = dict(unit.custom_fields.definitions(entity.name))
        asked = {
            f: definitions.get(f.removeprefix("custom.")) if f.startswith("custom.") else None
            for f in refused.missing_fields
        }
        with i18n.activate(locale):
            reasons = [translate(r, i18n.gettext) for r in refused.messages]
            labels = {
                f: found.label if found is not None else i18n.gettext(f.removeprefix("custom."))
                for f, found in asked.items()
            }
        fixable = bool(refused.missing_fields) and not refused.missing_documents
        return JSONResponse(
            {
                "moved": False,
                "reasons": reasons,
                "missing_fields": refused.missing_fields,
                "labels": labels,
                # a choice field asked for: its choices (the form offers them in a list)
                "choices": {
                    f: list(found.choices or [])
                    for f, found in asked.items()
                    if found is not None and found.kind == "choice"
                },
                "form": fixable and len(refused.missing_fields) == len(reasons),
            },
            status_code=409,
        )
    except (Conflict, PermissionDenied, ValidationFailed) as failed:
        return JSONResponse(
            {"moved": False, "reasons": [error_text(request, failed)], "missing_fields": []},
            status_code=409,
        )
    except (TypeError, ValueError):
        return JSONResponse({"moved": False, "reasons": ["bad request"]}, status_code=400)
    return JSONResponse({"moved": True, "version": version})
