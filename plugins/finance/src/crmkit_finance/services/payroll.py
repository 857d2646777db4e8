"""Salary: pay schemes, monthly accrual, payouts and payslips.

A pay scheme (from a date on) is a fixed monthly sum, a percent of revenue, or both.  The
revenue is that of the order lines recognized in the month, net of discounts and of lines
removed later (their negative twins count in the month of removal), in the base currency:

* basis ``lines``: the lines the employee performed (a line without a performer is the
  order's assignee's; recognition writes the assignee of then on it, and a reopening
  empties it again unless it was chosen by hand (``performer_chosen``), so the order done
  again pays its assignee of then);
* basis ``orders``: every line of the orders the employee was assigned to when the line
  was recognized (recognition writes the assignee of then on it, as the order's worker of
  record: an order given to someone else later takes no earned percent along).

The scheme's percent applies to service lines (and goods lines when ``include_goods``); a
rate for a category replaces it for lines of that category.  Commission is rounded half up
once per group of lines sharing a percent.  The scheme in force on the last day of the
month applies.  The fixed part is for the days of the month the employee was active: the
audit log's ``block`` and ``unblock`` entries of the user mark where they were blocked
(from the day after a blocking to the day before an unblocking; both of those days are
worked), and a month with blocked days pays the fixed part prorated by calendar days, a
month blocked throughout nothing (see :meth:`PayrollService.blocked_days`).  Their percent
of the revenue recognized in a month is owed as always.  Accrual books salary expense
against the employee's salary account; a payout pays that account down; a payslip shows
both.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import MONTH, Day, message
from crmkit.model import AuditEntry, User
from crmkit.services.limits import refuse_long_texts
from crmkit_finance.ledger import as_amount, credit, debit, normal_balance
from crmkit_finance.model import (
    FinanceAccount,
    FinanceEntry,
    FinanceItemCategory,
    FinanceOrder,
    FinanceOrderLine,
    FinancePayRate,
    FinancePayScheme,
    FinancePayslip,
    FinanceTransaction,
)
from crmkit_finance.money import exact_money, percent_of, round_money, to_decimal
from crmkit_finance.services import forms

if TYPE_CHECKING:
    from crmkit_finance.services import Finance

BASES = ("lines", "orders")


def month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day of the month containing ``day``."""
    last = calendar.monthrange(day.year, day.month)[1]
    return day.replace(day=1), day.replace(day=last)


def _percent(value: Any, field: str) -> Decimal:
    number = to_decimal(value, field)
    if not 0 <= number <= 100 or number != round(number, 2):
        raise ValidationFailed(
            {field: [message("a percent between 0 and 100, two decimals at most")]}
        )
    return number


