"""Automation rules written by admins, and what went wrong when rules ran."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.model.base import Base, IdMixin, IdType


class AutomationRule(IdMixin, Base):
    """A rule "when ``trigger`` and ``condition`` then ``actions``", stored as data.

    ``trigger``, ``condition`` (the :mod:`crmkit.filters` language) and ``actions`` are
    JSON validated by :mod:`crmkit.automation`; nothing in them is ever evaluated as code.
    """

    name: Mapped[str] = mapped_column(String(200), unique=True)
    label: Mapped[str] = mapped_column(String(300), default="")
    trigger: Mapped[dict[str, Any]] = mapped_column(default=dict)
    condition: Mapped[dict[str, Any] | None] = mapped_column()
    actions: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class AutomationFailure(IdMixin, Base):
    """One failed run of a rule (code or data), kept for the admin to read."""

    __table_args__ = (Index("ix_automation_failure_rule_at", "rule", "at"),)

    rule: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str | None] = mapped_column(String(64))
    record_id: Mapped[int | None] = mapped_column(IdType)
    error: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
