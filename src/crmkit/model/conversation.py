"""Conversations: the contact center's unit of work, one per sender and channel at a time.

Every inbound message joins the open conversation of its sender on its channel (or starts
one); a conversation is assigned to someone, snoozed until a time, or closed.  Messages stay
timeline activities (``Activity.conversation_id`` points here), so the party card and the
contact center show the same entries.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.model.base import Base, IdMixin, IdType, RecordRefMixin, party_fk, user_fk


class Conversation(IdMixin, RecordRefMixin, Base):
    """An exchange with one sender on one channel: ``open``, ``snoozed`` or ``closed``.

    ``address_key`` is the sender's normalized address (how a triaged sender is recognised
    before a party exists); ``record_*`` the open deal or task it concerns.  ``account`` is
    the channel's account its latest message came in on (a mailbox's name: replies go out
    from it); ``owner_id`` the user whose own account that is (a personal mailbox): such a
    conversation is theirs, not everyone's triage.  ``last_message_at`` is when its latest
    message arrived (the server's time, not the sender's clock).
    """

    __table_args__ = (
        Index("ix_conversation_status_assignee", "status", "assignee_id", "last_message_at"),
        Index("ix_conversation_channel_address", "channel", "address_key", "status"),
        Index("ix_conversation_party", "party_id"),
    )

    channel: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(320))
    address_key: Mapped[str] = mapped_column(String(320))
    sender_name: Mapped[str | None] = mapped_column(String(300))
    subject: Mapped[str | None] = mapped_column(String(500))
    party_id: Mapped[int | None] = party_fk()
    assignee_id: Mapped[int | None] = user_fk()
    team_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("team.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    snoozed_until: Mapped[dt.datetime | None] = mapped_column()
    unread: Mapped[int] = mapped_column(default=0)
    last_message_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    account: Mapped[str | None] = mapped_column(String(100))
    owner_id: Mapped[int | None] = user_fk()
