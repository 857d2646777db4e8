"""Running the web application under uvicorn (``crmkit serve``).

Workers are separate processes: each builds its own application from the deployment's
``crmkit.toml`` (passed through ``CRMKIT_CONFIG``), so they share nothing but the database
and the queue.  uvloop and httptools are used when installed: with uvicorn's default h11
parser several workers add ~44 ms to every request (no TCP_NODELAY on the shared socket).
The loop is :func:`crmkit.web.eventloop.event_loop`: uvloop, but taking every waiting
connection at once where the process listens alone (see that module).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from crmkit.config import Config

#: The uvicorn loop factory ``crmkit serve`` uses when uvloop is installed.
SERVING_LOOP = "crmkit.web.eventloop:event_loop"


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
    freeze_after_startup(app)
    return app


def freeze_after_startup(app: Any) -> None:
    """Once the application has started, keep its objects out of the collector's full passes.

    A serving process holds ~165,000 objects made at start-up (modules, classes, mapped
    tables, plugins) that live as long as it does; a full (generation 2) collection scans
    them all: 90 ms on a quiet machine, 250 ms on a loaded one, during which every request
    in flight waits.  ``gc.freeze()`` moves them to the permanent generation, so a full
    collection scans only what requests left behind (docs/decisions.md, "Latency under
    load").
    """
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(scope_app: Any) -> AsyncIterator[Any]:
        async with inner(scope_app) as state:
            gc.collect()  # garbage of the start-up is freed, not frozen
            gc.freeze()
            yield state

    app.router.lifespan_context = lifespan


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
        options["loop"] = SERVING_LOOP
    if importlib.util.find_spec("httptools"):
        options["http"] = "httptools"
    if reload:
        options["reload"] = True
    elif workers > 1:
        options["workers"] = workers
    uvicorn.run("crmkit.web.server:app_from_environment", **options)
