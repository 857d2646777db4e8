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
from crmkit.errors import ValidationFailed
from crmkit.i18n import Message
from crmkit.model import Notification, NotificationPreference, User

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
        text: str | Message,
        *,
        party_id: int | None = None,
        record: tuple[str, int] | None = None,
        entity: str | None = None,
    ) -> Notification | None:
        """Queue a notification for ``user_id``; it is published once the transaction commits.

        ``text`` may be a :class:`crmkit.i18n.Message`: it is kept as such and shown in the
        reader's language (its English in ``Notification.text``).  ``entity`` without
        ``record`` points the notification at that entity's list (many records at once).
        A blocked user is told nothing (``None``): no notification, nothing forwarded.
        """
        user = self.work.session.get(User, user_id)
        if user is None or user.blocked:
            return None
        notification = Notification(
            user_id=user_id,
            kind=kind,
            text=str(text),
            message=text.as_json() if isinstance(text, Message) else None,
            party_id=party_id,
            record_entity=record[0] if record else entity,
            record_id=record[1] if record else None,
            created_at=utcnow(),
        )
        self.work.session.add(notification)
        publish = getattr(self.work.crm, "publish_notification", None)
        if publish is not None:

            def after() -> None:
                publish(user_id, notification.id)

            self.work.after_commit(after)
        self._forward(notification, user)
        return notification

    def _forward(self, notification: Notification, user: User) -> None:
        """Queue the notification on the channels its user asked for (outbox items).

        Each item names the user and the notification's kind (``forward``): the
        ``channel.send`` handler sends it only if the user is still active and still
        forwards that kind to that address when a worker takes it, and cancels it otherwise.
        A notification with a message is written in its user's language and time zone
        (:func:`crmkit.web.i18n.locale_of`), as the bell shows it to them, whoever caused it.
        """
        preferences = self.work.session.scalars(
            select(NotificationPreference).where(
                NotificationPreference.user_id == notification.user_id
            )
        ).all()
        wanted = [
            p
            for p in preferences
            if (not p.kinds or notification.kind in p.kinds) and p.channel in self.work.crm.channels
        ]
        if not wanted:
            return
        import attrs

        from crmkit.channels import OutboundMessage

        self.work.flush()
        text = self._text_for(notification, user)
        for preference in wanted:
            key = f"notification:{notification.id}:{preference.channel}"
            message = OutboundMessage(
                channel=preference.channel,
                to=preference.address,
                subject=text[:120],
                body=text,
                idempotency_key=key,
                record_entity=notification.record_entity,
                record_id=notification.record_id,
            )
            payload = attrs.asdict(message, recurse=True)
            payload["attachments"] = []
            # checked again when a worker takes it: a user blocked since, or no longer
            # forwarding this there, is sent nothing (the item ends cancelled)
            payload["forward"] = {"user_id": notification.user_id, "kind": notification.kind}
            self.work.outbox.add("channel.send", payload, idempotency_key=key)

    def _text_for(self, notification: Notification, user: User) -> str:
        """The notification's text as ``user`` reads it (its message translated)."""
        if not notification.message:
            return notification.text
        from crmkit.web.i18n import locale_of  # the UI's catalogs: the user's language

        locale = locale_of(self.work.crm, user)
        return Message.from_json(notification.message).translate(
            locale.gettext, locale.zone, locale.money
        )

    def preferences(self, user_id: int | None = None) -> list[NotificationPreference]:
        """Where the actor's (an admin: anyone's) notifications are forwarded."""
        user_id = self._whose(user_id)
        return list(
            self.work.session.scalars(
                select(NotificationPreference)
                .where(NotificationPreference.user_id == user_id)
                .order_by(NotificationPreference.channel)
            )
        )

    def set_preference(
        self,
        channel: str,
        address: str | None,
        *,
        kinds: list[str] | None = None,
        user_id: int | None = None,
    ) -> NotificationPreference | None:
        """Forward notifications (of ``kinds``, all when empty) to ``address`` on ``channel``;
        an empty address stops forwarding there."""
        user_id = self._whose(user_id)
        if channel not in self.work.crm.channels:
            raise ValidationFailed({"channel": [f"no channel {channel!r}"]})
        existing = self.work.session.scalar(
            select(NotificationPreference).where(
                NotificationPreference.user_id == user_id,
                NotificationPreference.channel == channel,
            )
        )
        if not (address or "").strip():
            if existing is not None:
                self.work.session.delete(existing)
                self.work.flush()
            return None
        if existing is None:
            existing = NotificationPreference(user_id=user_id, channel=channel)
            self.work.session.add(existing)
        existing.address = address.strip()
        existing.kinds = list(kinds or [])
        self.work.flush()
        return existing

    def _whose(self, user_id: int | None) -> int:
        if user_id is None or user_id == self.work.actor.user_id:
            return self._own()
        self.work.access.require("user", "update")
        return user_id

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
