"""The cash desk: shifts with cash counts, and payments by cash, card, transfer or cashback.

A cashier opens a shift at a desk by counting the drawer and closes it by counting again;
the ledger says what the drawer should hold, and a difference is booked as a cash surplus
or shortage (never silently absorbed).  Cash and card payments need an open shift at the
desk; bank transfers and cashback do not.

Every payment is an append-only row plus a ledger transaction: money in (the drawer, the
card terminal, the bank) against the client's receivable.  A **refund** gives money back
(a new negative payment); a **void** undoes a payment entered by mistake (a reversal of its
transaction).  A payment in another currency than the order's is converted at the day's
rate through the exchange account.  ``payment.received`` is raised for every payment and
the payment appears on the client's timeline.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from crmkit.access.rules import Scope
from crmkit.clock import utcnow
from crmkit.db import lock_row
from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import Amount, Label, Message, Moment, message
from crmkit.model import Party, User
from crmkit.services.limits import refuse_long_texts
from crmkit_finance.ledger import Leg, credit, debit
from crmkit_finance.model import (
    FinanceAccount,
    FinanceCashDesk,
    FinanceEntry,
    FinanceOrder,
    FinancePayment,
    FinanceShift,
    FinanceTransaction,
)
from crmkit_finance.money import MAX_NUMBER, at_most, exact_money, minor_units
from crmkit_finance.services import forms

if TYPE_CHECKING:
    from crmkit_finance.services import Finance

METHODS = ("cash", "card", "transfer", "cashback")
DESK_METHODS = ("cash", "card")


class CashDeskService:
    """Desks and shifts.  Reached as ``finance(work).cashdesk``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    def desk(self, desk_id: int) -> FinanceCashDesk:
        """A desk the actor may read."""
        return self.work.records("finance_cash_desk").get(desk_id)

    def current_shift(self, desk_id: int) -> FinanceShift | None:
        """The open shift of a desk, if any."""
        return self.session.scalar(
            select(FinanceShift).where(
                FinanceShift.desk_id == desk_id, FinanceShift.closed_at.is_(None)
            )
        )

    def held_shift(self, desk: FinanceCashDesk, field: str) -> FinanceShift:
        """The open shift of ``desk``, held until the transaction ends, for money posted into
        it: a closing at the same moment waits for the post and counts it, and a post
        waiting for a closing finds the shift closed and is refused (``field`` names the
        form field for the refusal), so nothing lands in a closed shift."""
        shift = self.current_shift(desk.id)
        if shift is not None:
            shift = self.hold(shift.id)
        if shift is None or shift.closed_at is not None:
            raise ValidationFailed({field: [_open_a_shift(desk)]})
        return shift

    def hold(self, shift_id: int) -> FinanceShift | None:
        """Lock a shift's row (see :func:`crmkit.db.lock_row`) and read it afresh."""
        self.work.flush()
        lock_row(self.session, FinanceShift, shift_id)
        return self.session.get(FinanceShift, shift_id, populate_existing=True)

    def cashier_of(self, shift: FinanceShift) -> User | None:
        """The user who opened ``shift``."""
        return self.session.get(User, shift.cashier_id) if shift.cashier_id else None

    def is_mine(self, shift: FinanceShift) -> bool:
        """Whether the acting user opened ``shift`` (only they work in it)."""
        return shift.cashier_id is not None and shift.cashier_id == self.work.actor.user_id

    def require_mine(self, shift: FinanceShift, desk: FinanceCashDesk, field: str) -> None:
        """Refuse a cash operation at ``desk`` by anyone but the cashier whose shift is open
        there: money goes into the shift of the one who counts the drawer at its end."""
        if not self.is_mine(shift):
            cashier = self.cashier_of(shift)
            raise ValidationFailed(
                {
                    field: [
                        message(
                            "the shift at {desk} was opened by {cashier} at {opened}; "
                            "work at this desk after it is closed",
                            desk=desk.name,
                            cashier=cashier.label if cashier else "?",
                            opened=Moment(shift.opened_at.astimezone(self.finance.timezone)),
                        )
                    ]
                }
            )

    def may_close(self, shift: FinanceShift) -> bool:
        """Whether the acting user may close ``shift``: its cashier; one who may update every
        shift (an admin, the accountant); or, when its cashier is blocked (and so cannot
        close it), anyone who may update shifts at all (another cashier)."""
        scope = self.work.access.scope("finance_shift", "update")
        if scope is Scope.NONE:
            return False
        if self.is_mine(shift) or scope is Scope.ALL:
            return True
        cashier = self.cashier_of(shift)
        return cashier is None or cashier.blocked

    def drawer_balance(self, desk: FinanceCashDesk) -> Decimal:
        """What the ledger says is in the desk's cash drawer."""
        ledger = self.finance.ledger
        return ledger.balance(ledger.desk_account(desk.id, "cash"), desk.currency)

    def drawer_shift(
        self, account: FinanceAccount, outgoing: Decimal, field: str
    ) -> FinanceShift | None:
        """The open shift of the desk whose cash drawer ``account`` is (``None`` for any other
        account), for money paid from it (``outgoing``) or into it (negative): as for taking
        cash to the bank, the shift must be open and the drawer must hold what is paid out.
        ``field`` names the form field that chose the account, for the refusal."""
        if account.kind != "cash" or account.desk_id is None:
            return None
        desk = self.session.get(FinanceCashDesk, account.desk_id)
        shift = self.held_shift(desk, field)
        if outgoing > 0 and outgoing > self.drawer_balance(desk):
            raise ValidationFailed(
                {"amount": [message("there is not that much cash in the drawer")]}
            )
        return shift

    def open_shift(
        self, desk_id: int, counted: Any, *, note: str = "", form_token: str | None = None
    ) -> FinanceShift:
        """Open a shift: the cashier counts the drawer; a difference is booked at once.

        ``form_token``: the form's one-time token; the same form sent again returns the
        shift it opened."""
        self.finance.require("finance_shift", "create")
        refuse_long_texts(note=note)
        earlier = forms.claim(self.finance, form_token, "shift_open")
        if earlier:
            return self.session.get(FinanceShift, earlier[0])
        desk = self.desk(desk_id)
        # two cashiers opening one desk at once: the second waits, then finds the shift
        lock_row(self.session, FinanceCashDesk, desk.id)
        if not desk.active:
            raise ValidationFailed(
                {"desk_id": [message("{desk} is closed for good", desk=desk.name)]}
            )
        if self.current_shift(desk.id) is not None:
            raise ValidationFailed(
                {"desk_id": [message("a shift is already open at {desk}", desk=desk.name)]}
            )
        count = exact_money(counted, desk.currency, "counted")
        if count < 0:
            raise ValidationFailed({"counted": [message("a count is not negative")]})
        expected = self.drawer_balance(desk)
        shift = FinanceShift(
            desk_id=desk.id,
            cashier_id=self.work.actor.user_id,
            opened_at=utcnow(),
            opening_count=count,
            opening_expected=expected,
            note=note,
        )
        self.session.add(shift)
        self.work.flush()
        self._book_difference(desk, shift, count - expected, "opening")
        self.work.audit(
            "finance_shift",
            shift.id,
            "open",
            {"counted": [None, str(count)], "expected": [None, str(expected)]},
        )
        forms.remember(self.finance, form_token, [shift.id])
        self.work.emit("shift.opened", "finance_shift", shift.id, desk_id=desk.id)
        return shift

    def close_shift(
        self, shift_id: int, counted: Any, *, note: str = "", form_token: str | None = None
    ) -> FinanceShift:
        """Close a shift with a count of the drawer; a difference is booked.

        Its cashier closes it; so may an admin or the accountant, and another cashier once
        its cashier is blocked (see :meth:`may_close`), so a desk is never stuck.
        ``form_token``: the form's one-time token; the same form sent again returns the
        shift it closed."""
        self.finance.require("finance_shift", "update")
        refuse_long_texts(note=note)
        earlier = forms.claim(self.finance, form_token, "shift_close")
        if earlier:
            return self.session.get(FinanceShift, earlier[0])
        if self.session.get(FinanceShift, shift_id) is None:
            raise NotFound("finance_shift", shift_id)
        # held while the drawer is counted against the ledger: a payment posted into the
        # shift meanwhile is waited for and counted, and one waiting for us finds it closed
        shift = self.hold(shift_id)
        if shift.closed_at is not None:
            raise ValidationFailed({"shift": [message("the shift is already closed")]})
        desk = self.session.get(FinanceCashDesk, shift.desk_id)
        if not self.may_close(shift):
            cashier = self.cashier_of(shift)
            raise ValidationFailed(
                {
                    "shift": [
                        message(
                            "the shift at {desk} was opened by {cashier}; they close it",
                            desk=desk.name,
                            cashier=cashier.label if cashier else "?",
                        )
                    ]
                }
            )
        count = exact_money(counted, desk.currency, "counted")
        if count < 0:
            raise ValidationFailed({"counted": [message("a count is not negative")]})
        expected = self.drawer_balance(desk)
        self._book_difference(desk, shift, count - expected, "closing")
        shift.closed_at = utcnow()
        shift.closing_count = count
        shift.closing_expected = expected
        if note:
            shift.note = (shift.note + "\n" + note).strip()
        self.work.flush()
        self.work.audit(
            "finance_shift",
            shift.id,
            "close",
            {"counted": [None, str(count)], "expected": [None, str(expected)]},
        )
        forms.remember(self.finance, form_token, [shift.id])
        self.work.emit("shift.closed", "finance_shift", shift.id, desk_id=desk.id)
        return shift

    def _book_difference(
        self, desk: FinanceCashDesk, shift: FinanceShift, difference: Decimal, when: str
    ) -> None:
        if difference == 0:
            return
        ledger = self.finance.ledger
        drawer = ledger.desk_account(desk.id, "cash")
        other = ledger.account("expense:cash_difference")
        ledger.post(
            "cash_difference",
            [debit(drawer, difference, desk.currency), credit(other, difference, desk.currency)],
            memo=f"{when} count of shift {shift.id}: {'surplus' if difference > 0 else 'shortage'}",
            record=("finance_shift", shift.id),
        )

    def move_cash(
        self,
        desk_id: int,
        amount: Any,
        *,
        to: str = "bank:main",
        note: str = "",
        form_token: str | None = None,
    ) -> Any:
        """Take cash out of the drawer to the bank (``to``), or put cash in (negative amount
        from ``to``).  Needs an open shift, the acting cashier's.  ``form_token``: the
        form's one-time token; the same form sent again returns the first transaction."""
        self.finance.require("finance_shift", "update")
        refuse_long_texts(note=note)
        earlier = forms.claim(self.finance, form_token, "cash_move")
        if earlier:
            return self.session.get(FinanceTransaction, earlier[0])
        desk = self.desk(desk_id)
        shift = self.held_shift(desk, "desk_id")
        self.require_mine(shift, desk, "desk_id")
        value = exact_money(amount, desk.currency)
        if value == 0:
            raise ValidationFailed({"amount": [message("move some money")]})
        ledger = self.finance.ledger
        drawer = ledger.desk_account(desk.id, "cash")
        other = ledger.named_account(to, "to")
        if value > 0 and value > self.drawer_balance(desk):
            raise ValidationFailed(
                {"amount": [message("there is not that much cash in the drawer")]}
            )
        transaction = ledger.post(
            "cash_out" if value > 0 else "cash_in",
            [credit(drawer, value, desk.currency), debit(other, value, desk.currency)],
            memo=note or ("cash to bank" if value > 0 else "cash in"),
            record=("finance_shift", shift.id),
        )
        forms.remember(self.finance, form_token, [transaction.id])
        return transaction

    def shift_report(self, shift_id: int) -> dict[str, Any]:
        """What happened in a shift: payments and refunds by method, counts, difference."""
        shift = self.work.records("finance_shift").get(shift_id)
        desk = self.session.get(FinanceCashDesk, shift.desk_id)
        totals: dict[str, dict[str, Decimal]] = defaultdict(
            lambda: {"received": Decimal(0), "returned": Decimal(0), "count": Decimal(0)}
        )
        for method, amount in self.session.execute(
            select(FinancePayment.method, FinancePayment.amount).where(
                FinancePayment.shift_id == shift.id
            )
        ):
            bucket = totals[method]
            bucket["received" if amount > 0 else "returned"] += abs(amount)
            bucket["count"] += 1
        drawer = self.finance.ledger.desk_account(desk.id, "cash")
        moved = self.session.scalar(
            select(func.coalesce(func.sum(FinanceEntry.amount), 0))
            .join(FinanceTransaction, FinanceTransaction.id == FinanceEntry.transaction_id)
            .where(
                FinanceEntry.account_id == drawer.id,
                FinanceTransaction.record_entity == "finance_shift",
                FinanceTransaction.record_id == shift.id,
                FinanceTransaction.kind.in_(("cash_out", "cash_in")),
            )
        )
        paid_out = []
        for at, kind, memo, amount in self.session.execute(
            select(
                FinanceTransaction.at,
                FinanceTransaction.kind,
                FinanceTransaction.memo,
                FinanceEntry.amount,
            )
            .join(FinanceEntry, FinanceEntry.transaction_id == FinanceTransaction.id)
            .where(FinanceTransaction.shift_id == shift.id, FinanceEntry.account_id == drawer.id)
            .order_by(FinanceTransaction.id)
        ):
            paid_out.append({"at": at, "kind": kind, "memo": memo, "amount": Decimal(amount)})
        cash = totals.get("cash", {"received": Decimal(0), "returned": Decimal(0)})
        expected_now = (
            shift.closing_expected if shift.closed_at is not None else self.drawer_balance(desk)
        )
        return {
            "shift_id": shift.id,
            "desk": desk.name,
            "currency": desk.currency,
            "cashier_id": shift.cashier_id,
            "opened_at": shift.opened_at,
            "closed_at": shift.closed_at,
            "opening_count": shift.opening_count,
            "opening_difference": shift.opening_count - shift.opening_expected,
            "by_method": {m: dict(v) for m, v in sorted(totals.items())},
            "cash_received": cash["received"],
            "cash_returned": cash["returned"],
            "cash_moved": Decimal(moved),
            # salaries, suppliers and expenses paid from the drawer (negative) or income put
            # into it, each with its kind and memo
            "cash_other": paid_out,
            "cash_paid_out": -sum((r["amount"] for r in paid_out), Decimal(0)),
            "expected_cash": expected_now,
            "closing_count": shift.closing_count,
            "closing_difference": (
                shift.closing_count - shift.closing_expected
                if shift.closed_at is not None
                else None
            ),
        }

    def shifts(self, desk_id: int, limit: int = 50) -> list[FinanceShift]:
        """A desk's latest shifts (as far as the actor may see them)."""
        return list(
            self.session.scalars(
                self.work.records("finance_shift")
                .query()
                .where(FinanceShift.desk_id == desk_id)
                .order_by(FinanceShift.opened_at.desc())
                .limit(limit)
            )
        )


