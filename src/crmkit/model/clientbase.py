"""Rows kept by the client-base tools: duplicate reports, imports and remembered mappings."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.model.base import Base, IdMixin, user_fk


class DuplicateReport(IdMixin, Base):
    """One run of the whole-base duplicate report (a background job).

    ``groups`` lists the likely duplicates found: ``{"party_ids": [...], "score": 0-100,
    "reasons": [...]}``, best first.
    """

    requested_by_id: Mapped[int | None] = user_fk()
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    groups: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str] = mapped_column(Text, default="")


class ImportRun(IdMixin, Base):
    """One import of a CSV or XLSX file of contacts: its settings, progress and errors.

    ``done_rows`` is the checkpoint: rows before it are committed (batch by batch), so an
    interrupted run resumes there and a row is never half written.
    """

    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    source: Mapped[str] = mapped_column(String(200), default="")
    filename: Mapped[str] = mapped_column(String(300), default="")
    path: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16), default="new")
    dry_run: Mapped[bool] = mapped_column(default=False)
    on_duplicate: Mapped[str] = mapped_column(String(16), default="skip")
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str] = mapped_column(Text, default="")

    @property
    def row_errors(self) -> list[dict[str, Any]]:
        """The rows refused (``errors`` also lists the possible duplicates)."""
        return [e for e in self.errors or () if e.get("kind") != "possible duplicate"]

    @property
    def possible_duplicates(self) -> list[dict[str, Any]]:
        """Rows whose name looks like an existing client's (or an earlier row's), with
        ``duplicate_of`` (the client's id, or ``None`` for a row), ``score`` and ``action``."""
        return [e for e in self.errors or () if e.get("kind") == "possible duplicate"]

    @property
    def possible_duplicate_count(self) -> int:
        """How many rows were possible duplicates (the report lists the first 10,000)."""
        return int((self.options or {}).get("possible_duplicates", 0))


class ImportMapping(Base):
    """The column mapping last used for a source (a supplier's price list, an old CRM)."""

    source: Mapped[str] = mapped_column(String(200), primary_key=True)
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
