"""A Starlette router that tries only the routes a path can match.

Starlette's :class:`~starlette.routing.Router` tries its routes in order, one regular
expression each.  The API has some eighty paths (every entity's list, record, moves and
timeline), so a request for a late entity paid eighty failed matches before its own (about
a tenth of the CPU of an API list request).  :class:`IndexedRouter` groups the routes by the
first segment of their path, which is literal for all of them, and hands a request to the
group of its own first segment: the same routes in the same order, minus those that could
not have matched.  Routes whose first segment is a parameter belong to every group, at
their place in the order, so precedence is unchanged.

It also registers the ``id`` path convertor (``/clients/{party_id:id}``): every route
taking a record's id uses it rather than Starlette's ``int``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import BaseRoute, Router
from starlette.types import Receive, Scope, Send

from crmkit.schemas import MAX_ID


def _at_most(limit: int) -> str:
    """A regular expression of the decimal numbers from 1 to ``limit``, without leading
    zeros: any shorter number, or one as long whose first differing digit is smaller."""
    digits = str(limit)
    size = len(digits)
    parts = [f"[1-9][0-9]{{0,{size - 2}}}"] if size > 1 else []
    for at, digit in enumerate(digits):
        low = 1 if at == 0 else 0
        if int(digit) > low:
            parts.append(f"{digits[:at]}[{low}-{int(digit) - 1}][0-9]{{{size - at - 1}}}")
    parts.append(digits)
    return "(?:" + "|".join(parts) + ")"


class IdConvertor(Convertor[int]):
    """``{name:id}``: a record's id in a path, 1 to 2^63-1 (what an id column holds).

    Starlette's ``int`` takes any run of digits, so a 25-digit id reached the database
    and failed there (an ``OverflowError``, a 500); ``0``, a leading zero or a number
    past the range matches no route here, which is a 404 like any unknown path.  The
    endpoint gets an ``int``.
    """

    regex = _at_most(MAX_ID)

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        number = int(value)
        assert 1 <= number <= MAX_ID, "an id is from 1 to 2^63-1"
        return str(number)


register_url_convertor("id", IdConvertor())


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
