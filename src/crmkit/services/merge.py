"""Merging duplicate parties into one.

``work.merges.merge(survivor, merged, keep={...})`` keeps ``survivor`` and folds ``merged``
into it, in one transaction:

* fields: for each field named in ``keep`` the value is taken from the party given there
  (``{"name": merged.id, "custom.inn": merged.id}``); every other field keeps the
  survivor's value, and fields empty on the survivor are filled from the merged party;
* both parties are locked first and read again: a merge that touched either of them
  meanwhile (another person merging one of them away) is refused, never built upon;
* every row that points at the merged party by foreign key — activities, tasks, deals,
  files, events, reminders, persons of an organisation, contact points, group memberships,
  plugins' tables — and every loose link (``record_entity = 'party'``) and tag moves to the
  survivor; repeats (the same phone twice, the same group twice) are dropped;
* a row that may exist once per party and something else (a unique key such as a
  mailing's ``(campaign_id, party_id)``) is kept once, the survivor's; where dropping the
  merged party's row would lose more than a repeat (the row is the only one per party, or
  other rows refer to it) the merge is refused, naming the table;
* columns a plugin names in ``crmkit_register_party_merge_columns`` are left alone: the
  plugin moves those rows itself in ``crmkit_party_merged``, which runs afterwards (a
  table's ``record_id`` named there keeps its loose links to the merged party);
* the merged party stays as a row with ``merged_into_id``: lists and screening no longer
  show it, and its id still resolves to the survivor (the card redirects, the API and
  ``work.parties.get`` answer with the survivor);
* an audit entry on both parties and a ``merge`` entry on the survivor's timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint, and_, delete, exists, select, update
from sqlalchemy.orm import aliased
from sqlalchemy.orm.exc import ObjectDeletedError

from crmkit import events
from crmkit.db import lock_row
from crmkit.errors import Conflict, NotFound, ValidationFailed
from crmkit.i18n import message
from crmkit.model import ContactPoint, GroupMembership, Party, Tagging
from crmkit.services.records import jsonable
from crmkit.services.screening import forget_names

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

#: Party attributes a person chooses between when merging (custom fields are added).
MERGE_FIELDS = (
    "name",
    "kind",
    "customer_type",
    "first_name",
    "last_name",
    "organisation_id",
    "position",
    "source",
    "description",
    "language",
    "owner_id",
    "team_id",
)
#: Foreign keys to ``party.id`` the merge handles itself (or must never move).
_SPECIAL = {("party", "merged_into_id"), ("party_match_key", "party_id")}


class MergeService:
    """Fold duplicate parties into one (``work.merges``)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    @property
    def session(self) -> Any:
        return self.work.session

    def fields(self, survivor: Any, merged: Any) -> list[dict[str, Any]]:
        """What a merge screen shows: each field with both values and whether they differ."""
        survivor = self.work.parties.get(survivor)
        merged = self.work.parties.get(merged)
        rows = []
        for field in MERGE_FIELDS:
            rows.append(self._field(field, getattr(survivor, field), getattr(merged, field)))
        keys = sorted(set(survivor.custom or {}) | set(merged.custom or {}))
        for key in keys:
            rows.append(
                self._field(
                    f"custom.{key}",
                    (survivor.custom or {}).get(key),
                    (merged.custom or {}).get(key),
                )
            )
        return rows

    @staticmethod
    def _field(name: str, ours: Any, theirs: Any) -> dict[str, Any]:
        return {"field": name, "survivor": ours, "merged": theirs, "differ": ours != theirs}

    def merge(self, survivor: Any, merged: Any, *, keep: Mapping[str, Any] | None = None) -> Party:
        """Fold ``merged`` into ``survivor``; ``keep`` maps a field to the party whose value wins.

        Needs ``update`` on the survivor and ``delete`` on the merged party.  Returns the
        survivor.  Nothing is written if anything fails.
        """
        # an old id of the survivor reaches the party it became (the duplicate is added to
        # it); an old id of the duplicate is refused: it would merge away its survivor
        target = self.work.parties.get(survivor, action="update", follow_merge=True)
        other = self.work.parties.get(merged, action="delete")
        if target.id == other.id:
            raise ValidationFailed({"merged": ["a party cannot be merged into itself"]})
        with self.work.savepoint():
            self._hold(target, other)
            changes = self._fields(target, other, keep or {})
            self._move_rows(target.id, other.id)
            self.work.crm.pm.hook.crmkit_party_merged(work=self.work, survivor=target, merged=other)
            other.merged_into_id = target.id
            self.work.flush()
            forget_names(self.session.connection(), [other.id])
            if "name" in changes or "kind" in changes:
                self.work.parties.index_name(target, replace=True)
            self.work.parties.forget(other.id)
            self.work.parties.forget(target.id)
            self.work.audit(
                "party",
                target.id,
                "merge",
                {"merged": [None, other.id], "merged_name": [None, other.name], **changes},
            )
            self.work.audit("party", other.id, "merged_into", {"merged_into_id": [None, target.id]})
            self.work.timeline.add(
                "merge",
                party_id=target.id,
                subject=other.name,
                body="",
                data={"merged_id": other.id, "merged_name": other.name, "fields": sorted(changes)},
            )
            self.work.emit(
                events.RECORD_UPDATED, "party", target.id, party_id=target.id, changes=changes
            )
            self.work.emit(
                events.RECORD_DELETED, "party", other.id, party_id=target.id, merged_into=target.id
            )
        return target

    def _hold(self, *parties: Party) -> None:
        """Lock the parties (in id order: two merges never wait for each other crosswise)
        and read them again; one merged away since it was read is a :class:`Conflict`."""
        for party in sorted(parties, key=lambda p: p.id):
            lock_row(self.session, Party, party.id)
        for party in parties:
            try:
                self.session.refresh(party)
            except ObjectDeletedError:
                raise NotFound("party", party.id) from None
            if party.merged_into_id is not None:
                raise Conflict(
                    "party",
                    party.id,
                    f"{party.name} was merged into another party meanwhile; reload and try again",
                )

    def _fields(self, target: Party, other: Party, keep: Mapping[str, Any]) -> dict[str, Any]:
        keep = _chosen(keep, (target.id, other.id))
        values: dict[str, Any] = {}
        for field in MERGE_FIELDS:
            ours, theirs = getattr(target, field), getattr(other, field)
            chosen = keep.get(field)
            if (chosen == other.id and ours != theirs) or (
                chosen is None and ours in (None, "") and theirs not in (None, "")
            ):
                values[field] = theirs
        if values.get("organisation_id") in (target.id, other.id):
            values.pop("organisation_id")
        custom = dict(target.custom or {})
        for key, value in (other.custom or {}).items():
            chosen = keep.get(f"custom.{key}")
            if chosen == other.id or (chosen is None and custom.get(key) in (None, "", [])):
                custom[key] = value
        if custom != (target.custom or {}):
            values["custom"] = custom
        if not values:
            return {}
        # through the service: validation, owner checks, name keys, audit of the update
        before = {k: jsonable(getattr(target, k)) for k in values}
        self.work.parties.update(target, values)
        return {k: [before[k], jsonable(getattr(target, k))] for k in values}

    def _move_rows(self, survivor_id: int, merged_id: int) -> None:
        session = self.session
        # contact points: the same address twice is kept once (an empty key, `http://`,
        # is no address: both are kept as typed)
        duplicate = aliased(ContactPoint)
        session.execute(
            delete(ContactPoint).where(
                ContactPoint.party_id == merged_id,
                ContactPoint.key != "",
                exists(
                    select(duplicate.id).where(
                        duplicate.party_id == survivor_id,
                        duplicate.kind == ContactPoint.kind,
                        duplicate.key == ContactPoint.key,
                    )
                ),
            )
        )
        session.execute(
            update(ContactPoint)
            .where(ContactPoint.party_id == merged_id)
            .values(party_id=survivor_id, is_primary=False)
        )
        # group memberships and tags: the survivor's own first
        in_group = aliased(GroupMembership)
        session.execute(
            delete(GroupMembership).where(
                GroupMembership.party_id == merged_id,
                exists(
                    select(in_group.group_id).where(
                        in_group.party_id == survivor_id,
                        in_group.group_id == GroupMembership.group_id,
                    )
                ),
            )
        )
        session.execute(
            update(GroupMembership)
            .where(GroupMembership.party_id == merged_id)
            .values(party_id=survivor_id)
        )
        tagged = aliased(Tagging)
        session.execute(
            delete(Tagging).where(
                Tagging.entity == "party",
                Tagging.record_id == merged_id,
                exists(
                    select(tagged.id).where(
                        tagged.entity == "party",
                        tagged.record_id == survivor_id,
                        tagged.tag_id == Tagging.tag_id,
                    )
                ),
            )
        )
        session.execute(
            update(Tagging)
            .where(Tagging.entity == "party", Tagging.record_id == merged_id)
            .values(record_id=survivor_id)
        )
        handled = {"contact_point", "group_membership", "tagging"}
        left_to_plugins = self.work.crm.party_merge_columns
        tables = loaded_tables(self.work.crm)
        for table in tables:
            if table.name in handled:
                continue
            for column in table.columns:
                if (table.name, column.name) in _SPECIAL | left_to_plugins:
                    continue
                if any(fk.column.table.name == "party" for fk in column.foreign_keys):
                    self._make_room(table, column, survivor_id, merged_id, tables)
                    session.execute(
                        update(table)
                        .where(column == merged_id)
                        .values({column.name: survivor_id})
                        .execution_options(synchronize_session=False)
                    )
            if (
                "record_entity" in table.c
                and "record_id" in table.c
                and (table.name, "record_id") not in left_to_plugins
            ):
                session.execute(
                    update(table)
                    .where(and_(table.c.record_entity == "party", table.c.record_id == merged_id))
                    .values(record_id=survivor_id)
                    .execution_options(synchronize_session=False)
                )
        session.expire_all()

    def _make_room(
        self, table: Any, column: Any, survivor_id: int, merged_id: int, tables: list[Any]
    ) -> None:
        """Before ``column`` moves to the survivor: rows that would repeat a unique key the
        survivor holds already are dropped (the survivor's kept), or the merge is refused
        when dropping would lose more than a repeat."""
        referenced = any(fk.column.table is table for other in tables for fk in other.foreign_keys)
        for key, partial in _unique_keys(table, column):
            rest = [c for c in key if c is not column]
            twin = table.alias()
            repeats = and_(
                column == merged_id,
                exists(
                    select(twin.c[column.name]).where(
                        twin.c[column.name] == survivor_id,
                        *(twin.c[c.name] == c for c in rest),
                    )
                ),
            )
            if rest and not partial and not referenced:
                self.session.execute(
                    delete(table).where(repeats).execution_options(synchronize_session=False)
                )
                continue
            if self.session.scalar(select(exists().where(repeats))):
                what = self._title_of(table)
                refusal = (
                    message(
                        "both parties have a record in {table} for the same {columns}: "
                        "merge or remove one first",
                        table=what,
                        columns=", ".join(c.name for c in rest),
                    )
                    if rest
                    else message(
                        "both parties have a record in {table}, which a party may have once: "
                        "merge or remove one first",
                        table=what,
                    )
                )
                raise ValidationFailed({"merged": [refusal]})

    def _title_of(self, table: Any) -> str:
        """What a table is called for a person: its entity's label, else its name."""
        for entity in self.work.crm.entities:
            if getattr(entity.model, "__table__", None) is table:
                return f"“{entity.label}”"
        return table.name


