"""What plugins add to the web layer: routes, screens and menu items.

These are plain descriptions; :mod:`crmkit.web.app` turns them into Starlette routes.
They live apart from the Starlette app so that declaring them imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Route:
    """An HTTP endpoint: ``endpoint(request)`` (async) at ``path`` for ``methods``.

    ``public`` routes need no sign-in (a webhook, a feed with its own token); others
    require a signed-in user and, for state-changing methods, a CSRF token.
    """

    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...] = attrs.field(default=("GET",), converter=tuple)
    name: str | None = None
    public: bool = False


def _permission(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    entity, action = value
    return (str(entity), str(action))


@attrs.frozen
class Screen:
    """A page of the UI: a route plus its title and who may open it.

    ``roles``: the user needs one of them.  ``permission``: an ``(entity, action)`` cell of
    the permission table the user needs (any scope), e.g. ``("finance_payment", "create")``;
    it follows the permission table, so a deployment's own roles get the screen by being
    granted the permission.  A user failing either check gets 404, like a missing page.
    """

    name: str
    path: str
    title: str
    endpoint: Callable[..., Any]
    roles: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    methods: tuple[str, ...] = attrs.field(default=("GET",), converter=tuple)
    permission: tuple[str, str] | None = attrs.field(default=None, converter=_permission)


@attrs.frozen
class MenuItem:
    """An entry of a role's menu, pointing at a screen name or a path.

    Shown to users with one of ``roles`` (any user when empty) who hold ``permission``
    (an ``(entity, action)`` cell, if given) and may open the target screen.  An item
    pointing at an entity's list (``/lists/<entity>``) needs ``(entity, "read")`` unless it
    names another permission, so one menu serves every role.
    """

    label: str
    target: str
    roles: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    order: int = 100
    icon: str | None = None
    section: str | None = None
    permission: tuple[str, str] | None = attrs.field(default=None, converter=_permission)

    def required_permission(self) -> tuple[str, str] | None:
        """The ``(entity, action)`` cell a user needs to see this item, if any."""
        if self.permission is not None:
            return self.permission
        if self.target.startswith("/lists/"):
            entity = self.target[len("/lists/") :].split("/", 1)[0].split("?", 1)[0]
            return (entity, "read") if entity else None
        return None


@attrs.frozen
class CardPanel:
    """A block a plugin adds to the client card or to a record's page
    (``crmkit_register_card_panels``).

    ``entity`` is ``"party"`` for the client card (the default) or the entity whose record
    pages show the panel (``/records/<entity>/<id>``).  ``context(work, record)`` runs in
    the page's unit of work (acting as the viewer) and returns the template's variables, or
    ``None`` to show nothing; ``template`` reads them as ``data.<name>`` beside the page's
    own context (``party`` or ``record``, ``l``, ``csrf_token``...).  ``permission`` (an
    ``(entity, action)`` cell) hides the panel, without calling ``context``, from users who
    lack it.  Panels are ordered by ``order``.  ``shows_attrs`` names columns of the record
    the panel shows itself (a car block's client and worker): the record page's field block
    leaves them out, but only when the panel is shown to the reader.
    """

    name: str
    template: str
    context: Callable[..., Any]
    permission: tuple[str, str] | None = attrs.field(default=None, converter=_permission)
    order: int = 100
    entity: str = "party"
    shows_attrs: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class ListColumn:
    """A column a plugin adds to the lists of an entity (``/lists/<entity>``)
    (``crmkit_register_list_columns``): something the entity's table does not hold, such
    as the car of a car service's order.

    ``key`` names it in the list's ``cols`` parameter, ``label`` (a msgid) heads it.
    ``cells(work, rows)`` runs in the page's unit of work (acting as the reader) with the
    page's rows (each has the entity's public columns as attributes, ``id`` among them)
    and returns the text of each row it has one for, by the row's id.  ``default``: shown
    without a ``cols`` choice (otherwise only offered in the column chooser).
    ``permission`` (an ``(entity, action)`` cell) hides the column from users who lack
    it.  It cannot be sorted or filtered by.
    """

    entity: str
    key: str
    label: str
    cells: Callable[..., Any]
    default: bool = True
    permission: tuple[str, str] | None = attrs.field(default=None, converter=_permission)
