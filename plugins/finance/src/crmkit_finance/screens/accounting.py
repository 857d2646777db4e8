"""The accountant's screens: salaries, cashback, a client's money movements, expenses.

* ``/finance/payroll?month=YYYY-MM``: every employee's pay scheme, what they earned in the
  month (a preview until accrued), accrual, payouts and what is owed; a payslip per
  employee.  Changing a scheme needs ``finance_pay_scheme`` ``create`` (a cashier, who may
  not even read salaries, gets 404).
* ``/finance/cashback``: the program (percent, expiry) and a client's cashback account
  with its lots and a manual adjustment.
* ``/finance/clients/<id>``: a client's financial transactions (receivable and cashback
  entries with their transactions).
* ``/finance/expenses``: income and expense categories, booking an expense or an income,
  the latest ones.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit.web.contributions import Screen
from crmkit.web.forms import as_id, optional_id
from crmkit.web.pages import posted, render, work
from crmkit_finance import finance
from crmkit_finance.memos import shown_actor, shown_memo
from crmkit_finance.model import (
    FinanceAccount,
    FinanceEntry,
    FinancePayScheme,
    FinanceTransaction,
)
from crmkit_finance.screens import attempt, client_names, found_notes, sent_token
from crmkit_finance.services.forms import new_form_token
from crmkit_finance.services.payroll import BASES, month_bounds

PAYROLL_READ = ("finance_payroll", "read")
CASHBACK_READ = ("finance_cashback", "read")
LEDGER_READ = ("finance_ledger", "read")
LATEST = 50


def parse_month(value: Any, today: dt.date) -> dt.date:
    """``2026-11`` (or a full date) -> the first day of that month; empty: this month."""
    text = str(value or "").strip()
    if not text:
        return today.replace(day=1)
    try:
        return dt.date.fromisoformat(text[:7] + "-01")
    except ValueError:
        raise ValidationFailed(
            {"month": [message("not a month: {value} (YYYY-MM)", value=repr(text))]}
        ) from None


def parse_date(value: Any, field: str, default: dt.date) -> dt.date:
    """An ISO date from a form; empty gives ``default``."""
    text = str(value or "").strip()
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            {field: [message("not a date: {value}", value=repr(text))]}
        ) from None


def _schemes(unit: Any, on_date: dt.date) -> dict[int, Any]:
    """Each user's scheme in force on a date."""
    fin = finance(unit)
    rows = unit.session.scalars(
        select(FinancePayScheme)
        .where(FinancePayScheme.valid_from <= on_date)
        .order_by(FinancePayScheme.user_id, FinancePayScheme.valid_from)
    )
    found = {scheme.user_id: scheme for scheme in rows}  # the latest per user wins
    return {user_id: (scheme, fin.payroll.rates_of(scheme)) for user_id, scheme in found.items()}


def _accrued_figures(slip: Any) -> dict[str, Any]:
    """The figures an accrued payslip stored (what was booked, whatever the scheme is now)."""
    return {
        "fixed_amount": slip.fixed_amount,
        "commission": slip.commission,
        "total": slip.total,
    }


def payroll(request: Request) -> Response:
    """Employees, their schemes and the month's salaries.

    A blocked employee is listed (marked) while the month has their payslip, the month's
    accrual would pay them something (the preview shows exactly what it accrues), or they
    are still owed something (or owe an advance back), so they can be paid out; an accrued
    payslip shows the figures it was accrued with, a month not accrued today's preview.
    """
    with work(request) as unit:
        fin = finance(unit)
        today = fin.business_date(utcnow())
        month = parse_month(request.query_params.get("month"), today)
        _, month_end = month_bounds(month)
        schemes = _schemes(unit, month_end)  # the scheme calculate() applies
        accrued = {slip.user_id: slip for slip in fin.payroll.payslips(month)}
        owed_by_user = fin.payroll.owed_by_user()
        rows = []
        for user in unit.users.list():
            owed = owed_by_user.get(user.id, Decimal("0.00"))
            scheme = schemes.get(user.id)
            slip = accrued.get(user.id)
            if slip is not None:
                figures = _accrued_figures(slip)
            else:
                figures = fin.payroll.calculate(user.id, month) if scheme else None
            to_accrue = figures is not None and slip is None and figures["total"] > 0
            if user.blocked and slip is None and user.id not in owed_by_user and not to_accrue:
                continue
            rows.append(
                {
                    "user": user,
                    "scheme": scheme[0] if scheme else None,
                    "rates": scheme[1] if scheme else {},
                    "figures": figures,
                    "slip": slip,
                    "owed": owed if scheme or slip or owed else None,
                }
            )
        categories = list(unit.records("finance_item_category").list(limit=200))
        # the scheme form is for one employee (``?employee=``, else the first it offers) and
        # holds their scheme as the table shows it, to change rather than type again
        wanted = as_id(request.query_params.get("employee"))
        offered = [row for row in rows if not row["user"].blocked]
        chosen = next(
            (r for r in offered if r["user"].id == wanted), offered[0] if offered else None
        )
        context = {
            "title": "Salaries",
            "chosen": chosen,
            "month": month,
            "rows": rows,
            "totals": _payroll_totals(rows),
            "categories": categories,
            "bases": BASES,
            "currency": fin.base_currency,
            "may_set": fin.can("finance_pay_scheme", "create"),
            "may_accrue": fin.can("finance_payroll", "create"),
            # a month is accrued once it is over, and once only: the button shows while
            # it can do something, else the page says when it can or that it is done
            "accrue_from": month_end + dt.timedelta(days=1) if month_end >= today else None,
            "left_to_accrue": any(
                row["figures"] is not None and row["slip"] is None and row["figures"]["total"] > 0
                for row in rows
            ),
            "may_pay": fin.can("finance_payroll", "pay"),
            "today": today,
            "form_token": new_form_token,
        }
    return render(request, "finance/payroll.html", context)


