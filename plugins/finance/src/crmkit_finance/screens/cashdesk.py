"""The cashier's screens: the cash desk with its shift, payments, refunds, receivables and
corporate clients' invoices.

``/finance/cashdesk`` shows one desk (``?desk=``): open a shift by counting the drawer,
find an order (``?q=`` a number or a client) and take a payment for it, the shift's
payments with refund and void, and closing the shift with a count, which leads to the
shift report.  A shift is its cashier's: anyone else sees who opened it and when, and
takes no payments there until it is closed (a blocked cashier's shift can be closed by
another cashier; an admin or the accountant may close any).  Payments also start from an
order's page and the client card (their forms post to ``/finance/payments`` with a
``back`` path).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit.web.contributions import Screen
from crmkit.web.forms import id_list, optional_id, refuse_nul
from crmkit.web.pages import posted, render, work
from crmkit_finance import finance
from crmkit_finance.memos import shown_memo
from crmkit_finance.model import FinanceOrder, FinancePayment
from crmkit_finance.screens import (
    attempt,
    client_names,
    found_notes,
    order_numbers,
    safe_back,
    sent_token,
)
from crmkit_finance.services.cashdesk import METHODS
from crmkit_finance.services.forms import new_form_token

CASHIER = ("finance_payment", "create")
PAYMENTS_READ = ("finance_payment", "read")
INVOICES_READ = ("finance_invoice", "read")
FOUND_ORDERS = 20
#: The sign a number is often typed with: "№801", "# 801", "No. 801".
NUMBER_SIGN = re.compile(r"^\s*(?:№|#|No\.?)\s*(?=\d+\s*$)", re.IGNORECASE)


def _desks(unit: Any) -> list[Any]:
    return list(unit.records("finance_cash_desk").list(filters={"active": True}, limit=100))


def _found_orders(fin: Any, text: str) -> list[dict[str, Any]]:
    """Orders matching a number, whatever else the order search takes (a deployment's
    searched fields, such as the car service's plate), or a client's name, with what is due
    on each.  A number typed with its sign (``№801``, ``# 801``) is that order only."""
    orders = fin.orders
    sign = NUMBER_SIGN.match(text)
    if sign:
        number = text[sign.end() :].strip()
        found = list(
            fin.work.session.scalars(
                orders.query().where(FinanceOrder.number == number).limit(FOUND_ORDERS)
            )
        )
    else:
        found = list(orders.list(search=text, limit=FOUND_ORDERS))
    if not found and not sign:
        parties = list(fin.work.parties.list(search=text, limit=FOUND_ORDERS))
        if parties:
            found = list(
                fin.work.session.scalars(
                    orders.query()
                    .where(FinanceOrder.party_id.in_([p.id for p in parties]))
                    .order_by(FinanceOrder.id.desc())
                    .limit(FOUND_ORDERS)
                )
            )
    names = client_names(fin.work, (o.party_id for o in found))
    return [
        {"order": o, "client": names.get(o.party_id, ""), "totals": orders.totals(o)} for o in found
    ]


def _searched_labels(unit: Any) -> list[str]:
    """The labels of the fields an order search also looks in for this actor (a
    deployment's searched filter fields, such as the car service's plate)."""
    may = unit.access.can
    return [
        field.label or name
        for name, field in unit.crm.filter_fields_for("finance_order").items()
        if field.searched and (field.permission is None or may(*field.permission))
    ]


def cashdesk(request: Request) -> Response:
    """One desk: its shift, the payment form for a found order, the shift's payments."""
    desk_id = optional_id(request.query_params.get("desk"), "desk")
    text = request.query_params.get("q", "").strip()
    with work(request) as unit:
        fin = finance(unit)
        desks = _desks(unit)
        desk = next((d for d in desks if d.id == desk_id), desks[0] if desks else None)
        shift = fin.cashdesk.current_shift(desk.id) if desk else None
        # only the cashier who opened the shift works in it; anyone else sees who did
        mine = shift is not None and fin.cashdesk.is_mine(shift)
        payments = []
        if mine:
            payments = list(
                unit.session.scalars(
                    unit.records("finance_payment")
                    .query()
                    .where(FinancePayment.shift_id == shift.id)
                    .order_by(FinancePayment.id.desc())
                )
            )
        found = _found_orders(fin, text) if text else []
        voided = {p.voids_id for p in payments if p.voids_id}
        refunded = {p.refund_of_id for p in payments if p.refund_of_id}
        context = {
            "title": "Cash desk",
            "desks": desks,
            "desk": desk,
            "shift": shift,
            "expected": fin.cashdesk.drawer_balance(desk) if desk else None,
            "report": fin.cashdesk.shift_report(shift.id) if mine else None,
            "mine": mine,
            "shift_cashier": fin.cashdesk.cashier_of(shift) if shift else None,
            "may_close": shift is not None and fin.cashdesk.may_close(shift),
            "payments": payments,
            "voided": voided,
            "refunded": refunded,
            "clients": client_names(unit, (p.party_id for p in payments)),
            "order_numbers": order_numbers(unit, (p.order_id for p in payments)),
            "q": text,
            "found": found,
            "notes": found_notes(unit, "finance_order", [r["order"] for r in found]),
            "searched": _searched_labels(unit),
            "methods": METHODS,
            "recent_shifts": fin.cashdesk.shifts(desk.id, limit=5) if desk else [],
            "may_open": fin.can("finance_shift", "create"),
            "form_token": new_form_token,
        }
    return render(request, "finance/cashdesk.html", context)


def _desk_path(desk_id: int) -> str:
    return f"/finance/cashdesk?desk={desk_id}"


def open_shift(request: Request) -> Response:
    """Open a shift at a desk with a count of the drawer."""
    desk_id = int(request.path_params["desk_id"])
    data = posted(request)
    return attempt(
        request,
        _desk_path(desk_id),
        lambda fin: fin.cashdesk.open_shift(
            desk_id,
            data.get("counted", ""),
            note=str(data.get("note", "")),
            form_token=sent_token(data),
        ),
        "Shift opened.",
    )


def close_shift(request: Request) -> Response:
    """Close a shift with a count of the drawer, then show its report (to one who may read
    it: a cashier closing a blocked colleague's shift goes back to the desk)."""
    shift_id = int(request.path_params["shift_id"])
    data = posted(request)
    back = safe_back(data.get("back"), "/finance/cashdesk")

    def close(fin: Any) -> str:
        shift = fin.cashdesk.close_shift(
            shift_id,
            data.get("counted", ""),
            note=str(data.get("note", "")),
            form_token=sent_token(data),
        )
        readable = fin.work.records("finance_shift").find_many([shift.id])
        return f"/finance/shifts/{shift.id}" if readable else back

    return attempt(request, back, close, "Shift closed.", then=lambda path: path)


def move_cash(request: Request) -> Response:
    """Take cash from the drawer to the bank during a shift."""
    desk_id = int(request.path_params["desk_id"])
    data = posted(request)
    return attempt(
        request,
        _desk_path(desk_id),
        lambda fin: fin.cashdesk.move_cash(
            desk_id, data.get("amount", ""), form_token=sent_token(data)
        ),
        "Cash moved to the bank.",
    )


def shift_page(request: Request) -> Response:
    """A shift's report: payments and refunds by method, counts and differences."""
    shift_id = int(request.path_params["shift_id"])
    with work(request) as unit:
        fin = finance(unit)
        report = fin.cashdesk.shift_report(shift_id)
        payments = list(
            unit.session.scalars(
                unit.records("finance_payment")
                .query()
                .where(FinancePayment.shift_id == shift_id)
                .order_by(FinancePayment.id)
            )
        )
        cashier = unit.users.get(report["cashier_id"]) if report["cashier_id"] else None
        clients = client_names(unit, (p.party_id for p in payments))
        numbers = order_numbers(unit, (p.order_id for p in payments))
    return render(
        request,
        "finance/shift.html",
        {
            "title": "Shift report",
            "report": report,
            "payments": payments,
            "cashier": cashier,
            "clients": clients,
            "order_numbers": numbers,
            "memo": shown_memo,
        },
    )


def take_payment(request: Request) -> Response:
    """Take a payment for an order or onto a client's account (prepayment)."""
    data = posted(request)
    order_id = optional_id(data.get("order_id"), "order_id")
    party_id = optional_id(data.get("party_id"), "party_id")
    desk_id = optional_id(data.get("desk_id"), "desk_id")
    back = safe_back(data.get("back"), _desk_path(desk_id) if desk_id else "/finance/cashdesk")
    method = str(data.get("method", ""))

    def take(fin: Any) -> None:
        if method in ("cash", "card") and desk_id is None:
            raise ValidationFailed({"desk_id": [message("choose the cash desk")]})
        fin.payments.take(
            order_id=order_id,
            party_id=party_id if order_id is None else None,
            amount=data.get("amount", ""),
            method=method,
            currency=str(data.get("currency") or "") or None,
            desk_id=desk_id if method in ("cash", "card") else None,
            reference=str(data.get("reference", "")),
            note=str(data.get("note", "")),
            form_token=sent_token(data),
            due=str(data.get("due") or "") or None,
        )

    return attempt(request, back, take, "Payment taken.")


def refund_payment(request: Request) -> Response:
    """Give (part of) a payment back."""
    payment_id = int(request.path_params["payment_id"])
    data = posted(request)
    back = safe_back(data.get("back"), "/finance/cashdesk")
    return attempt(
        request,
        back,
        lambda fin: fin.payments.refund(
            payment_id,
            data.get("amount") or None,
            method=str(data.get("method") or "") or None,
            desk_id=optional_id(data.get("desk_id"), "desk_id"),
            note=str(data.get("note", "")),
            form_token=sent_token(data),
        ),
        "Refund made.",
    )


def void_payment(request: Request) -> Response:
    """Cancel a payment entered by mistake (during its shift)."""
    payment_id = int(request.path_params["payment_id"])
    data = posted(request)
    back = safe_back(data.get("back"), "/finance/cashdesk")
    return attempt(
        request,
        back,
        lambda fin: fin.payments.void(
            payment_id, reason=str(data.get("reason", "")), form_token=sent_token(data)
        ),
        "Payment voided.",
    )


def receivables(request: Request) -> Response:
    """Who owes what (base currency), overdue amounts first to see."""
    with work(request) as unit:
        fin = finance(unit)
        rows = fin.payments.receivables()
        currency = fin.base_currency
    return render(
        request,
        "finance/receivables.html",
        {"title": "Receivables", "rows": rows, "currency": currency},
    )


#: How many invoices the list shows, the latest first.
LATEST_INVOICES = 100


def invoices(request: Request) -> Response:
    """Invoices of corporate clients; the accountant issues one for a client's orders."""
    wanted = request.query_params.get("client", "").strip()
    # digits are a client's id (refused naming the field when they cannot be one), else a name
    party_id = optional_id(wanted, "client") if wanted.isdigit() else None
    with work(request) as unit:
        fin = finance(unit)
        listed = list(unit.records("finance_invoice").list(order=["-id"], limit=LATEST_INVOICES))
        clients = client_names(unit, (i.party_id for i in listed))
        may_issue = fin.can("finance_invoice", "create")
        client = unit.parties.get(party_id) if party_id else None
        # a name finds the clients to choose from
        matches = list(unit.parties.list(search=wanted, limit=20)) if wanted and not client else []
        uninvoiced = []
        if client is not None and may_issue:
            for order in fin.orders.of_party(client.id):
                if order.completed_at is None or order.invoice_id is not None:
                    continue
                totals = fin.orders.totals(order)
                if totals.due > 0:
                    uninvoiced.append({"order": order, "totals": totals})
        outstanding = {i.id: fin.invoices.outstanding(i) for i in listed}
        # what the listed invoices add up to, per currency (one line each)
        totals: dict[str, dict[str, Decimal]] = {}
        for invoice in listed:
            sums = totals.setdefault(
                invoice.currency, {"amount": Decimal("0.00"), "outstanding": Decimal("0.00")}
            )
            sums["amount"] += invoice.amount
            sums["outstanding"] += outstanding[invoice.id]
    return render(
        request,
        "finance/invoices.html",
        {
            "title": "Invoices",
            "invoices": listed,
            "clients": clients,
            "outstanding": outstanding,
            "totals": totals,
            "latest": LATEST_INVOICES if len(listed) >= LATEST_INVOICES else None,
            "may_issue": may_issue,
            "client": client,
            "wanted": wanted,
            "matches": matches,
            "uninvoiced": uninvoiced,
        },
    )


async def issue_invoice(request: Request) -> Response:
    """Invoice the chosen completed orders of one client."""
    form = await request.form()

    def issue(fin: Any) -> Any:
        refuse_nul(form)
        return fin.invoices.issue(id_list(form.getlist("order_id"), "order_id"))

    return attempt(
        request,
        "/finance/invoices",
        issue,
        "Invoice issued.",
        then=lambda invoice: f"/finance/invoices/{invoice.id}",
    )


def invoice_page(request: Request) -> Response:
    """A printable invoice, with a form to book a bank transfer against it."""
    invoice_id = int(request.path_params["invoice_id"])
    with work(request) as unit:
        fin = finance(unit)
        document = fin.invoices.document(invoice_id)
        invoice = fin.invoices.get(invoice_id)
        may_pay = fin.can("finance_payment", "create")
    return render(
        request,
        "finance/invoice.html",
        {
            "title": document["number"],
            "doc": document,
            "invoice": invoice,
            "may_pay": may_pay,
            "form_token": new_form_token,
        },
    )


def pay_invoice(request: Request) -> Response:
    """Book a bank transfer against an invoice (spread over its orders)."""
    invoice_id = int(request.path_params["invoice_id"])
    data = posted(request)
    return attempt(
        request,
        f"/finance/invoices/{invoice_id}",
        lambda fin: fin.payments.pay_invoice(
            invoice_id,
            data.get("amount", ""),
            reference=str(data.get("reference", "")),
            form_token=sent_token(data),
            due=str(data.get("due") or "") or None,
        ),
        "Payment taken.",
    )


def _post(name: str, path: str, endpoint: Any, permission: tuple[str, str]) -> Screen:
    return Screen(name, path, name, endpoint, methods=("POST",), permission=permission)


SCREENS = [
    Screen("finance_cashdesk", "/finance/cashdesk", "Cash desk", cashdesk, permission=CASHIER),
    _post("finance_shift_open", "/finance/cashdesk/{desk_id:id}/open", open_shift, CASHIER),
    _post("finance_cash_move", "/finance/cashdesk/{desk_id:id}/move", move_cash, CASHIER),
    _post("finance_shift_close", "/finance/shifts/{shift_id:id}/close", close_shift, CASHIER),
    Screen(
        "finance_shift",
        "/finance/shifts/{shift_id:id}",
        "Shift report",
        shift_page,
        permission=("finance_shift", "read"),
    ),
    _post("finance_payment_take", "/finance/payments", take_payment, CASHIER),
    _post(
        "finance_payment_refund",
        "/finance/payments/{payment_id:id}/refund",
        refund_payment,
        ("finance_payment", "refund"),
    ),
    _post(
        "finance_payment_void",
        "/finance/payments/{payment_id:id}/void",
        void_payment,
        ("finance_payment", "void"),
    ),
    Screen(
        "finance_receivables",
        "/finance/receivables",
        "Receivables",
        receivables,
        permission=PAYMENTS_READ,
    ),
    Screen("finance_invoices", "/finance/invoices", "Invoices", invoices, permission=INVOICES_READ),
    _post(
        "finance_invoice_issue",
        "/finance/invoices",
        issue_invoice,
        ("finance_invoice", "create"),
    ),
    Screen(
        "finance_invoice",
        "/finance/invoices/{invoice_id:id}",
        "Invoice",
        invoice_page,
        permission=INVOICES_READ,
    ),
    _post("finance_invoice_pay", "/finance/invoices/{invoice_id:id}/pay", pay_invoice, CASHIER),
]
