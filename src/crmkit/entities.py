"""Entity types: what the services, access rules, lists and API know about a model.

A model is a SQLAlchemy class; an :class:`EntityType` says how crmkit treats it: its public
name, the marshmallow schema that validates input, which columns make a record "mine"
(``owner_attrs``), which column ties it to a party, whether it borrows the party's
visibility, and which attributes lists may filter, sort and search on.  Plugins return
entity types from ``crmkit_register_entities``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import marshmallow


@attrs.frozen
class EntityType:
    """How crmkit treats one model.

    ``name`` is the public name used in permissions, URLs and events (``party``, ``deal``,
    ``finance_order``).  ``owner_attrs`` are columns holding user ids that make a record the
    user's own; ``team_attr`` a column holding a team id; ``party_attr`` the column linking
    to a party.  With ``scope_through_party`` a record is also visible wherever its party is
    (an activity, a contact point); with ``shared_without_party`` as well, a record linked to
    no party (a conversation waiting in triage) is reached by every scope but none.
    ``personal_attr`` is a column holding the user whose own account a record came through
    (a conversation of a personal mailbox): a record with it set is reached only by that
    user, by the owner of its party and by the scope ``all``, neither through its party
    otherwise nor as shared.  Records of a readable conversation (its messages, their
    files) are reached through it, whatever their party.
    ``follows_linked_record``: a record with a loose link (``record_entity``/``record_id``,
    a note on a deal) seen through its party is seen only where the linked record is
    readable; false where the link is a hint rather than what the record belongs to (a
    client's conversation matched to a deal by its thread stays the client's).
    ``schema`` validates create/update input; ``service``
    names an :class:`~crmkit.services.records.EntityService` subclass with extra behaviour.
    ``output_schema`` is the marshmallow schema of what the API returns for a record; when
    not given it is derived from the model's columns (those marked ``info={"private": True}``
    left out), see :func:`crmkit.schemas.output.output_schema`.
    ``page_hidden_attrs``: columns the record page's field block leaves out because a card
    panel of the entity shows them its own way (an order's totals, with what is paid and
    due); the API, the lists and exports keep them.
    ``field_labels`` maps a column to the text that names it for a reader (a msgid) where
    the column's name alone would be translated as something else: the finance order's
    ``number`` is its ``order number`` (the core's ``number`` is a field type, «число»).
    The record page, the lists' headers and a refusal naming the field read it.
    """

    name: str
    model: type[Any]
    label: str = ""
    label_plural: str = ""
    schema: type[marshmallow.Schema] | None = None
    owner_attrs: tuple[str, ...] = ()
    team_attr: str | None = None
    party_attr: str | None = None
    scope_through_party: bool = False
    shared_without_party: bool = False
    personal_attr: str | None = None
    follows_linked_record: bool = True
    title_attr: str = "id"
    search_attrs: tuple[str, ...] = ()
    filter_attrs: tuple[str, ...] = ()
    sort_attrs: tuple[str, ...] = ("id",)
    default_sort: tuple[str, ...] = ("-id",)
    custom_fields: bool = False
    audited: bool = True
    actions: tuple[str, ...] = ("read", "create", "update", "delete")
    service: type[Any] | None = None
    output_schema: type[marshmallow.Schema] | None = None
    page_hidden_attrs: tuple[str, ...] = ()
    field_labels: Mapping[str, str] = attrs.field(factory=dict, hash=False)

    def column(self, attr: str) -> Any:
        """The mapped attribute ``attr`` of the model; a clear error when it does not exist."""
        try:
            return getattr(self.model, attr)
        except AttributeError:
            raise AttributeError(f"entity {self.name!r} has no attribute {attr!r}") from None

    @property
    def placement_attrs(self) -> tuple[str, ...]:
        """What the framework's own queries narrow by, whatever :attr:`filter_attrs` offers
        users: the party link, the owner columns, and a pipelined record's pipeline and
        stage (a client's card lists the entity's records, a board its stages).

        Only code passes ``internal=True`` to a service's ``list``/``count`` to use them;
        the API and list screens offer users :attr:`filter_attrs` and :attr:`sort_attrs`.
        """
        columns = self.model.__table__.columns
        named = [self.party_attr, *self.owner_attrs, self.team_attr, "pipeline", "stage"]
        return tuple(a for a in dict.fromkeys(named) if a is not None and a in columns)

    def named_attrs(self) -> list[tuple[str, str]]:
        """Each model attribute this entity type names, with the option naming it
        (``("party_attr", "party_id")``, ``("default_sort", "visited_at")``)."""
        named = [
            *(("owner_attrs", a) for a in self.owner_attrs),
            ("team_attr", self.team_attr),
            ("party_attr", self.party_attr),
            ("personal_attr", self.personal_attr),
            ("title_attr", self.title_attr),
            *(("search_attrs", a) for a in self.search_attrs),
            *(("filter_attrs", a) for a in self.filter_attrs),
            *(("sort_attrs", a) for a in self.sort_attrs),
            *(("default_sort", a.removeprefix("-")) for a in self.default_sort),
            *(("page_hidden_attrs", a) for a in self.page_hidden_attrs),
        ]
        return [(option, attr) for option, attr in named if attr is not None]

    def field_label(self, attr: str) -> str:
        """The text (a msgid) that names column ``attr`` for a reader: its
        :attr:`field_labels` entry, else its name."""
        return self.field_labels.get(attr, attr)

    def title_of(self, record: Any) -> str:
        """A short human title for a record (used in audit, notifications, timeline)."""
        return str(getattr(record, self.title_attr, None) or f"{self.name} {record.id}")


@attrs.define
class EntityRegistry:
    """Every entity type of one application, by name and by model class."""

    by_name: dict[str, EntityType] = attrs.field(factory=dict)
    by_model: dict[type[Any], EntityType] = attrs.field(factory=dict)

    def add(self, entity: EntityType, source: str) -> None:
        """Register ``entity``; two plugins may not claim one name."""
        if entity.name in self.by_name and self.by_name[entity.name] != entity:
            raise ValueError(f"entity {entity.name!r} registered twice (second time by {source})")
        from crmkit.schemas.output import is_private

        for option, attr in entity.named_attrs():
            if not hasattr(entity.model, attr):
                # a typo here would surface as an AttributeError from the first list, create
                # or access check that reads it: stop the start instead, naming it
                raise ValueError(
                    f"entity {entity.name!r} names {option} {attr!r}, but "
                    f"{entity.model.__name__} has no such attribute"
                )
        columns = entity.model.__table__.columns
        named = (*entity.filter_attrs, *entity.sort_attrs, *entity.search_attrs)
        for attr in (*named, entity.title_attr):
            if attr in columns and is_private(columns[attr]):
                # a filter, an order or a search on a secret tells its value a step at a time
                raise ValueError(
                    f"entity {entity.name!r} names the private column {attr!r} as a "
                    "filter, sort, search or title attribute"
                )
        self.by_name[entity.name] = entity
        self.by_model[entity.model] = entity

    def __getitem__(self, name: str) -> EntityType:
        try:
            return self.by_name[name]
        except KeyError:
            known = ", ".join(sorted(self.by_name))
            raise KeyError(f"unknown entity {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_name.values())

    def of(self, record_or_model: Any) -> EntityType:
        """The entity type of a model class or instance."""
        model = record_or_model if isinstance(record_or_model, type) else type(record_or_model)
        for klass in model.__mro__:
            if klass in self.by_model:
                return self.by_model[klass]
        raise KeyError(f"{model.__name__} is not a registered entity")

    def as_mapping(self) -> Mapping[str, EntityType]:
        """Read-only view by name."""
        return dict(self.by_name)
