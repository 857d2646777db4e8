"""Admins' automation rules: list (code and data), create, enable, disable, delete, and
the failures of recent runs.  Reached as ``automation(work)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import select

from crmkit.automation import Rule, rule_from_data
from crmkit.automation.engine import data_rules, ensure_unique, forget_rules, recent_failures
from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.model import AutomationRule

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


@attrs.frozen
class RuleRow:
    """A rule as the rules screen shows it."""

    name: str
    label: str
    source: str
    enabled: bool
    rule: Rule
    runs: int = 0
    failures: int = 0


class AutomationService:
    """Rules as data, with access checks (entity ``automation_rule``)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def rules(self) -> list[RuleRow]:
        """Every rule: code rules first, then admins' (enabled or not)."""
        self.work.access.require("automation_rule", "read")
        rows = [
            RuleRow(rule.name, rule.label, "code", True, rule)
            for rule in self.work.crm.automations.values()
        ]
        stored = {
            row.name: row
            for row in self.work.session.scalars(
                select(AutomationRule).order_by(AutomationRule.name)
            )
        }
        valid = {rule.name: rule for rule in data_rules(self.work.session, enabled_only=False)}
        for name, row in stored.items():
            if name in valid:
                rows.append(
                    RuleRow(
                        name, row.label, "data", row.enabled, valid[name], row.runs, row.failures
                    )
                )
        return rows

    def create(
        self,
        name: str,
        trigger: Mapping[str, Any],
        actions: list[Mapping[str, Any]],
        *,
        condition: Mapping[str, Any] | None = None,
        label: str = "",
        enabled: bool = True,
    ) -> AutomationRule:
        """Store a new rule after validating every part of it."""
        self.work.access.require("automation_rule", "create")
        name = (name or "").strip()
        if not name:
            raise ValidationFailed({"name": ["a rule needs a name"]})
        ensure_unique(self.work.crm, [name])
        if self.work.session.scalar(select(AutomationRule.id).where(AutomationRule.name == name)):
            raise ValidationFailed({"name": [f"a rule named {name!r} exists"]})
        rule = rule_from_data(name, trigger, list(actions), condition, label)
        data = rule.to_data()
        row = AutomationRule(
            name=name,
            label=label,
            trigger=data["trigger"],
            condition=data["condition"],
            actions=data["actions"],
            enabled=enabled,
            created_at=utcnow(),
            updated_at=utcnow(),
            runs=0,
            failures=0,
        )
        self.work.session.add(row)
        self.work.flush()
        self.work.audit("automation_rule", row.id, "create", {"name": [None, name]})
        self._changed()
        return row

    def _row(self, name: str) -> AutomationRule:
        row = self.work.session.scalar(select(AutomationRule).where(AutomationRule.name == name))
        if row is None:
            raise NotFound("automation_rule", name)
        return row

    def set_enabled(self, name: str, enabled: bool) -> AutomationRule:
        """Switch an admin's rule on or off."""
        self.work.access.require("automation_rule", "update")
        row = self._row(name)
        if row.enabled != enabled:
            self.work.audit(
                "automation_rule", row.id, "update", {"enabled": [row.enabled, enabled]}
            )
            row.enabled = enabled
            row.updated_at = utcnow()
            self._changed()
        return row

    def delete(self, name: str) -> None:
        """Remove an admin's rule."""
        self.work.access.require("automation_rule", "delete")
        row = self._row(name)
        self.work.audit("automation_rule", row.id, "delete", {"name": [name, None]})
        self.work.session.delete(row)
        self._changed()

    def _changed(self) -> None:
        # now (the same transaction may go on to trigger the rule) and after commit
        crm = self.work.crm
        forget_rules(crm)
        self.work.after_commit(lambda: forget_rules(crm))

    def failures(self, rule: str | None = None, limit: int = 50) -> list[Any]:
        """Recent failed runs, newest first, with their error."""
        self.work.access.require("automation_rule", "read")
        return recent_failures(self.work.session, rule, limit)


def automation(work: UnitOfWork) -> AutomationService:
    """The automation service of a unit of work."""
    return work.service("automation", AutomationService)
