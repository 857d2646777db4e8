"""Declarative base, column types and mixins shared by every crmkit table.

All models (core and plugins) live on one :data:`metadata`.  Table names are derived from the
class name (``ContactPoint`` -> ``contact_point``); a plugin prefixes its own tables by setting
``__tablename__`` or by naming its classes (``FinanceOrder`` -> ``finance_order``).
Constraint names follow :data:`NAMING_CONVENTION` so that Alembic can alter them on SQLite too.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from crmkit.clock import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no time zones, so values are stored naive in UTC and come back tagged UTC;
    a naive value given to the database is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: crmkit stores aware UTC times only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Any) -> Any:
        """On SQLite, the stored text in one step: what :meth:`process_bind_param` and then
        SQLite's ``DATETIME`` make (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), without two
        wrappers and a ``%`` format of seven fields per value (bulk inserts write several
        timestamps a row)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        utc, datetime = dt.UTC, dt.datetime

        def process(value: Any) -> str | None:
            if value is None:
                return None
            if not isinstance(value, datetime):
                raise TypeError(f"{value!r}: a UTC timestamp column takes a datetime")
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r}: crmkit stores aware UTC times only")
            return value.astimezone(utc).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return _aware_in_utc(value)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        """On SQLite, one C-level parse per value instead of a regex, a build and a replace.

        SQLite keeps these values as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` text in UTC, which
        :meth:`datetime.fromisoformat` reads directly; list pages read four of them per row.
        """
        if dialect.name != "sqlite":
            if self.impl_instance.result_processor(dialect, coltype) is not None:
                return super().result_processor(dialect, coltype)
            return _aware_in_utc  # the driver's aware values: one call, not two wrappers
        parse = dt.datetime.fromisoformat

        def process(value: Any) -> dt.datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                return parse(value + "+00:00")  # tagged UTC while parsing: no replace()
            return self.process_result_value(value, dialect)  # a non-text value, rare

        return process


def _aware_in_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A stored timestamp as an aware UTC value (naive ones are UTC already); on a server
    database the result processor itself, one plain call per value."""
    if value is None:
        return None
    zone = value.tzinfo
    if zone is dt.UTC:  # crmkit's PostgreSQL sessions are in UTC (crmkit.db.make_engine)
        return value
    if zone is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


class Amount(TypeDecorator[Decimal]):
    """An exact decimal amount stored as an integer count of minor units.

    Integer storage keeps sums exact on SQLite (whose NUMERIC is a float) and makes
    ``SUM`` fast on both backends.  ``scale`` is the number of decimal places kept;
    a value with more places is refused, never silently rounded.
    """

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self._factor = Decimal(10) ** scale

    def process_bind_param(self, value: Decimal | int | str | None, dialect: Any) -> int | None:
        if value is None:
            return None
        amount = Decimal(value) * self._factor
        if amount != amount.to_integral_value():
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        return int(amount)

    def process_result_value(self, value: int | None, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(value) / self._factor).quantize(Decimal(1).scaleb(-self.scale))


#: JSON on SQLite, JSONB on PostgreSQL (indexable, compact).
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")

#: A 64-bit id on PostgreSQL; INTEGER PRIMARY KEY (the rowid) on SQLite.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of every crmkit model (core and plugins)."""

    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        Decimal: Amount(),
    }

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return _snake(cls.__name__)

    def __repr__(self) -> str:
        ident = getattr(self, "id", None)
        return f"<{type(self).__name__} {ident}>"


class IdMixin:
    """Integer surrogate key (allocated in batches by the bulk paths)."""

    id: Mapped[int] = mapped_column(IdType, primary_key=True)


class TimestampMixin:
    """Creation and last-change times, set by the services (UTC)."""

    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def user_fk(**kwargs: Any) -> Any:
    """A nullable foreign key to ``user.id`` that survives the user's deletion."""
    return mapped_column(
        IdType, ForeignKey("user.id", ondelete="SET NULL"), nullable=True, **kwargs
    )


def party_fk(nullable: bool = True, **kwargs: Any) -> Any:
    """A foreign key to ``party.id``."""
    ondelete = "SET NULL" if nullable else "CASCADE"
    return mapped_column(
        IdType, ForeignKey("party.id", ondelete=ondelete), nullable=nullable, **kwargs
    )


class OwnedMixin:
    """A record that belongs to a user and, through them, to a team: the basis of scopes."""

    @declared_attr
    def owner_id(cls) -> Mapped[int | None]:
        return user_fk(index=True)

    @declared_attr
    def created_by_id(cls) -> Mapped[int | None]:
        return user_fk()


class CustomFieldsMixin:
    """Admin-defined fields, validated against :class:`FieldDefinition` rows, kept as JSON."""

    custom: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class VersionedMixin:
    """Optimistic locking: every UPDATE checks and bumps ``version``.

    Two sessions that loaded version 3 cannot both write: the second UPDATE matches no
    row and the services turn SQLAlchemy's ``StaleDataError`` into :class:`Conflict`.
    """

    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class PipelineMixin(VersionedMixin):
    """A record driven by a pipeline: which pipeline, which stage, since when."""

    pipeline: Mapped[str | None] = mapped_column(String(64), index=True)
    stage: Mapped[str | None] = mapped_column(String(64))
    stage_entered_at: Mapped[dt.datetime | None] = mapped_column()


class RecordRefMixin:
    """A loose link to any record (``record_entity`` names an entity type, ``record_id`` its id).

    Used where the linked record may live in a plugin's table (an order, a product), which
    the core cannot reference by foreign key.
    """

    record_entity: Mapped[str | None] = mapped_column(String(64))
    record_id: Mapped[int | None] = mapped_column(IdType)


def now_default() -> Any:
    """Server-side default of the current time (for columns filled by bulk SQL)."""
    return func.current_timestamp()
