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


@attrs.frozen
class Screen:
    """A page of the UI: a route plus its title and the roles that may open it."""

    name: str
    path: str
    title: str
    endpoint: Callable[..., Any]
    roles: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    methods: tuple[str, ...] = attrs.field(default=("GET",), converter=tuple)


@attrs.frozen
class MenuItem:
    """An entry of a role's menu, pointing at a screen name or a path.

    ``entity`` hides the item from users who may not read that entity (an item pointing
    at ``/lists/<entity>`` names its entity without it), so one menu serves every role.
    """

    label: str
    target: str
    roles: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    order: int = 100
    icon: str | None = None
    section: str | None = None
    entity: str | None = None

    def reads(self) -> str | None:
        """The entity a user must be able to read to see this item, if any."""
        if self.entity:
            return self.entity
        if self.target.startswith("/lists/"):
            return self.target[len("/lists/") :].split("/", 1)[0].split("?", 1)[0] or None
        return None
