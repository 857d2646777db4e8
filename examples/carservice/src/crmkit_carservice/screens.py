"""The car service's screens: the manager's desk (plate search, intake), the order page, the
worker's orders and the director's dashboard.  Each calls one or two services and renders.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from crmkit_finance import finance
from crmkit_finance.model import FinanceLocation
from crmkit_finance.services.forms import new_form_token
from starlette.requests import Request
from starlette.responses import Response

from crmkit.clock import utcnow
from crmkit.errors import DuplicatesFound, PermissionDenied, ValidationFailed
from crmkit.web import i18n
from crmkit.web.forms import as_id, optional_id
from crmkit.web.pages import error_text, posted, redirect, render, work
from crmkit.web.screens.clientbase import duplicates_found
from crmkit_carservice.services import OFF_DESK, carservice

#: Fields the intake's refusals name that no registry labels: a refusal reads
#: "<field>: <why>", the field translated as the rest is.
REFUSED_FIELDS = (
    i18n.lazy("car_id"),
    i18n.lazy("client"),
    i18n.lazy("services"),
    i18n.lazy("mileage"),
)
#: The button beside a client the intake's duplicate screening found.
PICK_CLIENT = i18n.lazy("Take the order for this client")


def _order_url(order_id: int) -> str:
    return f"/records/finance_order/{order_id}"


#: The most orders in progress the desk shows (the rest are a link away).
DESK_ORDERS = 50


def _stage_title(request: Request, order: Any) -> str:
    """An order's stage as its pipeline names it (in the pipeline's context)."""
    pipeline = request.app.state.crm.pipelines.get(order.pipeline)
    if pipeline is None or not pipeline.has_stage(order.stage):
        return str(order.stage)
    return i18n.stage_title(pipeline, order.stage)


def desk(request: Request) -> Response:
    """Find a client by car plate (any alphabet, spacing or case); the orders in progress."""
    query = request.query_params.get("q", "").strip()
    with work(request) as unit:
        desk_ = carservice(unit)
        matches = desk_.find_by_plate(query) if query else []
        # the work in progress, however many orders were closed since (a car waiting for
        # parts since spring is still on the desk), the newest first
        open_orders = unit.records("finance_order").list(
            filters={"stage__not_in": list(OFF_DESK)}, limit=DESK_ORDERS
        )
        views = desk_.views([*open_orders, *[o for m in matches for o in m.orders]])
    by_id = {v.order.id: v for v in views}
    return render(
        request,
        "carservice/desk.html",
        {
            "title": i18n.lazy("Service desk"),
            "q": query,
            "matches": matches,
            "views": by_id,
            "recent": [by_id[o.id] for o in open_orders],
            "all_open": "/lists/finance_order?f.stage__not_in=" + ",".join(OFF_DESK),
            "stage_title": lambda order: _stage_title(request, order),
        },
    )


def plate_check(request: Request) -> Response:
    """The intake form's plate, checked as it is typed (htmx, after a pause and on leaving
    the field): a plate already registered shows its car, the owner and the car's open
    orders, with the form for that car a click away; a new plate shows nothing.  The
    form's ``party_id`` (a client chosen) tells their own car from another's."""
    params = request.query_params
    with work(request) as unit:
        known = carservice(unit).known_plate(str(params.get("plate") or ""))
        views = {v.order.id: v for v in carservice(unit).views(known.open_orders)} if known else {}
    party_id = as_id(params.get("party_id"))
    own = bool(known and known.party is not None and known.party.id == party_id)
    return render(
        request,
        "carservice/plate_check.html",
        {
            "known": known,
            "own": own,
            "views": views,
            "stage_title": lambda order: _stage_title(request, order),
        },
    )


def _choices(unit: Any) -> dict[str, Any]:
    fin = finance(unit)
    return {
        # a fresh one-time token each time the form is shown: sent twice, it takes one order
        "form_token": new_form_token,
        "services": fin.catalogue.items(kind="service"),
        "workers": carservice(unit).workers(),
        "locations": list(unit.records("finance_location").list(limit=50)),
    }


def intake(request: Request) -> Response:
    """One form: a new or found client, their car, the services, the worker."""
    if request.method == "GET":
        values: dict[str, Any] = dict(request.query_params)
        with work(request) as unit:
            context = _choices(unit)
            party_id = optional_id(values.get("party_id"), "party_id")
            if party_id:
                context["party"] = unit.parties.get(party_id)
                context["cars"] = carservice(unit).cars.of_party(party_id)
        return render(
            request,
            "carservice/intake.html",
            {"title": i18n.lazy("New order"), "values": values, **context},
        )
    data = posted(request)
    services = data.get("services") or []
    if isinstance(services, str):
        services = [services]
    client = {
        "kind": data.get("client_kind") or "person",
        "name": data.get("client_name", ""),
        "phone": data.get("phone", ""),
    }
    try:
        chosen = {
            field: optional_id(data.get(field), field)
            for field in ("party_id", "car_id", "assignee_id", "location_id")
        }
        with work(request) as unit:
            order = carservice(unit).intake(
                party_id=chosen["party_id"],
                client=client,
                car_id=chosen["car_id"],
                car={
                    "plate": data.get("plate", ""),
                    "make": data.get("make", ""),
                    "model": data.get("model", ""),
                },
                services=[s for s in services if str(s).strip()],
                assignee_id=chosen["assignee_id"],
                location_id=chosen["location_id"],
                mileage=str(data.get("mileage") or ""),
                note=str(data.get("note", "")),
                confirm_duplicates=bool(data.get("confirm_duplicates")),
                form_token=str(data.get("form_token") or "") or None,
            )
            order_id = order.id
    except DuplicatesFound as found:
        # a returning client typed anew: take the order for them, or confirm a new one
        with work(request) as unit:
            values = carservice(unit).client_values(client)
            context = _choices(unit)
        return render(
            request,
            "carservice/intake.html",
            {
                "title": i18n.lazy("New order"),
                "values": data,
                "chosen": {str(s) for s in services},
                "pick": "party_id",
                "pick_label": PICK_CLIENT,
                **duplicates_found(request, values, found),
                **context,
            },
            status=409,
        )
    except ValidationFailed as exc:
        with work(request) as unit:
            context = _choices(unit)
            party_id = as_id(data.get("party_id"))  # None when the refusal is that it is not one
            party = unit.parties.find(party_id) if party_id else None  # the refusal may be it
            if party is not None:
                context["party"] = party
                context["cars"] = carservice(unit).cars.of_party(party_id)
            else:  # a plate already registered: offer that car and its owner
                known = carservice(unit).cars.registered(str(data.get("plate") or ""))
                owner = unit.parties.find(known.party_id) if known is not None else None
                if owner is not None:
                    context["known_car"], context["known_owner"] = known, owner
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


def _workspace(unit: Any) -> tuple[str, Any] | None:
    """The car service screen an order page leads back to: the desk for who takes orders,
    *My orders* for a worker; none for the others (the cash desk, the dashboard are theirs)."""
    if unit.access.can("finance_order", "create"):  # the desk's permission
        return "/service", i18n.lazy("Service desk")
    if "worker" in unit.actor.roles:  # the worker's screen is by role
        return "/service/my", i18n.lazy("My orders")
    return None


def order_panel(unit: Any, order: Any) -> dict[str, Any]:
    """The order page's car service block: the car, the client's name, the worker, and the
    way back to the reader's car service screen."""
    desk_ = carservice(unit)
    office = unit.access.can("finance_order", "assign")  # what the assign screen takes
    return {
        "view": desk_.views([order])[0],
        "workers": desk_.workers() if office else [],
        "office": office,
        "back": _workspace(unit),
    }


