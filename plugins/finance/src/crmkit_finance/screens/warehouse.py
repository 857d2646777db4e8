"""The warehouse head's screens: goods and categories, stock, purchases.

* ``/finance/stock``: stock per location with its average cost and value (``?low=1``: only
  what fell below its minimum; ``?location=``), and the forms of the warehouse: a receipt
  with its cost, a write-off, a transfer, an inventory count, a minimum; a new good or
  service and a new category.
* ``/finance/purchases``: purchase orders with their supplier and state, a new purchase
  order (optionally for a client order), receiving one, sending one to the supplier's
  email (when a mail channel is configured) with the letters sent so far, and a new
  supplier.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit.web.contributions import CardPanel, Screen
from crmkit.web.forms import optional_id, refuse_nul
from crmkit.web.i18n import lazy
from crmkit.web.pages import posted, render, work
from crmkit_finance import finance
from crmkit_finance.screens import attempt, client_names, safe_back, sent_token
from crmkit_finance.services.forms import new_form_token

STOCK_READ = ("finance_stock", "read")
STOCK_WRITE = ("finance_stock", "create")
PURCHASES_READ = ("finance_purchase_order", "read")
PURCHASE_LINES = 5


def _required(data: Any, field: str) -> int:
    value = optional_id(data.get(field), field)
    if value is None:
        raise ValidationFailed({field: [message("choose one")]})
    return value


def stock(request: Request) -> Response:
    """Stock levels, the total value, and the warehouse's forms."""
    return _stock_page(request)


def _stock_page(
    request: Request, sent: dict[str, Any] | None = None, refused: str | None = None
) -> Response:
    """The stock page; after a refused form (``sent``: its name under ``"form"`` and what was
    typed), that form filled in as it was sent with ``refused`` beside it (a 422)."""
    location_id = optional_id(request.query_params.get("location"), "location")
    low_only = bool(request.query_params.get("low"))
    with work(request) as unit:
        fin = finance(unit)
        levels = fin.stock.levels(location_id=location_id)
        if low_only:
            levels = [row for row in levels if row["low"]]
        locations = list(unit.records("finance_location").list(limit=100))
        categories = list(unit.records("finance_item_category").list(limit=200))
        goods = fin.catalogue.items(kind="goods")
        suppliers = list(unit.records("finance_supplier").list(filters={"active": True}, limit=200))
        context = {
            "title": "Warehouse",
            "levels": levels,
            "total_value": sum((row["value"] for row in levels), start=0),
            "currency": fin.base_currency,
            "locations": locations,
            "location_id": location_id,
            "low_only": low_only,
            "categories": {c.id: c for c in categories},
            "goods": goods,
            "suppliers": suppliers,
            "supplier_names": client_names(unit, (s.party_id for s in suppliers)),
            "may_move": fin.can("finance_stock", "create"),
            "may_pay": fin.can("finance_ledger", "create"),  # a receipt paid at once
            "may_catalogue": fin.can("finance_item", "create"),
            "form_token": new_form_token,
            "sent": sent or {},
            "refused": refused,
        }
    return render(request, "finance/stock.html", context, status=422 if refused else 200)


def _stock_action(name: str, data: Any) -> Any:
    """The stock service call a warehouse form stands for."""

    def act(fin: Any) -> Any:
        item_id = _required(data, "item_id")
        location_id = _required(data, "location_id")
        qty = data.get("qty", "")
        if name == "receive":
            return fin.stock.receive(
                item_id,
                location_id,
                qty,
                data.get("unit_cost", ""),
                supplier_id=optional_id(data.get("supplier_id"), "supplier_id"),
                paid_from=str(data.get("paid_from") or "") or None,
                note=str(data.get("note", "")),
                form_token=sent_token(data),
            )
        if name == "write_off":
            return fin.stock.write_off(
                item_id,
                location_id,
                qty,
                reason=str(data.get("reason", "")),
                form_token=sent_token(data),
            )
        if name == "transfer":
            return fin.stock.transfer(
                item_id,
                location_id,
                _required(data, "to_location_id"),
                qty,
                form_token=sent_token(data),
            )
        if name == "count":
            return fin.stock.count(
                location_id,
                {item_id: qty},
                note=str(data.get("note", "")),
                form_token=sent_token(data),
            )
        return fin.stock.set_minimum(
            item_id, location_id, data.get("min_qty", ""), form_token=sent_token(data)
        )

    return act


