"""``crmkit worker`` with extra plugin modules: test plugins are not installed entry points.

python -m tests.jobs.worker_main -c 2 --plugin tests.jobs.schedule_plugin
(the deployment comes from CRMKIT_CONFIG, as for ``crmkit worker``).
"""

from __future__ import annotations

import argparse
import importlib
import logging

from crmkit.app import CRM
from crmkit.config import Config
from crmkit.jobs.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--concurrency", type=int, default=2)
    parser.add_argument("--plugin", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    modules = [importlib.import_module(name) for name in args.plugin]
    crm = CRM(Config.load(), plugins=modules, load_entry_points=False)
    Worker(crm, concurrency=args.concurrency).run()


if __name__ == "__main__":
    main()
