"""A counter that moves whenever anything that shapes access rules changes.

Loading an actor (roles, teams, teammates, granted groups) and its permission table costs
several queries; a web process keeps loaded actors and reuses them while nothing changed
(see :mod:`crmkit.access.cache`).  "Nothing changed" is this one row: database triggers
bump ``value`` on every write to the tables actors are built from, in the writing
transaction, whatever code path (service, plugin, raw SQL) did the write.  Every process
reads it with the request's first query, so a change takes effect on the next request
everywhere.  (Blocking, role changes and password changes are seen even more directly: the
user's own row is read on every request.)
"""

from __future__ import annotations

from sqlalchemy import DDL, BigInteger, Integer, event
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.model.base import Base

#: Tables whose rows actors and permission scopes are built from.
WATCHED_TABLES = ("user_role", "team_member", "group_grant", "permission", "party_group")


class AccessGeneration(Base):
    """The single row (``id`` 1) counting changes to access-shaping tables."""

    __tablename__ = "access_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


def trigger_statements(dialect: str, table: str) -> tuple[str, ...]:
    """The DDL that makes writes to ``table`` bump the access generation."""
    if dialect == "postgresql":
        return (
            "CREATE OR REPLACE FUNCTION crmkit_bump_access_generation() RETURNS trigger AS $$ "
            "BEGIN INSERT INTO access_generation (id, value) VALUES (1, 1) "
            "ON CONFLICT (id) DO UPDATE SET value = access_generation.value + 1; "
            "RETURN NULL; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER {table}_access_generation "
            f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION crmkit_bump_access_generation()",
        )
    if dialect == "sqlite":
        bump = (
            "INSERT OR REPLACE INTO access_generation (id, value) VALUES "
            "(1, coalesce((SELECT value FROM access_generation WHERE id = 1), 0) + 1)"
        )
        return tuple(
            f"CREATE TRIGGER {table}_access_generation_{op.lower()} AFTER {op} ON {table} "
            f"BEGIN {bump}; END"
            for op in ("INSERT", "UPDATE", "DELETE")
        )
    return ()


def _attach_triggers(table: str) -> None:
    for dialect in ("postgresql", "sqlite"):
        for statement in trigger_statements(dialect, table):
            event.listen(
                Base.metadata.tables[table],
                "after_create",
                DDL(statement).execute_if(dialect=dialect),
            )


def attach_all_triggers() -> None:
    """Create the triggers with the watched tables (``metadata.create_all``, tests)."""
    for table in WATCHED_TABLES:
        _attach_triggers(table)
