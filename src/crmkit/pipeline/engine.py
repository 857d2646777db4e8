"""The pipeline engine: checking a move, then applying it with history, audit and events.

:func:`check_move` finds every reason a move may not happen (no such transition, an actor
without the transition's role or permission, missing fields or documents, failing guards,
plugin vetoes) and raises :class:`~crmkit.errors.MoveRefused` with all of them at once;
guards and plugin vetoes run only once the pipeline's own checks (fields, documents,
comment) passed.
:func:`apply_move` is the core's implementation of the ``crmkit_stage_move`` hook: it
writes the new stage under optimistic locking, the history row, the audit entry, the
timeline entry and the ``stage.moved`` event.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm.attributes import set_committed_value

from crmkit import events
from crmkit.clock import utcnow
from crmkit.errors import Conflict, MoveRefused, PermissionDenied
from crmkit.i18n import Label, Labels, Message, message
from crmkit.model import Attachment, StageMove
from crmkit.pipeline.definition import GuardResult, Pipeline, Stage, Transition
from crmkit.services.timeline import stage_move_subject

if TYPE_CHECKING:
    from crmkit.entities import EntityType
    from crmkit.services.unit import UnitOfWork

logger = logging.getLogger(__name__)


@attrs.define
class MoveContext:
    """A move about to happen (or just applied): what guards and hooks look at.

    ``source`` is ``None`` when a new record is placed in its first stage.
    """

    work: UnitOfWork
    pipeline: Pipeline
    entity: EntityType
    record: Any
    source: str | None
    target: Stage
    transition: Transition | None
    comment: str | None = None
    at: dt.datetime = attrs.field(factory=utcnow)
    history: StageMove | None = None

    @property
    def actor(self) -> Any:
        """Who is making the move."""
        return self.work.actor

    @property
    def backward(self) -> bool:
        """Whether the move goes against the flow."""
        return bool(self.transition and self.transition.backward)


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict) and not value)


def field_value(record: Any, field: str) -> Any:
    """A record's attribute, or ``custom.<key>`` from its custom fields."""
    if field.startswith("custom."):
        return (getattr(record, "custom", None) or {}).get(field[len("custom.") :])
    return getattr(record, field, None)


def missing_fields(move: MoveContext) -> list[str]:
    """Required fields (target stage's and transition's) that are still empty."""
    required = list(move.target.requires_fields)
    if move.transition:
        required += [f for f in move.transition.requires_fields if f not in required]
    return [f for f in required if _is_empty(field_value(move.record, f))]


def field_names(move: MoveContext, fields: list[str]) -> list[str]:
    """The fields a refusal names: a custom field by its definition's label (``ИНН``, not
    ``custom.inn``), any other by its name."""
    definitions: dict[str, Any] = {}
    if move.entity.custom_fields and any(f.startswith("custom.") for f in fields):
        definitions = move.work.custom_fields.definitions(move.entity.name)
    named = []
    for field in fields:
        key = field.removeprefix("custom.")
        found = definitions.get(key) if field.startswith("custom.") else None
        named.append(found.label if found is not None and found.label else field)
    return named


def missing_documents(move: MoveContext) -> list[str]:
    """Document types required to enter the stage that are not attached to the record."""
    required = list(move.target.requires_documents)
    if move.transition:
        required += [d for d in move.transition.requires_documents if d not in required]
    if not required:
        return []
    linked = (Attachment.record_entity == move.entity.name) & (
        Attachment.record_id == move.record.id
    )
    if move.entity.party_attr == "id":  # a party's own files (uploaded on its card) count
        linked = linked | (
            (Attachment.party_id == move.record.id) & Attachment.record_entity.is_(None)
        )
    attached = set(
        move.work.session.scalars(
            select(Attachment.document_type).where(linked, Attachment.document_type.in_(required))
        )
    )
    return [d for d in required if d not in attached]


def _verdict(guard: Any, outcome: Any, plugin: str | None = None) -> GuardResult:
    if outcome is None or outcome is True:
        return GuardResult.allow()
    if outcome is False:
        if plugin is not None:
            return GuardResult.refuse(message("refused by the plugin {plugin}", plugin=plugin))
        name = getattr(guard, "__name__", "a guard").replace("_", " ")
        return GuardResult.refuse(message("refused by {guard}", guard=name))
    if isinstance(outcome, str | Message):
        return GuardResult.refuse(outcome)
    if isinstance(outcome, GuardResult):
        return outcome
    raise TypeError(
        f"guard {guard!r} returned {outcome!r}; expected GuardResult, bool, str or None"
    )


def _guard_name(guard: Any) -> str:
    """A guard as its code names it (a function's name, a callable object's class)."""
    name = getattr(guard, "__name__", None) or type(guard).__name__
    return str(name)


