"""Screens of a clean client base: duplicate screening (and, next to it, merges and reports).

The screening screen is for lead creators: a search box where a name, a phone, an email or
a site is typed or pasted, and the likely duplicates appear as one types (htmx asks
``/screening/candidates`` after a short pause).  Candidates the user may not open show no
owner and no link: only that the company is already somebody's client.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.web import i18n
from crmkit.web.pages import render, work

REASONS = {
    "phone": i18n.lazy("same phone"),
    "email": i18n.lazy("same email"),
    "website": i18n.lazy("same website"),
    "domain": i18n.lazy("same domain"),
    "name": i18n.lazy("similar name"),
}


def screen_values(unit: Any, params: Any) -> list[Any]:
    """Candidates for what the screening box or the client form holds."""
    typed = str(params.get("q", "")).strip()
    if typed:
        return list(unit.screening.probe_text(typed, limit=20))
    name = str(params.get("name", "")).strip()
    if params.get("kind") == "person" and not name:
        name = " ".join(str(params.get(k, "")).strip() for k in ("first_name", "last_name")).strip()
    phones = [str(params.get("phone", "")).strip()]
    emails = [str(params.get("email", "")).strip()]
    if not (name or any(phones) or any(emails)):
        return []
    return list(
        unit.screening.candidates(
            name,
            kind=str(params.get("kind") or "organisation"),
            phones=phones,
            emails=emails,
            limit=10,
        )
    )


async def screening_page(request: Request) -> Response:
    """Type or paste a name, phone, email or site; see candidates as you type."""
    with work(request) as unit:
        unit.access.require("party", "create")
        candidates = screen_values(unit, request.query_params)
    return render(
        request,
        "screening.html",
        {
            "title": i18n.lazy("Check for duplicates"),
            "q": request.query_params.get("q", ""),
            "candidates": candidates,
            "reasons": REASONS,
            "probed": bool(str(request.query_params.get("q", "")).strip()),
        },
    )


async def screening_candidates(request: Request) -> Response:
    """The candidates table alone (htmx partial for the screening box and the client form)."""
    params = request.query_params
    with work(request) as unit:
        unit.access.require("party", "create")
        candidates = screen_values(unit, params)
    probed = any(str(params.get(k, "")).strip() for k in ("q", "name", "phone", "email"))
    return render(
        request,
        "screening_candidates.html",
        {"candidates": candidates, "reasons": REASONS, "probed": probed},
    )
