"""Cashback: a percent of what a client paid for completed orders, spendable as money.

The program (percent and how many days cashback keeps) is data the accountant edits, valid
from a date on.  When an order is both completed and fully paid, the percent of what was
paid for it in money (not with cashback itself) is accrued to the client as a **lot** that
expires after the program's days.  Spending takes from the lots that expire first.  After a
refund or void of an order's payment, its cancellation or its completion again after it
was reopened, the order's lot follows what it earns now, at the percent it was accrued
at: the percent of the money still paid for what it charges, so giving back an
overpayment takes nothing, giving back half of the price takes half (as far as it is
unspent), and more work paid for after a reopening earns more.  Expired remainders go back
to the cashback expense and are never taken or given again: what an order earns more once
its lot expired is a new lot of its own.

The ledger's cashback account of a client is the truth; the lots say which part expires
when, and the sum of the remainders not yet expired by the daily job always equals the
account's balance.  A lot is spendable only until its date: between that moment and the
job's run, its remainder is still in the account but neither shown nor spent
(:meth:`CashbackService.spendable`).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, or_, select, type_coerce
from sqlalchemy.orm import aliased

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.i18n import Amount, message
from crmkit.services.limits import refuse_long_texts
from crmkit_finance.ledger import credit, debit
from crmkit_finance.model import (
    FinanceCashbackLot,
    FinanceCashbackProgram,
    FinanceEntry,
    FinancePayment,
    FinanceTransaction,
)
from crmkit_finance.money import exact_money, percent_of, round_money, to_decimal
from crmkit_finance.services import forms

#: The longest cashback may be kept (ten years): a lot's date must stay a real date.
MAX_EXPIRY_DAYS = 3650

if TYPE_CHECKING:
    from crmkit_finance.services import Finance


class CashbackService:
    """Cashback program, accrual, spending, expiry and balances."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    # -- program -----------------------------------------------------------------------

    def program(self, on_date: dt.date | None = None) -> FinanceCashbackProgram | None:
        """The program in force on a date (none: no cashback)."""
        day = on_date or self.finance.business_date(utcnow())
        return self.session.scalar(
            select(FinanceCashbackProgram)
            .where(FinanceCashbackProgram.valid_from <= day)
            .order_by(FinanceCashbackProgram.valid_from.desc())
            .limit(1)
        )

    def set_program(
        self, percent: Any, expiry_days: int | str, valid_from: dt.date | None = None
    ) -> FinanceCashbackProgram:
        """Set the cashback percent (0 stops accruing) and lifetime from a date on."""
        self.finance.require("finance_cashback", "update")
        value = to_decimal(percent, "percent")
        if not 0 <= value <= 100 or value != round(value, 2):
            raise ValidationFailed(
                {"percent": [message("between 0 and 100, two decimals at most")]}
            )
        expiry_days = _expiry_days(expiry_days)
        day = valid_from or self.finance.business_date(utcnow())
        row = self.session.scalar(
            select(FinanceCashbackProgram).where(FinanceCashbackProgram.valid_from == day)
        )
        if row is None:
            row = FinanceCashbackProgram(
                valid_from=day, percent=value, expiry_days=int(expiry_days)
            )
            self.session.add(row)
        else:
            row.percent, row.expiry_days = value, int(expiry_days)
        row.created_by_id = self.work.actor.user_id
        self.work.flush()
        self.work.audit(
            "finance_cashback",
            row.id,
            "program",
            {"percent": [None, str(value)], "expiry_days": [None, int(expiry_days)]},
        )
        return row

    # -- balances ------------------------------------------------------------------------

    def balance(self, party_id: int) -> Decimal:
        """The cashback a client may spend now (base currency)."""
        self.finance.require("finance_cashback", "read")
        return self.spendable(party_id)

    def spendable(self, party_id: int) -> Decimal:
        """The cashback a client may spend now, with no permission asked (the cashdesk's
        check of a cashback payment): the ledger's balance less the remainders of lots past
        their date that the daily job has not expired yet."""
        ledger = self.finance.ledger
        base = self.finance.base_currency
        booked = ledger.balance(ledger.cashback(party_id), base)
        overdue = self.session.scalar(
            select(
                type_coerce(
                    func.coalesce(func.sum(FinanceCashbackLot.remaining), 0),
                    FinanceCashbackLot.remaining.type,
                )
            ).where(
                FinanceCashbackLot.party_id == party_id,
                FinanceCashbackLot.remaining > 0,
                FinanceCashbackLot.expired_at.is_(None),
                FinanceCashbackLot.expires_at.is_not(None),
                FinanceCashbackLot.expires_at <= utcnow(),
            )
        )
        return max(Decimal("0.00"), round_money(booked - Decimal(overdue), base))

    def card(self, party_id: int) -> dict[str, Any]:
        """What the client card shows: balance, the next expiry and how much expires then."""
        balance = self.balance(party_id)
        lot = self.session.scalar(
            select(FinanceCashbackLot)
            .where(
                FinanceCashbackLot.party_id == party_id,
                FinanceCashbackLot.remaining > 0,
                FinanceCashbackLot.expired_at.is_(None),
                FinanceCashbackLot.expires_at > utcnow(),
            )
            .order_by(FinanceCashbackLot.expires_at)
            .limit(1)
        )
        return {
            "balance": balance,
            "currency": self.finance.base_currency,
            "next_expiry": lot.expires_at if lot else None,
            "expiring": lot.remaining if lot else Decimal("0.00"),
        }

    def lots(self, party_id: int) -> list[FinanceCashbackLot]:
        """A client's cashback lots, newest first."""
        self.finance.require("finance_cashback", "read")
        return list(
            self.session.scalars(
                select(FinanceCashbackLot)
                .where(FinanceCashbackLot.party_id == party_id)
                .order_by(FinanceCashbackLot.id.desc())
            )
        )

    # -- accrual -------------------------------------------------------------------------

    def on_order_changed(self, order: Any) -> FinanceCashbackLot | None:
        """Keep an order's cashback in step with its money and state (after a payment, a
        refund, a void, a completion or a cancellation; the caller holds the order's row).

        Accrued once the order is completed and fully paid (one lot per order).  Once
        accrued, the lot follows what the order earns now, at the percent it was first
        accrued at: the percent of the money that paid for what was charged, net of refunds
        and voids (nothing once cancelled).  What it no longer earns is withdrawn as far as
        it is unspent; what it earns again or more (paid again after a refund; reopened,
        given more work and paid for it) is accrued, each time only the difference from
        what the lot keeps in the books.  A reopened order is settled again at its
        completion.  Once the lot expired, what the order earns more is a new lot (see
        :meth:`_follow`)."""
        lot = self.session.scalar(
            select(FinanceCashbackLot).where(FinanceCashbackLot.order_id == order.id)
        )
        if lot is not None:
            self._follow(order, lot)
            return lot
        if order.completed_at is None or order.cancelled_at is not None:
            return None
        totals = self.finance.orders.totals(order)
        if not totals.settled:
            return None
        program = self.program(order.completed_on)
        if program is None or program.percent <= 0:
            return None
        basis = self._basis(order)
        base = self.finance.base_currency
        amount = percent_of(basis, program.percent, base)
        if amount <= 0:
            return None
        return self._accrue(
            order.party_id,
            amount,
            kind="accrual",
            order_id=order.id,
            basis=basis,
            expiry_days=program.expiry_days,
            memo=f"cashback for order {order.number}",
        )

    def _basis(self, order: Any) -> Decimal:
        """What an order's cashback is earned on now (base currency): the money paid for it,
        refunds and voids deducted, up to what was charged less the part paid with cashback.
        An overpayment (an advance kept on the client's account) and cashback earn nothing.
        A refund or void counts with the method of the payment it gives back."""
        original = aliased(FinancePayment)
        by_cashback = func.coalesce(original.method, FinancePayment.method) == "cashback"
        amount = FinancePayment.base_amount

        def total(part: Any) -> Any:  # read back as an amount, not in minor units
            return type_coerce(func.coalesce(func.sum(part), 0), amount.type)

        in_money, in_cashback = self.session.execute(
            select(
                total(case((by_cashback, 0), else_=amount)),
                total(case((by_cashback, amount), else_=0)),
            )
            .select_from(FinancePayment)
            .outerjoin(
                original,
                original.id == func.coalesce(FinancePayment.refund_of_id, FinancePayment.voids_id),
            )
            .where(FinancePayment.order_id == order.id)
        ).one()
        basis = min(Decimal(in_money), order.base_total - Decimal(in_cashback))
        return max(basis, Decimal(0))

    def _kept(self, order: Any) -> Decimal:
        """The cashback an order's lot holds for it in the books: accrued less withdrawn."""
        ledger = self.finance.ledger
        value = self.session.scalar(
            select(func.coalesce(func.sum(FinanceEntry.amount), 0))
            .join(FinanceTransaction, FinanceTransaction.id == FinanceEntry.transaction_id)
            .where(
                FinanceEntry.account_id == ledger.account("expense:cashback").id,
                FinanceEntry.currency == self.finance.base_currency,
                FinanceTransaction.record_entity == "finance_order",
                FinanceTransaction.record_id == order.id,
                FinanceTransaction.kind.in_(("cashback_accrual", "cashback_withdrawal")),
            )
        )
        return Decimal(value)

    def _order_lots(self, order: Any) -> list[FinanceCashbackLot]:
        """The lots an order earned, oldest first: the lot of its first accrual (the one
        holding ``order_id``) and any accrued after that one had expired (their accrual
        records the order)."""
        return list(
            self.session.scalars(
                select(FinanceCashbackLot)
                .join(
                    FinanceTransaction,
                    FinanceTransaction.id == FinanceCashbackLot.transaction_id,
                )
                .where(
                    FinanceCashbackLot.kind == "accrual",
                    FinanceTransaction.record_entity == "finance_order",
                    FinanceTransaction.record_id == order.id,
                )
                .order_by(FinanceCashbackLot.id)
            )
        )

    def _follow(self, order: Any, lot: FinanceCashbackLot) -> None:
        """Withdraw from (or give back to) an order's lots what its earnings changed by.

        What it earns less is taken from its lots that have not expired (an expired
        remainder is gone: never taken twice, never brought back). What it earns more goes
        to its lot that has not expired, or, when every lot of the order has expired, to a
        new lot kept as long as the first one was: more work paid for after the cashback
        expired earns cashback of its own, and the expired part stays expired.  A lot past
        its date counts as expired here even before the daily job books its expiry, as it
        does for spending (:meth:`spendable`)."""
        if not lot.basis:
            return  # a lot without a basis is manual
        if order.cancelled_at is not None:
            basis = Decimal(0)
        elif order.completed_at is None:
            return  # reopened: its cashback is settled again when it is completed
        else:
            basis = self._basis(order)
        base = self.finance.base_currency
        earned = self._earned(lot, basis)
        change = earned - self._kept(order)
        now = utcnow()
        held = [  # a lot past its date is expired already, whether or not the job ran
            one
            for one in self._order_lots(order)
            if one.expired_at is None and (one.expires_at is None or one.expires_at > now)
        ]
        if change < 0:  # what was spent stays spent, what expired stays expired
            change = -min(-change, sum((one.remaining for one in held), Decimal(0)))
        if change == 0:
            return
        memo = (
            f"cashback of order {order.number} "
            f"{'accrued' if change > 0 else 'withdrawn'}: earned on {basis} now"
        )
        if change > 0 and not held:
            lifetime = lot.expires_at - lot.accrued_at if lot.expires_at else None
            self._accrue(
                order.party_id,
                change,
                kind="accrual",
                expiry_days=lifetime.days if lifetime else None,
                record_order_id=order.id,
                memo=memo,
            )
            return
        ledger = self.finance.ledger
        legs = [  # a negative change credits the expense and debits the client's cashback
            debit(ledger.account("expense:cashback"), change, base),
            credit(ledger.cashback(order.party_id), change, base),
        ]
        ledger.post(
            "cashback_accrual" if change > 0 else "cashback_withdrawal",
            legs,
            memo=memo,
            record=("finance_order", order.id),
            party_id=order.party_id,
        )
        if change > 0:
            target = held[-1]
            target.remaining += change
            if target is not lot:  # a later lot: it stands for at most what it holds
                target.amount = max(target.amount, target.remaining)
            elif earned > lot.amount:  # the lot now stands for more: what it was accrued on
                lot.amount, lot.basis = earned, basis
        else:
            left = -change
            for one in reversed(held):  # the newest first
                part = min(one.remaining, left)
                one.remaining -= part
                left -= part
        self.work.flush()

    def _earned(self, lot: FinanceCashbackLot, basis: Decimal) -> Decimal:
        """What an order's lot earns on ``basis`` at the percent it was accrued at: the
        program in force when it was accrued, while that still gives the lot's amount on its
        basis (else, the program edited since, the lot's own ratio)."""
        base = self.finance.base_currency
        program = self.program(self.finance.business_date(lot.accrued_at))
        if program is not None and percent_of(lot.basis, program.percent, base) == lot.amount:
            return percent_of(basis, program.percent, base)
        return round_money(lot.amount * basis / lot.basis, base)

    def _accrue(
        self,
        party_id: int,
        amount: Decimal,
        *,
        kind: str,
        expiry_days: int | None,
        order_id: int | None = None,
        basis: Decimal | None = None,
        record_order_id: int | None = None,
        memo: str,
    ) -> FinanceCashbackLot:
        """A new lot and its accrual; ``order_id`` is the order's first lot,
        ``record_order_id`` one it earned after that one expired (recorded on the order)."""
        record_order_id = record_order_id or order_id
        ledger = self.finance.ledger
        base = self.finance.base_currency
        transaction = ledger.post(
            "cashback_accrual",
            [
                debit(ledger.account("expense:cashback"), amount, base),
                credit(ledger.cashback(party_id), amount, base),
            ],
            memo=memo,
            record=("finance_order", record_order_id) if record_order_id else ("party", party_id),
            party_id=party_id,
        )
        now = utcnow()
        lot = FinanceCashbackLot(
            party_id=party_id,
            order_id=order_id,
            kind=kind,
            amount=amount,
            basis=basis,
            remaining=amount,
            accrued_at=now,
            expires_at=_expiry(now, expiry_days),
            transaction_id=transaction.id,
            note=memo,
        )
        self.session.add(lot)
        self.work.flush()
        self.work.emit(
            "cashback.accrued",
            "finance_cashback",
            lot.id,
            party_id=party_id,
            amount=str(amount),
            order_id=record_order_id,
        )
        return lot

    def _open_lots(self, party_id: int) -> list[FinanceCashbackLot]:
        """The lots that may be spent now: with a remainder, not past their date."""
        return list(
            self.session.scalars(
                select(FinanceCashbackLot)
                .where(
                    FinanceCashbackLot.party_id == party_id,
                    FinanceCashbackLot.remaining > 0,
                    FinanceCashbackLot.expired_at.is_(None),
                    or_(
                        FinanceCashbackLot.expires_at.is_(None),
                        FinanceCashbackLot.expires_at > utcnow(),
                    ),
                )
                .order_by(FinanceCashbackLot.expires_at.asc().nulls_last(), FinanceCashbackLot.id)
            )
        )

    def consume(self, party_id: int, amount: Decimal) -> None:
        """Take ``amount`` from the lots that expire first (the ledger side is the caller's)."""
        left = amount
        for lot in self._open_lots(party_id):
            if left <= 0:
                break
            part = min(lot.remaining, left)
            lot.remaining -= part
            left -= part
        if left > 0:
            raise ValidationFailed({"amount": [message("not enough cashback")]})
        self.work.flush()

    def restore(self, party_id: int, amount: Decimal, transaction: Any) -> FinanceCashbackLot:
        """Cashback spent and given back (a refund or void): a new lot, kept as the program says."""
        program = self.program()
        now = utcnow()
        lot = FinanceCashbackLot(
            party_id=party_id,
            kind="restored",
            amount=amount,
            remaining=amount,
            accrued_at=now,
            expires_at=_expiry(now, program.expiry_days if program else None),
            transaction_id=transaction.id,
            note="cashback returned",
        )
        self.session.add(lot)
        self.work.flush()
        return lot

    def adjust(
        self,
        party_id: int,
        amount: Any,
        *,
        reason: str,
        expiry_days: int | None = None,
        form_token: str | None = None,
    ) -> Any:
        """The accountant gives (positive) or withdraws (negative) cashback by hand.

        ``form_token``: the form's one-time token; the same form sent again returns what the
        first one wrote (the lot given, or the withdrawal's transaction)."""
        self.finance.require("finance_cashback", "create")
        refuse_long_texts(reason=reason)
        if not (reason or "").strip():
            raise ValidationFailed({"reason": [message("say why")]})
        self.work.parties.get(party_id)
        base = self.finance.base_currency
        value = exact_money(amount, base)
        if value == 0:
            raise ValidationFailed({"amount": [message("give or take some cashback")]})
        # a gift and a withdrawal are told apart, so a repeat gets back what its form wrote
        action = "cashback_give" if value > 0 else "cashback_withdraw"
        earlier = forms.claim(self.finance, form_token, action)
        if earlier:
            kept = FinanceCashbackLot if value > 0 else FinanceTransaction
            return self.session.get(kept, earlier[0])
        if value > 0:
            program = self.program()
            if expiry_days is not None:
                expiry_days = _expiry_days(expiry_days)
            days = expiry_days or (program.expiry_days if program else None)
            lot = self._accrue(party_id, value, kind="manual", expiry_days=days, memo=reason)
            self.work.audit("finance_cashback", lot.id, "adjust", {"amount": [None, str(value)]})
            forms.remember(self.finance, form_token, [lot.id])
            return lot
        available = self.balance(party_id)
        if -value > available:
            raise ValidationFailed(
                {
                    "amount": [
                        message("only {available} to withdraw", available=Amount(available, base))
                    ]
                }
            )
        ledger = self.finance.ledger
        transaction = ledger.post(
            "cashback_withdrawal",
            [
                debit(ledger.cashback(party_id), -value, base),
                credit(ledger.account("expense:cashback"), -value, base),
            ],
            memo=reason,
            record=("party", party_id),
            party_id=party_id,
        )
        self.consume(party_id, -value)
        self.work.audit("finance_cashback", party_id, "adjust", {"amount": [None, str(value)]})
        forms.remember(self.finance, form_token, [transaction.id])
        return transaction

    def expire(self, now: dt.datetime | None = None) -> Decimal:
        """Expire every lot past its date; returns the total expired (the daily job)."""
        moment = now or utcnow()
        lots = list(
            self.session.scalars(
                select(FinanceCashbackLot)
                .where(
                    FinanceCashbackLot.expired_at.is_(None),
                    FinanceCashbackLot.expires_at.is_not(None),
                    FinanceCashbackLot.expires_at <= moment,
                )
                .order_by(FinanceCashbackLot.id)
            )
        )
        ledger = self.finance.ledger
        base = self.finance.base_currency
        expired = Decimal(0)
        for lot in lots:
            if lot.remaining > 0:
                ledger.post(
                    "cashback_expiry",
                    [
                        debit(ledger.cashback(lot.party_id), lot.remaining, base),
                        credit(ledger.account("expense:cashback"), lot.remaining, base),
                    ],
                    memo=f"cashback lot {lot.id} expired",
                    record=("party", lot.party_id),
                    party_id=lot.party_id,
                    at=moment,
                )
                expired += lot.remaining
                lot.remaining = Decimal(0)
            lot.expired_at = moment
        self.work.flush()
        return round_money(expired, base)


def _expiry_days(value: Any) -> int:
    """How many days cashback keeps: a whole number from 1 to :data:`MAX_EXPIRY_DAYS`."""
    try:
        days = int(str(value).strip())
    except ValueError:
        raise ValidationFailed({"expiry_days": [message("a number of days")]}) from None
    if days < 1:
        raise ValidationFailed({"expiry_days": [message("at least one day")]})
    if days > MAX_EXPIRY_DAYS:
        raise ValidationFailed(
            {"expiry_days": [message("cashback is kept {days} days at most", days=MAX_EXPIRY_DAYS)]}
        )
    return days


def _expiry(now: dt.datetime, days: int | None) -> dt.datetime | None:
    """When a lot given ``now`` expires (never without days); a program saved with more
    days than allowed before the limit existed keeps its lots the longest allowed."""
    return now + dt.timedelta(days=min(days, MAX_EXPIRY_DAYS)) if days else None
