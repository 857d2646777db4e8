"""The car service's screens: the manager's desk (plate search, intake), the order page, the
worker's orders and the director's dashboard.  Each calls one or two services and renders.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from crmkit_finance import finance
from starlette.requests import Request
from starlette.responses import Response

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.web import i18n
from crmkit.web.forms import optional_int
from crmkit.web.pages import error_text, form_data, redirect, render, work
from crmkit_carservice.services import carservice


def _order_url(order_id: int) -> str:
    return f"/service/orders/{order_id}"


async def desk(request: Request) -> Response:
    """Find a client by car plate (any alphabet, spacing or case); open orders of today."""
    query = request.query_params.get("q", "").strip()
    with work(request) as unit:
        desk_ = carservice(unit)
        matches = desk_.find_by_plate(query) if query else []
        open_orders = unit.records("finance_order").list(limit=30)
        views = desk_.views([*open_orders, *[o for m in matches for o in m.orders]])
    by_id = {v.order.id: v for v in views}
    pipelines = request.app.state.crm.pipelines

    def stage_title(order: Any) -> str:
        pipeline = pipelines.get(order.pipeline)
        if pipeline is None or not pipeline.has_stage(order.stage):
            return str(order.stage)
        return pipeline.stage(order.stage).title

    return render(
        request,
        "carservice/desk.html",
        {
            "title": i18n.lazy("Service desk"),
            "q": query,
            "matches": matches,
            "views": by_id,
            "recent": [by_id[o.id] for o in open_orders],
            "stage_title": stage_title,
        },
    )


def _choices(unit: Any) -> dict[str, Any]:
    fin = finance(unit)
    return {
        "services": fin.catalogue.items(kind="service"),
        "workers": carservice(unit).workers(),
        "locations": list(unit.records("finance_location").list(limit=50)),
    }


async def intake(request: Request) -> Response:
    """One form: a new or found client, their car, the services, the worker."""
    if request.method == "GET":
        values: dict[str, Any] = dict(request.query_params)
        with work(request) as unit:
            context = _choices(unit)
            party_id = optional_int(values.get("party_id"))
            if party_id:
                context["party"] = unit.parties.get(party_id)
                context["cars"] = carservice(unit).cars.of_party(party_id)
        return render(
            request,
            "carservice/intake.html",
            {"title": i18n.lazy("New order"), "values": values, **context},
        )
    data = await form_data(request)
    services = data.get("services") or []
    if isinstance(services, str):
        services = [services]
    try:
        with work(request) as unit:
            order = carservice(unit).intake(
                party_id=optional_int(data.get("party_id")),
                client={
                    "kind": data.get("client_kind") or "person",
                    "name": data.get("client_name", ""),
                    "phone": data.get("phone", ""),
                },
                car_id=optional_int(data.get("car_id")),
                car={
                    "plate": data.get("plate", ""),
                    "make": data.get("make", ""),
                    "model": data.get("model", ""),
                },
                services=[int(s) for s in services if str(s).strip()],
                assignee_id=optional_int(data.get("assignee_id")),
                location_id=optional_int(data.get("location_id")),
                mileage=optional_int(data.get("mileage")),
                note=str(data.get("note", "")),
            )
            order_id = order.id
    except ValidationFailed as exc:
        with work(request) as unit:
            context = _choices(unit)
            party_id = optional_int(data.get("party_id"))
            if party_id:
                context["party"] = unit.parties.get(party_id)
                context["cars"] = carservice(unit).cars.of_party(party_id)
        return render(
            request,
            "carservice/intake.html",
            {
                "title": i18n.lazy("New order"),
                "values": data,
                "chosen": {str(s) for s in services},
                "error": error_text(request, exc),
                **context,
            },
            status=422,
        )
    return redirect(request, _order_url(order_id), "Order created.")


async def order_page(request: Request) -> Response:
    """An order: car, client, worker, status and moves, lines; the manager adds services."""
    order_id = int(request.path_params["order_id"])
    with work(request) as unit:
        desk_ = carservice(unit)
        order = unit.records("finance_order").get(order_id)
        view = desk_.views([order])[0]
        options = unit.moves.options(order, entity="finance_order")
        history = unit.moves.history(order, entity="finance_order")
        fin = finance(unit)
        lines = fin.orders.lines(order)
        office = unit.access.can("finance_order", "update")
        context: dict[str, Any] = {}
        if office:
            context = _choices(unit)
        totals = fin.orders.totals(order) if unit.access.can("finance_payment", "read") else None
        items = {i.id: i for i in fin.catalogue.items()}
    pipeline = request.app.state.crm.pipelines.get(order.pipeline)
    return render(
        request,
        "carservice/order.html",
        {
            "title": order.number or f"#{order.id}",
            "view": view,
            "order": order,
            "pipeline": pipeline,
            "options": [o for o in options if o.allowed],
            "history": history,
            "lines": lines,
            "items": items,
            "totals": totals,
            "office": office,
            **context,
        },
    )


async def assign(request: Request) -> Response:
    """Give the order to a worker."""
    order_id = int(request.path_params["order_id"])
    data = await form_data(request)
    try:
        with work(request) as unit:
            carservice(unit).assign(order_id, optional_int(data.get("assignee_id")))
    except ValidationFailed as exc:
        return redirect(request, _order_url(order_id), error_text(request, exc), kind="error")
    return redirect(request, _order_url(order_id), "Saved.")


async def add_line(request: Request) -> Response:
    """Add an extra service (or a good) to the order, at any stage."""
    order_id = int(request.path_params["order_id"])
    data = await form_data(request)
    try:
        with work(request) as unit:
            fin = finance(unit)
            fin.orders.add_line(
                fin.orders.get(order_id),
                int(optional_int(data.get("item_id")) or 0),
                qty=str(data.get("qty") or "1").replace(",", "."),
            )
    except ValidationFailed as exc:
        return redirect(request, _order_url(order_id), error_text(request, exc), kind="error")
    return redirect(request, _order_url(order_id), "Service added.")


async def my_orders(request: Request) -> Response:
    """The worker's open orders (the scope shows them only theirs) and what they did lately."""
    with work(request) as unit:
        orders = unit.records("finance_order")
        mine = list(orders.list(filters={"assignee_id": request.state.user.id}, limit=100))
        views = carservice(unit).views(mine)
        moves = {v.order.id: [o for o in unit.moves.options(v.order) if o.allowed] for v in views}
    pipeline = request.app.state.crm.pipelines.get("carservice_order")
    open_views = [v for v in views if v.order.stage not in ("done", "paid", "closed", "cancelled")]
    return render(
        request,
        "carservice/my.html",
        {
            "title": i18n.lazy("My orders"),
            "open": open_views,
            "finished": [v for v in views if v not in open_views][:20],
            "moves": moves,
            "pipeline": pipeline,
        },
    )


