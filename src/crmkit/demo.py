"""Demo data generators that ``crmkit demo NAME`` runs (registered by plugins and examples)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

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
        """Generate the data into ``crm``'s database."""
        return self.generate(crm, size=size or self.default_size, seed=seed)
