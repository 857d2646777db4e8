"""``crmkit serve``'s application factory: the embedded worker starts and stops with it."""

from __future__ import annotations

import asyncio
import gc

import httpx

from crmkit.cli import main
from crmkit.web.server import app_from_environment


def test_the_embedded_worker_and_its_watchers_stop_with_the_server(tmp_path, monkeypatch):
    directory = tmp_path / "crm"
    try:
        main(["init", str(directory)])
    except SystemExit as exc:
        assert not exc.code
    monkeypatch.setenv("CRMKIT_CONFIG", str(directory))
    app = app_from_environment()
    worker = app.state.worker

    async def serve_once() -> int:
        async with app.router.lifespan_context(app):  # what uvicorn runs around serving
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://crm") as client:
                status = (await client.get("/healthz")).status_code
            assert worker._ticker.is_alive()
            if worker.watchers is not None:  # installed plugins (mail) register watchers
                assert worker.watchers._thread.is_alive()
            # the start-up's objects are out of the collector's full passes
            assert gc.get_freeze_count() > 10_000
            return status

    frozen_before = gc.get_freeze_count()
    try:
        assert asyncio.run(serve_once()) == 200
        assert not worker._ticker.is_alive()
        assert worker.watchers is None or not worker.watchers._thread.is_alive()
    finally:
        if not frozen_before:
            gc.unfreeze()  # this test process goes on running other tests
        worker.crm.close()
