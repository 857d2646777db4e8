"""Ids are never reused, on SQLite too.

PostgreSQL draws ids from sequences, which never go back.  SQLite gives a new row the
largest id in the table plus one, so deleting the newest deal handed its id to the next one,
and with it everything still linked by ``(entity, record_id)``: notes, files, tasks, stage
history, the documents a stage requires.  ``AUTOINCREMENT`` would prevent it but can only be
added by rebuilding every table; instead a table-per-row high-water mark does:

* a trigger on every table with an integer ``id`` key records the largest id ever deleted
  (``id_high_water``), whatever deleted it (a service, a cascade, raw SQL);
* a session hook gives new rows ids above both the mark and the table's largest id (one
  small query per table per flush, only on SQLite), and
  :func:`~crmkit.services.bulk.allocate_ids` starts after it.

:func:`ensure_triggers` creates the missing triggers: with ``metadata.create_all``, in the
migration that adds the table, and after every ``crmkit db upgrade`` (for tables a plugin
adds later).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, Integer, String, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from crmkit.model.base import Base, IdMixin

HIGH_WATER_TABLE = "id_high_water"


class IdHighWater(Base):
    """The largest id ever deleted from a table (SQLite; see the module)."""

    __tablename__ = HIGH_WATER_TABLE

    table_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)


def _trigger(table: str) -> str:
    return (
        f'CREATE TRIGGER IF NOT EXISTS "{table}_id_high_water" AFTER DELETE ON "{table}" '
        f"BEGIN INSERT INTO {HIGH_WATER_TABLE} (table_name, last_id) VALUES ('{table}', OLD.id) "
        "ON CONFLICT (table_name) DO UPDATE SET last_id = max(last_id, excluded.last_id); END"
    )


def id_tables(connection: Connection) -> list[str]:
    """Tables of a SQLite database whose key is one integer column ``id`` (the rowid)."""
    tables = connection.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        f"AND name NOT IN ('{HIGH_WATER_TABLE}', 'alembic_version') ORDER BY name"
    ).all()
    # full-text indexes and their shadow tables number their own rows
    virtual = [name for name, sql in tables if (sql or "").upper().startswith("CREATE VIRTUAL")]
    found = []
    for name, _ in tables:
        if any(name == v or name.startswith(f"{v}_") for v in virtual):
            continue
        columns = connection.exec_driver_sql(f'PRAGMA table_info("{name}")').all()
        keys = [c for c in columns if c[5]]  # (cid, name, type, notnull, default, pk)
        if len(keys) == 1 and keys[0][1] == "id" and keys[0][2].upper() == "INTEGER":
            found.append(name)
    return found


def ensure_triggers(connection: Connection) -> None:
    """Create the high-water triggers a SQLite database lacks (nothing elsewhere)."""
    if connection.dialect.name != "sqlite":
        return
    existing = set(
        connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
            (HIGH_WATER_TABLE,),
        ).scalars()
    )
    if not existing:
        return
    for table in id_tables(connection):
        connection.exec_driver_sql(_trigger(table))


@event.listens_for(Base.metadata, "after_create")
def _triggers_with_the_tables(target: Any, connection: Connection, **kw: Any) -> None:
    ensure_triggers(connection)


def high_water(connection: Connection, table: str) -> int:
    """The id new rows of ``table`` must stay above: its largest id, or a larger deleted one."""
    row = connection.exec_driver_sql(
        f'SELECT (SELECT max(id) FROM "{table}"), '
        f"(SELECT last_id FROM {HIGH_WATER_TABLE} WHERE table_name = ?)",
        (table,),
    ).one()
    return max(row[0] or 0, row[1] or 0)


def assign_ids_above_the_mark(session: Session, flush_context: Any, instances: Any) -> None:
    """``before_flush`` on SQLite: new rows get ids above every id the table ever had."""
    pending: dict[str, list[Any]] = defaultdict(list)
    for instance in session.new:
        if isinstance(instance, IdMixin) and instance.id is None:
            pending[type(instance).__table__.name].append(instance)
    if not pending:
        return
    connection = session.connection()
    if not connection.connection.driver_connection.in_transaction:
        # the flush is about to write: take the write lock before reading the largest ids,
        # or a concurrent writer could take the same ones in between (as allocate_ids does)
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    for table, instances in pending.items():
        start = high_water(connection, table) + 1
        for offset, instance in enumerate(instances):
            instance.id = start + offset


def install(session_factory: Any, dialect: str) -> None:
    """Hook :func:`assign_ids_above_the_mark` into an application's sessions (SQLite)."""
    if dialect == "sqlite":
        event.listen(session_factory, "before_flush", assign_ids_above_the_mark)
