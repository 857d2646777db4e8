"""A Starlette router that tries only the routes a path can match.

Starlette's :class:`~starlette.routing.Router` tries its routes in order, one regular
expression each.  The API has some eighty paths (every entity's list, record, moves and
timeline), so a request for a late entity paid eighty failed matches before its own (about
a tenth of the CPU of an API list request).  :class:`IndexedRouter` groups the routes by the
first segment of their path, which is literal for all of them, and hands a request to the
group of its own first segment: the same routes in the same order, minus those that could
not have matched.  Routes whose first segment is a parameter belong to every group, at
their place in the order, so precedence is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Router
from starlette.types import Receive, Scope, Send


def _first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


def _route_path(scope: Scope) -> str:
    """The request's path below the mount point (``root_path``) it is routed under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class IndexedRouter(Router):
    """A :class:`~starlette.routing.Router` that looks routes up by first path segment."""

    def __init__(self, routes: Sequence[BaseRoute], **options: Any) -> None:
        super().__init__(routes=list(routes), **options)
        # a route without a path (a Host, say) could match anything: it joins every group
        firsts = [_first_segment(getattr(route, "path", "{}")) for route in self.routes]
        self.groups: dict[str, Router] = {}
        for name in dict.fromkeys(f for f in firsts if "{" not in f):
            members = [
                route
                for route, first in zip(self.routes, firsts, strict=True)
                if first == name or "{" in first
            ]
            self.groups[name] = Router(
                routes=members, redirect_slashes=self.redirect_slashes, default=self.default
            )

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            group = self.groups.get(_first_segment(_route_path(scope)))
            if group is not None:
                # url_for() and friends resolve names against every route, not the group
                scope.setdefault("router", self)
                await group.app(scope, receive, send)
                return
        await super().app(scope, receive, send)


def index_routes(app: Any) -> None:
    """Replace the router of Starlette application ``app`` with an :class:`IndexedRouter`.

    Call it right after building the application (before lifespan handlers are added).
    """
    old = app.router
    app.router = IndexedRouter(old.routes, redirect_slashes=old.redirect_slashes)
    app.router.lifespan_context = old.lifespan_context