def _phone(party: Any) -> str:
    """The client's phone: the primary one, else the first."""
    phones = [c for c in party.contact_points if c.kind == "phone"]
    phones.sort(key=lambda c: not c.is_primary)
    return phones[0].value if phones else ""


def work_order(request: Request) -> Response:
    """The printable work order (*заказ-наряд*) of an order the reader may read: the branch,
    number and date, client, car, lines and totals, performers, lines to sign.  An order
    the reader may not read is not found (404), as on its record page."""
    order_id = int(request.path_params["order_id"])
    with work(request) as unit:
        fin = finance(unit)
        order = unit.records("finance_order").get(order_id)  # the reader's scope: 404
        view = carservice(unit).views([order])[0]
        lines = fin.orders.lines(order)
        removed = {ln.reverses_line_id for ln in lines if ln.reverses_line_id}
        # what the car was left for: lines taken back (and their negative twins) are not
        lines = [ln for ln in lines if ln.id not in removed and not ln.reverses_line_id]
        totals = fin.orders.totals(order)
        location = (
            unit.session.get(FinanceLocation, order.location_id) if order.location_id else None
        )
        # the phone is the client card's: shown to those who may read the client
        try:
            party = unit.parties.find(order.party_id)
        except PermissionDenied:  # a worker: the client's name is on the order, not the card
            party = None
        phone = _phone(party) if party is not None else ""
        people = {u.id: u for u in unit.users.list()}
        performer_ids = [ln.performer_id for ln in lines if ln.performer_id]
        if order.assignee_id:
            performer_ids.insert(0, order.assignee_id)
        performers = [people[i] for i in dict.fromkeys(performer_ids) if i in people]
        manager = people.get(order.owner_id) if order.owner_id else None
    return render(
        request,
        "carservice/work_order.html",
        {
            "title": i18n.lazy("Work order"),
            "order": order,
            "view": view,
            "works": [ln for ln in lines if ln.kind != "goods"],
            "parts": [ln for ln in lines if ln.kind == "goods"],
            "totals": totals,
            "location": location,
            "phone": phone,
            "performers": performers,
            "manager": manager,
            "people": people,
        },
    )


