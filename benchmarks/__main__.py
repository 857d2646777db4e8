"""Run benchmarks: ``python -m benchmarks [name [options...]]``.

Every module of this package with a ``main(argv)`` function is a benchmark; with no name,
all of them run with their defaults.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def names() -> list[str]:
    """The benchmark modules of this package."""
    here = Path(__file__).parent
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(here)])
        if not info.name.startswith("_")
        and hasattr(importlib.import_module(f"benchmarks.{info.name}"), "main")
    )


def main(argv: list[str]) -> None:
    if argv and not argv[0].startswith("-"):
        importlib.import_module(f"benchmarks.{argv[0]}").main(argv[1:])
        return
    for name in names():
        importlib.import_module(f"benchmarks.{name}").main([])


if __name__ == "__main__":
    main(sys.argv[1:])
