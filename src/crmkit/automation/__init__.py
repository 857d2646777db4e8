"""The automation assistant: rules "when EVENT and CONDITIONS then ACTIONS".

Plugins define rules in code (``crmkit_register_automations``), admins as data (the
``automation_rule`` table, edited on the rules screen).  Both have the same shape::

    Rule(
        "paid-order",
        when=Trigger("payment.received"),
        subject=("finance_order", "order_id"),     # act on the order the event names
        condition={"field": "event.amount", "op": "gte", "value": 1},
        actions=(Action("move", {"to": "paid"}),
                 Action("notify", {"to": "owner", "text": "Order {{ record.id }} is paid"})),
    )

When a change raises a matching event, the rule is queued (an outbox item of kind
``automation``) in the change's transaction; a worker runs it after commit as the
assistant, in its own transaction.  So a rule never slows down or blocks the change, a
failing rule rolls back only its own actions (and is recorded for the admin, see
``automation_failure``), and everything it did is written on the record's timeline
signed "assistant".  Events raised by the assistant's own actions trigger no rules
(no loops).  A run is for the rule as it was when the run was queued: when a worker
takes it, an admin's rule that was deleted, switched off, edited or deleted and made anew
under the same name is not run for it (the run is skipped, with the reason as the outbox
item's result).  A skipped run of a time-based rule is queued again by the clock under the
rule as it is now, once, when its record is due under it.

Triggers (``Trigger.event``):

``record.created``, ``booking.made`` (a calendar event was made: a booking or a meeting;
narrow it with a condition such as ``resource_id not_null``)
``stage.entered`` / ``stage.left`` (``stage=`` the stage name)
``field.changed`` (``field=`` a field name)
``payment.received`` (raised by the finance plugin), ``task.overdue``
``booking.upcoming`` (``hours=`` N hours before a booking starts)
``record.idle`` (``days=`` N days without activity on a party)

Actions (``Action.kind`` and its parameters): ``move`` (``to``), ``assign`` (``user``),
``create_task`` (``title``, ``assignee``, ``due_in_hours``), ``create_reminder``
(``text``, ``in_hours``, ``to``), ``notify`` (``text``, ``to``: ``owner``, a username,
``role:NAME`` or ``team:NAME``), ``send_message`` (``channel``, ``template`` or
``subject``/``body``, optional ``to``), ``add_note`` (``body``), ``webhook`` (``url``).
Texts are templates rendered in Jinja's sandbox with ``record``, ``party``, ``event`` and
``zone`` (the ``locale.timezone`` setting: ``{{ record.starts_at|local(zone)|date("%d.%m.%Y
%H:%M") }}`` writes a moment in local time).  Conditions see the subject's fields, ``event.*``
and the client's first address of each kind (``party.email``, ``party.phone``,
``party.messenger``, ``None`` when the client has none), so one rule can write to clients
with an address and another give the staff a task for the rest.  The subject's computed
filter fields (``tag``, ``group``, those plugins register with
``crmkit_register_filter_fields``, such as the finance plugin's ``due`` of an order) are
checked by asking the database about that one record when the rule runs, so they mean
what they mean in a list.  A run holds its subject's row (:func:`crmkit.db.lock_row`):
two runs on one record take turns, the second seeing what the first did.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from crmkit.errors import ValidationFailed

TRIGGERS: dict[str, str] = {
    "record.created": "A record was created",
    "stage.entered": "A record entered a stage",
    "stage.left": "A record left a stage",
    "field.changed": "A field changed",
    "payment.received": "A payment was received",
    "task.overdue": "A task became overdue",
    "booking.made": "A booking was made",
    "booking.upcoming": "Hours before a booking",
    "record.idle": "Days without activity",
}

ACTIONS: dict[str, tuple[str, ...]] = {
    "move": ("to",),
    "assign": ("user",),
    "create_task": ("title",),
    "create_reminder": ("text",),
    "notify": ("text",),
    "send_message": ("channel",),
    "add_note": ("body",),
    "webhook": ("url",),
}


@attrs.frozen
class Trigger:
    """When a rule runs: an event, narrowed to an entity, a stage or a field."""

    event: str
    entity: str | None = None
    stage: str | None = None
    field: str | None = None
    hours: float | None = None
    days: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.event not in TRIGGERS:
            raise ValidationFailed(
                {"trigger": [f"unknown event {self.event!r} (one of {', '.join(TRIGGERS)})"]}
            )
        if self.event == "booking.upcoming" and not self.hours:
            raise ValidationFailed({"trigger": ["booking.upcoming needs hours"]})
        if self.event == "record.idle" and not self.days:
            raise ValidationFailed({"trigger": ["record.idle needs days"]})
        for name, limit in (("hours", MAX_HOURS), ("days", MAX_DAYS)):
            value = getattr(self, name)
            if value is not None:
                _in_range(value, name, 0, limit, field="trigger", zero=False)
        if self.event == "field.changed" and not self.field:
            raise ValidationFailed({"trigger": ["field.changed needs a field"]})


@attrs.frozen
class Action:
    """Something a rule does; ``params`` depend on ``kind`` (see the module doc)."""

    kind: str
    params: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        required = ACTIONS.get(self.kind)
        if required is None:
            raise ValidationFailed(
                {"actions": [f"unknown action {self.kind!r} (one of {', '.join(ACTIONS)})"]}
            )
        missing = [name for name in required if not self.params.get(name)]
        if missing:
            raise ValidationFailed({"actions": [f"{self.kind} needs {', '.join(missing)}"]})
        for name in _HOURS_PARAMS.get(self.kind, ()):
            if self.params.get(name) not in (None, ""):
                _in_range(self.params[name], f"{self.kind} {name}", 0, MAX_HOURS, field="actions")


#: How far ahead or back a rule may look: a year, in hours or days (a longer span is a
#: typing slip, and dates beyond the calendar's range would fail every scan).
MAX_HOURS = 24 * 366
MAX_DAYS = 3660
_HOURS_PARAMS = {"create_task": ("due_in_hours",), "create_reminder": ("in_hours",)}


def _in_range(
    value: Any, name: str, low: float, high: float, *, field: str, zero: bool = True
) -> float:
    """``value`` as a finite number within [low, high] (above ``low`` unless ``zero``), or a
    :class:`ValidationFailed` under ``field`` naming ``name``."""
    number = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            number = float(value)
    if number is None or not math.isfinite(number):
        raise ValidationFailed({field: [f"{name}: not a number ({value!r})"]})
    if number < low or (number == low and not zero) or number > high:
        raise ValidationFailed({field: [f"{name}: {value!r} is out of range (up to {high:g})"]})
    return number


@attrs.frozen
class Rule:
    """A rule: ``when`` an event happens and ``condition`` holds, do ``actions``.

    ``subject`` names the record the actions work on when it is not the event's own:
    ``(entity, key)`` reads the id from the event's data (``("finance_order",
    "order_id")``).  ``condition`` uses the :mod:`crmkit.filters` language over the
    subject's fields (``custom.x`` for custom fields), its computed filter fields (``tag``,
    ``group``, plugins' ones), ``party.*`` and ``event.*`` values.

    An admin's rule read from the database also carries its row's id (``row_id``) and the
    ``version`` of its definition (:func:`definition_digest`): a run queued for it runs
    only while the stored rule still has both.
    """

    name: str
    when: Trigger
    actions: tuple[Action, ...] = attrs.field(converter=tuple)
    condition: Mapping[str, Any] | None = None
    subject: tuple[str, str] | None = None
    label: str = ""
    source: str = "code"
    row_id: int | None = None
    version: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.actions:
            raise ValidationFailed({"actions": [f"rule {self.name!r} does nothing"]})

    def to_data(self) -> dict[str, Any]:
        """The rule as JSON-able data (the shape of the ``automation_rule`` columns)."""
        trigger = {k: v for k, v in attrs.asdict(self.when).items() if v is not None}
        if self.subject:
            trigger["subject"] = list(self.subject)
        return {
            "name": self.name,
            "label": self.label,
            "trigger": trigger,
            "condition": dict(self.condition) if self.condition else None,
            "actions": [{"kind": a.kind, **dict(a.params)} for a in self.actions],
        }


def definition_digest(rule: Rule, made_at: Any = None) -> str:
    """A short digest of what ``rule`` does: its trigger, subject, condition and actions,
    and of ``made_at``, when its row was made (a rule deleted and made anew is another
    rule even with the same definition, and SQLite may give it the same row id back).

    Its name and label are left out: a new label changes no run's outcome.
    """
    data = rule.to_data()
    del data["name"], data["label"]
    if isinstance(made_at, dt.datetime):  # the same moment whatever zone a driver gave
        made_at = made_at.astimezone(dt.UTC).isoformat()
    data["made_at"] = made_at
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rule_from_data(
    name: str,
    trigger: Mapping[str, Any],
    actions: list[Mapping[str, Any]],
    condition: Mapping[str, Any] | None = None,
    label: str = "",
) -> Rule:
    """Build (and so validate) a rule from stored data; ``ValidationFailed`` names the part."""
    if not isinstance(trigger, Mapping) or "event" not in trigger:
        raise ValidationFailed({"trigger": ["give the event that starts the rule"]})
    values = dict(trigger)
    subject = values.pop("subject", None)
    known = {f.name for f in attrs.fields(Trigger)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValidationFailed({"trigger": [f"unknown trigger key {unknown[0]!r}"]})
    if not isinstance(actions, list) or not actions:
        raise ValidationFailed({"actions": ["a rule needs at least one action"]})
    built = []
    for index, action in enumerate(actions, start=1):
        if not isinstance(action, Mapping) or "kind" not in action:
            raise ValidationFailed({"actions": [f"action {index} has no kind"]})
        params = {k: v for k, v in action.items() if k != "kind"}
        built.append(Action(str(action["kind"]), params))
    if condition is not None and not isinstance(condition, Mapping):
        raise ValidationFailed({"condition": ["a condition is an object"]})
    if condition:
        from crmkit.filters import evaluate

        try:
            evaluate(condition, {})
        except (KeyError, TypeError) as exc:
            raise ValidationFailed({"condition": [f"malformed condition: {exc}"]}) from None
    return Rule(
        name,
        Trigger(**values),
        tuple(built),
        condition=condition or None,
        subject=tuple(subject) if subject else None,  # type: ignore[arg-type]
        label=label,
        source="data",
    )


_PAUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("automation_paused", default=False)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No rule reacts to changes made inside the block (in this thread or task).

    Each event raised inside it remembers so (``DomainEvent.rules_paused``), whether its
    unit of work commits inside the block or after it; a change made before the block is
    not paused by committing it inside.

    For writing history that already happened (demo data, imports of past orders): a year
    of generated payments must not ask a year of clients for reviews.
    """
    token = _PAUSED.set(True)
    try:
        yield
    finally:
        _PAUSED.reset(token)


def is_paused() -> bool:
    """Whether rules are paused here (see :func:`paused`)."""
    return _PAUSED.get()


__all__ = [
    "ACTIONS",
    "TRIGGERS",
    "Action",
    "Rule",
    "Trigger",
    "definition_digest",
    "is_paused",
    "paused",
    "rule_from_data",
]
