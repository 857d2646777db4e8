"""Framework tables: the audit log, custom field definitions, the outbox, saved list views
and message templates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    DDL,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.model.base import Base, IdMixin, IdType, JSONType


class AuditEntry(IdMixin, Base):
    """Who changed which field of which record from what to what.  Append-only.

    ``changes`` maps a field to ``[old, new]``.  Database triggers refuse UPDATE and
    DELETE on this table, so not even a bug in a plugin can rewrite history.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_record", "entity", "record_id", "id"),
        Index("ix_audit_log_actor_at", "actor_id", "at"),
    )

    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(IdType)  # no FK: survives user deletion
    actor_label: Mapped[str] = mapped_column(String(200), default="")
    entity: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[int | None] = mapped_column(IdType)
    action: Mapped[str] = mapped_column(String(32))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class FieldDefinition(IdMixin, Base):
    """An admin-defined (custom) field of an entity: its kind, label, choices, rules."""

    __table_args__ = (UniqueConstraint("entity", "key"),)

    entity: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    choices: Mapped[list[Any] | None] = mapped_column(JSONType)
    ref_entity: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str | None] = mapped_column(String(3))
    position: Mapped[int] = mapped_column(Integer, default=0)
    help_text: Mapped[str] = mapped_column(Text, default="")


class OutboxItem(IdMixin, Base):
    """A side effect waiting to leave the process, written in the transaction that caused it.

    ``kind`` names the handler (``channel.send``, ``webhook`` ...), ``payload`` its
    input, ``idempotency_key`` guards against sending twice.  Workers move ``status`` from
    ``pending`` to ``delivering`` (claimed by ``claimed_by`` until ``next_attempt_at``, the
    lease's end) and on to ``delivered``, back to ``pending`` with a later
    ``next_attempt_at`` after a failed try, or to ``dead`` after the last one (an admin may
    retry it, or set it ``discarded``); a handler that finds it must not go out any more
    makes it ``cancelled``, with the reason as ``last_error``.  See :mod:`crmkit.jobs.delivery`.
    """

    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_outbox_item_status_due", "status", "next_attempt_at"),
    )

    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    party_id: Mapped[int | None] = mapped_column(IdType)
    actor_id: Mapped[int | None] = mapped_column(IdType)
    claimed_by: Mapped[str | None] = mapped_column(String(64))


#: Statements that make ``audit_log`` append-only, per dialect (used by migrations too).


class SavedView(IdMixin, Base):
    """A user's named list view: search text, filters, sort order and chosen columns.

    ``query`` holds the list's query-string parameters as a mapping; ``shared`` views are
    offered to every user who may read the entity.
    """

    __table_args__ = (Index("ix_saved_view_user_entity", "user_id", "entity"),)

    user_id: Mapped[int] = mapped_column(IdType, ForeignKey("user.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    query: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MessageTemplate(IdMixin, Base):
    """A text staff send again and again (a mail, a messenger reply), with placeholders.

    ``subject`` and ``body`` are Jinja templates rendered in the sandbox with the party, the
    record and the sender; ``channel`` (``mail``, ``telegram``...) and ``language`` say
    where and for whom it is meant.
    """

    __table_args__ = (UniqueConstraint("name", "channel", "language"),)

    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(32), default="mail")
    language: Mapped[str] = mapped_column(String(16), default="ru")
    subject: Mapped[str] = mapped_column(String(500), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


AUDIT_APPEND_ONLY: dict[str, tuple[str, ...]] = {
    "sqlite": (
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ),
    "postgresql": (
        "CREATE OR REPLACE FUNCTION crmkit_audit_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION crmkit_audit_append_only()",
    ),
}

for _dialect, _statements in AUDIT_APPEND_ONLY.items():
    for _statement in _statements:
        event.listen(
            AuditEntry.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect)
        )
