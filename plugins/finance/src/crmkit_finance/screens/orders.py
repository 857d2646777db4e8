"""What the finance plugin adds to an order's page and to the client card.

An order's page (the core record page of ``finance_order``) gets a panel with its lines (a
main service, extra services added later, goods from stock), the discount, totals, payments
and the payment form; the client card gets the client's receivable, what they paid, their
cashback and their orders still to pay.  Both are :class:`CardPanel` contributions.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.i18n import message
from crmkit.web.contributions import CardPanel, Screen
from crmkit.web.forms import optional_id
from crmkit.web.pages import posted
from crmkit_finance import finance
from crmkit_finance.screens import attempt, sent_token
from crmkit_finance.services.cashdesk import METHODS
from crmkit_finance.services.forms import new_form_token

ORDER_UPDATE = ("finance_order", "update")
OPEN_ORDERS_ON_CARD = 10


def _desks(work: Any) -> list[Any]:
    return list(work.records("finance_cash_desk").list(filters={"active": True}, limit=50))


def order_panel(work: Any, order: Any) -> dict[str, Any]:
    """Lines, totals, payments and what the viewer may do with them."""
    fin = finance(work)
    lines = fin.orders.lines(order)
    removed = {ln.reverses_line_id for ln in lines if ln.reverses_line_id}
    may_pay = fin.can("finance_payment", "create")
    may_edit = fin.can("finance_order", "update") and order.cancelled_at is None
    payments = fin.payments.of_order(order.id) if fin.can("finance_payment", "read") else None
    users = {u.id: u for u in work.users.list()}
    return {
        "order": order,
        "lines": lines,
        "removed": removed,
        "totals": fin.orders.totals(order),
        "payments": payments,
        "voided": {p.voids_id for p in payments or () if p.voids_id},
        "refunded": {p.refund_of_id for p in payments or () if p.refund_of_id},
        "may_edit": may_edit,
        "may_pay": may_pay and order.cancelled_at is None,
        "may_refund": fin.can("finance_payment", "refund"),
        "may_void": fin.can("finance_payment", "void"),
        "catalogue": fin.catalogue.items() if may_edit else [],
        "desks": _desks(work) if may_pay else [],
        "methods": METHODS,
        "users": users,
        # an order without a branch: its goods' branch is chosen on the line form
        "branches": fin.orders.branches() if may_edit and order.location_id is None else [],
        "goods_branch": fin.orders.branch_for_goods(order)
        if may_edit and order.location_id is None
        else None,
        "cashback": fin.cashback.balance(order.party_id)
        if may_pay and fin.can("finance_cashback", "read")
        else None,
        "base_currency": fin.base_currency,
        "form_token": new_form_token,
    }


def client_panel(work: Any, party: Any) -> dict[str, Any] | None:
    """The client's money: receivable, total paid, cashback, orders with something due."""
    fin = finance(work)
    orders = fin.orders.of_party(party.id, limit=20) if fin.can("finance_order", "read") else []
    open_orders = []
    for order in orders:
        if order.cancelled_at is not None:
            continue
        totals = fin.orders.totals(order)
        if totals.due > 0:
            open_orders.append({"order": order, "totals": totals})
        if len(open_orders) >= OPEN_ORDERS_ON_CARD:
            break
    may_pay = fin.can("finance_payment", "create")
    return {
        "receivable": fin.payments.receivable(party.id),
        "total_paid": fin.payments.total_paid(party.id),
        "cashback": fin.cashback.card(party.id) if fin.can("finance_cashback", "read") else None,
        "open_orders": open_orders,
        "currency": fin.base_currency,
        "may_pay": may_pay,
        "may_ledger": fin.can("finance_ledger", "read"),
        "desks": _desks(work) if may_pay else [],
        "methods": [m for m in METHODS if m != "cashback"],
        "form_token": new_form_token,
    }


def _order_path(order_id: int) -> str:
    return f"/records/finance_order/{order_id}"


def add_line(request: Request) -> Response:
    """Add a service or a good (goods leave stock now).  An order without a branch gets
    one with its goods: the form's *Branch* (shown while the order has none), else the
    one :meth:`~crmkit_finance.services.orders.OrderService.branch_for_goods` tells; the
    message then says which it is."""
    order_id = int(request.path_params["order_id"])
    data = posted(request)

    def add(fin: Any) -> Any:
        had_branch = fin.orders.get(order_id).location_id is not None
        fin.orders.add_line(
            order_id,
            optional_id(data.get("item_id"), "item_id"),
            qty=data.get("qty") or 1,
            unit_price=data.get("unit_price") or None,
            main=bool(data.get("main")),
            performer_id=optional_id(data.get("performer_id"), "performer_id"),
            location_id=optional_id(data.get("location_id"), "location_id"),
            form_token=sent_token(data),
        )
        order = fin.orders.get(order_id)
        if had_branch or order.location_id is None:
            return "Line added."
        branch = fin.orders.branch_for_goods(order)
        return message(
            "Line added. The order's branch is now {branch}: its goods come from there.",
            branch=branch.name if branch else order.location_id,
        )

    # the action's result is what to say (the branch it gave the order, if any)
    return attempt(
        request, _order_path(order_id), add, lambda said: said, labels={"location_id": "Branch"}
    )


def remove_line(request: Request) -> Response:
    """Take a line off (a recognized one gets a correcting negative line)."""
    order_id = int(request.path_params["order_id"])
    line_id = int(request.path_params["line_id"])
    data = posted(request)
    return attempt(
        request,
        _order_path(order_id),
        lambda fin: fin.orders.remove_line(
            line_id,
            reason=str(data.get("reason", "")),
            order_id=order_id,
            form_token=sent_token(data),
        ),
        "Line removed.",
    )


def set_discount(request: Request) -> Response:
    """Give the order a discount percent (applies to its open lines)."""
    order_id = int(request.path_params["order_id"])
    data = posted(request)
    return attempt(
        request,
        _order_path(order_id),
        lambda fin: fin.orders.set_discount(order_id, data.get("percent") or "0"),
        "Discount set.",
    )


SCREENS = [
    Screen(
        "finance_order_line_add",
        "/finance/orders/{order_id:id}/lines",
        "Add a line",
        add_line,
        methods=("POST",),
        permission=ORDER_UPDATE,
    ),
    Screen(
        "finance_order_line_remove",
        "/finance/orders/{order_id:id}/lines/{line_id:id}/remove",
        "Remove a line",
        remove_line,
        methods=("POST",),
        permission=ORDER_UPDATE,
    ),
    Screen(
        "finance_order_discount",
        "/finance/orders/{order_id:id}/discount",
        "Discount",
        set_discount,
        methods=("POST",),
        permission=ORDER_UPDATE,
    ),
]

PANELS = [
    CardPanel(
        "finance_client",
        "finance/client_panel.html",
        client_panel,
        permission=("finance_payment", "read"),
        order=10,
    ),
    CardPanel("finance_order", "finance/order_panel.html", order_panel, entity="finance_order"),
]
