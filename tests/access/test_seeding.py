"""Seeding the role and permission tables (``CRM.sync_access``): what plugins declare is
written once, an admin's edits are kept, a seeded cell follows its declaration."""

from __future__ import annotations

import sqlalchemy as sa

from crmkit.access.rules import Permission, Scope
from crmkit.model import PermissionRule, RoleDefinition


def _cells(crm):
    """The permission table as ``{(role, entity, action): (id, scope, source)}``."""
    table = PermissionRule.__table__
    with crm.engine.connect() as connection:
        rows = connection.execute(
            sa.select(table.c.id, table.c.role, table.c.entity, table.c.action).add_columns(
                table.c.scope, table.c.source
            )
        ).all()
    return {(r.role, r.entity, r.action): (r.id, r.scope, r.source) for r in rows}


def _roles(crm):
    table = RoleDefinition.__table__
    with crm.engine.connect() as connection:
        return {
            r.name: (r.label, r.description, r.start_screen)
            for r in connection.execute(sa.select(table))
        }


def test_the_declared_cells_and_roles_are_seeded_once(crm):
    declared = {(p.role, p.entity, p.action): p.scope.label for p in crm.permissions}
    cells = _cells(crm)
    assert {key: scope for key, (_, scope, _) in cells.items()} == declared
    assert {source for _, _, source in cells.values()} == {"plugin"}
    assert len({row_id for row_id, _, _ in cells.values()}) == len(cells)
    roles = _roles(crm)
    assert roles == {
        role.name: (role.label or role.name, role.description, role.start_screen)
        for role in crm.roles.values()
    }

    crm.sync_access()
    crm.sync_access()
    assert _cells(crm) == cells  # the same rows, ids included
    assert _roles(crm) == roles


def test_reseeding_keeps_an_admins_cell_and_follows_the_declarations(crm):
    with crm.system() as work:
        work.permissions.set("agent", "party", "delete", "all")
    before = _cells(crm)
    assert before[("agent", "party", "delete")][1:] == ("all", "admin")
    # a plugin's next version: one cell wider, one new; and one seeded row deleted
    changed = next(p for p in crm.permissions if p.role == "agent" and p.scope is not Scope.ALL)
    crm.permissions = [p for p in crm.permissions if p is not changed]
    crm.permissions.append(Permission(changed.role, changed.entity, changed.action, "all"))
    crm.permissions.append(Permission("agent", "party", "delete", "own"))  # admin's: kept
    crm.permissions.append(Permission("manager", "report", "export", "team"))
    key = (changed.role, changed.entity, changed.action)
    gone = next(k for k, (_, _, source) in before.items() if source == "plugin" and k != key)
    with crm.engine.begin() as connection:
        table = PermissionRule.__table__
        connection.execute(
            table.delete().where(
                table.c.role == gone[0], table.c.entity == gone[1], table.c.action == gone[2]
            )
        )

    crm.sync_access()
    after = _cells(crm)
    assert after[key] == (before[key][0], "all", "plugin")  # the same row, its scope changed
    assert after[("agent", "party", "delete")] == before[("agent", "party", "delete")]
    assert after[("manager", "report", "export")][1:] == ("team", "plugin")
    assert after[gone][1:] == before[gone][1:]
    # an id is never given again, on SQLite too: the deleted row's comes back as a new one
    assert after[gone][0] > max(row_id for row_id, _, _ in before.values())
    assert after[("manager", "report", "export")][0] != after[gone][0]
    others = {
        k: v for k, v in after.items() if k not in (key, gone, ("manager", "report", "export"))
    }
    assert others == {k: v for k, v in before.items() if k in others}
    crm.sync_access()
    assert _cells(crm) == after
