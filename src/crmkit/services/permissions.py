"""The permission table as an admin edits it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from crmkit.access.policy import load_scopes, scope_in
from crmkit.access.rules import ACTIONS, Scope
from crmkit.errors import ValidationFailed
from crmkit.i18n import Label, message
from crmkit.model import PermissionRule, RoleDefinition

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


class PermissionService:
    """Reading and changing cells of the role x entity x action table."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def table(self) -> list[PermissionRule]:
        """Every cell, by role, entity and action."""
        self.work.access.require("permission", "read")
        return list(
            self.work.session.scalars(
                select(PermissionRule).order_by(
                    PermissionRule.role, PermissionRule.entity, PermissionRule.action
                )
            )
        )

    def roles(self) -> list[RoleDefinition]:
        """Every stored role."""
        return list(self.work.session.scalars(select(RoleDefinition).order_by(RoleDefinition.name)))

    def effective(self, role: str) -> dict[tuple[str, str], tuple[Scope, bool]]:
        """What ``role`` alone reaches per (entity, action) of every entity: the scope, and
        whether it comes from a ``*`` row rather than the entity's own cell."""
        self.work.access.require("permission", "read")
        scopes = load_scopes(self.work.session, [role])
        result: dict[tuple[str, str], tuple[Scope, bool]] = {}
        for entity in self.work.crm.entities:
            for action in {*ACTIONS, *self.work.crm.actions_of(entity.name)}:
                scope = scope_in(scopes, entity.name, action)
                own = scopes.get((entity.name, action), Scope.NONE)
                result[(entity.name, action)] = (scope, scope > own)
        return result

    def set(self, role: str, entity: str, action: str, scope: str | Scope) -> PermissionRule:
        """Set one cell (``none`` revokes); the change is kept across restarts and upgrades.

        The widest cell wins, ``*`` rows included (see ``scope_in``): a cell narrower than
        what the role's ``*`` rows give would change nothing, so it is refused, naming them.
        """
        self.work.access.require("permission", "update")
        try:
            parsed = Scope.parse(scope)
        except ValueError as exc:
            raise ValidationFailed({"scope": [str(exc)]}) from None
        if role not in self.work.crm.roles and self.work.session.get(RoleDefinition, role) is None:
            raise ValidationFailed({"role": [f"unknown role {role!r}"]})
        if entity != "*" and entity not in self.work.crm.entities:
            raise ValidationFailed({"entity": [f"unknown entity {entity!r}"]})
        wild = {
            key: value
            for key, value in load_scopes(self.work.session, [role]).items()
            if "*" in key and key != (entity, action)
        }
        given = scope_in(wild, entity, action)
        if parsed < given:
            raise ValidationFailed(
                {
                    "scope": [
                        message(
                            "the role's row for every entity or action already gives "
                            "“{scope}”: a narrower cell would change nothing",
                            scope=Label(given.label),
                        )
                    ]
                }
            )
        row = self.work.session.scalar(
            select(PermissionRule).where(
                PermissionRule.role == role,
                PermissionRule.entity == entity,
                PermissionRule.action == action,
            )
        )
        old = row.scope if row else None
        if row is None:
            row = PermissionRule(
                role=role, entity=entity, action=action, scope=parsed.label, source="admin"
            )
            self.work.session.add(row)
        else:
            row.scope = parsed.label
            row.source = "admin"
        self.work.flush()
        self.work.audit(
            "permission",
            row.id,
            "update",
            {"cell": [None, f"{role}/{entity}/{action}"], "scope": [old, parsed.label]},
        )
        return row
