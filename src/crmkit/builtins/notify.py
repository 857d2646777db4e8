"""Built-in plugin: tell people when records are given to them."""

from __future__ import annotations

from typing import Any

from crmkit import events
from crmkit.events import DomainEvent
from crmkit.plugins import hookimpl


@hookimpl
def crmkit_handle_event(event: DomainEvent, work: Any) -> None:
    if event.name != events.OWNER_CHANGED:
        return
    new_owner = event.data.get("new")
    if new_owner is None or new_owner == work.actor.user_id:
        return
    entity = work.crm.entities[event.entity]
    record = work.session.get(entity.model, event.record_id)
    title = entity.title_of(record) if record is not None else f"{entity.name} {event.record_id}"
    work.notifications.notify(
        new_owner,
        "reassignment",
        f"{work.actor.label} → {entity.label or entity.name}: {title}",
        party_id=event.party_id,
        record=(event.entity, event.record_id),
    )
