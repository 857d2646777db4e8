"""Alembic environment for crmkit: every branch (core and plugins) on one metadata.

Run through ``crmkit db ...`` (see :class:`crmkit.db.Migrations`), which passes the open
connection in ``config.attributes``; models of every loaded plugin are imported by then.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from crmkit.model import metadata

config = context.config


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate looks only at the tables of the branch being written.

    ``config.attributes["tables"]`` (set by :meth:`crmkit.db.Migrations.revision`) names
    them; a table in the database without a model is never dropped, and an index declared
    for another database is not created.
    """
    tables = config.attributes.get("tables")
    if tables is None:
        return True
    if type_ == "table":
        return not reflected and name in tables
    if type_ == "index" and not reflected:
        ddl_if = getattr(obj, "_ddl_if", None)
        dialect = config.attributes["connection"].dialect.name
        if ddl_if is not None and ddl_if.dialect not in (None, dialect):
            return False
    table = getattr(obj, "table", None)
    return getattr(table, "name", None) in tables


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `crmkit db upgrade`, not bare alembic")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        user_module_prefix="crmkit.model.base.",
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
