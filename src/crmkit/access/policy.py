"""Access rules applied in SQL.

:class:`AccessPolicy` answers two questions for one actor in one unit of work: *may I do
this action on this entity at all* (:meth:`~AccessPolicy.require`) and *which rows does it
reach* (:meth:`~AccessPolicy.where`, a SQL predicate every service query includes).  Because
the predicate is part of the query, a list, a search, a count, a report and an export never
see a row the user may not see, and a page of 50 rows stays 50 rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from sqlalchemy import and_, false, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from crmkit.access.rules import Scope
from crmkit.entities import EntityRegistry, EntityType
from crmkit.errors import NotFound, PermissionDenied
from crmkit.model import (
    Attachment,
    GroupGrant,
    GroupMembership,
    Party,
    PartyGroup,
    PermissionRule,
    RecordRefMixin,
    TeamMember,
    User,
)


def load_actor(session: Session, who: Any) -> Any:
    """The :class:`~crmkit.app.Actor` for a user given as ``User``, id or username.

    A blocked user raises :class:`PermissionDenied`: nothing may act as them.
    """
    from crmkit.app import Actor

    if isinstance(who, User):
        user = session.get(User, who.id)
    elif isinstance(who, int):
        user = session.get(User, who)
    elif isinstance(who, str):
        user = session.scalar(select(User).where(User.username == who))
    else:
        raise TypeError(f"cannot act as {who!r}")
    if user is None:
        raise NotFound("user", who if not isinstance(who, User) else who.id)
    if user.blocked:
        raise PermissionDenied("user", "act", f"user {user.username} is blocked")
    roles = frozenset(user.role_names)
    team_ids = frozenset(
        session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user.id))
    )
    teammates = frozenset(
        session.scalars(select(TeamMember.user_id).where(TeamMember.team_id.in_(team_ids)))
    ) | {user.id}
    grant_filter = GroupGrant.user_id == user.id
    if roles:
        grant_filter = or_(grant_filter, GroupGrant.role.in_(roles))
    paths = tuple(
        sorted(
            set(
                session.scalars(
                    select(PartyGroup.path)
                    .join(GroupGrant, GroupGrant.group_id == PartyGroup.id)
                    .where(grant_filter)
                )
            )
        )
    )
    return Actor(
        user_id=user.id,
        label=user.label,
        roles=roles,
        team_ids=team_ids,
        teammate_ids=teammates,
        group_paths=paths,
        locale=user.locale,
        timezone=user.timezone,
        session_epoch=user.session_epoch,
        scopes=MappingProxyType(load_scopes(session, roles)),
    )


def load_scopes(session: Session, roles: Iterable[str]) -> dict[tuple[str, str], Scope]:
    """The widest scope per (entity, action) over ``roles``; ``*`` cells expand later."""
    scopes: dict[tuple[str, str], Scope] = {}
    roles = list(roles)
    if not roles:
        return scopes
    rows = session.execute(
        select(PermissionRule.entity, PermissionRule.action, PermissionRule.scope).where(
            PermissionRule.role.in_(roles)
        )
    )
    for entity, action, scope_name in rows:
        scope = Scope.parse(scope_name)
        key = (entity, action)
        if scope > scopes.get(key, Scope.NONE):
            scopes[key] = scope
    return scopes


def scope_in(scopes: Mapping[tuple[str, str], Scope], entity: str, action: str) -> Scope:
    """The widest scope a row of the permission table gives for ``action`` on ``entity``
    (``*`` cells included)."""
    return max(
        scopes.get((entity, action), Scope.NONE),
        scopes.get((entity, "*"), Scope.NONE),
        scopes.get(("*", action), Scope.NONE),
        scopes.get(("*", "*"), Scope.NONE),
    )


class AccessPolicy:
    """The permissions of one actor, loaded once per unit of work."""

    def __init__(self, actor: Any, entities: EntityRegistry, session: Session | None) -> None:
        """``session`` reads the actor's scopes; ``None`` is enough when the actor has them."""
        self.actor = actor
        self.entities = entities
        if actor.system:
            self._scopes: Mapping[tuple[str, str], Scope] = {}
        elif actor.scopes is not None:
            self._scopes = actor.scopes
        else:
            if session is None:
                raise ValueError("an actor without loaded scopes needs a session to read them")
            self._scopes = load_scopes(session, actor.roles)

    # -- the table -----------------------------------------------------------------

    def scope(self, entity: str, action: str) -> Scope:
        """The scope the actor has for ``action`` on ``entity`` (``NONE`` if not allowed)."""
        if self.actor.system:
            return Scope.ALL
        return scope_in(self._scopes, entity, action)

    def can(self, entity: str, action: str) -> bool:
        """Whether the actor may perform ``action`` on some ``entity`` records."""
        return self.scope(entity, action) is not Scope.NONE

    def require(self, entity: str, action: str) -> Scope:
        """The actor's scope, or :class:`PermissionDenied` when they have none."""
        scope = self.scope(entity, action)
        if scope is Scope.NONE:
            raise PermissionDenied(entity, action)
        return scope

    # -- rows ------------------------------------------------------------------------

    def where(
        self, entity: EntityType | str, action: str = "read", scope: Scope | None = None
    ) -> ColumnElement[bool]:
        """SQL predicate selecting the rows of ``entity`` that ``action`` reaches."""
        entity_type = self.entities[entity] if isinstance(entity, str) else entity
        if scope is None:
            scope = self.scope(entity_type.name, action)
        return self._predicate(entity_type, scope, action=action)

    def _predicate(
        self, entity: EntityType, scope: Scope, *, links: int = 2, action: str = "read"
    ) -> ColumnElement[bool]:
        """The rows ``scope`` of ``action`` reaches.  Reading a conversation reads its
        messages and their files: that reaches them for ``read`` alone, never to change or
        delete them (nor any other action)."""
        if scope is Scope.NONE:
            return false()
        # an entry, file, task or reminder linked to a record (a deal, a payment) seen
        # through its client is seen only where that record is: reading a client does
        # not read a colleague's deal through its stage moves, notes and files
        # (``links``: how many links deep to follow: a file on a note on a deal)
        linked = self._linked_visible(entity, links) if links > 0 else None
        if scope is Scope.ALL:
            return true() if linked is None else linked
        clauses = self._ownership(entity, entity.model, scope)
        if entity.scope_through_party and entity.party_attr:
            party_type = self.entities["party"]
            party_rows = select(Party.id).where(
                or_(*self._ownership(party_type, Party, scope))
                if party_type.owner_attrs
                else false()
            )
            through: list[Any] = [entity.column(entity.party_attr).in_(party_rows)]
            if entity.shared_without_party:
                through.append(entity.column(entity.party_attr).is_(None))
            # what the actor owns (a task assigned to them) stays theirs whatever it links
            clauses.append(or_(*through) if linked is None else and_(or_(*through), linked))
            # a message of a conversation the actor reads, and its files, whatever its
            # client: read, and nothing more (changing one takes the client's own scope)
            conversed = self._in_readable_conversation(entity) if action == "read" else None
            if conversed is not None:
                clauses.append(conversed)
        reached = or_(*clauses) if clauses else false()
        if entity.personal_attr:
            # a personal account's record: its user's (and the scope "all"'s), and the
            # client's owner's (mail from his client, whichever of our addresses it came to)
            personal = entity.column(entity.personal_attr)
            if self.actor.user_id is None:
                return and_(personal.is_(None), reached)
            mine = personal == self.actor.user_id
            clients_owner = self._clients_owner(entity)
            return or_(and_(personal.is_(None), reached), mine, clients_owner)
        return reached

    def _clients_owner(self, entity: EntityType) -> ColumnElement[bool]:
        """SQL saying the row's party is one the actor owns (``false`` without a party)."""
        if not entity.party_attr or "party" not in self.entities:
            return false()
        party_type = self.entities["party"]
        owned = self._ownership(party_type, Party, Scope.OWN)
        if not party_type.owner_attrs or not owned:
            return false()
        return entity.column(entity.party_attr).in_(select(Party.id).where(or_(*owned)))

    def reads_past_clients(self, entity: EntityType, *, widened: bool = False) -> bool:
        """Whether the actor may read rows of ``entity`` naming a client they may not read:
        a conversation of their own mailbox (``personal_attr``), a message or file of a
        conversation they read, and with ``widened`` (the entity's service shows rows
        beyond these rules: ``EntityService.widens_reading``) an event they are invited
        to or a reminder they are to be reminded by; a row they read by owning it (a deal
        they own, a task assigned to them), whatever its client; and any row, when their
        scope of ``entity`` is wider than that of clients.  For the clients themselves, a
        person whose organisation (``organisation_id``) the actor may not read: whenever
        they read clients, not all of them.  Never for a reader of every client.  What
        shows such rows by their fields (the API, the calendar, its feed, the card) leaves
        such a client out, as the contact center's screen leaves out its name:
        ``EntityService.readable_clients``."""
        if not entity.party_attr:
            return False
        clients = self.scope("party", "read")
        if clients is Scope.ALL:
            return False
        if entity.model is Party:  # a person read, their organisation perhaps not
            return clients is not Scope.NONE
        if entity.personal_attr or (widened and self.actor.user_id is not None):
            return True
        scope = self.scope(entity.name, "read")
        if scope is Scope.NONE:
            return False
        # a wider scope than the clients' reaches rows of clients beyond them; a row the
        # actor (or their team) owns is theirs whatever its client: a deal they own, a task
        # assigned to them
        if scope > clients or entity.owner_attrs:
            return True
        if entity.team_attr and scope >= Scope.TEAM:
            return True
        return entity.scope_through_party and self._in_readable_conversation(entity) is not None

    def _reads_through_conversations(self, entity: EntityType) -> bool:
        """Whether reading ``entity`` reaches rows through conversations (its messages and
        their files) that its other actions, at the same scope, do not."""
        return (
            entity.scope_through_party
            and bool(entity.party_attr)
            and self._in_readable_conversation(entity) is not None
        )

    def _in_readable_conversation(self, entity: EntityType) -> ColumnElement[bool] | None:
        """SQL saying the row is a message of a conversation the actor may read, or a file
        on one; ``None`` when the entity has neither (or is the conversation itself).

        Reading a conversation reads its messages and their files, and nothing else of its
        client: the owner of a personal mailbox answers a colleague's client who wrote to it
        without seeing that client's card, other entries or files.
        """
        if "conversation" not in self.entities:
            return None
        conversations = self.entities["conversation"]
        if entity is conversations or entity.model is conversations.model:
            return None
        scope = self.scope("conversation", "read")
        if scope is Scope.NONE:
            return None
        readable = select(conversations.model.id).where(
            self._predicate(conversations, scope, links=0)
        )
        column = getattr(entity.model, "conversation_id", None)
        if column is not None:
            return column.in_(readable)
        if entity.model is not Attachment:
            return None  # a task or a reminder on a message is its writer's, not the mail's
        carriers = [
            other
            for other in self.entities
            if other is not entity and getattr(other.model, "conversation_id", None) is not None
        ]
        if not carriers:
            return None
        model = entity.model
        return or_(
            *(
                and_(
                    model.record_entity == other.name,
                    model.record_id.in_(
                        select(other.model.id).where(other.model.conversation_id.in_(readable))
                    ),
                )
                for other in carriers
            )
        )

    def _linked_visible(self, entity: EntityType, depth: int) -> ColumnElement[bool] | None:
        """SQL saying a row's loose link (``record_entity``/``record_id``) names nothing,
        or a record the actor may read; ``None`` when every record is readable."""
        model = entity.model
        if not entity.follows_linked_record or not issubclass(model, RecordRefMixin):
            return None
        hidden: list[str] = []
        partial: list[tuple[EntityType, Scope]] = []
        for other in self.entities:
            scope = self.scope(other.name, "read")
            if scope is Scope.ALL or getattr(other.model, "id", None) is None:
                continue
            if scope is Scope.NONE:
                hidden.append(other.name)
            else:
                partial.append((other, scope))
        if not hidden and not partial:
            return None
        kinds, ids = model.record_entity, model.record_id
        restricted = hidden + [other.name for other, _ in partial]
        clauses: list[Any] = [kinds.is_(None), kinds.notin_(restricted)]
        for other, scope in partial:
            readable = select(other.model.id).where(self._predicate(other, scope, links=depth - 1))
            clauses.append(and_(kinds == other.name, ids.in_(readable)))
        by_link = or_(*clauses)
        conversation = getattr(model, "conversation_id", None)
        if conversation is None or "conversation" not in self.entities:
            return by_link
        # a message follows its conversation rather than the deal its thread matched: it
        # stays its client's (see ``follows_linked_record``), and its mailbox owner's alone
        # when it came to a personal mailbox
        scope = self.scope("conversation", "read")
        if scope is Scope.ALL:
            return or_(conversation.is_not(None), by_link)
        if scope is Scope.NONE:
            return by_link
        conversations = self.entities["conversation"]
        readable = select(conversations.model.id).where(
            self._predicate(conversations, scope, links=0)
        )
        return or_(and_(conversation.is_(None), by_link), conversation.in_(readable))

    def _ownership(self, entity: EntityType, model: Any, scope: Scope) -> list[Any]:
        actor = self.actor
        owners = [getattr(model, attr) for attr in entity.owner_attrs]
        clauses: list[Any] = []
        if actor.user_id is None:
            return clauses
        if scope is Scope.TEAM and len(actor.teammate_ids) > 1:
            clauses += [column.in_(sorted(actor.teammate_ids)) for column in owners]
        else:
            clauses += [column == actor.user_id for column in owners]
        if scope is Scope.TEAM and entity.team_attr and actor.team_ids:
            clauses.append(getattr(model, entity.team_attr).in_(sorted(actor.team_ids)))
        if scope is Scope.GROUP and actor.group_paths and entity.party_attr:
            party_column = Party.id if model is Party else getattr(model, entity.party_attr)
            members = (
                select(GroupMembership.party_id)
                .join(PartyGroup, PartyGroup.id == GroupMembership.group_id)
                .where(or_(*(PartyGroup.path.startswith(path) for path in actor.group_paths)))
            )
            clauses.append(party_column.in_(members))
        return clauses

    def check_record(
        self,
        session: Session,
        entity: EntityType,
        record_id: Any,
        action: str,
        *,
        read_by_scope: bool = True,
    ) -> None:
        """Raise if the (visible) record is outside the actor's scope for ``action``.

        Invisible rows were already :class:`NotFound` when they were read; a visible row
        that ``action`` does not reach gives :class:`PermissionDenied`.  ``read_by_scope``
        says the row was read through this table's predicate alone; a service that shows
        more (an event to its invited colleagues) passes false, and the row is checked.
        """
        scope = self.require(entity.name, action)
        if scope is Scope.ALL:
            return
        if (
            read_by_scope
            and scope == self.scope(entity.name, "read")
            and not self._reads_through_conversations(entity)
        ):
            return  # the same predicate already selected the row when it was read
        model = entity.model
        reached = session.scalar(
            select(model.id).where(
                model.id == record_id, self._predicate(entity, scope, action=action)
            )
        )
        if reached is None:
            raise PermissionDenied(
                entity.name, action, f"not allowed to {action} this {entity.label or entity.name}"
            )
