"""Parties: persons and organisations with their contact points.

On every write the name key and each contact point's key are computed (see
:mod:`crmkit.identity`); a value that cannot be normalized is kept as typed and flagged.
:meth:`PartyService.bulk_create` is the fast path for imports and generators: it never goes
through the ORM unit of work, allocates ids in advance and writes parties, contact points,
history and audit rows in a few batched statements (COPY on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.sql import Select

from crmkit import events
from crmkit.clock import utcnow
from crmkit.errors import DuplicatesFound, MergedAway, NotFound, ValidationFailed
from crmkit.identity import contact_key, domain_key, name_key
from crmkit.model import ContactPoint, Party, PartyKind
from crmkit.services.limits import refusals
from crmkit.services.records import EntityService

if TYPE_CHECKING:
    from crmkit.services.bulk import BulkResult

CONTACT_KINDS = ("phone", "email", "messenger", "website")


class PartyService(EntityService):
    """Create, find, edit and reassign parties; manage their contact points."""

    extra_fields = ("tags", "contact_points")

    def client_attrs(self) -> tuple[str, ...]:
        """A person names their organisation, which the actor may not read although they
        read the person: the API gives its id as ``null``, the card no name."""
        return ("organisation_id",)

    @property
    def region(self) -> str:
        return str(self.work.crm.config["locale.phone_region"])

    def base_query(self) -> Select[Any]:
        """Merged-away parties are hidden from every list and search."""
        return select(Party).where(Party.merged_into_id.is_(None))

    def find(self, record_id: int) -> Party | None:
        """A visible party; a merged-away id resolves to the party it was merged into."""
        found = super().find(record_id)
        if found is not None:
            return found
        seen = {record_id}
        current = self.work.session.get(Party, record_id)
        while current is not None and current.merged_into_id and current.merged_into_id not in seen:
            seen.add(current.merged_into_id)
            survivor = super().find(current.merged_into_id)
            if survivor is not None:
                return survivor
            current = self.work.session.get(Party, current.merged_into_id)
        return None

    def get(self, record: Any, action: str = "read", *, follow_merge: bool = False) -> Any:
        """The party checked for ``action``; a merged-away id reads as its survivor.

        Any other action addressed to a merged-away id (``update``, ``delete``, ``move``,
        ``assign``) is refused with :class:`~crmkit.errors.MergedAway` naming the survivor:
        deleting or editing a stale duplicate must never hit the client it was merged into.
        ``follow_merge=True`` lets an action that only *adds* to the client (filing a
        conversation under it, merging another party into it) reach the survivor.
        """
        if action == "read":
            return super().get(record, action)
        try:
            record_id = record.id if isinstance(record, Party) else int(record)
        except (TypeError, ValueError):
            return super().get(record, action)  # NotFound, as for any bad id
        found = self.find(record_id)
        if found is not None and found.id != record_id:
            if not follow_merge:
                raise MergedAway(record_id, found.id)
            return super().get(found, action)  # checked as the survivor, by its own rights
        return super().get(record, action)

    def assign(self, records: Iterable[Any], owner_id: int | None) -> int:
        """Give parties to one owner; a merged-away id among them is refused by name
        (:class:`~crmkit.errors.MergedAway`), not taken as its survivor."""
        try:
            return super().assign(records, owner_id)
        except NotFound as missing:
            if isinstance(missing.record_id, int):
                found = self.find(missing.record_id)
                if found is not None and found.id != missing.record_id:
                    raise MergedAway(missing.record_id, found.id) from None
            raise

    def create(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        confirm_duplicates: bool = False,
        **values: Any,
    ) -> Any:
        """Create a party, refusing a likely duplicate unless ``confirm_duplicates``.

        :class:`~crmkit.errors.DuplicatesFound` carries the candidates (see
        :meth:`crmkit.services.screening.ScreeningService.candidates`); nothing is written.
        The setting ``screening.on_create`` turns the check off.
        """
        wanted = {**(data or {}), **values}
        if not confirm_duplicates and self.work.crm.config["screening.on_create"]:
            self.work.access.require("party", "create")
            # bad input is named (a field, not a crash) before it is compared with anyone
            found = self.work.screening.for_values(self.load(wanted))
            if any(c.score >= self.work.screening.threshold for c in found):
                raise DuplicatesFound("party", [c.as_dict() for c in found])
        return super().create(wanted)

    def build(self, values: dict[str, Any]) -> Any:
        kind = values.setdefault("kind", PartyKind.ORGANISATION.value)
        if not (values.get("name") or "").strip() and kind == PartyKind.PERSON:
            values["name"] = " ".join(
                p for p in (values.get("first_name"), values.get("last_name")) if p
            )
        values["name"] = values["name"].strip()
        values["name_key"] = name_key(values["name"], kind)
        record = super().build(values)
        record.last_activity_at = record.created_at = record.updated_at = utcnow()
        return record

    def after_create(
        self, record: Any, values: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        for point in extra.get("contact_points") or ():
            self._add_point(record, point)
        if extra.get("contact_points"):
            self.work.flush()
        self.index_name(record)

    def index_name(self, record: Party, *, replace: bool = False) -> None:
        """Keep the party's screening keys (see :mod:`crmkit.services.screening`)."""
        from crmkit.services.screening import index_names

        self.work.flush()
        index_names(
            self.session.connection(), [(record.id, record.name, record.kind)], replace=replace
        )

    def after_update(
        self,
        record: Any,
        values: Mapping[str, Any],
        extra: Mapping[str, Any],
        changes: dict[str, Any],
    ) -> None:
        if "name" in changes or "kind" in changes:
            record.name_key = name_key(record.name, record.kind)
            self.index_name(record, replace=True)
        if "contact_points" in extra:
            before = [(p.kind, p.value) for p in record.contact_points]
            self.replace_contacts(record, extra["contact_points"])
            after = [(p.kind, p.value) for p in record.contact_points]
            if before != after:
                changes["contact_points"] = [before, after]

    # -- contact points --------------------------------------------------------------

    def _add_point(self, party: Party, point: Mapping[str, Any]) -> ContactPoint:
        kind = point["kind"]
        if kind not in CONTACT_KINDS:
            raise ValidationFailed({"contact_points": [f"unknown kind {kind!r}"]})
        normalized = contact_key(
            kind, point["value"], region=self.region, service=point.get("service")
        )
        if not normalized.value:
            raise ValidationFailed({"contact_points": [f"empty {kind}"]})
        refused = refusals(
            ContactPoint,
            {
                "value": normalized.value,
                "label": point.get("label"),
                "service": point.get("service"),
            },
        )
        if refused:  # PostgreSQL would refuse it without naming it
            raise ValidationFailed({"contact_points": next(iter(refused.values()))})
        contact = ContactPoint(
            party_id=party.id,
            kind=kind,
            service=point.get("service"),
            value=normalized.value,
            key=normalized.key,
            label=point.get("label"),
            is_primary=bool(point.get("is_primary")),
            valid=normalized.valid,
            domain=domain_key(kind, normalized.key),
        )
        party.contact_points.append(contact)
        return contact

    def add_contact(
        self,
        party: Any,
        kind: str,
        value: str,
        *,
        service: str | None = None,
        label: str | None = None,
        is_primary: bool = False,
    ) -> ContactPoint:
        """Add a phone, email, messenger handle or website to a party."""
        party = self.get(party, action="update")
        contact = self._add_point(
            party,
            {
                "kind": kind,
                "value": value,
                "service": service,
                "label": label,
                "is_primary": is_primary,
            },
        )
        self.work.flush()
        self.work.audit(
            "party", party.id, "update", {"contact_points": [None, f"{kind}: {contact.value}"]}
        )
        self.work.emit(
            events.RECORD_UPDATED,
            "party",
            party.id,
            party_id=party.id,
            changes={"contact_points": [None, contact.value]},
        )
        return contact

    def remove_contact(self, party: Any, contact_id: int) -> None:
        """Remove one contact point of a party."""
        party = self.get(party, action="update")
        contact = next((c for c in party.contact_points if c.id == contact_id), None)
        if contact is None:
            raise NotFound("contact_point", contact_id)
        party.contact_points.remove(contact)
        self.work.flush()
        self.work.audit(
            "party",
            party.id,
            "update",
            {"contact_points": [f"{contact.kind}: {contact.value}", None]},
        )

    def replace_contacts(self, party: Party, points: Sequence[Mapping[str, Any]]) -> None:
        """Make a party's contact points exactly ``points`` (kept ones keep their ids)."""
        by_id = {c.id: c for c in party.contact_points}
        keep: list[ContactPoint] = []
        for point in points:
            existing = by_id.get(point.get("id")) if point.get("id") else None
            if existing is not None:
                normalized = contact_key(
                    point.get("kind", existing.kind),
                    point["value"],
                    region=self.region,
                    service=point.get("service", existing.service),
                )
                existing.value, existing.key, existing.valid = (
                    normalized.value,
                    normalized.key,
                    normalized.valid,
                )
                existing.domain = domain_key(existing.kind, normalized.key)
                existing.label = point.get("label", existing.label)
                existing.is_primary = bool(point.get("is_primary", existing.is_primary))
                keep.append(existing)
            else:
                keep.append(self._add_point(party, point))
        for contact in list(party.contact_points):
            if contact not in keep:
                party.contact_points.remove(contact)
        self.work.flush()

    # -- search ------------------------------------------------------------------------

    def search_clause(self, text: str) -> Any:
        """Name (folded, substring) or any contact point whose key matches the text exactly."""
        folded = name_key(text, "organisation")
        person = name_key(text, "person")
        clauses = []
        for key in dict.fromkeys(k for k in (folded, person) if k):
            pattern = "%" + key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(Party.name_key.like(pattern, escape="\\"))
        keys = set()
        for kind in ("phone", "email", "website"):
            normalized = contact_key(kind, text, region=self.region)
            if normalized.valid:
                keys.add(normalized.key)
        if keys:
            clauses.append(
                Party.id.in_(
                    select(ContactPoint.party_id).where(ContactPoint.key.in_(sorted(keys)))
                )
            )
        return or_(*clauses) if clauses else Party.id.is_(None)

    def by_contact(self, kind: str, value: str, service: str | None = None) -> list[Party]:
        """Visible parties having this phone, email, handle or website (normalized match)."""
        key = contact_key(kind, value, region=self.region, service=service).key
        return list(
            self.work.session.scalars(
                self.query()
                .where(
                    Party.id.in_(
                        select(ContactPoint.party_id).where(
                            ContactPoint.kind == kind, ContactPoint.key == key
                        )
                    )
                )
                .order_by(Party.id)
            )
        )

    def contacts_of(self, organisation_id: int) -> list[Party]:
        """Visible persons working at an organisation (a merged-away id: the survivor's)."""
        organisation_id = self.get(organisation_id).id
        return list(
            self.work.session.scalars(
                self.query().where(Party.organisation_id == organisation_id).order_by(Party.name)
            )
        )

    # -- bulk ----------------------------------------------------------------------------

    def bulk_create(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = 5000,
        source: str | None = None,
    ) -> BulkResult:
        """Insert many parties with their contact points, bypassing the ORM unit of work.

        Each row is validated like :meth:`create` would (name, kinds, custom fields, texts
        no longer than their columns, tags) and a bad row fails the whole call with its row
        number: nothing is written.  Normalization,
        pipeline placement and history, audit entries and ``record.created`` events are all
        included.
        """
        from crmkit.services.bulk import bulk_create_parties

        return bulk_create_parties(self, rows, batch_size=batch_size, source=source)