#: What a refused warehouse form shows again as it was sent.
SENT_FIELDS = (
    "item_id",
    "location_id",
    "to_location_id",
    "supplier_id",
    "paid_from",
    "qty",
    "unit_cost",
    "min_qty",
    "reason",
)

STOCK_MESSAGES = {
    "receive": lazy("Goods received."),
    "write_off": lazy("Written off."),
    "transfer": lazy("Moved."),
    "count": lazy("Count booked."),
    "minimum": lazy("Minimum set."),
}


def stock_action(request: Request) -> Response:
    """One of the warehouse's forms (``/finance/stock/<action>``)."""
    name = request.path_params["action"]
    if name not in STOCK_MESSAGES:
        from crmkit.web.pages import NotFoundPage

        raise NotFoundPage()
    data = posted(request)
    # refused: the page again with this form as it was sent and the reason beside it (a
    # redirect lost what was typed and told why at the top, far from the form on a phone)
    sent = {k: v for k, v in data.items() if isinstance(v, str) and k in SENT_FIELDS}
    return attempt(
        request,
        "/finance/stock",
        _stock_action(name, data),
        STOCK_MESSAGES[name],
        refused=lambda why: _stock_page(request, {**sent, "form": name}, why),
    )


def new_item(request: Request) -> Response:
    """A new good or service in the catalogue."""
    data = posted(request)
    values = {
        "name": str(data.get("name", "")),
        "kind": str(data.get("kind") or "goods"),
        "category_id": optional_id(data.get("category_id"), "category_id"),
        "price": str(data.get("price") or "0").replace(" ", "").replace(",", "."),
        # no unit typed: the reader's word for pieces (шт. in Russian), as the form offers
        "unit": str(data.get("unit") or request.state.locale.gettext("pcs")),
        "sku": str(data.get("sku") or "") or None,
        "track_stock": bool(data.get("track_stock")),
    }
    return attempt(
        request,
        "/finance/stock",
        lambda fin: fin.work.records("finance_item").create(
            {k: v for k, v in values.items() if v is not None}
        ),
        "Added to the catalogue.",
    )


def new_category(request: Request) -> Response:
    """A new category of goods or services."""
    data = posted(request)
    return attempt(
        request,
        "/finance/stock",
        lambda fin: fin.work.records("finance_item_category").create(
            name=str(data.get("name", "")),
            kind=str(data.get("kind") or "goods"),
            parent_id=optional_id(data.get("parent_id"), "parent_id"),
        ),
        "Category added.",
    )


def purchases(request: Request) -> Response:
    """Purchase orders, newest first, with the new-purchase and new-supplier forms."""
    with work(request) as unit:
        fin = finance(unit)
        orders = list(unit.records("finance_purchase_order").list(order=["-id"], limit=100))
        letters = fin.letters.sent([o.id for o in orders])
        suppliers = list(unit.records("finance_supplier").list(limit=200))
        names = client_names(unit, (s.party_id for s in suppliers))
        rows = [
            {"order": o, "lines": fin.purchases.lines(o), "letters": letters.get(o.id, [])}
            for o in orders
        ]
        # the goods of the lines by name, an item no longer sold (inactive) too
        line_items = unit.records("finance_item").find_many(
            line.item_id for row in rows for line in row["lines"]
        )
        context = {
            "title": "Purchases",
            "orders": rows,
            "line_items": line_items,
            "suppliers": suppliers,
            "supplier_names": {s.id: names.get(s.party_id, "") for s in suppliers},
            "owed": {s.id: fin.purchases.owed_to(s.id) for s in suppliers},
            "items": {i.id: i for i in fin.catalogue.items(kind="goods")},
            "locations": list(unit.records("finance_location").list(limit=100)),
            "rows": range(PURCHASE_LINES),
            "currency": fin.base_currency,
            "may_order": fin.can("finance_purchase_order", "create"),
            "may_receive": fin.can("finance_purchase_order", "update"),
            "may_supplier": fin.can("finance_supplier", "create"),
            "may_mail": fin.letters.can_send(),
            "no_mail_channel": fin.letters.channel is None,
        }
    return render(request, "finance/purchases.html", context)


