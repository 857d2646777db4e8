"""What benchmarks share: sizes, databases, timing and the result table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs


@attrs.define
class Context:
    """Options of one benchmark run."""

    size: int
    databases: list[str]


@attrs.frozen
class Row:
    """One measured figure: the value, its baseline, their ratio, and the target."""

    benchmark: str
    database: str
    figure: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``function()`` and its result."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (0.95 for p95)."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(samples: Sequence[float]) -> float:
    """The median of ``samples``."""
    return statistics.median(samples)


def print_table(rows: Sequence[Row]) -> None:
    """The result table on standard output."""
    headers = ("benchmark", "db", "figure", "value", "baseline", "ratio", "target", "ok")
    table = [headers] + [
        (
            r.benchmark,
            r.database,
            r.figure,
            r.value,
            r.baseline,
            "" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            "" if r.passed is None else ("yes" if r.passed else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(headers))]
    for index, row in enumerate(table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
