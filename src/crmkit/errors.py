"""Errors the framework raises on purpose; each carries a message a user can act on.

The web layer maps them to HTTP statuses (``NotFound`` 404, ``PermissionDenied`` 403,
``ValidationFailed`` 422, ``Conflict`` 409/412, ``MergedAway`` 409, ``MoveRefused`` 409) and
the CLI prints their message as one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class CrmkitError(Exception):
    """Base of every error crmkit raises deliberately."""


class ConfigError(CrmkitError):
    """A setting is missing, malformed or of the wrong type."""


class PluginError(CrmkitError):
    """A plugin cannot be loaded: not installed, fails to import, or implements an unknown hook."""

    def __init__(self, plugin: str, problem: str) -> None:
        self.plugin = plugin
        self.problem = problem
        super().__init__(f"plugin {plugin!r}: {problem}")


class NotFound(CrmkitError):
    """The record does not exist *or* the user may not see it (the two are never told apart)."""

    def __init__(self, entity: str, record_id: Any = None) -> None:
        self.entity = entity
        self.record_id = record_id
        what = f"{entity} {record_id}" if record_id is not None else entity
        super().__init__(f"{what} not found")


class PermissionDenied(CrmkitError):
    """The actor's roles do not allow this action on this entity."""

    def __init__(self, entity: str, action: str, detail: str | None = None) -> None:
        self.entity = entity
        self.action = action
        self.detail = detail  # None: the plain "not allowed to ACTION ENTITY"
        super().__init__(detail or f"not allowed to {action} {entity}")


class ValidationFailed(CrmkitError):
    """Input was rejected; ``errors`` maps a field (or ``_schema``) to its messages.

    ``labels`` name a field for a reader where its name alone means different things in
    different places (``order``: a list's sort order, or a finance order): a field maps
    to a translatable text (``{"order": message("sort order")}``) that the web UI shows
    instead of the name; the API keeps naming the field itself.
    """

    def __init__(
        self,
        errors: Mapping[str, Any],
        entity: str | None = None,
        row: int | None = None,
        *,
        labels: Mapping[str, Any] | None = None,
    ) -> None:
        self.errors = dict(errors)
        self.entity = entity
        self.row = row
        self.labels = dict(labels or {})
        parts = []
        for field, messages in self.errors.items():
            if isinstance(messages, Mapping):
                text = "; ".join(f"{k}: {_join(v)}" for k, v in messages.items())
            else:
                text = _join(messages)
            parts.append(f"{field}: {text}")
        where = f"row {row}: " if row is not None else ""
        super().__init__(where + "; ".join(parts))


def _join(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    if isinstance(messages, Sequence):
        return " ".join(str(m) for m in messages)
    return str(messages)


class Conflict(CrmkitError):
    """Somebody else changed the record first (optimistic locking); reload and try again."""

    def __init__(self, entity: str, record_id: Any, detail: Any = None) -> None:
        self.entity = entity
        self.record_id = record_id
        super().__init__(
            detail or f"{entity} {record_id} was changed by someone else; reload and try again"
        )


class MoveRefused(CrmkitError):
    """A stage move was refused; ``reasons`` say why, ``missing_fields`` what to fill in.

    ``messages`` keeps each reason as raised (a :class:`crmkit.i18n.Message` where the core
    wrote it, so a reader can translate it); ``reasons`` are the same in English.
    """

    def __init__(
        self,
        reasons: Sequence[Any],
        missing_fields: Sequence[str] = (),
        missing_documents: Sequence[str] = (),
    ) -> None:
        self.messages = list(reasons)
        self.reasons = [str(r) for r in reasons]
        self.missing_fields = list(missing_fields)
        self.missing_documents = list(missing_documents)
        super().__init__("; ".join(self.reasons))


class DuplicatesFound(CrmkitError):
    """Creating this record would likely duplicate existing ones; the caller must confirm.

    ``candidates`` are mappings with at least ``id``, ``name`` and ``score`` (0-100), and
    ``stage``/``owner_id`` as far as the actor may see them.  The API answers 409 with them.
    """

    def __init__(self, entity: str, candidates: Sequence[Mapping[str, Any]]) -> None:
        self.entity = entity
        self.candidates = [dict(c) for c in candidates]
        names = ", ".join(str(c.get("name")) for c in self.candidates[:3])
        super().__init__(f"possible duplicates of this {entity}: {names}")


class MergedAway(Conflict):
    """A change or deletion addressed to a party merged into another one.

    A merged-away id still *reads* as its survivor (an old link keeps working), and what is
    added through it (a note, a file) lands on the survivor; but the record itself is never
    changed, moved, given away or deleted through the old id: that would act on the
    survivor, a client the caller never named.  ``survivor_id`` is the record to address.
    """

    def __init__(self, record_id: Any, survivor_id: int, entity: str = "party") -> None:
        from crmkit.i18n import message

        self.survivor_id = survivor_id
        super().__init__(
            entity,
            record_id,
            message(
                "party {id} was merged into party {survivor}; change or delete party "
                "{survivor} itself, not through the old id",
                id=record_id,
                survivor=survivor_id,
            ),
        )