def _plugin_vetoes(move: MoveContext) -> list[str | Message]:
    """The refusals of ``crmkit_before_stage_move`` implementations, in hook order.

    Called implementation by implementation (as pluggy would, last registered first), so
    that a bare ``False`` can be reported with the name of the plugin that returned it, and
    an implementation that raises refuses the move with its plugin's name (and is logged).
    """
    pm = move.work.crm.pm
    reasons: list[str | Message] = []
    for impl in reversed(pm.hook.crmkit_before_stage_move.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue  # a veto hook has nothing to wrap
        plugin = _plugin_name(pm, impl.plugin)
        try:
            outcome = impl.function(**{name: move for name in impl.argnames})
            # what no veto returns (``0``, a list) is a bug of the plugin, like raising
            verdict = _verdict(impl.function, outcome, plugin)
        except Exception:
            # a broken veto refuses the move (nothing is written) and names its plugin,
            # instead of failing the whole request or a bulk move of many records
            logger.exception("crmkit_before_stage_move of the plugin %s failed", plugin)
            reasons.append(
                message("the plugin {plugin} failed while checking this move", plugin=plugin)
            )
            continue
        if not verdict.ok:
            reasons.append(verdict.reason)
    return reasons


def _plugin_name(pm: Any, plugin: Any) -> str:
    """The name a plugin was loaded under (one registered without a name: its class's)."""
    name = getattr(plugin, "crmkit_plugin_name", None) or pm.get_name(plugin)
    if not name or name.isdigit():  # pluggy names an unnamed object by its id()
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return str(name)


def transition_for(pipeline: Pipeline, source: str | None, target: str) -> Transition | None:
    """The transition a move from ``source`` to ``target`` takes (``None``: not allowed).

    A record left in a stage the pipeline no longer declares (a later release removed or
    renamed it) may go to any stage, as if by a ``"*"`` transition with no roles or
    requirements of its own: the target stage's requirements still apply.
    """
    if source is None:
        return None
    if not pipeline.has_stage(source):
        return None if source == target else Transition("*", target)
    return pipeline.transition(source, target)


def _role_titles(work: UnitOfWork, roles: tuple[str, ...]) -> Labels:
    """The roles a refusal names, by their titles (translated for the reader), not codes."""
    known = work.crm.roles
    return Labels(Label((known[r].label if r in known else "") or r) for r in roles)


def who_may_not(
    work: UnitOfWork,
    pipeline: Pipeline,
    entity: EntityType,
    record: Any,
    transition: Transition,
) -> Message | None:
    """Why the actor may not take ``transition`` with ``record``, read by the actor from
    its stage (``None``: they may).

    Only who makes the move is looked at (not the fields, documents or guards): the
    transition's ``roles`` (one of them), or its ``permission``, an action on the entity
    whose scope must reach the record.  The system actor may take every transition.
    """
    actor = work.actor
    if actor.system:
        return None
    target = pipeline.stage(transition.target)
    if transition.roles:
        if actor.roles & set(transition.roles):
            return None
        return message(
            "only {roles} may move to “{target}”",
            roles=_role_titles(work, transition.roles),
            target=pipeline.stage_label(target.name),
        )
    action = transition.permission
    if not action:
        return None
    access = work.access
    params = {
        "source": pipeline.stage_label(record.stage) if record.stage else Label("—"),
        "target": pipeline.stage_label(target.name),
        "permission": Label(action),
        "entity": Label(entity.label_plural or entity.label or entity.name),
    }
    if not access.can(entity.name, action):
        return message(
            "moving from “{source}” to “{target}” takes the permission “{permission}” on {entity}",
            **params,
        )
    try:
        access.check_record(
            work.session,
            entity,
            record.id,
            action,
            read_by_scope=not work.records(entity.name).widens_reading(),
        )
    except PermissionDenied:
        return message(
            "moving from “{source}” to “{target}” takes the permission “{permission}” on "
            "{entity}, and yours does not reach this record",
            **params,
        )
    return None


def check_move(move: MoveContext) -> None:
    """Raise :class:`MoveRefused` with every reason this move may not happen."""
    pipeline, target = move.pipeline, move.target
    if move.source == target.name:
        raise MoveRefused(
            [message("already in stage “{stage}”", stage=pipeline.stage_label(target.name))]
        )
    transition = move.transition
    if transition is None:
        source = pipeline.stage_label(move.source) if move.source else Label("—")
        raise MoveRefused(
            [
                message(
                    "no move from “{source}” to “{target}” in {pipeline}",
                    source=source,
                    target=pipeline.stage_label(target.name),
                    pipeline=Label(pipeline.title),
                )
            ]
        )
    refusal = who_may_not(move.work, pipeline, move.entity, move.record, transition)
    if refusal is not None:
        raise MoveRefused([refusal])
    reasons: list[str | Message] = []
    fields = missing_fields(move)
    if fields:
        reasons.append(message("fill in: {fields}", fields=", ".join(field_names(move, fields))))
    documents = missing_documents(move)
    if documents:
        labels = Labels(Label(pipeline.document_label(d)) for d in documents)
        reasons.append(message("attach documents: {documents}", documents=labels))
    if transition.requires_comment and not (move.comment or "").strip():
        reasons.append(message("a comment is required for this move"))
        fields.append("comment")
    if reasons:
        # guards and plugin vetoes are written against a record that passed the pipeline's
        # own checks (a veto may compare a required amount): they wait until it does
        raise MoveRefused(reasons, missing_fields=fields, missing_documents=documents)
    for guard in transition.guards:
        try:
            verdict = _verdict(guard, guard(move))
        except Exception:
            # a broken guard (it raised, or returned what no guard returns) refuses the move
            # and is named, as a broken veto is: no 500, and a bulk move goes on
            name = _guard_name(guard)
            logger.exception("the pipeline guard %s failed", name)
            reasons.append(message("the guard {guard} failed while checking this move", guard=name))
            continue
        if not verdict.ok:
            reasons.append(verdict.reason)
    reasons += _plugin_vetoes(move)
    if reasons:
        raise MoveRefused(reasons)


_INSERT_HISTORY = insert(StageMove.__table__)


@functools.lru_cache(maxsize=256)
def _versioned_update(table: Table, columns: tuple[str, ...]) -> Any:
    """``UPDATE table SET <columns> WHERE id = :_id AND version = :_version``, built once."""
    return (
        update(table)
        .where(table.c.id == bindparam("_id"), table.c.version == bindparam("_version"))
        .values({name: bindparam(name) for name in columns})
    )


def apply_move(move: MoveContext) -> StageMove:
    """Write the move: new stage (optimistically locked), history, audit, timeline, event."""
    work, record = move.work, move.record
    work.flush()  # the record has no other unsaved change now
    record_id, version = record.id, record.version
    entered = record.stage_entered_at
    seconds = int((move.at - entered).total_seconds()) if entered and move.source else None
    changed: dict[str, Any] = {
        "stage": move.target.name,
        "stage_entered_at": move.at,
        "version": version + 1,
    }
    if hasattr(record, "closed_at"):
        changed["closed_at"] = move.at if move.target.terminal else None
    if hasattr(record, "updated_at"):
        changed["updated_at"] = move.at
    # The version check written out as one UPDATE: of two concurrent moves the second
    # matches no row.  (A plain statement costs a fraction of an ORM flush, and moves are
    # the hottest write of a CRM.)
    result = work.session.connection().execute(
        _versioned_update(move.entity.model.__table__, tuple(changed)),
        {**changed, "_id": record_id, "_version": version},
    )
    if result.rowcount != 1:
        raise Conflict(
            move.entity.name,
            record_id,
            f"{move.entity.label or move.entity.name} {record_id} was moved or "
            "changed by someone else meanwhile; reload and try again",
        )
    for key, value in changed.items():
        set_committed_value(record, key, value)
    values = {
        "entity": move.entity.name,
        "record_id": record_id,
        "pipeline": move.pipeline.name,
        "from_stage": move.source,
        "to_stage": move.target.name,
        "actor_id": work.actor.user_id,
        "at": move.at,
        "comment": move.comment,
        "seconds_in_source": seconds,
        "owner_id": getattr(record, "owner_id", None),
        "backward": move.backward,
    }
    # a plain INSERT: history rows are append-only and need no ORM bookkeeping
    inserted = work.session.connection().execute(_INSERT_HISTORY, values)
    history = StageMove(id=inserted.inserted_primary_key[0], **values)
    move.history = history
    changes: dict[str, Any] = {"stage": [move.source, move.target.name]}
    if move.comment:
        changes["comment"] = [None, move.comment]
    work.audit(move.entity.name, record.id, "move", changes)
    party_id = work.records(move.entity.name).party_id_of(record)
    if party_id is not None:
        work.timeline.add(
            "stage_move",
            party_id=party_id,
            record=(move.entity.name, record.id),
            subject=stage_move_subject(move.pipeline, move.source, move.target.name),
            body=move.comment or "",
            data={
                "pipeline": move.pipeline.name,
                "from": move.source,
                "to": move.target.name,
                "backward": move.backward,
            },
            occurred_at=move.at,
        )
    work.emit(
        events.STAGE_MOVED,
        move.entity.name,
        record.id,
        party_id=party_id,
        pipeline=move.pipeline.name,
        **{"from": move.source, "to": move.target.name},
        comment=move.comment,
        backward=move.backward,
        kind=move.target.kind.value,
    )
    return history
