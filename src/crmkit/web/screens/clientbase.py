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

STATUSES = {
    "new": i18n.lazy("new"),
    "queued": i18n.lazy("queued"),
    "running": i18n.lazy("running"),
    "done": i18n.lazy("done"),
    "failed": i18n.lazy("failed"),
    "interrupted": i18n.lazy("interrupted"),
}

REASONS = {
    "phone": i18n.lazy("same phone"),
    "email": i18n.lazy("same email"),
    "website": i18n.lazy("same website"),
    "domain": i18n.lazy("same domain"),
    "name": i18n.lazy("similar name"),
}


def duplicates_found(request: Request, values: Any, found: Any) -> dict[str, Any]:
    """What a create form shows when ``parties.create`` refused a likely duplicate.

    The candidates are screened again for the table (objects: the template tells a
    candidate the user may open, with its link, from one they may not, named only); the
    refusal's own list stands in when the second look finds nothing.  A form renders it
    with ``duplicates_found.html`` and a ``confirm_duplicates`` button (the client form,
    the car service's intake).
    """
    with work(request) as unit:
        candidates = unit.screening.for_values(values)
    return {"candidates": candidates or found.candidates, "reasons": REASONS, "probed": True}


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


def screening_page(request: Request) -> Response:
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


def screening_candidates(request: Request) -> Response:
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


# -- merge ------------------------------------------------------------------------------------


def _field_label(field: str, definitions: dict[str, Any]) -> str:
    if field.startswith("custom."):
        definition = definitions.get(field[len("custom.") :])
        return definition.label if definition else field
    return field


def merge_page(request: Request) -> Response:
    """Merge a duplicate into this client: pick the other record, then field by field."""
    from crmkit.errors import ValidationFailed
    from crmkit.web.forms import optional_id
    from crmkit.web.links import party_url
    from crmkit.web.pages import error_text, posted, redirect

    party_id = int(request.path_params["party_id"])
    data = posted(request) if request.method == "POST" else {}
    other_id = optional_id(data.get("with") or request.query_params.get("with"), "with")
    error = None
    if request.method == "POST" and other_id:
        try:
            keep = {
                key[len("keep.") :]: optional_id(value, key)
                for key, value in data.items()
                if key.startswith("keep.") and str(value).strip()
            }
            with work(request) as unit:
                survivor = unit.merges.merge(party_id, other_id, keep=keep)
                survivor_id = survivor.id
            return redirect(request, party_url(survivor_id), "Clients merged.")
        except ValidationFailed as failed:
            error = error_text(request, failed)
    with work(request) as unit:
        party = unit.parties.get(party_id)
        if party.id != party_id:  # merged into another client: merge into that one
            return redirect(request, f"/clients/{party.id}/merge")
        unit.parties.get(party_id, action="update")
        other = unit.parties.get(other_id, action="delete") if other_id else None
        candidates = []
        if other is None:
            candidates = [
                c
                for c in unit.screening.candidates(
                    party.name,
                    kind=party.kind,
                    phones=[p.value for p in party.contact_points if p.kind == "phone"],
                    emails=[p.value for p in party.contact_points if p.kind == "email"],
                    websites=[p.value for p in party.contact_points if p.kind == "website"],
                    exclude=[party.id],
                    threshold=70,
                    limit=20,
                )
                if c.visible
            ]
        fields = unit.merges.fields(party, other) if other is not None else []
        definitions = unit.custom_fields.definitions("party")
        users = {u.id: u.label for u in unit.users.list()}
    for row in fields:
        row["label"] = _field_label(row["field"], definitions)
        if row["field"] == "owner_id":
            row["survivor"] = users.get(row["survivor"], row["survivor"])
            row["merged"] = users.get(row["merged"], row["merged"])
    return render(
        request,
        "merge.html",
        {
            "title": i18n.lazy("Merge duplicates"),
            "party": party,
            "other": other,
            "candidates": candidates,
            "fields": fields,
            "reasons": REASONS,
            "error": error,
        },
        status=422 if error else 200,
    )


# -- duplicate report (admin) -----------------------------------------------------------------


def duplicates_page(request: Request) -> Response:
    """The latest whole-base duplicate report, its groups with links to merge them (clients
    the user may not see are counted in their groups, not named)."""
    from sqlalchemy import select

    from crmkit.model import DuplicateReport
    from crmkit.services.duplicates import queue_report, run_report, shown_groups
    from crmkit.web.pages import posted, redirect

    if request.method == "POST":
        data = posted(request)
        if data.get("now"):
            with work(request) as unit:
                unit.access.require("party", "delete")
            run_report(request.app.state.crm, requested_by_id=request.state.user.id)
            return redirect(request, "/admin/duplicates", "Report ready.")
        with work(request) as unit:
            queue_report(unit)
        return redirect(request, "/admin/duplicates", "Report queued.")
    with work(request) as unit:
        unit.access.require("party", "delete")
        report = unit.session.scalar(
            select(DuplicateReport).order_by(DuplicateReport.id.desc()).limit(1)
        )
        groups = shown_groups(unit, report) if report is not None else []
    return render(
        request,
        "duplicates.html",
        {
            "title": i18n.lazy("Duplicate report"),
            "report": report,
            "groups": groups,
            "reasons": REASONS,
            "statuses": STATUSES,
        },
    )