class PayrollService:
    """Pay schemes, accrual, payouts, payslips.  Reached as ``finance(work).payroll``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    # -- schemes -----------------------------------------------------------------------

    def set_scheme(
        self,
        user_id: int,
        *,
        fixed_amount: Any = "0",
        percent: Any = "0",
        basis: str = "lines",
        include_goods: bool = False,
        rates: Mapping[int, Any] | None = None,
        valid_from: dt.date,
    ) -> FinancePayScheme:
        """Set how an employee is paid from ``valid_from`` on (replacing a scheme of that date)."""
        self.finance.require("finance_pay_scheme", "create")
        if self.session.get(User, user_id) is None:
            raise ValidationFailed({"user_id": [message("no user {user}", user=user_id)]})
        if basis not in BASES:
            raise ValidationFailed(
                {"basis": [message("one of {choices}", choices=", ".join(BASES))]}
            )
        base = self.finance.base_currency
        fixed = exact_money(fixed_amount, base, "fixed_amount")
        if fixed < 0:
            raise ValidationFailed({"fixed_amount": [message("not negative")]})
        categories = {int(category_id) for category_id in (rates or {})}
        known = set(
            self.session.scalars(
                select(FinanceItemCategory.id).where(FinanceItemCategory.id.in_(categories))
            )
        )
        unknown = sorted(categories - known)
        if unknown:
            raise ValidationFailed(
                {
                    f"rates[{category_id}]": [
                        message("no category {category}", category=category_id)
                    ]
                    for category_id in unknown
                }
            )
        scheme = self.session.scalar(
            select(FinancePayScheme).where(
                FinancePayScheme.user_id == user_id, FinancePayScheme.valid_from == valid_from
            )
        )
        if scheme is None:
            scheme = FinancePayScheme(user_id=user_id, valid_from=valid_from)
            self.session.add(scheme)
        scheme.fixed_amount = fixed
        scheme.percent = _percent(percent, "percent")
        scheme.basis = basis
        scheme.include_goods = bool(include_goods)
        scheme.currency = base
        scheme.created_by_id = self.work.actor.user_id
        self.work.flush()
        self.session.execute(
            FinancePayRate.__table__.delete().where(FinancePayRate.scheme_id == scheme.id)
        )
        for category_id, rate in (rates or {}).items():
            self.session.add(
                FinancePayRate(
                    scheme_id=scheme.id,
                    category_id=int(category_id),
                    percent=_percent(rate, f"rates[{category_id}]"),
                )
            )
        self.work.flush()
        self.work.audit(
            "finance_pay_scheme",
            scheme.id,
            "set",
            {
                "user_id": [None, user_id],
                "fixed_amount": [None, str(fixed)],
                "percent": [None, str(scheme.percent)],
                "rates": [None, {str(k): str(v) for k, v in (rates or {}).items()}],
            },
        )
        return scheme

    def scheme_for(self, user_id: int, on_date: dt.date) -> FinancePayScheme | None:
        """The scheme in force for an employee on a date."""
        self.finance.require("finance_pay_scheme", "read")
        return self.session.scalar(
            select(FinancePayScheme)
            .where(FinancePayScheme.user_id == user_id, FinancePayScheme.valid_from <= on_date)
            .order_by(FinancePayScheme.valid_from.desc())
            .limit(1)
        )

    def rates_of(self, scheme: FinancePayScheme) -> dict[int, Decimal]:
        """Category id -> percent of a scheme."""
        return dict(
            self.session.execute(
                select(FinancePayRate.category_id, FinancePayRate.percent).where(
                    FinancePayRate.scheme_id == scheme.id
                )
            ).all()
        )

    # -- calculation ---------------------------------------------------------------------

    def calculate(self, user_id: int, month: dt.date) -> dict[str, Any]:
        """What an employee earned in the month containing ``month`` (nothing is written)."""
        self.finance.require("finance_payroll", "read")
        start, end = month_bounds(month)
        base = self.finance.base_currency
        scheme = self.scheme_for(user_id, end)
        result: dict[str, Any] = {
            "user_id": user_id,
            "period_start": start,
            "period_end": end,
            "currency": base,
            "fixed_amount": Decimal("0.00"),
            "commission": Decimal("0.00"),
            "groups": [],
        }
        if scheme is None:
            result["total"] = Decimal("0.00")
            return result
        history = self._block_history(user_id)
        blocked_on = self._blocked_on(user_id, history)
        blocked = _days_within(_blocked_periods(history), start, end)
        paid_days = end.day - blocked
        fixed = scheme.fixed_amount
        if blocked:
            fixed = round_money(fixed * paid_days / end.day, base)
        rates = self.rates_of(scheme)
        # lines recognized before the columns were written fall back on the order's assignee
        performer = func.coalesce(FinanceOrderLine.performer_id, FinanceOrder.assignee_id)
        of_record = func.coalesce(FinanceOrderLine.assignee_id, FinanceOrder.assignee_id)
        who = (performer if scheme.basis == "lines" else of_record) == user_id
        rows = self.session.execute(
            select(
                FinanceOrderLine.category_id,
                FinanceOrderLine.kind,
                func.sum(FinanceOrderLine.base_amount),
                func.count(),
            )
            .join(FinanceOrder, FinanceOrder.id == FinanceOrderLine.order_id)
            .where(
                FinanceOrderLine.recognized_on >= start,
                FinanceOrderLine.recognized_on <= end,
                who,
            )
            .group_by(FinanceOrderLine.category_id, FinanceOrderLine.kind)
        )
        by_percent: dict[Decimal, Decimal] = defaultdict(Decimal)
        lines_by_percent: dict[Decimal, int] = defaultdict(int)
        for category_id, kind, revenue, count in rows:
            if category_id in rates:
                pct = rates[category_id]
            elif kind == "service" or scheme.include_goods:
                pct = scheme.percent
            else:
                pct = Decimal(0)
            by_percent[pct] += Decimal(revenue or 0)
            lines_by_percent[pct] += int(count)
        groups = []
        commission = Decimal(0)
        for pct in sorted(by_percent):
            amount = percent_of(by_percent[pct], pct, base)
            commission += amount
            groups.append(
                {
                    "percent": pct,
                    "revenue": round_money(by_percent[pct], base),
                    "lines": lines_by_percent[pct],
                    "amount": amount,
                }
            )
        result.update(
            fixed_amount=fixed,
            commission=commission,
            groups=groups,
            total=fixed + commission,
            blocked_on=blocked_on,
            paid_days=paid_days,
            month_days=end.day,
            basis=scheme.basis,
            scheme_id=scheme.id,
        )
        return result

    def blocked_on(self, user_id: int) -> dt.date | None:
        """The business day a blocked employee was blocked on (the latest blocking the
        audit log keeps); ``None`` while they are not blocked."""
        return self._blocked_on(user_id, self._block_history(user_id))

    def _blocked_on(self, user_id: int, history: list[tuple[str, dt.date]]) -> dt.date | None:
        user = self.session.get(User, user_id)
        if user is None or not user.blocked:
            return None
        blockings = [day for action, day in history if action == "block"]
        return blockings[-1] if blockings else None

    def blocked_periods(self, user_id: int) -> list[tuple[dt.date | None, dt.date | None]]:
        """The spans of business days an employee was blocked, oldest first, as
        ``(first, last)`` days, both included; ``None`` is open-ended (blocked since before
        the log's first entry, or still blocked).

        Read from the audit log's ``block``/``unblock`` entries of the user: the day of a
        blocking is still worked (a leaver works their last day), and so is the day of an
        unblocking (back at work), so a span runs from the day after a blocking to the day
        before the unblocking; a user blocked and unblocked within a day or two loses no
        day.  A log whose first entry is an unblocking means blocked before it; a user whose
        log has neither (blocked outside the application's services) counts as active.
        """
        return _blocked_periods(self._block_history(user_id))

    def blocked_days(self, user_id: int, start: dt.date, end: dt.date) -> int:
        """How many days from ``start`` to ``end`` (both included) the employee was
        blocked (see :meth:`blocked_periods`)."""
        return _days_within(_blocked_periods(self._block_history(user_id)), start, end)

    def _block_history(self, user_id: int) -> list[tuple[str, dt.date]]:
        """The user's blockings and unblockings in the audit log, in the order they were
        made, each with its business day."""
        rows = self.session.execute(
            select(AuditEntry.action, AuditEntry.at)
            .where(
                AuditEntry.entity == "user",
                AuditEntry.record_id == user_id,
                AuditEntry.action.in_(("block", "unblock")),
            )
            .order_by(AuditEntry.at, AuditEntry.id)
        )
        return [(action, self.finance.business_date(at)) for action, at in rows]

    def accrue(self, month: dt.date, user_ids: Iterable[int] | None = None) -> list[FinancePayslip]:
        """Accrue the month's salary to every employee with a scheme (or those named).

        The whole month's run accrues those not accrued yet (after a payslip was reversed,
        its employee only); a named employee already accrued for the month is refused
        (reverse the payslip first).  Nothing is accrued when the total is zero.  A month
        is accrued once it is over where the business is (:attr:`Finance.timezone`): until
        its last day has ended, lines may still be recognized in it, and a payslip accrued
        earlier would leave their commission out.
        """
        self.finance.require("finance_payroll", "create")
        start, end = month_bounds(month)
        today = self.finance.business_date(_now())
        if end >= today:
            raise ValidationFailed(
                {
                    "month": [
                        message(
                            "{month} is not over yet: its salaries can be accrued from {day} on",
                            # as the salaries page writes them (ноябрь 2026, 1 дек. 2026 г.)
                            month=Day(start, MONTH),
                            day=Day(end + dt.timedelta(days=1)),
                        )
                    ]
                }
            )
        whole_month = user_ids is None
        if user_ids is None:
            user_ids = list(
                self.session.scalars(
                    select(FinancePayScheme.user_id)
                    .where(FinancePayScheme.valid_from <= end)
                    .distinct()
                    .order_by(FinancePayScheme.user_id)
                )
            )
        ledger = self.finance.ledger
        base = self.finance.base_currency
        slips = []
        already = []
        for user_id in user_ids:
            existing = self.session.scalar(
                select(FinancePayslip.id).where(
                    FinancePayslip.user_id == user_id,
                    FinancePayslip.period_start == start,
                    FinancePayslip.status == "accrued",
                )
            )
            user = self.session.get(User, user_id)
            name = user.label if user else str(user_id)
            if existing is not None and whole_month:
                already.append(name)
                continue
            if existing is not None:
                raise ValidationFailed(
                    {
                        "period": [
                            message(
                                "{employee} is accrued for {month}; "
                                "reverse payslip {payslip} first",
                                employee=name,
                                month=f"{start:%Y-%m}",
                                payslip=existing,
                            )
                        ]
                    }
                )
            figures = self.calculate(user_id, start)
            if figures["total"] <= 0:
                continue
            transaction = ledger.post(
                "salary_accrual",
                [
                    debit(ledger.account("expense:salary"), figures["total"], base),
                    credit(ledger.salary(user_id), figures["total"], base),
                ],
                memo=f"salary {start:%Y-%m} {name}",
                record=("user", user_id),
                at=self.finance.start_of_day(end),
            )
            slip = FinancePayslip(
                user_id=user_id,
                period_start=start,
                period_end=end,
                currency=base,
                fixed_amount=figures["fixed_amount"],
                commission=figures["commission"],
                total=figures["total"],
                details=_jsonable(figures),
                status="accrued",
                transaction_id=transaction.id,
                created_by_id=self.work.actor.user_id,
            )
            self.session.add(slip)
            self.work.flush()
            self.work.audit(
                "finance_payroll", slip.id, "accrue", {"total": [None, str(slip.total)]}
            )
            self.work.emit(
                "salary.accrued", "finance_payroll", slip.id, user_id=user_id, total=str(slip.total)
            )
            slips.append(slip)
        if already and not slips:
            raise ValidationFailed(
                {
                    "period": [
                        message(
                            "{employees}: already accrued for {month}",
                            employees=", ".join(already),
                            month=f"{start:%Y-%m}",
                        )
                    ]
                }
            )
        return slips

    def reverse(self, payslip_id: int, *, reason: str) -> FinancePayslip:
        """Undo a payslip's accrual (to correct it and accrue again)."""
        self.finance.require("finance_payroll", "reverse")
        refuse_long_texts(reason=reason)
        slip = self.session.get(FinancePayslip, payslip_id)
        if slip is None:
            raise NotFound("finance_payroll", payslip_id)
        if slip.status != "accrued":
            raise ValidationFailed({"payslip": [message("already reversed")]})
        reversal = self.finance.ledger.reverse(
            slip.transaction_id,
            memo=f"salary reversed: {reason}",
            kind="salary_reversal",
            check_kind=False,
        )
        slip.status = "reversed"
        slip.reversal_transaction_id = reversal.id
        self.work.flush()
        self.work.audit("finance_payroll", slip.id, "reverse", {"reason": [None, reason]})
        return slip

    def pay(
        self,
        user_id: int,
        amount: Any,
        *,
        paid_from: str = "bank:main",
        note: str = "",
        form_token: str | None = None,
    ) -> Any:
        """Pay an employee from a money account.

        ``form_token``: the payout form's one-time token; the same form sent again returns
        the first payout's transaction."""
        self.finance.require("finance_payroll", "pay")
        refuse_long_texts(note=note)
        earlier = forms.claim(self.finance, form_token, "salary_payout")
        if earlier:
            return self.session.get(FinanceTransaction, earlier[0])
        if self.session.get(User, user_id) is None:
            raise ValidationFailed({"user_id": [message("no user {user}", user=user_id)]})
        base = self.finance.base_currency
        value = exact_money(amount, base)
        if value <= 0:
            raise ValidationFailed({"amount": [message("a payout is positive")]})
        ledger = self.finance.ledger
        try:
            source = ledger.get_account(paid_from)
        except NotFound:
            source = None
        if source is None or source.kind not in ("cash", "bank"):
            raise ValidationFailed(
                {"paid_from": [message("pay from a cash drawer or a bank account")]}
            )
        shift = self.finance.cashdesk.drawer_shift(source, value, "paid_from")
        transaction = ledger.post(
            "salary_payout",
            [debit(ledger.salary(user_id), value, base), credit(source, value, base)],
            memo=note or "salary payout",
            record=("user", user_id),
            shift=shift,
        )
        forms.remember(self.finance, form_token, [transaction.id])
        self.work.audit("finance_payroll", user_id, "pay", {"amount": [None, str(value)]})
        return transaction

    def owed(self, user_id: int) -> Decimal:
        """Salary accrued and not yet paid out (reading writes nothing: an employee never
        accrued has no salary account yet, and owes and is owed nothing)."""
        self.finance.require("finance_payroll", "read")
        account = self._salary_account(user_id)
        if account is None:
            return Decimal("0.00")
        return self.finance.ledger.balance(account, self.finance.base_currency)

    def owed_by_user(self) -> dict[int, Decimal]:
        """What :meth:`owed` says for every employee whose salary account is not settled
        (an advance paid ahead is negative), in one statement."""
        self.finance.require("finance_payroll", "read")
        rows = self.session.execute(
            select(FinanceAccount.user_id, func.sum(FinanceEntry.amount))
            .join(FinanceEntry, FinanceEntry.account_id == FinanceAccount.id)
            .where(
                FinanceAccount.kind == "salary",
                FinanceAccount.user_id.is_not(None),
                FinanceEntry.currency == self.finance.base_currency,
            )
            .group_by(FinanceAccount.user_id)
        )
        owed = {user_id: normal_balance("salary", as_amount(raw)) for user_id, raw in rows}
        return {user_id: value for user_id, value in owed.items() if value != 0}

    def _salary_account(self, user_id: int) -> FinanceAccount | None:
        """The employee's salary account, ``None`` before its first entry."""
        return self.session.scalar(
            select(FinanceAccount).where(FinanceAccount.code == f"salary:user:{user_id}")
        )

    def payslip(self, user_id: int, month: dt.date) -> dict[str, Any]:
        """The month's payslip: what was accrued (with its groups), paid out, and is owed."""
        self.finance.require("finance_payroll", "read")
        user = self.session.get(User, user_id)
        if user is None:
            raise NotFound("user", user_id)
        start, end = month_bounds(month)
        slip = self.session.scalar(
            select(FinancePayslip).where(
                FinancePayslip.user_id == user_id,
                FinancePayslip.period_start == start,
                FinancePayslip.status == "accrued",
            )
        )
        account = self._salary_account(user_id)
        paid = (
            self.session.scalar(
                select(func.coalesce(func.sum(FinanceEntry.amount), 0))
                .join(FinanceTransaction, FinanceTransaction.id == FinanceEntry.transaction_id)
                .where(
                    FinanceEntry.account_id == account.id,
                    FinanceTransaction.kind == "salary_payout",
                    FinanceEntry.on_date >= start,
                    FinanceEntry.on_date <= end,
                )
            )
            if account is not None
            else 0
        )
        figures = slip.details if slip is not None else _jsonable(self.calculate(user_id, start))
        return {
            "user_id": user_id,
            "employee": user.label,
            "period_start": start,
            "period_end": end,
            "accrued": slip is not None,
            "payslip_id": slip.id if slip else None,
            "fixed_amount": Decimal(figures["fixed_amount"]),
            "commission": Decimal(figures["commission"]),
            "total": Decimal(figures["total"]),
            "groups": figures["groups"],
            "paid_days": figures.get("paid_days"),
            "month_days": figures.get("month_days"),
            "paid_in_period": Decimal(paid),
            "owed": self.owed(user_id),
            "currency": self.finance.base_currency,
        }

    def payslips(self, month: dt.date) -> list[FinancePayslip]:
        """Accrued payslips of a month."""
        self.finance.require("finance_payroll", "read")
        start, _ = month_bounds(month)
        return list(
            self.session.scalars(
                select(FinancePayslip)
                .where(FinancePayslip.period_start == start, FinancePayslip.status == "accrued")
                .order_by(FinancePayslip.user_id)
            )
        )


def _blocked_periods(
    history: list[tuple[str, dt.date]],
) -> list[tuple[dt.date | None, dt.date | None]]:
    """The blocked spans (see :meth:`PayrollService.blocked_periods`) of a user's
    blockings and unblockings, in the order they were made."""
    periods: list[tuple[dt.date | None, dt.date | None]] = []
    since: dt.date | None = None
    blocked = bool(history) and history[0][0] == "unblock"
    for action, day in history:
        if action == "block" and not blocked:
            blocked, since = True, day + dt.timedelta(days=1)
        elif action == "unblock" and blocked:
            last = day - dt.timedelta(days=1)
            if since is None or since <= last:
                periods.append((since, last))
            blocked = False
    if blocked:
        periods.append((since, None))
    return periods


def _days_within(
    periods: list[tuple[dt.date | None, dt.date | None]], start: dt.date, end: dt.date
) -> int:
    """How many days from ``start`` to ``end`` (both included) the spans cover."""
    days = 0
    for first, last in periods:
        lo = start if first is None else max(first, start)
        hi = end if last is None else min(last, end)
        if lo <= hi:
            days += (hi - lo).days + 1
    return days


def _now() -> dt.datetime:
    from crmkit.clock import utcnow

    return utcnow()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
