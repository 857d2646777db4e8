"""Corporate clients: contracts with deferred payment, and invoices for completed orders.

A contract gives a client payment days (an order completed on day D is due on D + days) and
optionally a credit limit.  An invoice gathers completed, unpaid orders of one client in one
currency under a gap-free number per year (``2026-0001``); a bank transfer against it is
spread over its orders (see :meth:`PaymentService.pay_invoice`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import Label, message
from crmkit.services.limits import refuse_long_texts
from crmkit_finance.model import FinanceContract, FinanceInvoice, FinanceOrder
from crmkit_finance.numbering import next_number

if TYPE_CHECKING:
    from crmkit_finance.services import Finance


class InvoiceService:
    """Invoices and contract terms.  Reached as ``finance(work).invoices``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    def get(self, invoice_id: int) -> FinanceInvoice:
        """An invoice the actor may read."""
        self.finance.require("finance_invoice", "read")
        found = self.session.get(FinanceInvoice, invoice_id)
        if found is None:
            raise NotFound("finance_invoice", invoice_id)
        self.work.parties.get(found.party_id)
        return found

    def issue(
        self, order_ids: Iterable[int], *, issued_on: dt.date | None = None
    ) -> FinanceInvoice:
        """Invoice completed orders of one client (none already invoiced)."""
        self.finance.require("finance_invoice", "create")
        orders = [self.finance.orders.get(i) for i in order_ids]
        if not orders:
            raise ValidationFailed({"order_ids": [message("invoice at least one order")]})
        party_ids = {o.party_id for o in orders}
        currencies = {o.currency for o in orders}
        if len(party_ids) > 1:
            raise ValidationFailed(
                {"order_ids": [message("the orders belong to different clients")]}
            )
        if len(currencies) > 1:
            raise ValidationFailed(
                {"order_ids": [message("the orders are in different currencies")]}
            )
        for order in orders:
            if order.completed_at is None:
                raise ValidationFailed(
                    {"order_ids": [message("order {number} is not completed", number=order.number)]}
                )
            if order.invoice_id is not None:
                raise ValidationFailed(
                    {
                        "order_ids": [
                            message("order {number} is already invoiced", number=order.number)
                        ]
                    }
                )
        day = issued_on or self.finance.business_date(utcnow())
        party_id = party_ids.pop()
        contract = self.finance.orders.active_contract(party_id, day)
        payment_days = contract.payment_days if contract else 0
        amount = sum((o.total - self.finance.orders.paid(o) for o in orders), Decimal(0))
        if amount <= 0:
            raise ValidationFailed({"order_ids": [message("the orders are paid")]})
        number = f"{day.year}-{next_number(self.session, f'invoice:{day.year}'):04d}"
        invoice = FinanceInvoice(
            number=number,
            party_id=party_id,
            contract_id=contract.id if contract else None,
            issued_on=day,
            due_on=day + dt.timedelta(days=payment_days),
            currency=currencies.pop(),
            amount=amount,
            status="issued",
            created_by_id=self.work.actor.user_id,
        )
        self.session.add(invoice)
        self.work.flush()
        for order in orders:
            order.invoice_id = invoice.id
            order.due_on = invoice.due_on
        self.work.flush()
        self.work.audit("finance_invoice", invoice.id, "issue", {"amount": [None, str(amount)]})
        self.work.emit(
            "invoice.issued",
            "finance_invoice",
            invoice.id,
            party_id=party_id,
            amount=str(amount),
            currency=invoice.currency,
            number=number,
        )
        return invoice

    def orders_of(self, invoice: FinanceInvoice) -> list[FinanceOrder]:
        """The invoice's orders, oldest first (a cancelled order is not among them)."""
        return list(
            self.session.scalars(
                select(FinanceOrder)
                .where(FinanceOrder.invoice_id == invoice.id, FinanceOrder.cancelled_at.is_(None))
                .order_by(FinanceOrder.completed_at, FinanceOrder.id)
            )
        )

    def outstanding(self, invoice: FinanceInvoice) -> Decimal:
        """What is left to pay on an invoice."""
        return sum(
            (
                max(o.total - self.finance.orders.paid(o), Decimal(0))
                for o in self.orders_of(invoice)
            ),
            Decimal(0),
        )

    def refresh_status(self, invoice: FinanceInvoice) -> FinanceInvoice:
        """``paid`` while nothing is outstanding, ``issued`` again once something is (a
        transfer voided or refunded); a cancelled invoice stays cancelled."""
        if invoice.status not in ("issued", "paid"):
            return invoice
        status = "paid" if self.outstanding(invoice) <= 0 else "issued"
        if status != invoice.status:
            before, invoice.status = invoice.status, status
            self.work.flush()
            self.work.audit(
                "finance_invoice",
                invoice.id,
                "paid" if status == "paid" else "unpaid",
                {"status": [before, status]},
            )
        return invoice

    def follow_order(self, order: FinanceOrder) -> None:
        """Bring the invoice of an order in step after its payment, refund, void or
        cancellation.  A cancelled order leaves its invoice (nothing is due on it); an
        invoice left without orders is cancelled."""
        if order.invoice_id is None:
            return
        invoice = self.session.get(FinanceInvoice, order.invoice_id)
        if order.cancelled_at is not None:
            order.invoice_id = None
            self.work.flush()
            self.work.audit(
                "finance_invoice", invoice.id, "remove_order", {"order": [order.number, None]}
            )
            if invoice.status != "cancelled" and not self.orders_of(invoice):
                before, invoice.status = invoice.status, "cancelled"
                self.work.flush()
                self.work.audit(
                    "finance_invoice",
                    invoice.id,
                    "cancel",
                    {
                        "status": [before, "cancelled"],
                        "reason": [None, "its orders were cancelled"],
                    },
                )
                return
        self.refresh_status(invoice)

    def cancel(self, invoice_id: int, *, reason: str) -> FinanceInvoice:
        """Withdraw an unpaid invoice; its orders can be invoiced again."""
        self.finance.require("finance_invoice", "update")
        refuse_long_texts(reason=reason)
        invoice = self.get(invoice_id)
        if invoice.status != "issued":
            raise ValidationFailed(
                {"invoice": [message("the invoice is {status}", status=Label(invoice.status))]}
            )
        for order in self.session.scalars(
            select(FinanceOrder).where(FinanceOrder.invoice_id == invoice.id)
        ):
            order.invoice_id = None
        invoice.status = "cancelled"
        self.work.flush()
        self.work.audit("finance_invoice", invoice.id, "cancel", {"reason": [None, reason]})
        return invoice

    def document(self, invoice_id: int) -> dict[str, Any]:
        """Everything a printed invoice shows: client, contract, orders with their lines."""
        invoice = self.get(invoice_id)
        party = self.work.parties.get(invoice.party_id)
        contract = (
            self.session.get(FinanceContract, invoice.contract_id) if invoice.contract_id else None
        )
        orders = []
        for order in self.orders_of(invoice):
            orders.append(
                {
                    "number": order.number,
                    "completed_on": order.completed_on,
                    "total": order.total,
                    "lines": [
                        {
                            "description": ln.description,
                            "qty": ln.qty,
                            "unit_price": ln.unit_price,
                            "discount": ln.discount,
                            "amount": ln.amount,
                        }
                        for ln in self.finance.orders.lines(order)
                    ],
                }
            )
        return {
            "number": invoice.number,
            "issued_on": invoice.issued_on,
            "due_on": invoice.due_on,
            "client": party.name,
            "contract": contract.number if contract else None,
            "currency": invoice.currency,
            "amount": invoice.amount,
            "outstanding": self.outstanding(invoice),
            "status": invoice.status,
            "orders": orders,
        }
