"""Nested groups of parties, and tags.

A group's ``path`` (``/1/5/9/``) lists its ancestors' ids, so "this group and every
subgroup" is one prefix match in SQL and moving a subtree rewrites paths in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, delete, distinct, func, literal, select, update
from sqlalchemy.orm import aliased

from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.filters import compile_condition
from crmkit.i18n import message
from crmkit.model import GroupGrant, GroupMembership, PartyGroup, Tag
from crmkit.services.limits import refusals

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


class _Unset:
    """Marks an argument not given (``None`` is a value: "clear it")."""


class GroupService:
    """Creating and filling groups; resolving tag names."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    @property
    def session(self) -> Any:
        return self.work.session

    def get(self, group_id: int) -> PartyGroup:
        """A group by id (groups themselves are visible to every staff member)."""
        group = self.session.get(PartyGroup, group_id)
        if group is None:
            raise NotFound("group", group_id)
        return group

    def create(
        self,
        name: str,
        parent_id: int | None = None,
        *,
        rules: dict[str, Any] | None = None,
        price_level: str | None = None,
    ) -> PartyGroup:
        """A new group under ``parent_id`` (top level when ``None``); with ``rules`` a smart one."""
        self.work.access.require("party_group", "create")
        if not name or not name.strip():
            raise ValidationFailed({"name": ["a group needs a name"]})
        parent = self.get(parent_id) if parent_id is not None else None
        if parent is not None and parent.smart:
            raise ValidationFailed({"parent_id": ["a smart group cannot hold subgroups"]})
        _fits({"name": name.strip(), "price_level": price_level})
        self.check_rules(rules)
        group = PartyGroup(
            name=name.strip(),
            parent_id=parent_id,
            smart=rules is not None,
            rules=rules,
            price_level=price_level,
            path="/",
        )
        self.session.add(group)
        self.work.flush()
        group.path = f"{parent.path if parent else '/'}{group.id}/"
        self.work.audit(
            "party_group",
            group.id,
            "create",
            {"name": [None, group.name], "parent_id": [None, parent_id]},
        )
        return group

    def check_rules(self, rules: dict[str, Any] | None) -> None:
        """Refuse smart-group rules that name an unknown field or operator, or compare a
        field with a value that is not of its kind (compiled once: a value of another JSON
        type that is, such as ``12`` for a text field, is read as the field's kind)."""
        if rules is None:
            return
        if not isinstance(rules, dict):
            raise ValidationFailed({"rules": ["rules are a condition (a mapping)"]})
        parties = self.work.parties
        try:
            compile_condition(
                parties.entity,
                rules,
                parties.custom_kinds(),
                self.work.crm.filter_fields_for("party"),
                self.work.access.can,  # rules on a guarded field take its permission
            )
        except ValidationFailed as failed:
            raise ValidationFailed({"rules": [str(failed)]}) from None
        except PermissionDenied as refused:  # a field the author may not filter by
            raise ValidationFailed({"rules": [refused.args[0]]}) from None

    def update(
        self,
        group_id: int,
        *,
        name: str | None = None,
        rules: dict[str, Any] | None = None,
        price_level: str | type[_Unset] | None = _Unset,
    ) -> PartyGroup:
        """Rename a group, change a smart group's rules, or set its price level.

        The price level is what the finance plugin reads to price goods for the group's
        members (``PartyGroup.price_level``); ``None`` clears it.
        """
        self.work.access.require("party_group", "update")
        group = self.get(group_id)
        changes: dict[str, Any] = {}
        if name is not None:
            if not name.strip():
                raise ValidationFailed({"name": ["a group needs a name"]})
            _fits({"name": name.strip()})
            changes["name"] = [group.name, name.strip()]
            group.name = name.strip()
        if rules is not None:
            if not group.smart:
                raise ValidationFailed({"rules": ["a static group has members, not rules"]})
            self.check_rules(rules)
            changes["rules"] = [group.rules, rules]
            group.rules = rules
        if price_level is not _Unset:
            level = (price_level or "").strip() or None  # type: ignore[union-attr]
            _fits({"price_level": level})
            changes["price_level"] = [group.price_level, level]
            group.price_level = level
        self.work.flush()
        self.work.audit("party_group", group.id, "update", changes)
        return group

    # -- members -------------------------------------------------------------------------

    def condition(self, group_id: int) -> dict[str, Any]:
        """Which parties a group holds, as a condition: a smart group's rules, or membership
        of the static group and its subgroups."""
        group = self.get(group_id)
        if group.smart:
            return dict(group.rules or {})
        return {"field": "group", "op": "in", "value": [group.id]}

    def members(self, group_id: int, **options: Any) -> Any:
        """A page of the group's members the actor may see (``work.parties.list`` options)."""
        return self.work.parties.list(where=self.condition(group_id), **options)

    def count(self, group_id: int) -> int:
        """How many members of the group the actor may see, counted now in SQL."""
        return self.work.parties.count(where=self.condition(group_id))

    def counts(self, groups: Iterable[PartyGroup]) -> dict[int, int | None]:
        """:meth:`count` of many groups at once: group id -> members the actor may see.

        Static groups (with their subgroups' members) are counted by one grouped query,
        smart groups by one query holding a count per group.  A smart group whose rules the
        actor may not run (a condition on a field that takes a permission they lack) counts
        ``None``.
        """
        groups = list(groups)
        parties = self.work.parties
        result: dict[int, int | None] = {g.id: 0 for g in groups}
        static = [g.id for g in groups if not g.smart]
        if static:
            visible = parties.filtered().with_only_columns(parties.model.id)
            inner = aliased(PartyGroup)
            statement = (
                select(PartyGroup.id, func.count(distinct(GroupMembership.party_id)))
                .join(inner, inner.path.startswith(PartyGroup.path))
                .join(GroupMembership, GroupMembership.group_id == inner.id)
                .where(PartyGroup.id.in_(static), GroupMembership.party_id.in_(visible))
                .group_by(PartyGroup.id)
            )
            result.update({group_id: int(n) for group_id, n in self.session.execute(statement)})
        smart: dict[int, Any] = {}
        for group in groups:
            if not group.smart:
                continue
            try:
                matching = parties.filtered(where=dict(group.rules or {}))
            except PermissionDenied:
                result[group.id] = None
                continue
            smart[group.id] = (
                select(func.count())
                .select_from(matching.with_only_columns(parties.model.id).subquery())
                .scalar_subquery()
            )
        ids = list(smart)
        for start in range(0, len(ids), 100):  # a count per column, a statement per 100 groups
            chunk = ids[start : start + 100]
            row = self.session.execute(select(*(smart[i] for i in chunk))).one()
            result.update({i: int(n or 0) for i, n in zip(chunk, row, strict=True)})
        return result

    def member_ids(self, group_id: int, action: str = "read") -> list[int]:
        """Ids of the members the actor may ``action`` (bulk group actions)."""
        parties = self.work.parties
        statement = parties.filtered(where=self.condition(group_id), action=action)
        return list(
            self.session.scalars(
                statement.with_only_columns(parties.model.id).order_by(parties.model.id)
            )
        )

    def copy_members(self, group_id: int, to_group_id: int) -> int:
        """Put the group's members (smart or static) in another static group too."""
        return self.add_members(to_group_id, self.member_ids(group_id, "update"))

    def move_members(self, group_id: int, to_group_id: int) -> int:
        """Move the members of a static group to another static group."""
        group = self.get(group_id)
        if group.smart:
            raise ValidationFailed({"group": ["a smart group's members follow its rules: copy"]})
        if to_group_id == group.id:  # added, then removed: the group would be emptied
            raise ValidationFailed(
                {"to_group_id": ["the members are in this group already: choose another one"]}
            )
        ids = self.member_ids(group_id, "update")
        own = list(
            self.session.scalars(
                select(GroupMembership.party_id).where(
                    GroupMembership.group_id == group_id, GroupMembership.party_id.in_(ids)
                )
            )
        ) if ids else []  # fmt: skip
        added = self.add_members(to_group_id, ids)
        self.remove_members(group_id, own)
        return added

    def assign_members(self, group_id: int, owner_id: int | None) -> int:
        """Give every member of the group to one manager."""
        return int(self.work.parties.assign(self.member_ids(group_id, "assign"), owner_id))

    def tag_members(self, group_id: int, names: Iterable[str]) -> int:
        """Tag every member of the group."""
        return int(self.work.parties.add_tags(self.member_ids(group_id, "update"), names))

    def move_members_to_stage(self, group_id: int, stage: str, comment: str | None = None) -> Any:
        """Move every member of the group to a stage (refusals are reported, not fatal)."""
        parties = self.work.parties.find_many(self.member_ids(group_id, "update"))
        return self.work.moves.move_many(list(parties.values()), stage, comment=comment)

    def move(self, group_id: int, new_parent_id: int | None) -> PartyGroup:
        """Move a group (with its whole subtree) under another parent."""
        self.work.access.require("party_group", "update")
        group = self.get(group_id)
        parent = self.get(new_parent_id) if new_parent_id is not None else None
        if parent is not None and parent.path.startswith(group.path):
            raise ValidationFailed({"parent_id": ["a group cannot move inside itself"]})
        if parent is not None and parent.smart:
            raise ValidationFailed({"parent_id": ["a smart group cannot hold subgroups"]})
        old_path = group.path
        new_path = f"{parent.path if parent else '/'}{group.id}/"
        self.session.execute(
            update(PartyGroup)
            .where(PartyGroup.path.startswith(old_path))
            .values(
                path=literal(new_path, String) + func.substr(PartyGroup.path, len(old_path) + 1)
            )
            .execution_options(synchronize_session="fetch")
        )
        old_parent = group.parent_id
        group.parent_id = new_parent_id
        self.work.flush()
        self.session.refresh(group)
        self.work.audit("party_group", group.id, "move", {"parent_id": [old_parent, new_parent_id]})
        return group

    def tree(self) -> list[PartyGroup]:
        """Every group in tree order (parents before children)."""
        return list(self.session.scalars(select(PartyGroup).order_by(PartyGroup.path)))

    def subtree_ids(self, group_id: int) -> list[int]:
        """A group's id and the ids of all its subgroups."""
        group = self.get(group_id)
        return list(
            self.session.scalars(
                select(PartyGroup.id).where(PartyGroup.path.startswith(group.path))
            )
        )

    def _static_members(
        self, group_id: int, party_ids: Iterable[int]
    ) -> tuple[PartyGroup, list[int], set[int]]:
        """For changing a static group's members: the group, the ids given (each a party the
        actor may edit, else :class:`NotFound`) and those of them already members."""
        group = self.get(group_id)
        if group.smart:
            raise ValidationFailed({"group": ["a smart group's members follow its rules"]})
        self.work.access.require("party", "update")
        ids = sorted(set(party_ids))
        self._require_editable(ids)
        members = set(
            self.session.scalars(
                select(GroupMembership.party_id).where(
                    GroupMembership.group_id == group_id, GroupMembership.party_id.in_(ids)
                )
            )
        )
        return group, ids, members

    def add_members(self, group_id: int, party_ids: Iterable[int]) -> int:
        """Put visible parties in a static group; returns how many were added."""
        _, ids, present = self._static_members(group_id, party_ids)
        added = [i for i in ids if i not in present]
        for party_id in added:
            self.session.add(GroupMembership(group_id=group_id, party_id=party_id))
            self.work.audit("party", party_id, "group", {"groups": [None, group_id]})
        self.work.flush()
        return len(added)

    def remove_members(self, group_id: int, party_ids: Iterable[int]) -> int:
        """Take members out of a static group; returns how many were taken out.

        Like :meth:`add_members`: a party the actor may not update is :class:`NotFound`,
        and one that is not a member is named, nothing being removed.
        """
        group, ids, members = self._static_members(group_id, party_ids)
        outside = [i for i in ids if i not in members]
        if outside:
            listed = ", ".join(str(i) for i in outside)
            raise ValidationFailed(
                {
                    "party_ids": [
                        message("not in the group {name}: {ids}", name=group.name, ids=listed)
                    ]
                }
            )
        self.session.execute(
            delete(GroupMembership).where(
                GroupMembership.group_id == group_id, GroupMembership.party_id.in_(ids)
            )
        )
        for party_id in ids:
            self.work.audit("party", party_id, "ungroup", {"groups": [group_id, None]})
        return len(ids)

    def _require_editable(self, ids: list[int]) -> None:
        """:class:`NotFound` for the first of ``ids`` the actor may not update (or see)."""
        visible = set(
            self.session.scalars(
                self.work.parties.query("update")
                .with_only_columns(self.work.parties.model.id)
                .where(self.work.parties.model.id.in_(ids))
            )
        )
        missing = [i for i in ids if i not in visible]
        if missing:
            raise NotFound("party", missing[0])

    def groups_of(self, party_id: int) -> list[PartyGroup]:
        """The static groups a visible party is in."""
        party_id = self.work.parties.get(party_id).id
        return list(
            self.session.scalars(
                select(PartyGroup)
                .join(GroupMembership, GroupMembership.group_id == PartyGroup.id)
                .where(GroupMembership.party_id == party_id)
                .order_by(PartyGroup.path)
            )
        )

    def grant(
        self, group_id: int, *, user_id: int | None = None, role: str | None = None
    ) -> GroupGrant:
        """Let a user or a role reach this group's parties under the ``group`` scope."""
        self.work.access.require("permission", "update")
        self.get(group_id)
        if (user_id is None) == (role is None):
            raise ValidationFailed({"_schema": ["grant to a user or to a role"]})
        grant = GroupGrant(group_id=group_id, user_id=user_id, role=role)
        self.session.add(grant)
        self.work.flush()
        self.work.audit(
            "group_grant",
            grant.id,
            "create",
            {"group_id": [None, group_id], "user_id": [None, user_id], "role": [None, role]},
        )
        return grant

    # -- tags ----------------------------------------------------------------------------

    def tag_ids(self, names: Iterable[str]) -> dict[str, int]:
        """Ids of the named tags, creating the ones that do not exist yet."""
        wanted = sorted({n.strip() for n in names if n and n.strip()})
        if not wanted:
            return {}
        found = {
            name: tag_id
            for name, tag_id in self.session.execute(
                select(Tag.name, Tag.id).where(Tag.name.in_(wanted))
            )
        }
        for name in wanted:
            if name not in found:
                if len(name) > 100:
                    raise ValidationFailed({"tags": [f"tag {name[:20]}… is too long"]})
                tag = Tag(name=name)
                self.session.add(tag)
                self.work.flush()
                found[name] = tag.id
        return {name: found[name] for name in wanted}

    def tags(self) -> list[Tag]:
        """Every tag, by name."""
        return list(self.session.scalars(select(Tag).order_by(Tag.name)))


def _fits(values: dict[str, Any]) -> None:
    """Refuse a name or price level longer than its column, naming it (PostgreSQL would
    refuse it without a name: a server error on the groups page; SQLite keep it whole)."""
    refused = refusals(PartyGroup, values)
    if refused:
        raise ValidationFailed(refused)