async def new_purchase(request: Request) -> Response:
    """Order goods from a supplier (optionally for a client order, by its number)."""
    form = await request.form()
    items, qtys, costs = (form.getlist(k) for k in ("item_id", "qty", "unit_cost"))
    lines = [
        {"item_id": optional_id(item, "item_id"), "qty": qty, "unit_cost": cost or "0"}
        for item, qty, cost in zip(items, qtys, costs, strict=False)
        if item and qty
    ]
    number = str(form.get("client_order") or "").strip()
    expected = str(form.get("expected_on") or "").strip()

    def order(fin: Any) -> Any:
        refuse_nul(form)
        expected_on = None
        if expected:
            try:
                expected_on = dt.date.fromisoformat(expected)
            except ValueError:
                raise ValidationFailed(
                    {"expected_on": [message("not a date: {value}", value=repr(expected))]}
                ) from None
        client_order_id = None
        if number:
            found = list(fin.orders.list(search=number, limit=5))
            match = [o for o in found if o.number == number]
            if not match:
                raise ValidationFailed(
                    {"client_order": [message("no order {number}", number=number)]}
                )
            client_order_id = match[0].id
        return fin.purchases.create_order(
            _required(form, "supplier_id"),
            _required(form, "location_id"),
            lines,
            client_order_id=client_order_id,
            expected_on=expected_on,
            note=str(form.get("note") or ""),
        )

    return attempt(request, "/finance/purchases", order, "Purchase order created.")


def receive_purchase(request: Request) -> Response:
    """Everything still outstanding on a purchase order arrived."""
    purchase_id = int(request.path_params["purchase_id"])
    return attempt(
        request,
        "/finance/purchases",
        lambda fin: fin.purchases.receive(purchase_id),
        "Goods received.",
    )


def send_letter(request: Request) -> Response:
    """Send the purchase order to the supplier's email (queued in the outbox)."""
    purchase_id = int(request.path_params["purchase_id"])
    data = posted(request)
    return attempt(
        request,
        safe_back(data.get("back"), "/finance/purchases"),
        lambda fin: fin.letters.send(purchase_id),
        "Letter to the supplier queued.",
    )


def new_supplier(request: Request) -> Response:
    """A supplier: an organisation with payment terms."""
    data = posted(request)

    def create(fin: Any) -> Any:
        values: dict[str, Any] = {"kind": "organisation", "name": str(data.get("name", ""))}
        email = str(data.get("email") or "").strip()
        if email:
            values["contact_points"] = [{"kind": "email", "value": email}]
        party = fin.work.parties.create(values)
        return fin.work.records("finance_supplier").create(
            # as typed: the schema names payment_days when it is no whole number in range
            party_id=party.id,
            payment_days=str(data.get("payment_days") or "").strip() or 0,
        )

    return attempt(request, "/finance/purchases", create, "Supplier added.")


def purchase_panel(work: Any, record: Any) -> dict[str, Any]:
    """The purchase order page's letters to the supplier, and the send button."""
    fin = finance(work)
    return {
        "letters": fin.letters.sent([record.id]).get(record.id, []),
        "may_mail": fin.letters.can_send() and record.status != "cancelled",
        "no_mail_channel": fin.letters.channel is None,
    }


def _post(name: str, path: str, endpoint: Any, permission: tuple[str, str]) -> Screen:
    return Screen(name, path, name, endpoint, methods=("POST",), permission=permission)


SCREENS = [
    Screen("finance_stock", "/finance/stock", "Warehouse", stock, permission=STOCK_READ),
    _post("finance_item_new", "/finance/stock/items", new_item, ("finance_item", "create")),
    _post(
        "finance_category_new",
        "/finance/stock/categories",
        new_category,
        ("finance_item_category", "create"),
    ),
    _post("finance_stock_action", "/finance/stock/{action}", stock_action, STOCK_WRITE),
    Screen(
        "finance_purchases",
        "/finance/purchases",
        "Purchases",
        purchases,
        permission=PURCHASES_READ,
    ),
    _post(
        "finance_purchase_new",
        "/finance/purchases",
        new_purchase,
        ("finance_purchase_order", "create"),
    ),
    _post(
        "finance_purchase_receive",
        "/finance/purchases/{purchase_id:id}/receive",
        receive_purchase,
        ("finance_purchase_order", "update"),
    ),
    _post(
        "finance_purchase_letter",
        "/finance/purchases/{purchase_id:id}/letter",
        send_letter,
        PURCHASES_READ,
    ),
    _post(
        "finance_supplier_new",
        "/finance/suppliers",
        new_supplier,
        ("finance_supplier", "create"),
    ),
]

PANELS = [
    CardPanel(
        "finance_purchase_letters",
        "finance/purchase_panel.html",
        purchase_panel,
        permission=PURCHASES_READ,
        entity="finance_purchase_order",
    ),
]
