"""A minimal third-party-style plugin used by the core tests: its own table and branch."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from crmkit import EntityType, MigrationBranch, hookimpl
from crmkit.model import Base, IdMixin, IdType

crmkit_plugin_name = "sample"


class SampleVisit(IdMixin, Base):
    """A visit to a client, owned by this plugin, joined to the core by foreign key."""

    party_id: Mapped[int] = mapped_column(IdType, ForeignKey("party.id", ondelete="CASCADE"))
    owner_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("user.id"))
    note: Mapped[str] = mapped_column(String(200), default="")
    visited_at: Mapped[dt.datetime | None] = mapped_column()


@hookimpl
def crmkit_register_entities():
    return [
        EntityType(
            "sample_visit",
            SampleVisit,
            owner_attrs=("owner_id",),
            party_attr="party_id",
            scope_through_party=True,
        )
    ]


@hookimpl
def crmkit_register_migrations():
    return [MigrationBranch("sample", Path(__file__).parent / "migrations")]
