"""Demo data generators that ``crmkit demo NAME`` runs (registered by plugins and examples)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.errors import ConfigError, CrmkitError

if TYPE_CHECKING:
    from crmkit.app import CRM


@attrs.frozen
class Demo:
    """A named generator of sample data: ``generate(crm, size=..., seed=...)``."""

    name: str
    description: str
    generate: Callable[..., Any]
    default_size: int = 1000

    def run(self, crm: CRM, size: int | None = None, seed: int = 1) -> Any:
        """Generate the data into ``crm``'s database, as one transaction.

        Every unit of work of the generator joins :meth:`crmkit.app.CRM.one_transaction`:
        a generator that fails part-way leaves nothing behind (no half demo, no files it
        stored through a unit of work), and the failure is raised as one ``ConfigError``
        saying so, the original chained to it (shown with ``--debug``).
        """
        try:
            with crm.one_transaction():
                return self.generate(crm, size=size or self.default_size, seed=seed)
        except Exception as exc:
            raise ConfigError(
                f"demo {self.name} stopped: {_reason(exc)}. Nothing of it was kept: the "
                "database is as it was before"
            ) from exc


def _reason(exc: Exception) -> str:
    """What went wrong, in one line: a database error's own message, else the exception's
    (its type when it says nothing, or when it is not one of crmkit's own)."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        return "database: " + str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, CrmkitError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
