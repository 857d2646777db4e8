"""Parties (persons and organisations), their contact points, groups and tags."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crmkit.clock import utcnow
from crmkit.model.base import (
    Base,
    CustomFieldsMixin,
    IdMixin,
    IdType,
    OwnedMixin,
    PipelineMixin,
    TimestampMixin,
)


class PartyKind(enum.StrEnum):
    """Whether a party is a human or a company."""

    PERSON = "person"
    ORGANISATION = "organisation"


class CustomerType(enum.StrEnum):
    """How a customer pays: an individual at the till, or a company by contract and invoice."""

    INDIVIDUAL = "individual"
    CORPORATE = "corporate"


class ContactKind(enum.StrEnum):
    """The kinds of address a party can be reached at."""

    PHONE = "phone"
    EMAIL = "email"
    MESSENGER = "messenger"
    WEBSITE = "website"


class Party(IdMixin, TimestampMixin, OwnedMixin, CustomFieldsMixin, PipelineMixin, Base):
    """A person or an organisation the business deals with.

    ``name_key`` is the normalized name used for duplicate screening; ``last_activity_at``
    orders the lists ("who was touched last") and is kept by the timeline service.
    An organisation's own lifecycle can be a pipeline (``pipeline``/``stage``).
    """

    # lists read "most recently active first": a backward scan of these indexes (the column
    # is NOT NULL, so no NULLS clause stands between the order and the index)
    __table_args__ = (
        Index("ix_party_owner_activity", "owner_id", "last_activity_at", "id"),
        Index("ix_party_activity", "last_activity_at", "id"),
        Index("ix_party_pipeline_stage", "pipeline", "stage", "owner_id"),
    )

    kind: Mapped[str] = mapped_column(String(16), default=PartyKind.ORGANISATION)
    customer_type: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(300))
    name_key: Mapped[str] = mapped_column(String(300), default="", index=True)
    first_name: Mapped[str | None] = mapped_column(String(150))
    last_name: Mapped[str | None] = mapped_column(String(150))
    organisation_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("party.id", ondelete="SET NULL"), index=True
    )
    position: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    team_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("team.id", ondelete="SET NULL"))
    last_activity_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    merged_into_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("party.id", ondelete="SET NULL")
    )
    # the language messages to this party are written in ("ru", "en"); empty: the default
    language: Mapped[str | None] = mapped_column(String(16))

    contact_points: Mapped[list[ContactPoint]] = relationship(
        back_populates="party",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ContactPoint.id",
    )


class ContactPoint(IdMixin, Base):
    """A phone, email, messenger handle or website of a party.

    ``value`` is kept exactly as typed; ``key`` is the normalized form that matching uses
    (E.164 phone, lower-case email, bare domain).  ``valid`` is false when the value could
    not be normalized: it is kept and flagged, never dropped.
    """

    __table_args__ = (
        Index("ix_contact_point_kind_key", "kind", "key"),
        Index("ix_contact_point_domain", "domain"),
    )

    party_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("party.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    service: Mapped[str | None] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(320))
    key: Mapped[str] = mapped_column(String(320))
    label: Mapped[str | None] = mapped_column(String(100))
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    #: the organisation's domain behind an email or website (not public mail services)
    domain: Mapped[str | None] = mapped_column(String(253))

    party: Mapped[Party] = relationship(back_populates="contact_points")


class PartyGroup(IdMixin, TimestampMixin, Base):
    """A folder of parties; groups nest to any depth.

    ``path`` is the materialized path of ids (``/1/5/9/``) so that "this group and its
    subgroups" is one indexed prefix match.  A smart group has ``rules`` (a condition, see
    :mod:`crmkit.filters`) and no stored members.
    """

    __tablename__ = "party_group"

    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("party_group.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(1000), default="/", index=True)
    smart: Mapped[bool] = mapped_column(Boolean, default=False)
    rules: Mapped[dict[str, Any] | None] = mapped_column()
    price_level: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)


class GroupMembership(Base):
    """A party placed in a (static) group."""

    group_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("party_group.id", ondelete="CASCADE"), primary_key=True
    )
    party_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("party.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Tag(IdMixin, Base):
    """A label that can be put on any record."""

    name: Mapped[str] = mapped_column(String(100), unique=True)
    color: Mapped[str | None] = mapped_column(String(16))


class Tagging(Base):
    """A tag on one record of any entity type."""

    __table_args__ = (
        UniqueConstraint("entity", "record_id", "tag_id"),
        Index("ix_tagging_tag_entity", "tag_id", "entity", "record_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tag_id: Mapped[int] = mapped_column(IdType, ForeignKey("tag.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[int] = mapped_column(IdType)


class PartyMatchKey(Base):
    """A blocking key of a party's name (a word, the sorted words, the words run together).

    Kept on every write by the party service (see :mod:`crmkit.services.screening`):
    screening looks candidates up by key, then scores them with rapidfuzz.
    """

    __table_args__ = (Index("ix_party_match_key_party", "party_id"),)

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    party_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("party.id", ondelete="CASCADE"), primary_key=True
    )


class MatchWord(Base):
    """Every word seen in a party name's skeleton, once: the vocabulary that fuzzy word
    look-up searches (pg_trgm index on PostgreSQL, FTS5 trigram table on SQLite)."""

    __table_args__ = (
        Index(
            "ix_match_word_trgm",
            "word",
            postgresql_using="gin",
            postgresql_ops={"word": "public.gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    word: Mapped[str] = mapped_column(String(120), unique=True)


class MatchWordVariant(Base):
    """A known word and each spelling of it with one letter left out (``romashka`` ->
    ``omashka``, ``rmashka``...): two words one typo apart share a variant, so fuzzy word
    look-up is one indexed ``IN`` query (see :mod:`crmkit.services.screening`)."""

    variant: Mapped[str] = mapped_column(String(120), primary_key=True)
    word: Mapped[str] = mapped_column(String(120), primary_key=True)


#: The SQLite full-text table over ``match_word`` (trigram tokenizer) and the triggers that
#: keep it in step; the schema check ignores it and its shadow tables.
MATCH_WORD_FTS = "match_word_fts"
SQLITE_MATCH_WORD_DDL = (
    f"CREATE VIRTUAL TABLE {MATCH_WORD_FTS} USING fts5(word, content='match_word', "
    "content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER match_word_fts_insert AFTER INSERT ON match_word BEGIN "
    f"INSERT INTO {MATCH_WORD_FTS}(rowid, word) VALUES (new.id, new.word); END",
    "CREATE TRIGGER match_word_fts_delete AFTER DELETE ON match_word BEGIN "
    f"INSERT INTO {MATCH_WORD_FTS}({MATCH_WORD_FTS}, rowid, word) "
    "VALUES ('delete', old.id, old.word); END",
)
#: pg_trgm lives in ``public`` so that every schema (one per test process) can use it.
POSTGRES_TRGM_DDL = (
    "SELECT pg_advisory_xact_lock(7741001)",  # two processes creating it at once
    "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public",
)


def _attach_match_word_ddl() -> None:
    from sqlalchemy import DDL, event

    table = MatchWord.__table__
    for statement in POSTGRES_TRGM_DDL:
        event.listen(table, "before_create", DDL(statement).execute_if(dialect="postgresql"))
    for statement in SQLITE_MATCH_WORD_DDL:
        event.listen(table, "after_create", DDL(statement).execute_if(dialect="sqlite"))
    event.listen(
        table,
        "before_drop",
        DDL(f"DROP TABLE IF EXISTS {MATCH_WORD_FTS}").execute_if(dialect="sqlite"),
    )


_attach_match_word_ddl()
