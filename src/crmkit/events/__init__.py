"""Domain events: what happened, raised by the services inside the transaction.

Services call :meth:`crmkit.services.unit.UnitOfWork.emit`; before the transaction
commits every queued event is handed to the ``crmkit_handle_event`` hook, whose
implementations run in the same transaction (so a handler's writes commit or roll back with
the change).  Handlers that must leave the process write an outbox item instead of acting.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from crmkit.clock import utcnow

# Names of the events the core emits.  Plugins emit their own (``payment.received`` ...).
RECORD_CREATED = "record.created"
RECORD_UPDATED = "record.updated"
RECORD_DELETED = "record.deleted"
STAGE_MOVED = "stage.moved"
OWNER_CHANGED = "owner.changed"
NOTE_ADDED = "note.added"
MESSAGE_RECEIVED = "message.received"
CALL_EVENT = "call.event"
TASK_ASSIGNED = "task.assigned"
PARTIES_MERGED = "party.merged"

CORE_EVENTS = (
    RECORD_CREATED,
    RECORD_UPDATED,
    RECORD_DELETED,
    STAGE_MOVED,
    OWNER_CHANGED,
    NOTE_ADDED,
    MESSAGE_RECEIVED,
    CALL_EVENT,
    TASK_ASSIGNED,
    PARTIES_MERGED,
)


@attrs.frozen
class DomainEvent:
    """Something that happened to a record.

    ``data`` is JSON-safe (``record.updated`` carries ``changes: {field: [old, new]}``,
    ``stage.moved`` carries ``pipeline``, ``from``, ``to``); ``party_id`` lets timeline and
    automation handlers find the client without loading the record.
    """

    name: str
    entity: str
    record_id: int | None
    actor_id: int | None = None
    party_id: int | None = None
    data: dict[str, Any] = attrs.field(factory=dict)
    at: dt.datetime = attrs.field(factory=utcnow)
    #: raised inside ``crmkit.automation.paused()``: no automation rule reacts to it
    rules_paused: bool = False
