"""The indexed router answers exactly as Starlette's router would, trying fewer routes."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from crmkit.web.routing import IndexedRouter, index_routes


def _answer(text):
    async def endpoint(request):
        url = request.url_for("named", key="k")  # names resolve against every route
        return PlainTextResponse(f"{text} {request.path_params} {url.path}")

    return endpoint


def _app(indexed: bool) -> Starlette:
    inner = Starlette(routes=[Route("/party", _answer("inner-list"))])
    app = Starlette(
        routes=[
            Route("/party/special", _answer("special")),
            Route("/{entity}/special", _answer("generic-special")),
            Route("/party/{id:int}", _answer("record"), methods=["GET"]),
            Route("/deal", _answer("deal")),
            Route("/named/{key}", _answer("named"), name="named"),
            Mount("/api", app=inner),
        ]
    )
    if indexed:
        index_routes(app)
        assert isinstance(app.router, IndexedRouter)
    return app


async def _requests(app, requests):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [await client.request(method, path) for method, path in requests]


def test_same_answers_as_starlettes_router():
    paths = [
        ("GET", "/party/special"),  # the literal route before the generic one wins
        ("GET", "/deal/special"),  # only the generic route can answer
        ("GET", "/party/7"),
        ("POST", "/party/7"),  # 405, not 404
        ("GET", "/party/x"),  # 404
        ("GET", "/deal/"),  # redirected to /deal
        ("GET", "/nowhere"),
        ("GET", "/api/party"),  # through a mount
        ("GET", "/named/q"),
    ]
    plain = asyncio.run(_requests(_app(False), paths))
    indexed = asyncio.run(_requests(_app(True), paths))
    for (method, path), expected, got in zip(paths, plain, indexed, strict=True):
        assert (got.status_code, got.text, got.headers.get("location")) == (
            expected.status_code,
            expected.text,
            expected.headers.get("location"),
        ), (method, path)
    answers = dict(zip(paths, indexed, strict=True))
    assert answers[("GET", "/party/special")].text.startswith("special ")
    assert answers[("GET", "/deal/special")].text.startswith("generic-special ")
    assert answers[("POST", "/party/7")].status_code == 405
    assert answers[("GET", "/deal/")].status_code in (307, 308)
    assert answers[("GET", "/api/party")].text.startswith("inner-list ")


def test_only_the_requests_group_is_tried():
    router = _app(True).router
    assert [r.path for r in router.groups["party"].routes] == [
        "/party/special",
        "/{entity}/special",
        "/party/{id:int}",
    ]
    assert "/party/special" not in [r.path for r in router.groups["deal"].routes]