def _chosen(keep: Mapping[str, Any], parties: tuple[int, int]) -> dict[str, int]:
    """``keep`` checked: each field one that can be merged, each value the id of one of the
    two ``parties`` (an int, or its digits as a form sends them; ``None`` is no choice).
    Anything else is refused on the field, as a form or a caller's JSON may send it."""
    chosen: dict[str, int] = {}
    for field, source in keep.items():
        if not isinstance(field, str) or (
            field not in MERGE_FIELDS and not field.startswith("custom.")
        ):
            raise ValidationFailed({str(field): [message("not a field that can be merged")]})
        if source is None:
            continue
        if isinstance(source, str) and source.strip().isdecimal():
            source = int(source)
        if isinstance(source, bool) or not isinstance(source, int) or source not in parties:
            raise ValidationFailed({field: [message("choose the survivor or the merged party")]})
        chosen[field] = source
    return chosen


def _unique_keys(table: Any, column: Any) -> list[tuple[list[Any], bool]]:
    """The unique keys of ``table`` that include ``column``, each with whether it is
    partial (a unique index with a ``WHERE``, whose clashes are not read here exactly)."""
    keys: list[tuple[list[Any], bool]] = []
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint | PrimaryKeyConstraint):
            columns = list(constraint.columns)
            if any(c is column for c in columns):
                keys.append((columns, False))
    for index in table.indexes:
        columns = list(index.columns)
        if index.unique and any(c is column for c in columns):
            partial = any(
                index.dialect_options[dialect].get("where") is not None
                for dialect in ("postgresql", "sqlite")
            )
            keys.append((columns, partial))
    return keys


def loaded_tables(crm: Any) -> list[Any]:
    """Tables of the models of the core and of the plugins loaded in ``crm``.

    Every model lives on one metadata, so a process may know tables of plugins that this
    application does not load (and whose tables need not exist).
    """
    import types

    from crmkit.model import Base

    packages = {"crmkit"}
    for plugin in crm.pm.get_plugins():
        module = (
            plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
        )
        packages.add(module.split(".")[0])
    return [
        mapper.local_table
        for mapper in Base.registry.mappers
        if mapper.class_.__module__.split(".")[0] in packages
    ]
