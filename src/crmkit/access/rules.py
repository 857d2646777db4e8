"""Roles, permissions and record scopes as data.

A :class:`Permission` is one cell of the role x entity x action table and carries the
record :class:`Scope` it grants.  Plugins seed them through ``crmkit_register_permissions``;
the ``permission`` table holds the live values an admin may edit.
"""

from __future__ import annotations

import enum

import attrs


class Scope(enum.IntEnum):
    """Which records an action reaches, from narrowest to widest.

    ``own``: records the user owns (or is assigned); ``team``: also those owned by members
    of the user's teams; ``group``: own records plus the parties of the groups granted to
    the user or role (with subgroups); ``all``: every record.  A user holding several roles
    gets the widest scope any of them grants.
    """

    NONE = 0
    OWN = 1
    TEAM = 2
    GROUP = 3
    ALL = 4

    @classmethod
    def parse(cls, value: str | Scope) -> Scope:
        """``"own"`` -> ``Scope.OWN``; a clear error naming the bad value."""
        if isinstance(value, Scope):
            return value
        try:
            return cls[value.upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown scope {value!r} (one of: {names})") from None

    @property
    def label(self) -> str:
        """The lower-case name stored in the permission table."""
        return self.name.lower()


#: Actions the core checks.  Entities may declare more (``export``, ``pay`` ...).
#: ``place``: create a record straight in a later stage of its pipeline (skipping the checks
#: on the way there); ``import`` on ``party`` with scope ``all``: open, change and start the
#: import runs of every user, not only one's own; ``report``: run the reports of the entity
#: (on ``*``: every report) also when their ``roles`` name none of the user's roles.
ACTIONS = (
    "read",
    "create",
    "update",
    "delete",
    "move",
    "assign",
    "export",
    "place",
    "import",
    "report",
)


@attrs.frozen
class Role:
    """A role users can hold: its name, label and the screen it lands on after sign-in."""

    name: str
    label: str = ""
    description: str = ""
    start_screen: str | None = None


@attrs.frozen
class Permission:
    """``role`` may perform ``action`` on ``entity`` over records in ``scope``.

    ``entity`` or ``action`` may be ``"*"`` to cover every entity or action.
    """

    role: str
    entity: str
    action: str
    scope: Scope = attrs.field(default=Scope.ALL, converter=Scope.parse)


def grant(
    role: str,
    entities: str | tuple[str, ...],
    actions: str | tuple[str, ...],
    scope: Scope | str = Scope.ALL,
) -> list[Permission]:
    """Many cells at once: ``grant("agent", ("party", "deal"), ("read", "update"), "own")``."""
    entity_list = (entities,) if isinstance(entities, str) else entities
    action_list = (actions,) if isinstance(actions, str) else actions
    return [Permission(role, e, a, Scope.parse(scope)) for e in entity_list for a in action_list]