class PaymentService:
    """Taking, refunding and voiding payments; receivables.  ``finance(work).payments``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    def _money_account(self, method: str, desk: FinanceCashDesk | None) -> FinanceAccount:
        ledger = self.finance.ledger
        if method in DESK_METHODS:
            assert desk is not None
            return ledger.desk_account(desk.id, method)
        if method == "transfer":
            return ledger.account("bank:main")
        raise ValueError(method)

    def _desk_and_shift(
        self, method: str, desk_id: int | None
    ) -> tuple[FinanceCashDesk | None, FinanceShift | None]:
        if method not in DESK_METHODS:
            return None, None
        if desk_id is None:
            raise ValidationFailed(
                {
                    "desk_id": [
                        message("a {method} payment is taken at a desk", method=Label(method))
                    ]
                }
            )
        desk = self.finance.cashdesk.desk(desk_id)
        shift = self.finance.cashdesk.held_shift(desk, "desk_id")
        self.finance.cashdesk.require_mine(shift, desk, "desk_id")
        return desk, shift

    def take(
        self,
        *,
        order_id: int | None = None,
        party_id: int | None = None,
        amount: Any,
        method: str,
        currency: str | None = None,
        desk_id: int | None = None,
        invoice_id: int | None = None,
        reference: str = "",
        note: str = "",
        at: dt.datetime | None = None,
        form_token: str | None = None,
        due: Any = None,
    ) -> FinancePayment:
        """Take a payment for an order (a prepayment if it is not completed yet, a partial
        payment if it covers part) or onto a client's account (``party_id`` alone).

        ``currency`` defaults to the order's; a foreign currency is converted at the day's
        rate.  Paying with cashback spends the client's cashback (base currency).
        ``form_token``: the payment form's one-time token; the same form sent again returns
        the payment it took (see :mod:`crmkit_finance.services.forms`).
        ``due``: what the payer was shown as due on the order (its currency; the payment
        forms send it).  When less is due by the time the order is held (someone else took
        a payment meanwhile), a payment larger than what is due now is refused, naming it:
        two cashiers taking the full due at once take it once.  Paying more than the due
        on purpose (an advance) stays allowed.
        """
        self.finance.require("finance_payment", "create")
        refuse_long_texts(FinancePayment, reference=reference, note=note)
        earlier = forms.claim(self.finance, form_token, "payment")
        if earlier:
            return self.get(earlier[0])
        if method not in METHODS:
            raise ValidationFailed(
                {"method": [message("one of {choices}", choices=", ".join(METHODS))]}
            )
        order = None
        if order_id is not None:
            # held until commit: a completion or another payment at once waits, then sees this
            order = self.finance.orders.lock(self.finance.orders.get(order_id))
            if party_id is not None and party_id != order.party_id:
                raise ValidationFailed(
                    {"party_id": [message("the order belongs to another client")]}
                )
            party_id = order.party_id
            if order.cancelled_at is not None:
                raise ValidationFailed(
                    {"order_id": [message("order {number} is cancelled", number=order.number)]}
                )
        if party_id is None:
            raise ValidationFailed(
                {"order_id": [message("pay for an order or onto a client's account")]}
            )
        self.work.parties.get(party_id)
        base = self.finance.base_currency
        receivable_currency = order.currency if order is not None else base
        if method == "cashback":
            currency = base
        currency = (currency or receivable_currency).upper()
        minor_units(currency)
        value = exact_money(amount, currency)
        if value <= 0:
            raise ValidationFailed(
                {"amount": [message("a payment is positive; refund to give money back")]}
            )
        desk, shift = self._desk_and_shift(method, desk_id)
        when = at or utcnow()
        day = self.finance.business_date(when)
        order_amount = self.finance.rates.convert(value, currency, receivable_currency, day)
        base_amount = self.finance.rates.to_base(value, currency, day)
        at_most(order_amount, MAX_NUMBER, "amount")  # converted at a rate: still an amount
        at_most(base_amount, MAX_NUMBER, "amount")
        if order is not None and due is not None:
            self._refuse_more_than_due(order, order_amount, due)
        ledger = self.finance.ledger
        receivable = ledger.receivable(party_id)
        if method == "cashback":
            source = ledger.cashback(party_id)
            available = self.finance.cashback.spendable(party_id)  # none past its date
            if value > available:
                raise ValidationFailed(
                    {
                        "amount": [
                            message(
                                "only {available} of cashback to spend",
                                available=Amount(available, base),
                            )
                        ]
                    }
                )
        else:
            source = self._money_account(method, desk)
        legs = [debit(source, value, currency)]
        legs += _exchange(ledger, value, currency, order_amount, receivable_currency)
        legs.append(credit(receivable, order_amount, receivable_currency))
        transaction = ledger.post(
            "payment",
            legs,
            memo=f"{method} payment" + (f" for order {order.number}" if order else ""),
            record=("finance_order", order.id) if order else ("party", party_id),
            party_id=party_id,
            at=when,
        )
        if method == "cashback":
            self.finance.cashback.consume(party_id, value)
        payment = FinancePayment(
            at=when,
            on_date=day,
            kind="payment",
            party_id=party_id,
            order_id=order.id if order else None,
            invoice_id=invoice_id,
            method=method,
            amount=value,
            currency=currency,
            order_amount=order_amount,
            order_currency=receivable_currency,
            base_amount=base_amount,
            desk_id=desk.id if desk else None,
            shift_id=shift.id if shift else None,
            cashier_id=self.work.actor.user_id,
            transaction_id=transaction.id,
            reference=reference,
            note=note,
        )
        self.session.add(payment)
        self.work.flush()
        forms.remember(self.finance, form_token, [payment.id])
        self._announce(payment, order, "payment.received", message("Payment: {amount} ({method})"))
        if order is not None:
            self.finance.orders.after_payment(order)
        return payment

    def _refuse_more_than_due(self, order: FinanceOrder, order_amount: Decimal, due: Any) -> None:
        """Refuse paying ``order_amount`` for an order held by :meth:`OrderService.lock` when
        less is due now than the payer saw (``due``) and the payment is more than that."""
        seen = exact_money(due, order.currency, "due")
        now = max(self.finance.orders.totals_of(order).due, Decimal(0))
        if now < seen and order_amount > now:
            raise ValidationFailed(
                {
                    "amount": [
                        message(
                            "only {due} is due on order {number}",
                            due=Amount(now, order.currency),
                            number=order.number,
                        )
                    ]
                }
            )

    def refund(
        self,
        payment_id: int,
        amount: Any = None,
        *,
        method: str | None = None,
        desk_id: int | None = None,
        note: str = "",
        form_token: str | None = None,
    ) -> FinancePayment:
        """Give (part of) a payment back, by the same method unless another is named.

        A payment made with cashback goes back to cashback, a money payment back as money
        (cash, card or transfer): cashback never leaves as money.  ``form_token``: the
        refund form's one-time token; the same form sent again returns the first refund."""
        self.finance.require("finance_payment", "refund")
        refuse_long_texts(note=note)
        # claimed before the payment is locked: a repeat waits for the first submission
        # here, then gets its refund back instead of giving the money back twice
        earlier = forms.claim(self.finance, form_token, "refund")
        if earlier:
            return self.get(earlier[0])
        original = self.get(payment_id)
        if original.kind != "payment":
            raise ValidationFailed({"payment": [message("only a payment can be refunded")]})
        # two refunds (or a refund and a void) of one payment at once: the second waits here
        # and then sees what the first gave back
        lock_row(self.session, FinancePayment, original.id)
        if original.order_id is not None:
            self.finance.orders.lock(original.order_id)
        if self._voided(original):
            raise ValidationFailed(
                {
                    "payment": [
                        message(
                            "payment {payment} was voided; there is nothing to refund",
                            payment=original.id,
                        )
                    ]
                }
            )
        given_back = self._refunded_parts(original)
        left = original.amount - given_back[0]
        value = left if amount is None else exact_money(amount, original.currency)
        if value <= 0 or value > left:
            raise ValidationFailed(
                {
                    "amount": [
                        message(
                            "between 0.01 and {most} {currency}",
                            most=left,
                            currency=original.currency,
                        )
                    ]
                }
            )
        method = method or original.method
        if method not in METHODS:
            raise ValidationFailed(
                {"method": [message("one of {choices}", choices=", ".join(METHODS))]}
            )
        if (method == "cashback") != (original.method == "cashback"):
            raise ValidationFailed({"method": [_refund_method_refusal(original.method, method)]})
        desk_id = desk_id if desk_id is not None else original.desk_id
        desk, shift = self._desk_and_shift(method, desk_id)
        # the part of the receivable it settled, in proportion; the last part takes what
        # the earlier ones left, so the parts add up to the payment (no kopeck left over)
        if value == left:
            order_amount = original.order_amount - given_back[1]
            base_amount = original.base_amount - given_back[2]
        else:
            from crmkit_finance.money import round_money

            order_amount = round_money(
                original.order_amount * value / original.amount, original.order_currency
            )
            base_amount = round_money(
                original.base_amount * value / original.amount, self.finance.base_currency
            )
        ledger = self.finance.ledger
        party_id = original.party_id
        currency = original.currency
        if method == "cashback":
            if currency != self.finance.base_currency:
                raise ValidationFailed({"method": [message("cashback is in the base currency")]})
            target = ledger.cashback(party_id)
        else:
            target = self._money_account(method, desk)
            if method == "cash":
                drawer = self.finance.cashdesk.drawer_balance(desk)
                if value > drawer:
                    raise ValidationFailed(
                        {"amount": [message("there is not that much cash in the drawer")]}
                    )
        legs = [credit(target, value, currency)]
        legs += _exchange(ledger, -value, currency, -order_amount, original.order_currency)
        legs.append(debit(ledger.receivable(party_id), order_amount, original.order_currency))
        transaction = ledger.post(
            "refund",
            legs,
            memo=f"refund of payment {original.id}",
            record=("finance_order", original.order_id)
            if original.order_id
            else ("party", party_id),
            party_id=party_id,
        )
        if method == "cashback":
            self.finance.cashback.restore(party_id, value, transaction)
        refund = FinancePayment(
            at=utcnow(),
            on_date=self.finance.business_date(utcnow()),
            kind="refund",
            party_id=party_id,
            order_id=original.order_id,
            invoice_id=original.invoice_id,
            method=method,
            amount=-value,
            currency=currency,
            order_amount=-order_amount,
            order_currency=original.order_currency,
            base_amount=-base_amount,
            desk_id=desk.id if desk else None,
            shift_id=shift.id if shift else None,
            cashier_id=self.work.actor.user_id,
            transaction_id=transaction.id,
            refund_of_id=original.id,
            note=note,
        )
        self.session.add(refund)
        self.work.flush()
        forms.remember(self.finance, form_token, [refund.id])
        order = self.session.get(FinanceOrder, original.order_id) if original.order_id else None
        self._announce(refund, order, "payment.refunded", message("Refund: {amount} ({method})"))
        if order is not None:
            self.finance.orders.after_payment(order)
        return refund

    def void(
        self, payment_id: int, *, reason: str, form_token: str | None = None
    ) -> FinancePayment:
        """Cancel a payment entered by mistake: its transaction is reversed.

        A cash or card payment can be voided only during the shift it was taken in, by the
        cashier of that shift.  A payment taken outside a shift (a bank transfer, cashback)
        can be voided only on the business day it is dated (in the business's time zone)
        and by one who may also refund it.  Later, it is refunded instead.
        ``form_token``: the void form's one-time token; the same form sent again returns
        the first void.
        """
        self.finance.require("finance_payment", "void")
        if not (reason or "").strip():
            raise ValidationFailed({"reason": [message("say why the payment is voided")]})
        refuse_long_texts(reason=reason)
        # claimed before the payment is locked, as for a refund: a repeat waits for the
        # first submission, then gets its void back
        earlier = forms.claim(self.finance, form_token, "void")
        if earlier:
            return self.session.get(FinancePayment, earlier[0])
        original = self.get(payment_id)
        if original.kind != "payment":
            raise ValidationFailed({"payment": [message("only a payment can be voided")]})
        lock_row(self.session, FinancePayment, original.id)
        if original.order_id is not None:
            self.finance.orders.lock(original.order_id)
        if self.refunded(original):
            raise ValidationFailed(
                {"payment": [message("part of it was refunded; refund the rest")]}
            )
        if self._voided(original):
            raise ValidationFailed({"payment": [message("already voided")]})
        if original.shift_id is not None:
            shift = self.finance.cashdesk.hold(original.shift_id)
            if shift.closed_at is not None:
                raise ValidationFailed(
                    {"payment": [message("its shift is closed; refund it instead")]}
                )
            desk = self.session.get(FinanceCashDesk, shift.desk_id)
            self.finance.cashdesk.require_mine(shift, desk, "payment")
        else:
            today = self.finance.business_date(utcnow())
            if original.on_date != today:
                raise ValidationFailed(
                    {
                        "payment": [
                            message(
                                "a {method} payment can be voided only on the day it is "
                                "dated ({day}); refund it instead",
                                method=Label(original.method),
                                day=original.on_date.isoformat(),
                            )
                        ]
                    }
                )
            self.finance.require("finance_payment", "refund")
        if original.method == "cash":
            desk = self.session.get(FinanceCashDesk, original.desk_id)
            if original.amount > self.finance.cashdesk.drawer_balance(desk):
                raise ValidationFailed(
                    {"payment": [message("there is not that much cash in the drawer")]}
                )
        reversal = self.finance.ledger.reverse(
            original.transaction_id, memo=f"void: {reason}", kind="payment_void", check_kind=False
        )
        if original.method == "cashback":
            self.finance.cashback.restore(original.party_id, original.amount, reversal)
        void = FinancePayment(
            at=utcnow(),
            on_date=self.finance.business_date(utcnow()),
            kind="void",
            party_id=original.party_id,
            order_id=original.order_id,
            invoice_id=original.invoice_id,
            method=original.method,
            amount=-original.amount,
            currency=original.currency,
            order_amount=-original.order_amount,
            order_currency=original.order_currency,
            base_amount=-original.base_amount,
            desk_id=original.desk_id,
            shift_id=original.shift_id,
            cashier_id=self.work.actor.user_id,
            transaction_id=reversal.id,
            voids_id=original.id,
            note=reason,
        )
        self.session.add(void)
        self.work.flush()
        forms.remember(self.finance, form_token, [void.id])
        self.work.audit("finance_payment", original.id, "void", {"reason": [None, reason]})
        order = self.session.get(FinanceOrder, original.order_id) if original.order_id else None
        if order is not None:
            self.finance.orders.after_payment(order)
        return void

    def _announce(self, payment: FinancePayment, order: Any, event: str, title: Message) -> None:
        """Tell the client's timeline, the audit and the event bus of a payment or a refund.

        ``title`` is the entry's subject without its values (``Payment: {amount}
        ({method})``): the entry keeps it with the amount and the method, so a reader sees
        it in their language and their money format (``Оплата: 10 700,00 ₽ (карта)``).
        """
        record = (
            ("finance_order", order.id) if order is not None else ("finance_payment", payment.id)
        )
        amount = abs(payment.amount)
        subject = Message(
            title.template,
            {"amount": Amount(amount, payment.currency), "method": Label(payment.method)},
        )
        self.work.timeline.add(
            "payment",
            party_id=payment.party_id,
            subject=subject,
            record=record,
            data={
                "payment_id": payment.id,
                "kind": payment.kind,
                "order_id": payment.order_id,
                "method": payment.method,
                "amount": str(payment.amount),
                "currency": payment.currency,
            },
            occurred_at=payment.at,
            direction="in" if payment.amount > 0 else "out",
        )
        self.work.audit(
            "finance_payment",
            payment.id,
            payment.kind,
            {"amount": [None, str(payment.amount)], "method": [None, payment.method]},
        )
        self.work.emit(
            event,
            "finance_payment",
            payment.id,
            party_id=payment.party_id,
            order_id=payment.order_id,
            amount=str(abs(payment.amount)),
            currency=payment.currency,
            method=payment.method,
            base_amount=str(abs(payment.base_amount)),
            **({"order_due": str(self._due(order))} if order is not None else {}),
        )

    def _due(self, order: Any) -> Decimal:
        """What the client still owes on an order after this payment (0 when paid up, and
        on a cancelled order, which owes nothing)."""
        due = self.finance.orders.totals_of(order).due
        return due if due > 0 else Decimal(0).quantize(due)

    # -- reading --------------------------------------------------------------------------

    def get(self, payment_id: int) -> FinancePayment:
        """A payment the actor may read."""
        return self.work.records("finance_payment").get(payment_id)

    def _voided(self, payment: FinancePayment) -> bool:
        """Whether a payment was voided (cancelled as a mistake)."""
        return (
            self.session.scalar(
                select(FinancePayment.id).where(FinancePayment.voids_id == payment.id)
            )
            is not None
        )

    def refunded(self, payment: FinancePayment) -> Decimal:
        """How much of a payment was given back."""
        return self._refunded_parts(payment)[0]

    def _refunded_parts(self, payment: FinancePayment) -> tuple[Decimal, Decimal, Decimal]:
        """What the refunds of a payment gave back: in its currency, in the order's (or the
        receivable's) and in the base currency."""
        row = self.session.execute(
            select(
                func.coalesce(func.sum(FinancePayment.amount), 0),
                func.coalesce(func.sum(FinancePayment.order_amount), 0),
                func.coalesce(func.sum(FinancePayment.base_amount), 0),
            ).where(FinancePayment.refund_of_id == payment.id)
        ).one()
        return -Decimal(row[0]), -Decimal(row[1]), -Decimal(row[2])

    def of_order(self, order_id: int) -> list[FinancePayment]:
        """Payments, refunds and voids of an order, oldest first."""
        self.finance.orders.get(order_id)
        return list(
            self.session.scalars(
                self.work.records("finance_payment")
                .query()
                .where(FinancePayment.order_id == order_id)
                .order_by(FinancePayment.id)
            )
        )

    def receivable(self, party_id: int, currency: str | None = None) -> Decimal:
        """What a client owes (negative: paid in advance), in one currency."""
        self.finance.require("finance_payment", "read")
        self.work.parties.get(party_id)
        ledger = self.finance.ledger
        return ledger.balance(ledger.receivable(party_id), currency or self.finance.base_currency)

    def total_paid(self, party_id: int) -> Decimal:
        """Everything a client paid, refunds deducted, in the base currency."""
        self.finance.require("finance_payment", "read")
        value = self.session.scalar(
            select(func.coalesce(func.sum(FinancePayment.base_amount), 0)).where(
                FinancePayment.party_id.in_(_party_and_merged(party_id))
            )
        )
        return Decimal(value).quantize(Decimal("0.01"))

    def receivables(self, *, as_of: dt.date | None = None) -> list[dict[str, Any]]:
        """Clients who owe money (base currency), biggest debt first, with overdue amounts."""
        self.finance.require("finance_payment", "read")
        base = self.finance.base_currency
        day = as_of or self.finance.business_date(utcnow())
        rows = self.session.execute(
            select(FinanceAccount.party_id, func.sum(FinanceEntry.amount))
            .join(FinanceEntry, FinanceEntry.account_id == FinanceAccount.id)
            .where(FinanceAccount.kind == "receivable", FinanceEntry.currency == base)
            .group_by(FinanceAccount.party_id)
            .having(func.sum(FinanceEntry.amount) != 0)
        )
        balances = {party_id: Decimal(total) for party_id, total in rows}
        if not balances:
            return []
        names = dict(
            self.session.execute(
                select(Party.id, Party.name).where(Party.id.in_(list(balances)))
            ).all()
        )
        overdue_rows = self.session.execute(
            select(FinanceOrder.party_id, FinanceOrder.id, FinanceOrder.total).where(
                FinanceOrder.party_id.in_(list(balances)),
                FinanceOrder.completed_at.is_not(None),
                FinanceOrder.due_on < day,
                FinanceOrder.currency == base,
            )
        )
        overdue: dict[int, Decimal] = defaultdict(Decimal)
        order_ids = {}
        for party_id, order_id, order_total in overdue_rows:
            order_ids[order_id] = (party_id, order_total)
        if order_ids:
            paid = dict(
                self.session.execute(
                    select(FinancePayment.order_id, func.sum(FinancePayment.order_amount))
                    .where(FinancePayment.order_id.in_(list(order_ids)))
                    .group_by(FinancePayment.order_id)
                ).all()
            )
            for order_id, (party_id, order_total) in order_ids.items():
                left = order_total - Decimal(paid.get(order_id) or 0)
                if left > 0:
                    overdue[party_id] += left
        # a client the reader may not read (they read payments, not every client) is
        # neither named nor linked by its id, as the API gives it as ``null``
        readable = self.work.records("finance_payment").readable_clients(balances)
        ordered = sorted(balances.items(), key=lambda item: (-item[1], item[0]))
        return [
            {
                "party_id": party_id if party_id in readable else None,
                "client": names.get(party_id, "") if party_id in readable else "",
                "balance": balance,
                "overdue": min(overdue.get(party_id, Decimal(0)), max(balance, Decimal(0))),
                "currency": base,
            }
            for party_id, balance in ordered
        ]

    def pay_invoice(
        self,
        invoice_id: int,
        amount: Any,
        *,
        reference: str = "",
        at: dt.datetime | None = None,
        form_token: str | None = None,
        due: Any = None,
    ) -> list[FinancePayment]:
        """A bank transfer against an invoice, spread over its orders oldest first.

        ``form_token``: the form's one-time token; the same form sent again returns the
        payments it took.  ``due``: the outstanding amount the payer was shown (the form
        sends it); as for :meth:`take`, a transfer larger than what is outstanding once the
        invoice's orders are held is refused when that is less than what was shown (the
        same transfer booked by two cashiers at once is booked once)."""
        self.finance.require("finance_payment", "create")
        refuse_long_texts(FinancePayment, reference=reference)
        earlier = forms.claim(self.finance, form_token, "invoice_payment")
        if earlier is not None:
            return [self.get(i) for i in earlier]
        invoice = self.finance.invoices.get(invoice_id)
        if invoice.status == "cancelled":
            raise ValidationFailed({"invoice": [message("the invoice is cancelled")]})
        value = exact_money(amount, invoice.currency)
        if value <= 0:
            raise ValidationFailed({"amount": [message("a payment is positive")]})
        # every order held (in id order, as every other path takes one order) before their
        # dues are read: a payment of one of them at once waits, then is seen
        for order in sorted(self.finance.invoices.orders_of(invoice), key=lambda o: o.id):
            self.finance.orders.lock(order)
        self.session.refresh(invoice)
        if invoice.status == "cancelled":
            raise ValidationFailed({"invoice": [message("the invoice is cancelled")]})
        if due is not None:
            seen = exact_money(due, invoice.currency, "due")
            now = self.finance.invoices.outstanding(invoice)
            if now < seen and value > now:
                raise ValidationFailed(
                    {
                        "amount": [
                            message(
                                "only {due} is due on invoice {number}",
                                due=Amount(now, invoice.currency),
                                number=invoice.number,
                            )
                        ]
                    }
                )
        payments = []
        left = value
        for order in self.finance.invoices.orders_of(invoice):
            order_due = order.total - self.finance.orders.paid(order)
            if order_due <= 0 or left <= 0:
                continue
            part = min(order_due, left)
            payments.append(
                self.take(
                    order_id=order.id,
                    amount=part,
                    method="transfer",
                    currency=invoice.currency,
                    invoice_id=invoice.id,
                    reference=reference,
                    at=at,
                )
            )
            left -= part
        if left > 0:
            payments.append(
                self.take(
                    party_id=invoice.party_id,
                    amount=left,
                    method="transfer",
                    currency=invoice.currency,
                    invoice_id=invoice.id,
                    reference=reference,
                    note="overpayment",
                    at=at,
                )
            )
        self.finance.invoices.refresh_status(invoice)
        forms.remember(self.finance, form_token, [p.id for p in payments])
        return payments


def _refund_method_refusal(paid_by: str, method: str) -> Message:
    """The refusal of a refund by ``method`` of a payment made by ``paid_by``."""
    if paid_by == "cashback":
        return message(
            "a payment made with cashback goes back to cashback, not by {method}",
            method=Label(method),
        )
    return message(
        "a {paid_by} payment is refunded in money, not to {method}",
        paid_by=Label(paid_by),
        method=Label(method),
    )


def _open_a_shift(desk: FinanceCashDesk) -> Message:
    """The refusal of a cash operation at a desk with no open shift."""
    return message("open a shift at {desk} first", desk=desk.name)


def _exchange(
    ledger: Any, amount: Decimal, currency: str, target_amount: Decimal, target_currency: str
) -> list[Leg]:
    """Legs turning ``amount`` of ``currency`` into ``target_amount`` of ``target_currency``."""
    if currency == target_currency:
        return []
    exchange = ledger.account("equity:exchange")
    return [credit(exchange, amount, currency), debit(exchange, target_amount, target_currency)]


def _party_and_merged(party_id: int) -> Any:
    """The party and those merged into it (their payments are the survivor's history)."""
    return select(Party.id).where((Party.id == party_id) | (Party.merged_into_id == party_id))
