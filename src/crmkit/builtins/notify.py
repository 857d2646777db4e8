"""Built-in plugin: tell people when records are given to them.

One notification per person and kind of record for everything given to them in one
transaction: a record given alone names it (and leads to it), a handover of many says how
many (``… handed over to you — Clients: 491``) and leads to the person's list of them, so
a bulk assignment does not flood the bell.  The texts are messages, translated when shown.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crmkit import events
from crmkit.events import DomainEvent
from crmkit.i18n import Label, message
from crmkit.plugins import hookimpl

#: Ids per statement when the records given are checked.
CHUNK = 500


@hookimpl
def crmkit_handle_event(event: DomainEvent, work: Any) -> None:
    if event.name != events.OWNER_CHANGED:
        return
    new_owner = event.data.get("new")
    if new_owner is None or new_owner == work.actor.user_id:
        return
    work.service("crmkit.handovers", Handovers).add(new_owner, event)


class Handovers:
    """The records given to each person in one unit of work, told just before it commits."""

    def __init__(self, work: Any) -> None:
        self.work = work
        self.given: dict[tuple[int, str], dict[int, int | None]] = {}

    def add(self, owner_id: int, event: DomainEvent) -> None:
        if not self.given:
            self.work.before_commit(self.tell)
        records = self.given.setdefault((owner_id, event.entity), {})
        records[int(event.record_id or 0)] = event.party_id

    def tell(self) -> None:
        given, self.given = self.given, {}
        for (owner_id, entity_name), records in given.items():
            entity = self.work.crm.entities[entity_name]
            held = self._still_held(entity, owner_id, list(records))
            if not held:
                continue
            if len(held) == 1:
                (record_id,) = held
                record = self.work.session.get(entity.model, record_id)
                text = message(
                    "{actor} → {entity}: {title}",
                    actor=self.work.actor.label,
                    entity=Label(entity.label or entity.name),
                    title=entity.title_of(record) if record is not None else f"#{record_id}",
                )
                self.work.notifications.notify(
                    owner_id,
                    "reassignment",
                    text,
                    party_id=records[record_id],
                    record=(entity_name, record_id),
                )
                continue
            text = message(
                "{actor} handed over to you — {entity}: {count}",
                actor=self.work.actor.label,
                entity=Label(entity.label_plural or entity.label or entity.name),
                count=len(held),
            )
            self.work.notifications.notify(owner_id, "reassignment", text, entity=entity_name)

    def _still_held(self, entity: Any, owner_id: int, ids: list[int]) -> list[int]:
        """Of ``ids``, those ``owner_id`` still has (given on and back in one transaction,
        they are told once; given on to someone else, not at all)."""
        model = entity.model
        held: list[int] = []
        for start in range(0, len(ids), CHUNK):
            held += self.work.session.scalars(
                select(model.id).where(
                    model.id.in_(ids[start : start + CHUNK]), model.owner_id == owner_id
                )
            )
        return sorted(held)
