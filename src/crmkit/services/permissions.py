"""The permission table as an admin edits it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from crmkit.access.rules import Scope
from crmkit.errors import ValidationFailed
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

    def set(self, role: str, entity: str, action: str, scope: str | Scope) -> PermissionRule:
        """Set one cell (``none`` revokes); the change is kept across restarts and upgrades."""
        self.work.access.require("permission", "update")
        try:
            parsed = Scope.parse(scope)
        except ValueError as exc:
            raise ValidationFailed({"scope": [str(exc)]}) from None
        if role not in self.work.crm.roles and self.work.session.get(RoleDefinition, role) is None:
            raise ValidationFailed({"role": [f"unknown role {role!r}"]})
        if entity != "*" and entity not in self.work.crm.entities:
            raise ValidationFailed({"entity": [f"unknown entity {entity!r}"]})
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
