"""What happens with parties: deals, stage history, the timeline, tasks, reminders, calendar,
files, notifications."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.model.base import (
    Amount,
    Base,
    CustomFieldsMixin,
    IdMixin,
    IdType,
    JSONType,
    OwnedMixin,
    PipelineMixin,
    RecordRefMixin,
    TimestampMixin,
    VersionedMixin,
    party_fk,
    user_fk,
)


class Deal(IdMixin, TimestampMixin, OwnedMixin, CustomFieldsMixin, PipelineMixin, Base):
    """A generic pipelined record: an opportunity with a party, an amount and a stage."""

    __table_args__ = (Index("ix_deal_pipeline_stage_owner", "pipeline", "stage", "owner_id"),)

    title: Mapped[str] = mapped_column(String(300))
    party_id: Mapped[int | None] = party_fk(index=True)
    amount: Mapped[Decimal | None] = mapped_column(Amount(2))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    team_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("team.id", ondelete="SET NULL"))
    closed_at: Mapped[dt.datetime | None] = mapped_column()


class StageMove(IdMixin, Base):
    """One move of a record between stages: who, when, from, to, why.

    ``seconds_in_source`` is how long the record stayed in ``from_stage``; time-in-stage
    reports average it without pairing up rows.  ``backward`` says the move took a
    transition declared ``backward`` (against the flow): funnels count such moves apart.
    """

    __table_args__ = (
        Index("ix_stage_move_record", "entity", "record_id", "at"),
        Index("ix_stage_move_pipeline_at", "pipeline", "at", "to_stage"),
    )

    entity: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[int] = mapped_column(IdType)
    pipeline: Mapped[str] = mapped_column(String(64))
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[int | None] = user_fk(index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    comment: Mapped[str | None] = mapped_column(Text)
    seconds_in_source: Mapped[int | None] = mapped_column(Integer)
    owner_id: Mapped[int | None] = user_fk()
    # a server default too: rows written by plain INSERTs that do not name it are forward
    backward: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Activity(IdMixin, RecordRefMixin, Base):
    """One entry of a party's timeline: a call, mail, message, note, move, payment, file...

    ``kind`` says which; ``data`` holds kind-specific details.  ``channel`` and
    ``external_id`` identify an inbound item so that the same mail or message is recorded
    once only (unique together).  Notes are activities of kind ``note``; ``pinned`` keeps
    one on top of the card.
    """

    __table_args__ = (
        Index("ix_activity_party_time", "party_id", "occurred_at", "id"),
        Index("ix_activity_actor_time", "actor_id", "occurred_at"),
        Index("ix_activity_record", "record_entity", "record_id"),
        UniqueConstraint("channel", "external_id"),
    )

    party_id: Mapped[int | None] = party_fk()
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = user_fk()
    by_assistant: Mapped[bool] = mapped_column(Boolean, default=False)
    direction: Mapped[str | None] = mapped_column(String(8))
    channel: Mapped[str | None] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(500))
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str | None] = mapped_column(String(32))
    conversation_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("conversation.id", ondelete="SET NULL"), index=True
    )


class Mention(Base):
    """A user @mentioned in a note."""

    activity_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("activity.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Task(IdMixin, TimestampMixin, RecordRefMixin, CustomFieldsMixin, VersionedMixin, Base):
    """Work for someone: an assignee, a deadline, a status, subtasks, a linked record."""

    __table_args__ = (
        Index("ix_task_assignee_status_deadline", "assignee_id", "status", "deadline"),
        Index("ix_task_party", "party_id"),
    )

    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    deadline: Mapped[dt.datetime | None] = mapped_column()
    assignee_id: Mapped[int | None] = user_fk()
    created_by_id: Mapped[int | None] = user_fk()
    team_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("team.id", ondelete="SET NULL"))
    party_id: Mapped[int | None] = party_fk()
    parent_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("task.id", ondelete="CASCADE"), index=True
    )
    done_at: Mapped[dt.datetime | None] = mapped_column()
    #: When the assignee was told the task is overdue (by the background worker).
    overdue_notified_at: Mapped[dt.datetime | None] = mapped_column()
    escalated_at: Mapped[dt.datetime | None] = mapped_column()


class Reminder(IdMixin, TimestampMixin, RecordRefMixin, VersionedMixin, Base):
    """A time to remind several people (and teams) about a record."""

    __table_args__ = (Index("ix_reminder_status_at", "status", "remind_at"),)

    remind_at: Mapped[dt.datetime] = mapped_column()
    text: Mapped[str] = mapped_column(Text)
    party_id: Mapped[int | None] = party_fk()
    created_by_id: Mapped[int | None] = user_fk()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    fired_at: Mapped[dt.datetime | None] = mapped_column()
    #: When recipients who had not dealt with it were raised to their managers.
    escalated_at: Mapped[dt.datetime | None] = mapped_column()


class ReminderRecipient(IdMixin, Base):
    """A person or a whole team to be reminded; ``done_at`` when that person dismissed it."""

    reminder_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("reminder.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("team.id", ondelete="CASCADE"))
    done_at: Mapped[dt.datetime | None] = mapped_column()


class Resource(IdMixin, Base):
    """Something that can be booked: a specialist, a service bay, a room."""

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="specialist")
    user_id: Mapped[int | None] = user_fk()
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CalendarEvent(IdMixin, TimestampMixin, RecordRefMixin, VersionedMixin, Base):
    """A meeting, call, follow-up or booking in time, optionally holding a resource.

    ``uid`` is the iCalendar UID used by calendar sync; ``etag`` the peer's last version.
    """

    __table_args__ = (
        Index("ix_calendar_event_owner_start", "owner_id", "starts_at"),
        Index("ix_calendar_event_resource_start", "resource_id", "starts_at"),
    )

    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    location: Mapped[str | None] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(32), default="meeting")
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    owner_id: Mapped[int | None] = user_fk()
    created_by_id: Mapped[int | None] = user_fk()
    party_id: Mapped[int | None] = party_fk(index=True)
    resource_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("resource.id", ondelete="SET NULL")
    )
    uid: Mapped[str | None] = mapped_column(String(255), unique=True)
    etag: Mapped[str | None] = mapped_column(String(255))


class EventAttendee(IdMixin, Base):
    """A staff member, a party or an outside address invited to an event."""

    event_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("calendar_event.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    party_id: Mapped[int | None] = party_fk()
    email: Mapped[str | None] = mapped_column(String(320))
    response: Mapped[str] = mapped_column(String(16), default="needs-action")


class Attachment(IdMixin, RecordRefMixin, Base):
    """A file kept by the storage backend, linked to a party and/or a record.

    ``document_type`` marks papers that pipelines may require (a signed contract...).
    """

    __table_args__ = (Index("ix_attachment_record", "record_entity", "record_id"),)

    storage_key: Mapped[str] = mapped_column(String(500), unique=True, info={"private": True})
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    size: Mapped[int] = mapped_column(IdType)
    sha256: Mapped[str] = mapped_column(String(64))
    document_type: Mapped[str | None] = mapped_column(String(64))
    party_id: Mapped[int | None] = party_fk(index=True)
    uploaded_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Notification(IdMixin, RecordRefMixin, Base):
    """Something a user should see: a mention, an assignment, a reminder."""

    __table_args__ = (Index("ix_notification_user_read", "user_id", "read_at", "id"),)

    user_id: Mapped[int] = mapped_column(IdType, ForeignKey("user.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    #: The text as a :class:`crmkit.i18n.Message` (``as_json``), translated when shown;
    #: ``text`` is its English, for readers without a language (forwarded copies, logs).
    message: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    party_id: Mapped[int | None] = party_fk()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column()