def client_panel(unit: Any, party: Any) -> dict[str, Any] | None:
    """The client card's cars, each with a new order and a booking at hand."""
    cars = carservice(unit).cars.of_party(party.id)
    office = unit.access.can("finance_order", "create")
    return {"cars": cars, "office": office, "party": party}


def assign(request: Request) -> Response:
    """Give the order to a worker."""
    order_id = int(request.path_params["order_id"])
    data = posted(request)
    try:
        with work(request) as unit:
            carservice(unit).assign(order_id, optional_id(data.get("assignee_id"), "assignee_id"))
    except ValidationFailed as exc:
        return redirect(request, _order_url(order_id), error_text(request, exc), kind="error")
    return redirect(request, _order_url(order_id), "Saved.")


#: The stages of the worker's *Finished* list: their part of the order is over.
FINISHED = ("done", "paid", "closed", "cancelled")
#: The most open orders the worker's list shows (a worker holds a few dozen at most).
MOST_OPEN = 500


def my_orders(request: Request) -> Response:
    """The worker's open orders (the scope shows them only theirs) and what they did lately."""
    mine = {"assignee_id": request.state.user.id}
    with work(request) as unit:
        orders = unit.records("finance_order")
        # the open ones all, however many were finished since (an order waiting for parts
        # since spring is still the worker's); the finished ones, the latest few
        open_orders = list(
            orders.list(filters={**mine, "stage__not_in": list(FINISHED)}, limit=MOST_OPEN)
        )
        finished = list(orders.list(filters={**mine, "stage__in": list(FINISHED)}, limit=20))
        desk_ = carservice(unit)
        open_views, finished_views = desk_.views(open_orders), desk_.views(finished)
        moves = {
            v.order.id: [o for o in unit.moves.options(v.order) if o.allowed] for v in open_views
        }
    pipeline = request.app.state.crm.pipelines.get("carservice_order")
    return render(
        request,
        "carservice/my.html",
        {
            "title": i18n.lazy("My orders"),
            "open": open_views,
            "finished": finished_views,
            "moves": moves,
            "pipeline": pipeline,
        },
    )


#: A month as the dashboard names it (Babel's stand-alone month: "март 2026").
MONTH = "LLLL y"


def _json_number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _month(key: str) -> dt.date:
    """A report's month key (``2026-03``) as the month's first day."""
    year, month = key.split("-")[:2]
    return dt.date(int(year), int(month), 1)


def _day(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None  # the period's report names a date it cannot read


def _salary_month(params: dict[str, Any], today: dt.date) -> dt.date:
    """The first day of the month the dashboard's salaries are for: the last month the
    period covers to its end (up to today); a period ending mid-month, the month before,
    unless the period lies within that one month, which is then shown so far.  No period
    picked: last month (the period runs to today)."""
    end = min(_day(params.get("end")) or today, today)
    month = end.replace(day=1)
    if (end + dt.timedelta(days=1)).month == end.month:  # not the month's last day
        before = (month - dt.timedelta(days=1)).replace(day=1)
        start = _day(params.get("start")) or before
        if start < month:
            month = before
    return month


def director(request: Request) -> Response:
    """Revenue, orders, average check and margin by month, corporate income, salaries, stock."""
    crm = request.app.state.crm
    with work(request) as unit:
        today = finance(unit).business_date(utcnow())  # the station's day, not UTC's
        start = dt.date(today.year - 1, today.month, 1) + dt.timedelta(days=31)
        start = start.replace(day=1)
        params = {"start": request.query_params.get("start") or start.isoformat()}
        if request.query_params.get("end"):
            params["end"] = request.query_params["end"]
        summary = crm.reports["finance.director"].build(unit, params)
        corporate = crm.reports["finance.corporate_income"].build(unit, params)
        stock = crm.reports["finance.stock"].build(unit, {})
        salary_month = _salary_month(params, today)
        salaries = crm.reports["finance.salaries"].build(unit, {"month": salary_month.isoformat()})
    totals = dict(summary.totals or {})
    chart = dict(summary.chart or {})
    locale = request.state.locale
    # "март 2026", not the report's key "2026-03", in the table and on the chart's axis
    months = {row["month"]: locale.date(_month(row["month"]), MONTH) for row in summary.rows}
    if chart:
        with i18n.activate(locale):  # the report's labels are English
            data = dict(chart["data"])
            data["labels"] = [months.get(str(key), key) for key in data.get("labels", [])]
            data["datasets"] = [
                {**d, "label": i18n.gettext(str(d.get("label", "")))} for d in data["datasets"]
            ]
            chart["data"] = data
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
            "salary_month": locale.date(salary_month, MONTH),
            "months": months,
            "chart": json.dumps(chart, default=_json_number) if chart else "",
            "params": params,
            # the period form shows the period the figures are for, today's by default
            "period": {"start": params["start"], "end": params.get("end") or today.isoformat()},
        },
    )
