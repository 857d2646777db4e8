"""The outbox: side effects written in the transaction that caused them.

A service that must send a mail, a message, place a call or call a webhook never does it
itself: it adds an outbox item here, in its own transaction.  If the transaction rolls back
the item is gone with it; if it commits, a worker delivers it (see :mod:`crmkit.jobs`),
retrying with backoff and recording the peer's answer.  The idempotency key makes a
duplicate item (the same change submitted twice) collapse into one.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from crmkit.clock import utcnow
from crmkit.model import OutboxItem

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


class OutboxService:
    """Adding items to the outbox and reading their state."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def add(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        party_id: int | None = None,
        max_attempts: int = 8,
    ) -> OutboxItem:
        """Queue a side effect; an item with the same idempotency key is returned instead."""
        key = idempotency_key or f"{kind}:{uuid.uuid4()}"
        existing = self.work.session.scalar(
            select(OutboxItem).where(OutboxItem.idempotency_key == key)
        )
        if existing is not None:
            return existing
        item = OutboxItem(
            kind=kind,
            payload=payload,
            idempotency_key=key,
            party_id=party_id,
            actor_id=self.work.actor.user_id,
            max_attempts=max_attempts,
            created_at=utcnow(),
            next_attempt_at=utcnow(),
        )
        self.work.session.add(item)
        self.work.flush()
        notify = getattr(self.work.crm, "outbox_wakeup", None)
        if notify is not None:
            self.work.after_commit(lambda: notify(item.id))
        return item

    def get(self, item_id: int) -> OutboxItem | None:
        """An outbox item by id (system and admins)."""
        self.work.access.require("outbox_item", "read")
        return self.work.session.get(OutboxItem, item_id)
