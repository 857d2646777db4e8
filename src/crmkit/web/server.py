"""Running the web application under uvicorn (``crmkit serve``).

Workers are separate processes: each builds its own application from the deployment's
``crmkit.toml`` (passed through ``CRMKIT_CONFIG``), so they share nothing but the database
and the queue.  uvloop and httptools are used when installed: with uvicorn's default h11
parser several workers add ~44 ms to every request (no TCP_NODELAY on the shared socket).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from crmkit.config import Config


def app_from_environment() -> Any:
    """The ASGI app of the deployment named by ``CRMKIT_CONFIG`` (a uvicorn factory)."""
    from crmkit.app import CRM
    from crmkit.web.app import create_app

    crm = CRM(Config.load(os.environ.get("CRMKIT_CONFIG")))
    app = create_app(crm)
    threads = int(crm.config["queue.embedded_workers"])
    if threads > 0:
        # The embedded worker: outbox, schedules, reminders and watchers need no second process.
        from crmkit.jobs.worker import Worker

        worker = Worker(crm, concurrency=threads)
        worker.start()
        app.state.worker = worker
        stop_on_shutdown(app, worker.stop)
    return app


def stop_on_shutdown(app: Any, stop: Callable[[], None]) -> None:
    """Call ``stop`` (in a thread) when the server shuts the application down.

    So the embedded worker's watchers give their leases up at once, and another process
    takes their connections over without waiting for the leases to run out.
    """
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(scope_app: Any) -> AsyncIterator[Any]:
        async with inner(scope_app) as state:
            yield state
        await anyio.to_thread.run_sync(stop)

    app.router.lifespan_context = lifespan


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
