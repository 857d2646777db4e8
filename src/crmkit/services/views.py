"""Saved list views: a user's named search, filters, sort order and columns for an entity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from crmkit.errors import NotFound, ValidationFailed
from crmkit.model import SavedView

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


class SavedViewService:
    """The actor's own views and the shared ones; a view is changed only by its owner."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def _user(self) -> int:
        if self.work.actor.user_id is None:
            raise ValidationFailed({"user": ["saved views belong to a user"]})
        return self.work.actor.user_id

    def list(self, entity: str) -> list[SavedView]:
        """Views of ``entity`` the actor may use (their own and shared ones), by name."""
        self.work.access.require(entity, "read")
        return list(
            self.work.session.scalars(
                select(SavedView)
                .where(
                    SavedView.entity == entity,
                    or_(SavedView.user_id == self._user(), SavedView.shared.is_(True)),
                )
                .order_by(SavedView.name, SavedView.id)
            )
        )

    def save(
        self, entity: str, name: str, query: Mapping[str, Any], *, shared: bool = False
    ) -> SavedView:
        """Save (or overwrite the actor's view of the same name) a list view."""
        self.work.access.require(entity, "read")
        if entity not in self.work.crm.entities:
            raise ValidationFailed({"entity": [f"unknown entity {entity!r}"]})
        title = (name or "").strip()
        if not title:
            raise ValidationFailed({"name": ["a view needs a name"]})
        if len(title) > 200:
            raise ValidationFailed({"name": ["200 characters at most"]})
        clean = {str(k): v for k, v in query.items() if k not in ("after", "csrf_token")}
        # what its list would refuse is not kept as a view (a NUL: not even storable)
        self._read(entity, clean)
        view = self.work.session.scalar(
            select(SavedView).where(
                SavedView.user_id == self._user(),
                SavedView.entity == entity,
                SavedView.name == title,
            )
        )
        if view is None:
            view = SavedView(user_id=self._user(), entity=entity, name=title)
            self.work.session.add(view)
        view.query = clean
        view.shared = shared
        self.work.flush()
        return view

    def get(self, view_id: int) -> SavedView:
        """A view the actor may use."""
        view = self.work.session.get(SavedView, view_id)
        if view is None or (view.user_id != self._user() and not view.shared):
            raise NotFound("saved_view", view_id)
        return view

    def selection(self, view_id: int) -> tuple[str, dict[str, Any], str | None]:
        """What a view selects: its entity, service filters and search text.

        ``work.records(entity).iterate(filters=..., search=...)`` then reads the records the
        view lists (those the actor may see).  The view's query is read by the list
        screens' own reader (:func:`crmkit.web.api.params.parse_list_query`), so a mailing
        to a view counts what the view's list shows: a parameter the list refuses (a value
        its field cannot take, ``is_null=maybe``, a NUL in the search) is
        :class:`~crmkit.errors.ValidationFailed` naming it, as on the list, and a filter
        that no longer applies names its field when compiled.
        """
        view = self.get(view_id)
        query = self._read(view.entity, view.query or {})
        return view.entity, dict(query.filters), (query.search or "").strip() or None

    def _read(self, entity: str, query: Mapping[str, Any]) -> Any:
        """``query`` (a list's query string, as a view keeps it) read as the list reads it."""
        from starlette.datastructures import QueryParams

        from crmkit.web.api.params import parse_list_query  # the lists' reader

        service = self.work.records(entity)
        pairs = [
            (str(key), str(item))
            for key, value in query.items()
            for item in (value if isinstance(value, list | tuple) else [value])
            if item is not None
        ]
        # the page size is no part of what a view selects: a fixed one, never read
        return parse_list_query(
            QueryParams(pairs), service.entity, service.custom_kinds(), prefix="f.", limit=1
        )

    def delete(self, view_id: int) -> None:
        """Delete one of the actor's own views."""
        view = self.get(view_id)
        if view.user_id != self._user():
            raise NotFound("saved_view", view_id)
        self.work.session.delete(view)
