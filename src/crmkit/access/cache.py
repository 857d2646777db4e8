"""Actors kept between requests, and the stamp that says when one must be reloaded.

Building an :class:`~crmkit.app.Actor` (roles, teams, teammates, granted groups, the
permission table's row) takes several queries.  A web process keeps each actor with the
*stamp* it was built under: the user's ``session_epoch`` and ``updated_at`` and the database's
access generation (bumped by triggers on every write to the tables actors are built from, see
:mod:`crmkit.model.access_state`).  Requests read the stamp in their first query (the API
reads it together with the token); while it is unchanged the kept actor is exact, so no
change to access is ever missed, and when it moved the actor is rebuilt.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from crmkit.model import AccessGeneration, User

if TYPE_CHECKING:
    from crmkit.app import CRM, Actor

#: How many users' actors one process keeps (least recently used ones are dropped).
CAPACITY = 10_000


@attrs.frozen
class Stamp:
    """What an actor was built under; any difference means "rebuild"."""

    session_epoch: int
    updated_at: dt.datetime | None
    generation: int


def generation_column() -> ColumnElement[int]:
    """The access generation as a scalar subquery (0 before the first change)."""
    return func.coalesce(
        select(AccessGeneration.value).where(AccessGeneration.id == 1).scalar_subquery(), 0
    )


def stamp_columns() -> tuple[Any, ...]:
    """Columns to select with a user's row to get its :class:`Stamp`."""
    return (User.session_epoch, User.updated_at, generation_column().label("generation"))


class ActorCache:
    """Actors by user id, each valid while its stamp is unchanged."""

    def __init__(self, crm: CRM, capacity: int = CAPACITY) -> None:
        self.crm = crm
        self.capacity = capacity
        self._entries: OrderedDict[int, tuple[Stamp, Actor]] = OrderedDict()
        self._lock = threading.Lock()

    def actor(self, user_id: int, stamp: Stamp) -> Actor:
        """The actor of ``user_id``: kept if built under ``stamp``, else built now."""
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(user_id)
                return entry[1]
        actor = self.load(user_id)
        with self._lock:
            self._entries[user_id] = (stamp, actor)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return actor

    def load(self, user_id: int) -> Actor:
        """Build the actor of ``user_id`` with its permission scopes (raises if blocked)."""
        from crmkit.access.policy import load_actor, load_scopes

        with self.crm.session_factory() as session:
            actor = load_actor(session, user_id)
            scopes = load_scopes(session, actor.roles)
        return attrs.evolve(actor, scopes=scopes)

    def stamp_of(self, user_id: int) -> Stamp | None:
        """The current stamp of a user (one query), ``None`` if missing or blocked."""
        with self.crm.engine.connect() as connection:
            row = connection.execute(
                select(User.blocked, *stamp_columns()).where(User.id == user_id)
            ).first()
        if row is None or row.blocked:
            return None
        return Stamp(row.session_epoch, row.updated_at, row.generation)

    def clear(self) -> None:
        """Forget every kept actor."""
        with self._lock:
            self._entries.clear()
