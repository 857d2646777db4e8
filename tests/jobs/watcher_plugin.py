"""A test plugin with a watcher that writes down when each run starts and stops.

The file named by ``test.watch_file`` receives ``start PID TIME`` when a worker process
starts watching the key ``only`` and ``stop PID TIME`` when it stops (a killed process
writes no ``stop``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from crmkit import Watcher, hookimpl
from crmkit.config import Setting


def _note(crm: Any, what: str) -> None:
    with open(crm.config["test.watch_file"], "a", encoding="utf-8") as file:
        file.write(f"{what} {os.getpid()} {time.time():.4f}\n")


def watch_only(crm: Any, key: str, stop: threading.Event) -> None:
    _note(crm, "start")
    stop.wait()
    _note(crm, "stop")


@hookimpl
def crmkit_register_settings() -> list[Setting]:
    return [Setting("test.watch_file", str, "", "Where runs are written down.")]


@hookimpl
def crmkit_register_watchers() -> list[Watcher]:
    return [Watcher("test.watch", lambda crm: ["only"], watch_only)]
