"""Run the benchmarks: ``python -m benchmarks [NAME [OPTIONS...]]``.

Every ``bench_*`` module of this package has a ``main(argv)`` that prints its figures, each
with a ratio against a raw baseline measured in the same run (absolute numbers drift from
run to run and machine to machine).  With no name, every benchmark runs with its defaults.
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
        info.name for info in pkgutil.iter_modules([str(here)]) if info.name.startswith("bench_")
    )


def main(argv: list[str]) -> None:
    if argv and not argv[0].startswith("-"):
        name = argv[0] if argv[0].startswith("bench_") else f"bench_{argv[0]}"
        importlib.import_module(f"benchmarks.{name}").main(argv[1:])
        return
    for name in names():
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        module.main([])


if __name__ == "__main__":
    main(sys.argv[1:])
