"""Access rules: roles, the permission table and record scopes applied in SQL."""

from crmkit.access.rules import ACTIONS, Permission, Role, Scope, grant

__all__ = ["ACTIONS", "Permission", "Role", "Scope", "grant"]
