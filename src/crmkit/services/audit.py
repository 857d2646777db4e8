"""Reading the append-only audit log; masking private values its old rows kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import DBAPIError

from crmkit.db import transactional_ddl
from crmkit.model import AuditEntry
from crmkit.model.system import AUDIT_APPEND_ONLY
from crmkit.schemas.output import is_private, mask_private

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


class AuditService:
    """Who changed what: per record (for those who may read it) or overall (``audit`` read)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def for_record(self, entity: str, record_id: int) -> list[AuditEntry]:
        """The history of one visible record, oldest first."""
        self.work.records(entity).get(record_id)
        return list(
            self.work.session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity == entity, AuditEntry.record_id == record_id)
                .order_by(AuditEntry.id)
            )
        )

    def latest(
        self,
        *,
        entity: str | None = None,
        actor_id: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """The newest entries of the whole log (needs ``read`` on ``audit_log``)."""
        self.work.access.require("audit_log", "read")
        statement = select(AuditEntry)
        if entity:
            statement = statement.where(AuditEntry.entity == entity)
        if actor_id is not None:
            statement = statement.where(AuditEntry.actor_id == actor_id)
        if before_id is not None:
            statement = statement.where(AuditEntry.id < before_id)
        return list(
            self.work.session.scalars(
                statement.order_by(AuditEntry.id.desc()).limit(min(limit, 1000))
            )
        )


@attrs.frozen
class Scrubbed:
    """What :func:`scrub_private` did: audit rows read and rows rewritten."""

    checked: int
    changed: int


def private_entities(crm: Any) -> dict[str, type[Any]]:
    """The registered entities (core and plugins) with private columns, by name."""
    found: dict[str, type[Any]] = {}
    for entity in crm.entities:
        table = getattr(entity.model, "__table__", None)
        if table is not None and any(is_private(column) for column in table.columns):
            found[entity.name] = entity.model
    return found


def scrub_private(crm: Any, *, batch_size: int = 1000) -> Scrubbed:
    """Mask private column values in audit rows written before :meth:`UnitOfWork.audit`
    masked them, with the same rule (:func:`~crmkit.schemas.output.mask_private`).

    Reads the rows of entities with private columns in id order, ``batch_size`` per
    transaction, and rewrites only those that would change, so a second run changes
    nothing.  ``audit_log`` refuses updates (a trigger): each batch's transaction lifts
    that trigger for its own update and puts it back before committing.

    The batch is one transaction on both databases, its DDL included.  PostgreSQL's DDL
    is transactional anyway; on SQLite the driver would run ``DROP TRIGGER`` outside any
    transaction (it begins one only before a write) and commit it at once, so a failure
    in the batch would leave the log updatable.  Each batch therefore runs as
    :meth:`crmkit.db.Migrations` runs its revisions (:func:`crmkit.db.transactional_ddl`,
    ``BEGIN IMMEDIATE``: the write lock from the batch's first read), and a failure
    anywhere in it rolls back the drop with the rewrites: the trigger and every row of the
    batch stay as they were, while the batches committed before it stay masked.  On
    PostgreSQL other writers of the audit log wait for the batch to commit; on SQLite
    every writer does.
    """
    models = private_entities(crm)
    checked = changed = 0
    if not models:
        return Scrubbed(0, 0)
    table = AuditEntry.__table__
    last = 0
    while True:
        with crm.engine.connect() as connection, transactional_ddl(connection), connection.begin():
            if connection.dialect.name == "sqlite":
                # the driver no longer begins for us: the DROP TRIGGER below is then part of
                # the batch's transaction; IMMEDIATE: the write lock before the reads
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            rows = connection.execute(
                select(table.c.id, table.c.entity, table.c.changes)
                .where(table.c.entity.in_(sorted(models)), table.c.id > last)
                .order_by(table.c.id)
                .limit(batch_size)
            ).all()
            if not rows:
                break
            last = rows[-1].id
            checked += len(rows)
            rewritten = []
            for row in rows:
                if not isinstance(row.changes, dict):
                    continue
                masked = mask_private(models[row.entity], row.changes)
                if masked != row.changes:
                    rewritten.append({"row_id": row.id, "masked": masked})
            if rewritten:
                with _updatable_audit(connection):
                    connection.execute(
                        update(table)
                        .where(table.c.id == bindparam("row_id"))
                        .values(changes=bindparam("masked")),
                        rewritten,
                    )
                changed += len(rewritten)
    return Scrubbed(checked, changed)


#: The trigger that refuses an UPDATE of ``audit_log``, per dialect, and how it is made
#: again (the statements of :data:`~crmkit.model.system.AUDIT_APPEND_ONLY`).
_UPDATE_TRIGGER = {
    "sqlite": ("audit_log_no_update", "DROP TRIGGER audit_log_no_update", 0),
    "postgresql": ("audit_log_append_only", "DROP TRIGGER audit_log_append_only ON audit_log", 1),
}


@contextmanager
def _updatable_audit(connection: Any) -> Iterator[None]:
    """Within ``connection``'s transaction (which must run DDL transactionally, see
    :func:`scrub_private`): the update trigger dropped, then made again, whatever happens
    in the block.

    After a failure the transaction is to be rolled back, which restores the trigger by
    itself; it is made again here too, so that no caller that went on to commit could
    keep the log updatable.  A PostgreSQL transaction that failed refuses every statement
    until its rollback: then the rollback alone restores it, and the block's own error is
    the one raised.
    """
    dialect = connection.dialect.name
    name, drop, statement = _UPDATE_TRIGGER.get(dialect, (None, "", 0))
    if name is None or not _has_trigger(connection, dialect, name):
        yield
        return
    create = text(AUDIT_APPEND_ONLY[dialect][statement])
    connection.execute(text(drop))
    try:
        yield
    except BaseException:
        with suppress(DBAPIError):
            connection.execute(create)
        raise
    connection.execute(create)


def _has_trigger(connection: Any, dialect: str, name: str) -> bool:
    if dialect == "sqlite":
        query = "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = :name"
    else:
        query = "SELECT 1 FROM pg_trigger WHERE tgname = :name AND NOT tgisinternal"
    return connection.execute(text(query), {"name": name}).first() is not None
