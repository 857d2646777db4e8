"""The Starlette application: for now a status page and a health check.

The reference UI and the REST API are built on this module (see the web UI issue); plugin
routes registered through ``crmkit_register_routes`` are mounted already.
"""

from __future__ import annotations

import html
from typing import Any

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute

from crmkit.web.api import MOUNT, create_api


def create_app(crm: Any) -> Starlette:
    """The ASGI application of one CRM."""

    async def home(request: Request) -> HTMLResponse:
        from crmkit.model import Party, User

        with crm.session_factory() as session:
            parties = session.scalar(select(func.count()).select_from(Party)) or 0
            users = session.scalar(select(func.count()).select_from(User)) or 0
        pipelines = "".join(
            f"<li>{html.escape(p.title)} ({html.escape(p.entity)}): "
            f"{' → '.join(html.escape(s.title) for s in p.stages)}</li>"
            for p in crm.pipelines.values()
        )
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>crmkit</title>"
            "<body style='font-family:system-ui;max-width:50rem;margin:2rem auto'>"
            "<h1>crmkit is running</h1>"
            f"<p>{parties} clients, {users} users.</p><h2>Pipelines</h2><ul>{pipelines}</ul>"
        )
        return HTMLResponse(body)

    async def health(request: Request) -> JSONResponse:
        with crm.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return JSONResponse({"status": "ok"})

    routes = [StarletteRoute("/", home), StarletteRoute("/healthz", health)]
    routes.append(Mount(MOUNT, app=create_api(crm)))
    routes += [
        StarletteRoute(r.path, r.endpoint, methods=list(r.methods), name=r.name) for r in crm.routes
    ]
    app = Starlette(routes=routes)
    app.state.crm = crm
    return app
