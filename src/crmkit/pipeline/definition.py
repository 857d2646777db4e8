"""Pipelines declared as code: stages, transitions, guards, requirements.

A pipeline drives one entity type (``entity="party"`` for an organisation's lifecycle,
``entity="deal"``, or a plugin's ``finance_order``).  Stages have a kind (open, success,
dead end); transitions say which moves are allowed (backward ones included, marked as such),
who may make them and what must hold first.  The definitions are plain frozen attrs objects:
they can be built, compared, printed and tested without a database.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from crmkit.pipeline.engine import MoveContext


class StageKind(enum.StrEnum):
    """What reaching a stage means: still in progress, won, or a dead end."""

    OPEN = "open"
    SUCCESS = "success"
    DEAD_END = "dead_end"


@attrs.frozen
class GuardResult:
    """A guard's verdict: ``ok``, or refused with a reason a user can read."""

    ok: bool
    reason: Any = ""  # a str or a crmkit.i18n.Message

    @classmethod
    def allow(cls) -> GuardResult:
        """The move may go ahead."""
        return cls(True)

    @classmethod
    def refuse(cls, reason: Any) -> GuardResult:
        """The move is refused; ``reason`` is shown to the user as is."""
        return cls(False, reason)


#: A guard looks at the move about to happen and returns a verdict.  ``None`` or ``True``
#: mean ok; ``False`` refuses without a reason (the guard's name is used); a string refuses
#: with that reason.
Guard = Callable[["MoveContext"], "GuardResult | bool | str | None"]


