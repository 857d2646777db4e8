"""Stage moves as a service: place new records, move them, list what is possible, history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from crmkit.clock import utcnow
from crmkit.errors import (
    Conflict,
    CrmkitError,
    MoveRefused,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from crmkit.filters import evaluate
from crmkit.i18n import Label, Labels, message
from crmkit.model import StageMove
from crmkit.pipeline.definition import Pipeline, Stage, Transition
from crmkit.pipeline.engine import (
    MoveContext,
    check_move,
    field_value,
    missing_fields,
    transition_for,
    who_may_not,
)
from crmkit.services.limits import MAX_MOVE_COMMENT, written_text_refusal
from crmkit.services.records import PIPELINE_FIELDS

if TYPE_CHECKING:
    from crmkit.entities import EntityType
    from crmkit.services.unit import UnitOfWork


def require_placement(
    access: Any, entity: str, first: str, stage: str, *, row: int | None = None
) -> None:
    """A new record put straight into ``stage``, later than its pipeline's ``first``, skips
    every guard on the way: it takes ``move`` and ``place`` on ``entity`` (create and
    imports alike; ``row`` names an import's row in the refusal)."""
    access.require(entity, "move")
    if access.can(entity, "place"):
        return
    refusal = message(
        "a new record starts in “{first}”: create it there and move it on to "
        "“{stage}” (putting it straight into a later stage takes the "
        "permission “{permission}”)",
        first=Label(first),
        stage=Label(stage),
        permission=Label("place"),
    )
    raise ValidationFailed(
        {"stage": [refusal]}, entity=entity if row is not None else None, row=row
    )


@attrs.frozen
class MoveOption:
    """A stage the record could move to, and whether the actor may make the move (the
    transition's roles or permission; fields, documents and guards are checked when moving).

    ``pipeline`` is the record's, whose context the stage's title is translated in."""

    stage: Stage
    transition: Transition
    allowed: bool
    pipeline: Pipeline | None = None

    @property
    def asks_first(self) -> bool:
        """Whether the move asks for something before it is made (a comment, fields): a
        screen opens its small form instead of moving at once."""
        transition = self.transition
        return bool(
            transition.requires_comment or transition.requires_fields or self.stage.requires_fields
        )


@attrs.frozen
class BulkMoveResult:
    """What a bulk move did: records moved, and the reason each refused one stayed.

    ``refused`` gives each reason in English; ``errors`` the error itself (a
    :class:`MoveRefused` keeps its translatable ``messages``), for a screen to show in the
    user's language.
    """

    moved: list[int]
    refused: dict[int, str]
    errors: dict[int, CrmkitError] = attrs.field(factory=dict)


def _condition_fields(condition: Any) -> list[str]:
    """The fields a filter condition reads, in order."""
    found: list[str] = []
    if isinstance(condition, Mapping):
        if isinstance(condition.get("field"), str):
            found.append(condition["field"])
        for key in ("all", "any", "not"):
            nested = condition.get(key)
            for part in nested if isinstance(nested, list | tuple) else [nested]:
                found += [f for f in _condition_fields(part) if f not in found]
    return found


class MoveService:
    """Moves records of any pipelined entity through their pipeline."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def _entity(self, record: Any, entity: str | None, argument: str = "record") -> EntityType:
        registry = self.work.crm.entities
        if entity:
            return registry[entity]
        if isinstance(record, int | str):
            # an id says nothing of its entity: a clear refusal, not "int is not an entity"
            raise TypeError(
                f"{argument} holds the id {record!r}: pass the record itself, or the id "
                "with entity=..."
            )
        try:
            return registry.of(record)
        except KeyError:
            raise TypeError(
                f"{argument} holds {record!r}, which is no record of a registered entity"
            ) from None

    def pipeline_of(self, record: Any) -> Pipeline:
        """The pipeline a record is in (``ValidationFailed`` if it is in none)."""
        if not record.pipeline:
            raise ValidationFailed({"pipeline": ["this record is not in a pipeline"]})
        return self.work.crm.pipeline(record.pipeline)

    def place(
        self, record: Any, entity: EntityType, pipeline_name: str | None, stage: str | None
    ) -> None:
        """Put a new record in a pipeline: the named one, or the entity's default one.

        The record starts in the pipeline's initial stage.  A later ``stage`` skips every
        check on the way there (guards, required fields and documents), so it takes the
        ``place`` permission on the entity (the admin role's by default; the system actor
        has it) besides ``move``: records already under way elsewhere.  Imports place theirs
        through :meth:`~crmkit.services.parties.PartyService.bulk_create`.
        """
        crm = self.work.crm
        if pipeline_name is None:
            pipeline = self._default_pipeline(record, entity)
            if pipeline is None:
                if stage:
                    raise ValidationFailed({"pipeline": ["give the pipeline of the stage"]})
                return
        else:
            pipeline = crm.pipelines.get(pipeline_name)
            if pipeline is None or pipeline.entity != entity.name:
                raise ValidationFailed(
                    {"pipeline": [f"no pipeline {pipeline_name!r} for {entity.name}"]}
                )
        if stage is None:
            target = pipeline.initial_stage
        else:
            if not pipeline.has_stage(stage):
                raise ValidationFailed({"stage": [f"{pipeline.title} has no stage {stage!r}"]})
            target = pipeline.stage(stage)
            if target.name != pipeline.initial_stage.name:
                require_placement(
                    self.work.access, entity.name, pipeline.initial_stage.title, target.title
                )
        record.pipeline = pipeline.name
        record.stage = target.name
        record.stage_entered_at = utcnow()

    def _default_pipeline(self, record: Any, entity: EntityType) -> Pipeline | None:
        for pipeline in self.work.crm.pipelines_for(entity.name):
            if not pipeline.default:
                continue
            if self._applies(pipeline, record):
                return pipeline
        return None

    def follow_applies_to(
        self, record: Any, entity: EntityType, changed: Iterable[str] = ()
    ) -> dict[str, Any]:
        """After an edit, put the record where the default pipelines' ``applies_to`` say.

        An organisation turned into a person leaves the organisations' pipeline (its stage
        is cleared); a record in no pipeline that now matches a default one enters it in
        the initial stage, with a history row.  A pipeline given explicitly at creation
        (not a default one) is kept.  Returns the changes, ``{field: [old, new]}``.

        Leaving a pipeline from a stage past its initial one would undo moves no history
        row records, so that edit is refused (``ValidationFailed`` on the edited field
        ``applies_to`` reads, one of ``changed``) unless the actor has the ``place``
        permission, the one that skips a pipeline's checks.
        """
        current = self.work.crm.pipelines.get(record.pipeline) if record.pipeline else None
        if current is not None and (not current.default or self._applies(current, record)):
            return {}
        target = self._default_pipeline(record, entity)
        if target is None and current is None:
            return {}
        if (
            current is not None
            and record.stage != current.initial_stage.name
            and not self.work.access.can(entity.name, "place")
        ):
            read = _condition_fields(current.applies_to)
            field = next((f for f in changed if f in read), None) or next(iter(read), "_schema")
            refusal = message(
                "this change takes the record out of {pipeline}, but it is in “{stage}”: "
                "move it back to “{first}” first",
                pipeline=Label(current.title),
                stage=current.stage_label(record.stage),
                first=current.stage_label(current.initial_stage.name),
            )
            raise ValidationFailed({field: [refusal]}, entity=entity.name)
        before = (record.pipeline, record.stage)
        if target is None:
            record.pipeline = record.stage = record.stage_entered_at = None
        else:
            record.pipeline = target.name
            record.stage = target.initial_stage.name
            record.stage_entered_at = utcnow()
            self.record_placement(record, entity)
        return {
            "pipeline": [before[0], record.pipeline],
            "stage": [before[1], record.stage],
        }

    @staticmethod
    def _applies(pipeline: Pipeline, record: Any) -> bool:
        if pipeline.applies_to is None:
            return True
        values = {c.key: getattr(record, c.key, None) for c in record.__table__.columns}
        return bool(evaluate(pipeline.applies_to, values))

    def record_placement(self, record: Any, entity: EntityType) -> None:
        """History of a new record's first stage (called once the record has an id)."""
        self.work.session.add(
            StageMove(
                entity=entity.name,
                record_id=record.id,
                pipeline=record.pipeline,
                from_stage=None,
                to_stage=record.stage,
                actor_id=self.work.actor.user_id,
                at=record.stage_entered_at,
                owner_id=getattr(record, "owner_id", None),
            )
        )

    def move(
        self,
        record: Any,
        to: str,
        *,
        comment: str | None = None,
        fields: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        entity: str | None = None,
    ) -> MoveContext:
        """Move ``record`` (an instance, or an id with ``entity``) to stage ``to``.

        ``fields`` are set on the record first (the small form a move may ask for), so
        guards and required-field checks see them; if the move is refused they are
        discarded and whatever staging them wrote (a party's name keys, contacts, tags) is
        rolled back.  The move asks for the fields its target stage and transition require
        that are still empty; any other field is an edit and takes ``update`` on the record
        (:class:`PermissionDenied` naming the field, nothing written).  Raises
        :class:`MoveRefused` with every reason, :class:`Conflict` if someone else moved or
        changed the record meanwhile; a comment longer than ``MAX_MOVE_COMMENT`` characters
        is refused naming ``comment`` before anything is written.
        """
        entity_type = self._entity(record, entity)
        service = self.work.records(entity_type.name)
        record = service.get(record, action="move")
        if expected_version is not None and record.version != expected_version:
            raise Conflict(entity_type.name, record.id)
        pipeline = self.pipeline_of(record)
        if not pipeline.has_stage(to):
            raise MoveRefused(
                [
                    message(
                        "{pipeline} has no stage “{stage}”",
                        pipeline=Label(pipeline.title),
                        stage=to,
                    )
                ]
            )
        # the move itself sets the pipeline and the stage; a kind decides which pipeline a
        # record follows, so changing it is an edit (which re-checks the pipeline), not a move
        for key in ("tags", "owner_id", "kind", *PIPELINE_FIELDS):
            if fields and key in fields:
                raise ValidationFailed({key: ["cannot be changed as part of a move"]})
        comment = (comment or "").strip() or None
        too_long = written_text_refusal(comment or "", MAX_MOVE_COMMENT)
        if too_long is not None:
            raise ValidationFailed({"comment": [too_long]})
        self.work.flush()  # so that discarding the record's unsaved state below loses nothing
        changes: dict[str, Any] = {}
        move = MoveContext(
            work=self.work,
            pipeline=pipeline,
            entity=entity_type,
            record=record,
            source=record.stage,
            target=pipeline.stage(to),
            transition=transition_for(pipeline, record.stage, to),
            comment=comment,
        )
        if fields:
            self._check_unasked_fields(service, move, fields)
        try:
            if fields:
                # staging may write (a party's name keys, contact points, tags): in a savepoint,
                # so that a refused move leaves nothing even if the caller goes on and commits
                with self.work.savepoint(), self.work.session.no_autoflush:
                    changes = service.stage_changes(record, fields)
                    check_move(move)
            else:
                check_move(move)
        except CrmkitError:
            staged = [a.key for a in sa_inspect(record).attrs if a.history.has_changes()]
            if staged:
                self.work.session.expire(record, staged)
            raise
        if changes:
            service.record_update(record, changes)
        self.work.crm.pm.hook.crmkit_stage_move(move=move)
        self.work.crm.pm.hook.crmkit_after_stage_move(move=move)
        return move

    def _check_unasked_fields(
        self, service: Any, move: MoveContext, fields: Mapping[str, Any]
    ) -> None:
        """Refuse a field the move does not ask for unless the actor may edit the record.

        A move asks for what it requires (the target stage's and the transition's
        ``requires_fields``) and is still empty: what its small form shows.  Anything else
        given along (a discount, a note) is an edit, so it takes ``update`` on the record,
        as an edit would; a mover who may only move is refused by the field's name.
        """
        asked = set(missing_fields(move))
        given: list[str] = []
        for key, value in fields.items():
            if key == "custom" and isinstance(value, Mapping):
                given += [f"custom.{name}" for name in value]
            else:
                given.append(key)
        unasked = [name for name in given if name not in asked]
        if not unasked:
            return
        try:
            service.get(move.record, action="update")
        except PermissionDenied:
            raise PermissionDenied(
                move.entity.name,
                "update",
                message(
                    "changing {fields} is an edit, not part of the move to “{stage}”: it takes "
                    "the permission to edit the record",
                    fields=Labels(Label(name.removeprefix("custom.")) for name in unasked),
                    stage=move.pipeline.stage_label(move.target.name),
                ),
            ) from None

    def move_many(
        self,
        records: Iterable[Any],
        to: str,
        *,
        comment: str | None = None,
        fields: Mapping[str, Any] | None = None,
        entity: str | None = None,
    ) -> BulkMoveResult:
        """Move many records (a bulk action); each refused one is reported, not fatal.

        A record that cannot go (refused, hidden, not allowed, in no pipeline) is reported
        with its reason; each move runs in a savepoint, so a refusal leaves nothing of it.
        ``fields`` (as :meth:`move` takes them, asked once for all) are set on each record
        that still leaves them empty; a record that has one keeps its own value.
        ``records`` are records, or ids together with ``entity``: ids without it (or
        anything else) are a :class:`TypeError` naming ``records``, before any move.
        """
        if isinstance(records, str | int) or not isinstance(records, Iterable):
            raise TypeError(f"records must be a list of records, not {records!r}")
        records = list(records)
        for record in records:  # every item checked before any moves
            self._entity(record, entity, argument="records")
        moved: list[int] = []
        refused: dict[int, str] = {}
        errors: dict[int, CrmkitError] = {}
        for record in records:
            record_id = record if isinstance(record, int) else record.id
            try:
                with self.work.savepoint():
                    given = self._still_empty(record, fields, entity) if fields else None
                    self.move(record, to, comment=comment, fields=given, entity=entity)
            except (MoveRefused, NotFound, PermissionDenied, ValidationFailed) as exc:
                refused[record_id] = str(exc)
                errors[record_id] = exc
            else:
                moved.append(record_id)
        return BulkMoveResult(moved, refused, errors)

    def _still_empty(
        self, record: Any, fields: Mapping[str, Any], entity: str | None
    ) -> dict[str, Any] | None:
        """The part of ``fields`` that ``record`` leaves empty (what a bulk move fills)."""
        entity_type = self._entity(record, entity)
        current = self.work.records(entity_type.name).get(record, action="move")
        given: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "custom" and isinstance(value, Mapping):
                custom = {
                    name: item
                    for name, item in value.items()
                    if _empty(field_value(current, f"custom.{name}"))
                }
                if custom:
                    given["custom"] = custom
            elif _empty(field_value(current, key)):
                given[key] = value
        return given or None

    def move_stage_out(
        self, pipeline_name: str, stage: str, to: str, *, comment: str | None = None
    ) -> BulkMoveResult:
        """Move every visible record of a pipeline in ``stage`` to ``to`` (a bulk move).

        The way out for records left in a stage a release removed from the pipeline (they
        may go to any stage); each record is moved by the engine, as :meth:`move_many` does,
        with its history row, timeline entry and event.
        """
        pipeline = self.work.crm.pipeline(pipeline_name)
        if not pipeline.has_stage(to):
            raise MoveRefused(
                [
                    message(
                        "{pipeline} has no stage “{stage}”",
                        pipeline=Label(pipeline.title),
                        stage=to,
                    )
                ]
            )
        service = self.work.records(pipeline.entity)
        ids: list[int] = []
        after = None
        while True:
            page = service.list(
                filters={"pipeline": pipeline.name, "stage": stage},
                after=after,
                limit=500,
                internal=True,
            )
            ids += [record.id for record in page]
            after = page.next_cursor
            if after is None:
                break
        return self.move_many(ids, to, comment=comment, entity=pipeline.entity)

    def options(self, record: Any, entity: str | None = None) -> list[MoveOption]:
        """Stages the record can go to next, with whether the actor may take each: the
        ``move`` permission, and the transition's roles or permission (its scope reaching
        the record).

        A record in a stage the pipeline no longer declares may go to any of its stages.
        """
        entity_type = self._entity(record, entity)
        record = self.work.records(entity_type.name).get(record)
        pipeline = self.pipeline_of(record)
        may_move = self.work.access.can(entity_type.name, "move")
        options = []
        if record.stage and not pipeline.has_stage(record.stage):
            # left in a stage since removed from the pipeline: every stage is a way out
            return [
                MoveOption(stage, Transition("*", stage.name), may_move, pipeline)
                for stage in pipeline.stages
            ]
        for transition in pipeline.transitions_from(record.stage):
            allowed = may_move and (
                who_may_not(self.work, pipeline, entity_type, record, transition) is None
            )
            target = pipeline.stage(transition.target)
            options.append(MoveOption(target, transition, allowed, pipeline))
        return options

    def targets(self, records: Iterable[Any], entity: str) -> dict[int, list[str]]:
        """The stages the actor may move each of ``records`` to, by record id: what a board
        lets its cards be dropped on.

        The records are those the actor has just read (a board's columns), so they are not
        read again; who may take each transition is checked as :meth:`options` and the move
        do (``move``, the transition's roles or permission), the fields, documents and guards
        only when the move is made.  A record in a removed stage may go to every stage.
        """
        entity_type = self.work.crm.entities[entity]
        may_move = self.work.access.can(entity, "move")
        found: dict[int, list[str]] = {}
        for record in records:
            pipeline = self.work.crm.pipelines.get(record.pipeline) if record.pipeline else None
            if not may_move or pipeline is None:
                found[record.id] = []
            elif record.stage and not pipeline.has_stage(record.stage):
                found[record.id] = pipeline.stage_names()
            else:
                found[record.id] = [
                    target
                    for target in dict.fromkeys(
                        t.target for t in pipeline.transitions_from(record.stage)
                    )
                    if who_may_not(
                        self.work,
                        pipeline,
                        entity_type,
                        record,
                        pipeline.transition(record.stage, target),
                    )
                    is None
                ]
        return found

    def history(self, record: Any, entity: str | None = None) -> list[StageMove]:
        """Every move of a visible record, oldest first."""
        entity_type = self._entity(record, entity)
        record = self.work.records(entity_type.name).get(record)
        return list(
            self.work.session.scalars(
                select(StageMove)
                .where(StageMove.entity == entity_type.name, StageMove.record_id == record.id)
                .order_by(StageMove.at, StageMove.id)
            )
        )


def _empty(value: Any) -> bool:
    """A field a move would ask for (nothing in it), as the required-fields check sees it."""
    return value is None or (isinstance(value, str | list | tuple | dict) and not value)
