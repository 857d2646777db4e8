"""One search box over every searchable entity the caller may read."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import ValidationFailed
from crmkit.schemas.api import SearchResultSchema
from crmkit.web.api.auth import acting
from crmkit.web.api.operations import Operation, query_parameter
from crmkit.web.api.params import parse_limit, text_param
from crmkit.web.api.responses import JSONResponse


def searchable(crm: Any) -> list[Any]:
    """Entity types that can be searched and read."""
    return [e for e in crm.entities if e.search_attrs and "read" in e.actions]


def search(request: Request) -> Response:
    """Records whose search attributes match ``q``, per entity, as far as you may see."""
    crm = request.app.state.crm
    params = request.query_params
    # read as the lists read it: a NUL is refused in the one wording (``NUL_REFUSED``)
    text = (text_param(params, "q") or "").strip()
    if not text:
        raise ValidationFailed({"q": ["give something to search for"]})
    limit = parse_limit(params, default=10)
    available = {e.name: e for e in searchable(crm)}
    wanted = [n.strip() for v in params.getlist("entity") for n in v.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ValidationFailed(
            {"entity": [f"cannot search {unknown[0]!r} (searchable: {', '.join(available)})"]}
        )
    hits: list[dict[str, Any]] = []
    with acting(request) as work:
        for name in wanted or list(available):
            entity = available[name]
            if not work.access.can(name, "read"):
                continue
            for record in work.records(name).list(search=text, limit=limit):
                hits.append({"entity": name, "id": record.id, "title": entity.title_of(record)})
    return JSONResponse({"q": text, "hits": hits})


def operations(crm: Any) -> list[Operation]:
    """The search operation."""
    names = [e.name for e in searchable(crm)]
    return [
        Operation(
            "GET",
            "/search",
            search,
            "search",
            "Search everything",
            "Search",
            description="Searchable: " + ", ".join(f"`{n}`" for n in names) + ".",
            parameters=[
                query_parameter("q", "Search text.", required=True),
                query_parameter("entity", "Only these entities (comma-separated)."),
                query_parameter(
                    "limit",
                    "Hits per entity (1-500).",
                    {"type": "integer", "minimum": 1, "maximum": 500, "default": 10},
                ),
            ],
            responses={200: ("Hits, entity by entity.", SearchResultSchema)},
            errors=(422,),
        )
    ]
