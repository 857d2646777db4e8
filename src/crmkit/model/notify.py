"""Where a user wants notifications forwarded beyond the web UI (mail, Telegram...)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.model.base import Base, IdMixin, IdType


class NotificationPreference(IdMixin, Base):
    """Forward a user's notifications of some ``kinds`` (all when empty) to an address on a
    channel: ``("mail", "ivan@firm.ru")``, ``("telegram", "123456789")``.

    The web UI always shows every notification; a preference adds a ``channel.send``
    outbox item per notification, delivered by the workers like any message.
    """

    __table_args__ = (UniqueConstraint("user_id", "channel"),)

    user_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(320))
    kinds: Mapped[list[Any]] = mapped_column(default=list)
