"""Reading the append-only audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from crmkit.model import AuditEntry

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


class AuditService:
    """Who changed what: per record (for those who may read it) or overall (``audit`` read)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def for_record(self, entity: str, record_id: int) -> list[AuditEntry]:
        """The history of one visible record, oldest first."""
        self.work.records(entity).get(record_id)
        return list(
            self.work.session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity == entity, AuditEntry.record_id == record_id)
                .order_by(AuditEntry.id)
            )
        )

    def latest(
        self,
        *,
        entity: str | None = None,
        actor_id: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """The newest entries of the whole log (needs ``read`` on ``audit_log``)."""
        self.work.access.require("audit_log", "read")
        statement = select(AuditEntry)
        if entity:
            statement = statement.where(AuditEntry.entity == entity)
        if actor_id is not None:
            statement = statement.where(AuditEntry.actor_id == actor_id)
        if before_id is not None:
            statement = statement.where(AuditEntry.id < before_id)
        return list(
            self.work.session.scalars(
                statement.order_by(AuditEntry.id.desc()).limit(min(limit, 1000))
            )
        )
