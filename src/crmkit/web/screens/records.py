"""The page of any record, and stage moves with the small form a move may ask for."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.automation.engine import ASSISTANT_COMMENT
from crmkit.errors import MoveRefused, NotFound
from crmkit.i18n import Label, message, translate
from crmkit.pipeline.engine import field_value
from crmkit.web import i18n
from crmkit.web.forms import optional_version
from crmkit.web.links import party_url, record_url
from crmkit.web.pages import (
    NotFoundPage,
    error_text,
    is_htmx,
    posted,
    redirect,
    render,
    toast,
    work,
)
from crmkit.web.screens.card import card_panels
from crmkit.web.screens.lists import (
    PARTY_COLUMNS,
    USER_COLUMNS,
    entity_or_404,
    format_value,
    reference_cells,
    reference_key,
    shown_columns,
    user_columns,
)


def record_page(request: Request) -> Response:
    """Fields, stage and next moves, history and the timeline entries of one record."""
    crm = request.app.state.crm
    entity = entity_or_404(crm, request.path_params["entity"])
    if entity.name == "party":
        return redirect(request, party_url(int(request.path_params["record_id"])))
    locale = request.state.locale
    with work(request) as unit:
        service = unit.records(entity.name)
        record = service.get(int(request.path_params["record_id"]))
        users = {u.id: u for u in unit.users.list()}
        panels = card_panels(request, unit, record, entity.name)
        pipelined = bool(getattr(record, "pipeline", None))
        hidden = {"id", *entity.page_hidden_attrs}  # a panel shows these its own way
        hidden.update(a for panel, _ in panels for a in panel.shows_attrs)
        if pipelined:  # the stage line above says both
            hidden.update(("pipeline", "stage"))
        columns = [c for c in shown_columns(entity) if c not in hidden]
        party_ids = [getattr(record, c) for c in columns if c in PARTY_COLUMNS]
        # linked clients the reader may open (a link each); one they may not is left out:
        # reading a record shows no more of its client than reading the client would
        parties = unit.parties.find_many(i for i in party_ids if i)
        columns = [c for c in columns if c not in PARTY_COLUMNS or getattr(record, c) in parties]
        # other linked records by title, linked; one the reader may not read is left out
        # too, as a hidden client is (its title, even its number, stays unsaid)
        with i18n.activate(locale):
            references = reference_cells(unit, entity, columns, [record])
        columns = [
            c
            for c in columns
            if c not in references or reference_key(entity, c, record) in references[c]
        ]
        user_attrs = user_columns(crm, entity, columns)
        stage_titles = {
            (p.name, s.name): s.title for p in crm.pipelines_for(entity.name) for s in p.stages
        }
        # the pipeline by its title too (the key the list's cells look it up by)
        stage_titles.update({(p.name, ""): p.title for p in crm.pipelines_for(entity.name)})
        with i18n.activate(locale):
            fields = [
                (
                    entity.field_label(c),
                    format_value(
                        locale,
                        entity,
                        c,
                        record,
                        users,
                        parties,
                        {},
                        stage_titles,
                        references,
                        user_attrs,
                    ),
                )
                for c in columns
                if getattr(record, c, None) not in (None, "")
            ]
        options = unit.moves.options(record, entity=entity.name) if pipelined else []
        with i18n.activate(locale):
            moves = unit.moves.history(record, entity=entity.name) if pipelined else []
            history = stage_history(crm, moves) if pipelined else []
        party_id = service.party_id_of(record)
        if party_id and party_id not in parties and not unit.parties.find_many([party_id]):
            party_id = None  # no button to a client card the reader may not open
        entries = (
            list(unit.timeline.list(party_id, record=(entity.name, record.id), limit=50))
            if party_id and unit.access.can("activity", "read")
            else []
        )
        definitions = unit.custom_fields.definitions(entity.name) if entity.custom_fields else {}
        tags = service.tags_of(record)
    return render(
        request,
        "record.html",
        {
            "entity": entity,
            "record": record,
            "title": entity.title_of(record),
            "fields": fields,
            "custom": [
                (d.label, (record.custom or {}).get(k))
                for k, d in definitions.items()
                if (record.custom or {}).get(k) is not None
            ],
            "tags": tags,
            "options": options,
            "history": history,
            "pipeline": crm.pipelines.get(record.pipeline) if pipelined else None,
            "timeline": entries,
            "users": users,
            "party_id": party_id,
            "panels": panels,
        },
    )


def stage_history(crm: Any, moves: list[Any]) -> list[dict[str, Any]]:
    """The stage moves of a record as the page shows them: stage titles (translated in
    their pipeline's context, in the active language) instead of codes; a move the
    automation assistant made is signed by it, its stored comment ``assistant: <rule>``
    showing the rule alone."""
    rows = []
    for move in moves:
        pipeline = crm.pipelines.get(move.pipeline)

        def title(stage: str | None, pipeline: Any = pipeline) -> str | None:
            if not stage:
                return None
            if pipeline is None or not pipeline.has_stage(stage):
                return stage
            # translated here, in the pipeline's context (the template's ``_`` keeps it)
            return i18n.pgettext(pipeline.stage_context, pipeline.stage_title(stage))

        comment = move.comment or ""
        by_assistant = move.actor_id is None and comment.startswith(ASSISTANT_COMMENT)
        rows.append(
            {
                "at": move.at,
                "source": title(move.from_stage),
                "target": title(move.to_stage),
                "actor_id": move.actor_id,
                "by_assistant": by_assistant,
                "comment": comment[len(ASSISTANT_COMMENT) :] if by_assistant else comment,
            }
        )
    return rows


def move_fields(data: dict[str, Any]) -> dict[str, Any]:
    """``field.amount`` and ``field.custom.inn`` inputs -> the ``fields`` of a move."""
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if not key.startswith("field.") or value in ("", None):
            continue
        name = key[len("field.") :]
        if name.startswith("custom."):
            fields.setdefault("custom", {})[name[len("custom.") :]] = value
        else:
            fields[name] = (
                str(value).replace(" ", "").replace(",", ".") if name == "amount" else value
            )
    return fields


def move(request: Request) -> Response:
    """Move a record to a stage; a refusal that can be fixed shows the small form."""
    crm = request.app.state.crm
    entity = entity_or_404(crm, request.path_params["entity"])
    record_id = int(request.path_params["record_id"])
    back = record_url(entity.name, record_id)
    if request.method == "GET":
        with work(request) as unit:
            record = unit.records(entity.name).get(record_id)
        target = request.query_params.get("to", "")
        pipeline = crm.pipelines.get(record.pipeline) if record.pipeline else None
        if pipeline is None:
            raise NotFoundPage()
        if not pipeline.has_stage(target):
            # no form to move the record nowhere (refused only once sent): a 404 naming it
            return _no_such_stage(request, pipeline, target)
        # a move that needs a reason or fields shows their inputs at once, not after a refusal
        transition = pipeline.transition(record.stage, target) if pipeline else None
        asks = move_asks(pipeline.stage(target), transition, record)
        return _form(request, entity, record, target, reasons=[], missing=asks, values={})
    data = posted(request)
    target = str(data.get("to", ""))
    try:
        with work(request) as unit:
            unit.moves.move(
                record_id,
                target,
                entity=entity.name,
                comment=str(data.get("comment", "")) or None,
                fields=move_fields(data) or None,
                expected_version=optional_version(data.get("version")),
            )
    except MoveRefused as refused:
        with work(request) as unit:
            record = unit.records(entity.name).get(record_id)
        # what the move asks for stays on the form, whichever check refused it (a guard
        # that wants a comment for the reason chosen keeps the reason's choice shown)
        pipeline = crm.pipelines.get(record.pipeline) if record.pipeline else None
        asks: list[str] = []
        if pipeline is not None and pipeline.has_stage(target):
            transition = pipeline.transition(record.stage, target)
            asks = move_asks(pipeline.stage(target), transition, record)
        return _form(
            request,
            entity,
            record,
            target,
            reasons=refused.messages,
            missing=list(dict.fromkeys([*asks, *refused.missing_fields])),
            values=data,
            status=409,
        )
    except NotFound:
        raise
    return redirect(request, local_path(data.get("next")) or back, "Moved.")


def move_asks(stage: Any, transition: Any, record: Any) -> list[str]:
    """What a move's form asks for before it is sent: the fields the target stage and the
    transition require that the record leaves empty, and the comment it requires."""
    required = [*stage.requires_fields, *(transition.requires_fields if transition else ())]
    asks = [f for f in dict.fromkeys(required) if field_value(record, f) in (None, "", [], {})]
    if transition is not None and transition.requires_comment:
        asks.append("comment")
    return asks


def asked_definitions(unit: Any, entity: Any, asked: list[str]) -> dict[str, Any]:
    """The definitions (label, a choice's choices) of the custom fields among ``asked``
    (names as a move asks for them, ``custom.<key>``), by those names: what a move form
    needs to show them."""
    if not entity.custom_fields or not any(a.startswith("custom.") for a in asked):
        return {}
    definitions = dict(unit.custom_fields.definitions(entity.name))
    return {
        a: definitions[a.removeprefix("custom.")]
        for a in asked
        if a.startswith("custom.") and a.removeprefix("custom.") in definitions
    }


def _no_such_stage(request: Request, pipeline: Any, target: str) -> Response:
    """The 404 page of a move form asked for a stage its pipeline lacks, naming the stage
    (the message a sent move to it is refused with); a toast for htmx."""
    refusal = message(
        "{pipeline} has no stage “{stage}”", pipeline=Label(pipeline.title), stage=target
    )
    with i18n.activate(request.state.locale):
        said = refusal.translate(i18n.gettext, request.state.locale.zone)
    if is_htmx(request):
        return toast(request, said, kind="error", status=200)
    # the template's _() formats with %: a "%" typed in the address is a "%" shown
    context = {"title": i18n.lazy("Not found"), "message": said.replace("%", "%%"), "back": None}
    return render(request, "error.html", context, status=404)


def local_path(value: Any) -> str | None:
    """A ``next`` form value when it is a path of this site (never another host)."""
    text = str(value or "")
    if text.startswith("/") and not text.startswith("//") and "\\" not in text:
        return text
    return None


def _form(
    request: Request,
    entity: Any,
    record: Any,
    target: str,
    *,
    reasons: list[Any],
    missing: list[str],
    values: dict[str, Any],
    status: int = 200,
) -> Response:
    crm = request.app.state.crm
    pipeline = crm.pipelines.get(record.pipeline) if record.pipeline else None
    stage = pipeline.stage(target) if pipeline and pipeline.has_stage(target) else None
    with i18n.activate(request.state.locale):
        shown = [translate(r, i18n.gettext) for r in reasons]
    asked = [m for m in missing if m != "comment"]
    definitions: dict[str, Any] = {}
    if entity.custom_fields and any(m.startswith("custom.") for m in asked):
        with work(request) as unit:
            definitions = asked_definitions(unit, entity, asked)
    return render(
        request,
        "move_form.html",
        {
            "entity": entity,
            "record": record,
            "title": entity.title_of(record),
            "target": target,
            "stage": stage,
            "reasons": shown,
            "missing": asked,
            # a custom field asked for: its definition (its label, a choice's choices)
            "definitions": definitions,
            "needs_comment": "comment" in missing,
            "values": values,
            "back": record_url(entity.name, record.id),
            "error": error_text,
        },
        status=status,
    )


__all__ = ["USER_COLUMNS", "move", "move_fields", "record_page"]
