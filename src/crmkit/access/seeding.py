"""Seeding the role and permission tables from what plugins declare."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session

from crmkit.access.rules import Permission, Role
from crmkit.model import PermissionRule, RoleDefinition

_ROLES = RoleDefinition.__table__
_CELLS = PermissionRule.__table__
_INSERT_ROLES = insert(_ROLES)
_INSERT_CELLS = insert(_CELLS)
_FOLLOW_DECLARATION = (
    update(_CELLS).where(_CELLS.c.id == bindparam("row_id")).values(scope=bindparam("new_scope"))
)


def seed_roles_and_permissions(
    session: Session | Connection, roles: Iterable[Role], permissions: Iterable[Permission]
) -> int:
    """Insert declared roles and permission cells that are not in the tables yet.

    Cells an admin changed (``source == "admin"``) are never touched; cells still as seeded
    follow the plugin's current declaration.  Returns the number of rows written.

    Written with Core statements on the session's connection: one read of each table, then
    one ``executemany`` per kind of change, for only the rows missing or changed (a new
    application seeds a hundred cells or more; through the ORM that was most of the cost
    of making one).
    """
    connection = session.connection() if isinstance(session, Session) else session
    existing_roles = set(connection.execute(select(_ROLES.c.name)).scalars())
    new_roles = {
        role.name: {
            "name": role.name,
            "label": role.label or role.name,
            "description": role.description,
            "start_screen": role.start_screen,
        }
        for role in roles
        if role.name not in existing_roles
    }
    cells = {(p.role, p.entity, p.action): p for p in permissions}
    existing = {
        (row.role, row.entity, row.action): row
        for row in connection.execute(
            select(
                _CELLS.c.id,
                _CELLS.c.role,
                _CELLS.c.entity,
                _CELLS.c.action,
                _CELLS.c.scope,
                _CELLS.c.source,
            )
        )
    }
    new_cells: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for key, permission in cells.items():
        row = existing.get(key)
        if row is None:
            new_cells.append(
                {
                    "role": permission.role,
                    "entity": permission.entity,
                    "action": permission.action,
                    "scope": permission.scope.label,
                    "source": "plugin",
                }
            )
        elif row.source == "plugin" and row.scope != permission.scope.label:
            changed.append({"row_id": row.id, "new_scope": permission.scope.label})
    if new_roles:
        connection.execute(_INSERT_ROLES, list(new_roles.values()))
    if new_cells:
        _number(connection, new_cells)
        connection.execute(_INSERT_CELLS, new_cells)
    if changed:
        connection.execute(_FOLLOW_DECLARATION, changed)
    return len(new_roles) + len(new_cells) + len(changed)


def _number(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Give new rows their ids on SQLite, above every id the table ever had (ids are never
    reused: :mod:`crmkit.model.ids`); PostgreSQL's sequence gives them elsewhere."""
    if connection.dialect.name != "sqlite":
        return
    from crmkit.services.bulk import allocate_ids

    for row, row_id in zip(rows, allocate_ids(connection, _CELLS, len(rows)), strict=True):
        row["id"] = row_id
