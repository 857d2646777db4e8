"""Reports: named, access-checked queries that return a table and, optionally, a chart.

A plugin returns :class:`Report` objects from ``crmkit_register_reports``.  ``build`` runs
inside a unit of work (so every query it makes through the services is access-scoped) and
returns a :class:`ReportResult` that screens render and exports write to CSV/XLSX.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


@attrs.frozen
class Column:
    """A column of a report: key in each row, header, and how to format values."""

    key: str
    label: str
    kind: str = "text"  # text | number | money | date | percent | duration


@attrs.frozen
class ReportResult:
    """Rows (mappings keyed by column) plus an optional chart description for Chart.js."""

    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    chart: Mapping[str, Any] | None = None
    totals: Mapping[str, Any] | None = None


@attrs.frozen
class Report:
    """A report: ``build(work, params)`` computes it; ``roles`` limits who may run it.

    ``entity`` names the entity whose ``read`` permission (and scope) the report honours.
    """

    name: str
    label: str
    build: Callable[[UnitOfWork, Mapping[str, Any]], ReportResult]
    entity: str | None = None
    roles: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    description: str = ""
    params: Mapping[str, Any] = attrs.field(factory=dict)
