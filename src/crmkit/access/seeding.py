"""Seeding the role and permission tables from what plugins declare."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmkit.access.rules import Permission, Role
from crmkit.model import PermissionRule, RoleDefinition


def seed_roles_and_permissions(
    session: Session, roles: Iterable[Role], permissions: Iterable[Permission]
) -> int:
    """Insert declared roles and permission cells that are not in the tables yet.

    Cells an admin changed (``source == "admin"``) are never touched; cells still as seeded
    follow the plugin's current declaration.  Returns the number of rows written.
    """
    written = 0
    existing_roles = {r.name: r for r in session.scalars(select(RoleDefinition))}
    for role in roles:
        row = existing_roles.get(role.name)
        if row is None:
            session.add(
                RoleDefinition(
                    name=role.name,
                    label=role.label or role.name,
                    description=role.description,
                    start_screen=role.start_screen,
                )
            )
            written += 1
    cells = {(p.role, p.entity, p.action): p for p in permissions}
    existing = {(r.role, r.entity, r.action): r for r in session.scalars(select(PermissionRule))}
    for key, permission in cells.items():
        row = existing.get(key)
        if row is None:
            session.add(
                PermissionRule(
                    role=permission.role,
                    entity=permission.entity,
                    action=permission.action,
                    scope=permission.scope.label,
                    source="plugin",
                )
            )
            written += 1
        elif row.source == "plugin" and row.scope != permission.scope.label:
            row.scope = permission.scope.label
            written += 1
    return written