_ACTION_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _tuple(value: Iterable[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class Stage:
    """One stage: its name (stored), label (shown), kind and what entering it requires.

    ``requires_fields`` are attributes (or ``custom.<key>``) that must be non-empty on the
    record after the move; ``requires_documents`` are attachment document types that must
    be attached to the record.
    """

    name: str
    label: str = ""
    kind: StageKind = StageKind.OPEN
    requires_fields: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    requires_documents: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    color: str | None = None
    description: str = ""

    @property
    def title(self) -> str:
        """The label, or the name when no label was given."""
        return self.label or self.name

    @property
    def terminal(self) -> bool:
        """Whether the stage ends the pipeline (success or dead end)."""
        return self.kind is not StageKind.OPEN


@attrs.frozen
class Transition:
    """An allowed move from one or more stages (``"*"`` for any) to ``target``.

    Who may make it, besides holding ``move`` on the record: anybody, by default;
    ``permission`` names an action on the pipeline's entity (``"pay"``: the cell
    *entity* / ``pay`` of the permission table) whose scope must reach the record, so the
    admin hands the move to any role by editing cells; ``roles`` is the simple form, a
    fixed list of role names (a role renamed or added later does not get the move).  A
    transition takes one of the two, not both.  ``guards`` must all pass;
    ``requires_fields``/``requires_documents`` add to the target stage's own;
    ``requires_comment`` asks the user to say why (a refusal, a give-up).  ``backward``
    marks a move against the flow: shown differently, stored on the move's history row
    (``StageMove.backward``) and counted apart in funnels.
    """

    source: tuple[str, ...] = attrs.field(converter=_tuple)
    target: str
    label: str = ""
    roles: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    guards: tuple[Guard, ...] = attrs.field(default=(), converter=tuple)
    requires_fields: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    requires_documents: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    requires_comment: bool = False
    backward: bool = False
    permission: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.permission is None:
            return
        if not isinstance(self.permission, str) or not _ACTION_NAME.fullmatch(self.permission):
            raise ValueError(
                f"transition to {self.target!r}: permission {self.permission!r} is not an "
                "action name (letters, digits and _, such as 'pay')"
            )
        if self.roles:
            raise ValueError(f"transition to {self.target!r}: give roles or a permission, not both")

    def leaves(self, stage: str) -> bool:
        """Whether this transition starts from ``stage``."""
        return "*" in self.source or stage in self.source


@attrs.frozen
class Pipeline:
    """A state machine of stages over one entity type.

    ``initial`` is the stage a new record starts in (the first stage by default).  A
    ``default`` pipeline takes every new record of its entity that names no pipeline and
    matches ``applies_to`` (a :mod:`crmkit.filters` condition over the new record's
    columns, e.g. only organisations).  ``documents`` gives the document types the stages
    require a readable label (``{"contract": "Signed contract"}``): refusals name the
    missing papers by it and the card offers them when a file is attached.  Construction
    fails on transitions to unknown stages.
    """

    name: str
    entity: str
    stages: tuple[Stage, ...] = attrs.field(converter=tuple)
    transitions: tuple[Transition, ...] = attrs.field(converter=tuple)
    label: str = ""
    initial: str | None = None
    description: str = ""
    default: bool = False
    applies_to: Mapping[str, Any] | None = None
    documents: Mapping[str, str] = attrs.field(factory=dict)
    _by_name: dict[str, Stage] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        by_name = {stage.name: stage for stage in self.stages}
        if len(by_name) != len(self.stages):
            raise ValueError(f"pipeline {self.name!r}: duplicate stage names")
        if not self.stages:
            raise ValueError(f"pipeline {self.name!r} has no stages")
        object.__setattr__(self, "_by_name", by_name)
        if self.initial is not None and self.initial not in by_name:
            raise ValueError(f"pipeline {self.name!r}: initial stage {self.initial!r} unknown")
        for transition in self.transitions:
            for name in (*transition.source, transition.target):
                if name != "*" and name not in by_name:
                    raise ValueError(
                        f"pipeline {self.name!r}: transition to or from unknown stage {name!r}"
                    )

    @property
    def title(self) -> str:
        """The label, or the name."""
        return self.label or self.name

    @property
    def initial_stage(self) -> Stage:
        """The stage new records start in."""
        return self._by_name[self.initial] if self.initial else self.stages[0]

    def stage(self, name: str) -> Stage:
        """The stage called ``name``; ``KeyError`` naming the pipeline if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"pipeline {self.name!r} has no stage {name!r}") from None

    def document_label(self, document_type: str) -> str:
        """The label of a document type (the type itself when none was given)."""
        return self.documents.get(document_type, document_type)

    def required_documents(self) -> list[str]:
        """Every document type some stage or transition requires, labelled ones first."""
        found = dict.fromkeys(self.documents)
        for item in (*self.stages, *self.transitions):
            found.update(dict.fromkeys(item.requires_documents))
        return list(found)

    def stage_title(self, name: str) -> str:
        """A stage's title; one the pipeline no longer declares (removed) is its name."""
        return self._by_name[name].title if name in self._by_name else name

    @property
    def stage_context(self) -> str:
        """The message context its stage titles are translated in (its name)."""
        from crmkit.i18n import stage_context

        return stage_context(self.name)

    def stage_label(self, name: str) -> Any:
        """A stage's title as a message parameter, translated in :attr:`stage_context`
        (a :class:`crmkit.i18n.StageLabel`)."""
        from crmkit.i18n import StageLabel

        return StageLabel(self.stage_title(name), self.stage_context)

    def has_stage(self, name: str) -> bool:
        """Whether ``name`` is one of the stages."""
        return name in self._by_name

    def transitions_from(self, stage: str) -> list[Transition]:
        """Transitions that may be taken from ``stage``, in declaration order."""
        return [t for t in self.transitions if t.leaves(stage) and t.target != stage]

    def transition(self, source: str, target: str) -> Transition | None:
        """The transition from ``source`` to ``target``, or ``None`` if that move is not allowed."""
        for transition in self.transitions:
            if transition.target == target and transition.leaves(source) and source != target:
                return transition
        return None

    def permissions(self) -> list[str]:
        """The actions the transitions take as their ``permission``, in declaration order
        (cells of the permission table on :attr:`entity`)."""
        return list(dict.fromkeys(t.permission for t in self.transitions if t.permission))

    def backward_moves(self) -> list[tuple[str, str]]:
        """Every ``(source, target)`` pair of stages whose move takes a backward transition.

        The transition is the one :meth:`transition` finds (the first declared for the
        pair), as the engine takes it.
        """
        names = self.stage_names()
        return [
            (source, target)
            for source in names
            for target in names
            if (found := self.transition(source, target)) is not None and found.backward
        ]

    def targets_from(self, stage: str) -> list[Stage]:
        """Stages reachable in one move from ``stage``."""
        seen: dict[str, Stage] = {}
        for transition in self.transitions_from(stage):
            seen.setdefault(transition.target, self._by_name[transition.target])
        return list(seen.values())

    def stage_names(self, kinds: Sequence[StageKind] | None = None) -> list[str]:
        """Names of the stages (of the given kinds), in order."""
        return [s.name for s in self.stages if kinds is None or s.kind in kinds]

    # -- rendering -----------------------------------------------------------------

    def _edges(self) -> list[tuple[str, str, Transition]]:
        edges = []
        for transition in self.transitions:
            sources = self.stage_names() if "*" in transition.source else transition.source
            edges.extend(
                (source, transition.target, transition)
                for source in sources
                if source != transition.target
            )
        return edges

    def to_text(self) -> str:
        """The stage graph as plain text: stages with their kind, then each allowed move."""
        lines = [f"pipeline {self.name} ({self.title}) on {self.entity}", "stages:"]
        for stage in self.stages:
            marks = [stage.kind.value]
            if stage.name == self.initial_stage.name:
                marks.insert(0, "initial")
            if stage.requires_fields:
                marks.append("needs fields: " + ", ".join(stage.requires_fields))
            if stage.requires_documents:
                marks.append("needs documents: " + ", ".join(stage.requires_documents))
            lines.append(f"  {stage.name:<16} {stage.title}  [{'; '.join(marks)}]")
        lines.append("moves:")
        for source, target, transition in self._edges():
            notes = []
            if transition.backward:
                notes.append("backward")
            if transition.roles:
                notes.append("roles: " + ", ".join(transition.roles))
            if transition.permission:
                notes.append(f"permission: {self.entity} {transition.permission}")
            if transition.guards:
                notes.append("guards: " + ", ".join(_guard_name(g) for g in transition.guards))
            if transition.requires_documents:
                notes.append("needs documents: " + ", ".join(transition.requires_documents))
            if transition.requires_fields:
                notes.append("needs fields: " + ", ".join(transition.requires_fields))
            if transition.requires_comment:
                notes.append("needs a comment")
            suffix = f"  ({'; '.join(notes)})" if notes else ""
            lines.append(f"  {source} -> {target}{suffix}")
        return "\n".join(lines)

    def to_mermaid(self) -> str:
        """The stage graph as a Mermaid ``stateDiagram-v2`` (renders in docs and the admin UI)."""
        lines = ["stateDiagram-v2"]
        for stage in self.stages:
            lines.append(f'    state "{_mermaid_text(stage.title)}" as {stage.name}')
        lines.append(f"    [*] --> {self.initial_stage.name}")
        for source, target, transition in self._edges():
            label = transition.label or ("back" if transition.backward else "")
            suffix = f" : {_mermaid_text(label)}" if label else ""
            lines.append(f"    {source} --> {target}{suffix}")
        for stage in self.stages:
            if stage.kind is StageKind.SUCCESS:
                lines.append(f"    {stage.name} --> [*]")
            elif stage.kind is StageKind.DEAD_END:
                lines.append(f"    class {stage.name} deadEnd")
        if any(s.kind is StageKind.DEAD_END for s in self.stages):
            lines.append("    classDef deadEnd fill:#f4d6d6,stroke:#a33")
        return "\n".join(lines)


def _guard_name(guard: Any) -> str:
    return getattr(guard, "__name__", type(guard).__name__)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "'").replace(":", " ")
