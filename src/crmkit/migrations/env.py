"""Alembic environment for crmkit: every branch (core and plugins) on one metadata.

Run through ``crmkit db ...`` (see :class:`crmkit.db.Migrations`), which passes the open
connection in ``config.attributes``; models of every loaded plugin are imported by then.
"""

from __future__ import annotations

from alembic import context

from crmkit.model import metadata

config = context.config


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
    )
    with context.begin_transaction():
        context.run_migrations()


run()