def _payroll_totals(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    """The sums of the salaries page's money columns: what the rows shown add up to."""
    totals = dict.fromkeys(("fixed_amount", "commission", "total", "owed"), Decimal("0.00"))
    for row in rows:
        for key in ("fixed_amount", "commission", "total"):
            totals[key] += row["figures"][key] if row["figures"] else 0
        totals["owed"] += row["owed"] or 0
    return totals


def set_scheme(request: Request) -> Response:
    """Set an employee's pay scheme from a date on."""
    data = posted(request)

    def set_it(fin: Any) -> Any:
        rates = {
            optional_id(key.removeprefix("rate."), key) or 0: value
            for key, value in data.items()
            if key.startswith("rate.") and key.removeprefix("rate.").strip() and value != ""
        }
        return fin.payroll.set_scheme(
            optional_id(data.get("user_id"), "user_id") or 0,
            fixed_amount=data.get("fixed_amount") or "0",
            percent=data.get("percent") or "0",
            basis=str(data.get("basis") or "lines"),
            include_goods=bool(data.get("include_goods")),
            rates=rates,
            valid_from=parse_date(
                data.get("valid_from"), "valid_from", fin.business_date(utcnow()).replace(day=1)
            ),
        )

    # back to the form for the same employee: it shows the scheme just saved
    employee = as_id(data.get("user_id"))
    back = f"/finance/payroll?employee={employee}#set-scheme" if employee else "/finance/payroll"
    return attempt(request, back, set_it, "Pay scheme saved.")


def accrue(request: Request) -> Response:
    """Accrue a month's salaries."""
    data = posted(request)
    month_text = str(data.get("month", ""))
    back = f"/finance/payroll?month={month_text[:7]}" if month_text else "/finance/payroll"
    return attempt(
        request,
        back,
        lambda fin: fin.payroll.accrue(parse_month(month_text, fin.business_date(utcnow()))),
        "Salaries accrued.",
    )


def pay(request: Request) -> Response:
    """Pay an employee out."""
    data = posted(request)
    return attempt(
        request,
        "/finance/payroll",
        lambda fin: fin.payroll.pay(
            optional_id(data.get("user_id"), "user_id") or 0,
            data.get("amount", ""),
            paid_from=str(data.get("paid_from") or "bank:main"),
            form_token=sent_token(data),
        ),
        "Salary paid.",
    )


def payslip(request: Request) -> Response:
    """An employee's payslip for a month."""
    user_id = int(request.path_params["user_id"])
    with work(request) as unit:
        fin = finance(unit)
        month = parse_month(request.query_params.get("month"), fin.business_date(utcnow()))
        slip = fin.payroll.payslip(user_id, month)
        names = {c.id: c.name for c in unit.records("finance_item_category").list(limit=200)}
    return render(
        request,
        "finance/payslip.html",
        {"title": "Payslip", "slip": slip, "categories": names, "month": month},
    )


def reverse_payslip(request: Request) -> Response:
    """Reverse an accrued payslip (to accrue it again)."""
    payslip_id = int(request.path_params["payslip_id"])
    data = posted(request)
    return attempt(
        request,
        "/finance/payroll",
        lambda fin: fin.payroll.reverse(payslip_id, reason=str(data.get("reason", ""))),
        "Payslip reversed.",
    )


def _phones(party: Any) -> list[str]:
    """The client's phones, the primary one first."""
    points = sorted(
        (c for c in party.contact_points if c.kind == "phone"), key=lambda c: not c.is_primary
    )
    return [c.value for c in points if c.value]


def found_client_notes(unit: Any, parties: list[Any]) -> dict[int, list[str]]:
    """What tells found clients apart for this reader, by client id: their phones when the
    reader may read contact points (the core masks none: it shows them or nothing), then
    what plugins add (:func:`~crmkit_finance.screens.found_notes`, as on the cash desk)."""
    described = found_notes(unit, "party", parties)
    phones = unit.access.can("contact_point", "read")
    return {p.id: [*(_phones(p) if phones else []), *described[p.id]] for p in parties}


def cashback(request: Request) -> Response:
    """The cashback program and, for a found client, their cashback account; each found
    client with what tells namesakes apart (:func:`found_client_notes`)."""
    text = request.query_params.get("q", "").strip()
    party_id = optional_id(request.query_params.get("client"), "client")
    with work(request) as unit:
        fin = finance(unit)
        found = list(unit.parties.list(search=text, limit=20)) if text else []
        notes = found_client_notes(unit, found)
        client = unit.parties.get(party_id) if party_id else None
        context = {
            "title": "Cashback",
            "program": fin.cashback.program(),
            "q": text,
            "found": found,
            "notes": notes,
            "client": client,
            "card": fin.cashback.card(client.id) if client else None,
            "lots": fin.cashback.lots(client.id) if client else [],
            "may_edit": fin.can("finance_cashback", "update"),
            "may_adjust": fin.can("finance_cashback", "create"),
            "may_ledger": fin.can("finance_ledger", "read"),
            "today": fin.business_date(utcnow()),
            "form_token": new_form_token,
        }
    return render(request, "finance/cashback.html", context)


def set_program(request: Request) -> Response:
    """Change the cashback percent and lifetime from a date on."""
    data = posted(request)

    def set_it(fin: Any) -> Any:
        days = str(data.get("expiry_days") or "").strip()
        if not (days.isascii() and days.isdigit()):  # "²" is a digit int() refuses
            raise ValidationFailed({"expiry_days": [message("a number of days")]})
        return fin.cashback.set_program(
            data.get("percent") or "0",
            expiry_days=days,  # bounded by the service
            valid_from=parse_date(
                data.get("valid_from"), "valid_from", fin.business_date(utcnow())
            ),
        )

    return attempt(
        request,
        "/finance/cashback",
        set_it,
        "Cashback program saved.",
        labels={"expiry_days": "Expires after, days", "percent": "Percent", "valid_from": "From"},
    )


def adjust_cashback(request: Request) -> Response:
    """Give or take a client's cashback by hand, with a reason."""
    party_id = int(request.path_params["party_id"])
    data = posted(request)
    return attempt(
        request,
        f"/finance/cashback?client={party_id}",
        lambda fin: fin.cashback.adjust(
            party_id,
            data.get("amount", ""),
            reason=str(data.get("reason", "")),
            form_token=sent_token(data),
        ),
        "Cashback adjusted.",
    )


def client_transactions(request: Request) -> Response:
    """A client's money movements: receivable and cashback entries, newest first."""
    party_id = int(request.path_params["party_id"])
    with work(request) as unit:
        fin = finance(unit)
        fin.require("finance_ledger", "read")
        party = unit.parties.get(party_id)
        ledger = fin.ledger
        accounts = {
            "receivable": ledger.receivable(party.id),
            "cashback": ledger.cashback(party.id),
        }
        rows = []
        for name, account in accounts.items():
            for entry, transaction in unit.session.execute(
                select(FinanceEntry, FinanceTransaction)
                .join(FinanceTransaction, FinanceTransaction.id == FinanceEntry.transaction_id)
                .where(FinanceEntry.account_id == account.id)
                .order_by(FinanceEntry.id.desc())
                .limit(200)
            ):
                rows.append({"account": name, "entry": entry, "transaction": transaction})
        rows.sort(key=lambda r: (r["transaction"].at, r["entry"].id), reverse=True)
        balances = {name: ledger.balances(account) for name, account in accounts.items()}
    return render(
        request,
        "finance/client_transactions.html",
        {
            "title": "Financial transactions",
            "party": party,
            "rows": rows,
            "balances": balances,
            "memo": shown_memo,
            "shown_actor": shown_actor,
        },
    )


def expenses(request: Request) -> Response:
    """Expense and income categories, the booking form, the latest bookings."""
    with work(request) as unit:
        fin = finance(unit)
        ledger = fin.ledger
        expense_categories = ledger.categories("expense")
        income_categories = ledger.categories("income")
        money_accounts = list(
            unit.session.scalars(
                select(FinanceAccount)
                .where(FinanceAccount.kind.in_(("cash", "bank")), FinanceAccount.active.is_(True))
                .order_by(FinanceAccount.code)
            )
        )
        latest = list(
            unit.session.scalars(
                select(FinanceTransaction)
                .where(FinanceTransaction.kind.in_(("expense", "income")))
                .order_by(FinanceTransaction.id.desc())
                .limit(LATEST)
            )
        )
        legs = {t.id: ledger.legs_of(t) for t in latest}
        context = {
            "title": "Expenses",
            "expense_categories": expense_categories,
            "income_categories": income_categories,
            "money_accounts": money_accounts,
            "latest": latest,
            "legs": legs,
            "clients": client_names(unit, (t.party_id for t in latest)),
            "currency": fin.base_currency,
            "may_book": fin.can("finance_ledger", "create"),
            "form_token": new_form_token,
            "memo": shown_memo,
            "shown_actor": shown_actor,
        }
    return render(request, "finance/expenses.html", context)


def book(request: Request) -> Response:
    """Book an expense (or an income) in a category."""
    data = posted(request)
    kind = str(data.get("kind") or "expense")

    def book_it(fin: Any) -> Any:
        account = str(data.get("account") or "bank:main")
        note = str(data.get("note", ""))
        token = sent_token(data)
        if kind == "income":
            return fin.expenses.income(
                str(data.get("category", "")),
                data.get("amount", ""),
                received_into=account,
                note=note,
                form_token=token,
            )
        return fin.expenses.expense(
            str(data.get("category", "")),
            data.get("amount", ""),
            paid_from=account,
            note=note,
            form_token=token,
        )

    return attempt(request, "/finance/expenses", book_it, "Booked.")


def add_category(request: Request) -> Response:
    """A new income or expense category."""
    data = posted(request)
    return attempt(
        request,
        "/finance/expenses",
        lambda fin: fin.ledger.add_category(
            str(data.get("kind") or "expense"), str(data.get("name", ""))
        ),
        "Category added.",
    )


def _post(name: str, path: str, endpoint: Any, permission: tuple[str, str]) -> Screen:
    return Screen(name, path, name, endpoint, methods=("POST",), permission=permission)


SCREENS = [
    Screen("finance_payroll", "/finance/payroll", "Salaries", payroll, permission=PAYROLL_READ),
    Screen(
        "finance_payslip",
        "/finance/payroll/{user_id:id}",
        "Payslip",
        payslip,
        permission=PAYROLL_READ,
    ),
    _post(
        "finance_scheme_set",
        "/finance/payroll/schemes",
        set_scheme,
        ("finance_pay_scheme", "create"),
    ),
    _post("finance_accrue", "/finance/payroll/accrue", accrue, ("finance_payroll", "create")),
    _post("finance_salary_pay", "/finance/payroll/pay", pay, ("finance_payroll", "pay")),
    _post(
        "finance_payslip_reverse",
        "/finance/payroll/payslips/{payslip_id:id}/reverse",
        reverse_payslip,
        ("finance_payroll", "reverse"),
    ),
    Screen("finance_cashback", "/finance/cashback", "Cashback", cashback, permission=CASHBACK_READ),
    _post(
        "finance_cashback_program",
        "/finance/cashback/program",
        set_program,
        ("finance_cashback", "update"),
    ),
    _post(
        "finance_cashback_adjust",
        "/finance/cashback/{party_id:id}/adjust",
        adjust_cashback,
        ("finance_cashback", "create"),
    ),
    Screen(
        "finance_client_transactions",
        "/finance/clients/{party_id:id}",
        "Financial transactions",
        client_transactions,
        permission=LEDGER_READ,
    ),
    Screen("finance_expenses", "/finance/expenses", "Expenses", expenses, permission=LEDGER_READ),
    _post("finance_book", "/finance/expenses", book, ("finance_ledger", "create")),
    _post(
        "finance_category_add",
        "/finance/expenses/categories",
        add_category,
        ("finance_ledger", "create"),
    ),
]
