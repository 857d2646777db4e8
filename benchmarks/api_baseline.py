"""The raw baseline of the API list benchmark: Starlette + SQLAlchemy Core, nothing else.

The same rows the API answers an agent (their own parties, newest activity first, 50 of
them, the same columns), from the same database, encoded by the same JSON library; no
token, no access policy, no schema, no unit of work.  ``uvicorn --factory`` builds it.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmkit.config import Config
from crmkit.db import make_engine
from crmkit.model import Party
from crmkit.schemas.output import public_columns


def create_app() -> Any:
    """The baseline app for the deployment named by ``CRMKIT_CONFIG``."""
    config = Config.load(os.environ["CRMKIT_CONFIG"])
    engine = make_engine(config.database_url)
    agent_id = int(os.environ["CRMKIT_BENCH_AGENT"])
    columns = public_columns(Party)
    names = [c.key for c in columns]
    statement = (
        sa.select(*columns)
        .where(Party.merged_into_id.is_(None), Party.owner_id == sa.bindparam("owner"))
        # the API's own order (``-last_activity_at``, then id): no NULLS LAST, which on
        # PostgreSQL could not read the (owner, last_activity_at, id) index and sorted
        # the agent's 20,000 rows for every request
        .order_by(Party.last_activity_at.desc(), Party.id.desc())
        .limit(50)
    )

    async def parties(request: Request) -> Response:
        with engine.connect() as connection:
            rows = connection.execute(statement, {"owner": agent_id}).all()
        items = [dict(zip(names, row, strict=True)) for row in rows]
        return Response(orjson.dumps({"items": items}, default=str), media_type="application/json")

    return Starlette(routes=[Route("/party", parties)])
