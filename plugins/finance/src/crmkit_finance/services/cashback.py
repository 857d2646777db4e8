"""Cashback: a percent of what a client paid for completed orders, spendable as money.

The program (percent and how many days cashback keeps) is data the accountant edits, valid
from a date on.  When an order is both completed and fully paid, the percent of what was
paid for it in money (not with cashback itself) is accrued to the client as a **lot** that
expires after the program's days.  Spending takes from the lots that expire first.  A
refund or void of an order's payment withdraws the cashback accrued for it in the same
proportion, as far as it is unspent.  Expired remainders go back to the cashback expense.

The ledger's cashback account of a client is the truth; the lots say which part expires
when, and the sum of the unexpired remainders always equals the account's balance.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit_finance.ledger import credit, debit
from crmkit_finance.model import (
    FinanceCashbackLot,
    FinanceCashbackProgram,
    FinancePayment,
    FinanceTransaction,
)
from crmkit_finance.money import exact_money, percent_of, round_money, to_decimal
from crmkit_finance.services import forms

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
        self, percent: Any, expiry_days: int, valid_from: dt.date | None = None
    ) -> FinanceCashbackProgram:
        """Set the cashback percent (0 stops accruing) and lifetime from a date on."""
        self.finance.require("finance_cashback", "update")
        value = to_decimal(percent, "percent")
        if not 0 <= value <= 100 or value != round(value, 2):
            raise ValidationFailed(
                {"percent": [message("between 0 and 100, two decimals at most")]}
            )
        if int(expiry_days) < 1:
            raise ValidationFailed({"expiry_days": [message("at least one day")]})
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
        ledger = self.finance.ledger
        return ledger.balance(ledger.cashback(party_id), self.finance.base_currency)

    def card(self, party_id: int) -> dict[str, Any]:
        """What the client card shows: balance, the next expiry and how much expires then."""
        balance = self.balance(party_id)
        lot = self.session.scalar(
            select(FinanceCashbackLot)
            .where(
                FinanceCashbackLot.party_id == party_id,
                FinanceCashbackLot.remaining > 0,
                FinanceCashbackLot.expired_at.is_(None),
                FinanceCashbackLot.expires_at.is_not(None),
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
        """Accrue an order's cashback once it is completed and fully paid (once per order)."""
        if order.completed_at is None or order.cancelled_at is not None:
            return None
        if self.session.scalar(
            select(FinanceCashbackLot.id).where(FinanceCashbackLot.order_id == order.id)
        ):
            return None
        totals = self.finance.orders.totals(order)
        if not totals.settled:
            return None
        program = self.program(order.completed_on)
        if program is None or program.percent <= 0:
            return None
        by_cashback = FinancePayment.method == "cashback"
        in_money, in_cashback = self.session.execute(
            select(
                func.coalesce(
                    func.sum(case((by_cashback, 0), else_=FinancePayment.base_amount)), 0
                ),
                func.coalesce(
                    func.sum(case((by_cashback, FinancePayment.base_amount), else_=0)), 0
                ),
            ).where(FinancePayment.order_id == order.id)
        ).one()
        # earned on the money that paid for what was charged: an overpayment (an advance
        # kept on the client's account) and the part paid with cashback earn nothing
        basis = min(Decimal(in_money), order.base_total - Decimal(in_cashback))
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

    def _accrue(
        self,
        party_id: int,
        amount: Decimal,
        *,
        kind: str,
        expiry_days: int | None,
        order_id: int | None = None,
        basis: Decimal | None = None,
        memo: str,
    ) -> FinanceCashbackLot:
        ledger = self.finance.ledger
        base = self.finance.base_currency
        transaction = ledger.post(
            "cashback_accrual",
            [
                debit(ledger.account("expense:cashback"), amount, base),
                credit(ledger.cashback(party_id), amount, base),
            ],
            memo=memo,
            record=("finance_order", order_id) if order_id else ("party", party_id),
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
            expires_at=now + dt.timedelta(days=expiry_days) if expiry_days else None,
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
            order_id=order_id,
        )
        return lot

    def _open_lots(self, party_id: int) -> list[FinanceCashbackLot]:
        return list(
            self.session.scalars(
                select(FinanceCashbackLot)
                .where(
                    FinanceCashbackLot.party_id == party_id,
                    FinanceCashbackLot.remaining > 0,
                    FinanceCashbackLot.expired_at.is_(None),
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
            expires_at=now + dt.timedelta(days=program.expiry_days) if program else None,
            transaction_id=transaction.id,
            note="cashback returned",
        )
        self.session.add(lot)
        self.work.flush()
        return lot

    def on_refund(self, order: Any, refunded_base: Decimal) -> Decimal:
        """Withdraw the cashback of an order in proportion to a refund; returns the amount."""
        lot = self.session.scalar(
            select(FinanceCashbackLot).where(FinanceCashbackLot.order_id == order.id)
        )
        if lot is None or not lot.basis or lot.remaining <= 0 or lot.expired_at is not None:
            return Decimal(0)
        base = self.finance.base_currency
        share = round_money(lot.amount * abs(refunded_base) / lot.basis, base)
        take = min(share, lot.remaining)
        if take <= 0:
            return Decimal(0)
        ledger = self.finance.ledger
        ledger.post(
            "cashback_withdrawal",
            [
                debit(ledger.cashback(order.party_id), take, base),
                credit(ledger.account("expense:cashback"), take, base),
            ],
            memo=f"cashback of order {order.number} withdrawn after a refund",
            record=("finance_order", order.id),
            party_id=order.party_id,
        )
        lot.remaining -= take
        self.work.flush()
        return take

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
                        message(
                            "only {available} {currency} to withdraw",
                            available=available,
                            currency=base,
                        )
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
