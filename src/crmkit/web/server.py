"""Running the web application under uvicorn (``crmkit serve``).

Workers are separate processes: each builds its own application from the deployment's
``crmkit.toml`` (passed through ``CRMKIT_CONFIG``), so they share nothing but the database
and the queue.  uvloop and httptools are used when installed: with uvicorn's default h11
parser several workers add ~44 ms to every request (no TCP_NODELAY on the shared socket).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from crmkit.config import Config


def app_from_environment() -> Any:
    """The ASGI app of the deployment named by ``CRMKIT_CONFIG`` (a uvicorn factory)."""
    from crmkit.app import CRM
    from crmkit.web.app import create_app

    crm = CRM(Config.load(os.environ.get("CRMKIT_CONFIG")))
    threads = int(crm.config["queue.embedded_workers"])
    if threads > 0:
        # The embedded worker: outbox, schedules and reminders need no second process.
        from crmkit.jobs.worker import Worker

        Worker(crm, concurrency=threads).start()
    return create_app(crm)


def run(config: Config, *, host: str, port: int, workers: int = 1, reload: bool = False) -> None:
    """Serve the deployment until interrupted."""
    import uvicorn

    os.environ["CRMKIT_CONFIG"] = str(config.source or config.root)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "factory": True,
        "proxy_headers": True,
        "log_level": "info",
    }
    if importlib.util.find_spec("uvloop"):
        options["loop"] = "uvloop"
    if importlib.util.find_spec("httptools"):
        options["http"] = "httptools"
    if reload:
        options["reload"] = True
    elif workers > 1:
        options["workers"] = workers
    uvicorn.run("crmkit.web.server:app_from_environment", **options)