def _json_number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


async def director(request: Request) -> Response:
    """Revenue, orders, average check and margin by month, corporate income, salaries, stock."""
    crm = request.app.state.crm
    today = utcnow().date()
    start = dt.date(today.year - 1, today.month, 1) + dt.timedelta(days=31)
    start = start.replace(day=1)
    params = {"start": request.query_params.get("start") or start.isoformat()}
    if request.query_params.get("end"):
        params["end"] = request.query_params["end"]
    with work(request) as unit:
        summary = crm.reports["finance.director"].build(unit, params)
        corporate = crm.reports["finance.corporate_income"].build(unit, params)
        stock = crm.reports["finance.stock"].build(unit, {})
        month = today.replace(day=1)
        previous = (month - dt.timedelta(days=1)).replace(day=1)
        salaries = crm.reports["finance.salaries"].build(unit, {"month": previous.isoformat()})
    totals = dict(summary.totals or {})
    return render(
        request,
        "carservice/director.html",
        {
            "title": i18n.lazy("Dashboard"),
            "summary": summary,
            "totals": totals,
            "corporate": corporate,
            "stock": stock,
            "salaries": salaries,
            "salary_month": previous,
            "chart": json.dumps(summary.chart, default=_json_number) if summary.chart else "",
            "params": params,
        },
    )
