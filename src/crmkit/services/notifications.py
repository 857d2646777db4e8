"""Notifications: what a user should see (mentions, assignments, reminders, reassignments).

Rows are written in the transaction of the change that caused them; once it commits, the
application's notifier (in-process, Redis or PostgreSQL, see the web layer) tells connected
browsers.  Reading and marking read is always limited to the actor's own notifications.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from crmkit.clock import utcnow
from crmkit.model import Notification

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

#: Called after commit with (user_id, notification id); the web layer installs a publisher.
Publisher = Callable[[int, int], None]


class NotificationService:
    """Creating notifications for users and reading one's own."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def notify(
        self,
        user_id: int,
        kind: str,
        text: str,
        *,
        party_id: int | None = None,
        record: tuple[str, int] | None = None,
    ) -> Notification:
        """Queue a notification for ``user_id``; it is published once the transaction commits."""
        notification = Notification(
            user_id=user_id,
            kind=kind,
            text=text,
            party_id=party_id,
            record_entity=record[0] if record else None,
            record_id=record[1] if record else None,
            created_at=utcnow(),
        )
        self.work.session.add(notification)
        publish = getattr(self.work.crm, "publish_notification", None)
        if publish is not None:

            def after() -> None:
                publish(user_id, notification.id)

            self.work.after_commit(after)
        return notification

    def _own(self) -> int:
        if self.work.actor.user_id is None:
            raise LookupError("the system actor has no notifications")
        return self.work.actor.user_id

    def unread_count(self) -> int:
        """How many of the actor's notifications are unread."""
        return int(
            self.work.session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.user_id == self._own(), Notification.read_at.is_(None))
            )
            or 0
        )

    def latest(self, limit: int = 20, unread_only: bool = False) -> list[Notification]:
        """The actor's newest notifications."""
        statement = select(Notification).where(Notification.user_id == self._own())
        if unread_only:
            statement = statement.where(Notification.read_at.is_(None))
        return list(
            self.work.session.scalars(statement.order_by(Notification.id.desc()).limit(limit))
        )

    def mark_read(self, ids: list[int] | None = None) -> int:
        """Mark some (or all) of the actor's notifications read; returns how many changed."""
        statement = (
            update(Notification)
            .where(Notification.user_id == self._own(), Notification.read_at.is_(None))
            .values(read_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if ids is not None:
            statement = statement.where(Notification.id.in_(ids))
        return int(self.work.session.execute(statement).rowcount or 0)
