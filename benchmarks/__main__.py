"""Run benchmarks and print one table: ``python -m benchmarks [--only NAME] [--size N]``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

from benchmarks.harness import Context, print_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only benchmarks whose module name contains this",
    )
    parser.add_argument(
        "--size", type=int, default=1_000_000, help="rows of the big data sets (default 1,000,000)"
    )
    parser.add_argument(
        "--db", default="sqlite,postgresql", help="databases to measure on (comma-separated)"
    )
    args = parser.parse_args(argv)
    context = Context(size=args.size, databases=[d for d in args.db.split(",") if d])
    folder = str(Path(__file__).parent)
    names = sorted(m.name for m in pkgutil.iter_modules([folder]) if m.name.startswith("bench_"))
    selected = [n for n in names if not args.only or any(o in n for o in args.only)]
    rows = []
    for name in selected:
        module = importlib.import_module(f"benchmarks.{name}")
        started = time.perf_counter()
        print(f"-- {name} ...", file=sys.stderr, flush=True)
        rows += module.run(context)
        print(f"   done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
