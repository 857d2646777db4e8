"""The double-entry ledger: every money movement is a balanced, immutable transaction.

A transaction has two or more entries (legs); a positive amount debits an account, a
negative one credits it, and the legs of a transaction add up to zero **in each currency**
(a conversion goes through the ``equity:exchange`` account, so no currency is ever created
or lost).  The balance of any account (a cash drawer, a client's receivable, a cashback
account, a supplier's payable, an employee's salary account, an income or expense
category) is the sum of its entries; nothing else stores it.  Entries are never changed: a
correction is a new transaction with the legs negated (:meth:`LedgerService.reverse`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite

from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import Label, message
from crmkit.services.limits import refuse_long_texts
from crmkit_finance.model import (
    FinanceAccount,
    FinanceCashDesk,
    FinanceEntry,
    FinanceTransaction,
)
from crmkit_finance.money import round_money, unsigned_zero

if TYPE_CHECKING:
    from crmkit_finance.services import Finance

#: Account kinds and the sign of their normal balance (+1 debit, -1 credit).
ACCOUNT_KINDS: dict[str, int] = {
    "cash": 1,  # a cash drawer
    "card": 1,  # card payments not yet settled to the bank
    "bank": 1,  # a bank account
    "receivable": 1,  # what a client owes (negative: a prepayment)
    "inventory": 1,  # goods in stock, at cost
    "wip": 1,  # goods issued to open orders
    "fixed_asset": 1,  # equipment at cost
    "accumulated_amortization": -1,  # contra-asset
    "payable": -1,  # what we owe a supplier
    "salary": -1,  # what we owe an employee
    "cashback": -1,  # cashback a client may still spend
    "income": -1,
    "expense": 1,
    "equity": -1,
}

#: Kinds whose balances count as money the business holds (cash flow reports).
MONEY_KINDS = ("cash", "card", "bank")

#: System accounts every deployment has: code -> (kind, name).  The names are kept in
#: English and marked (``Label``) for the catalogs: reports translate them for the reader.
SYSTEM_ACCOUNTS: dict[str, tuple[str, str]] = {
    "bank:main": ("bank", Label("Bank account")),
    "income:services": ("income", Label("Services revenue")),
    "income:goods": ("income", Label("Goods revenue")),
    "income:other": ("income", Label("Other income")),
    "expense:cogs": ("expense", Label("Cost of goods sold")),
    "expense:salary": ("expense", Label("Salaries")),
    "expense:cashback": ("expense", Label("Cashback")),
    "expense:amortization": ("expense", Label("Amortization")),
    "expense:shrinkage": ("expense", Label("Stock shortages and write-offs")),
    "expense:cash_difference": ("expense", Label("Cash surplus and shortage")),
    "expense:rent": ("expense", Label("Rent")),
    "expense:utilities": ("expense", Label("Utilities")),
    "expense:other": ("expense", Label("Other expenses")),
    "inventory:stock": ("inventory", Label("Goods in stock")),
    "wip:orders": ("wip", Label("Goods issued to open orders")),
    "fixed_asset:equipment": ("fixed_asset", Label("Equipment")),
    "accumulated_amortization:equipment": (
        "accumulated_amortization",
        Label("Amortization of equipment"),
    ),
    "equity:opening": ("equity", Label("Opening balances")),
    "equity:exchange": ("equity", Label("Currency exchange")),
}


@attrs.frozen
class Leg:
    """One side of a transaction: ``amount`` debits ``account`` when positive, credits it
    when negative."""

    account: FinanceAccount
    amount: Decimal
    currency: str


def debit(account: FinanceAccount, amount: Decimal, currency: str) -> Leg:
    """A leg adding ``amount`` to the debit side of ``account``."""
    return Leg(account, amount, currency)


def credit(account: FinanceAccount, amount: Decimal, currency: str) -> Leg:
    """A leg adding ``amount`` to the credit side of ``account``."""
    return Leg(account, -amount, currency)


def normal_balance(kind: str, raw: Decimal) -> Decimal:
    """A raw (debit-positive) balance shown with the sign natural to the account kind (a
    zero balance is 0.00 either way, not -0.00)."""
    return unsigned_zero(raw * ACCOUNT_KINDS[kind])


class LedgerService:
    """Accounts, posting, balances and reversals.  Reached as ``finance(work).ledger``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self._accounts: dict[str, FinanceAccount] = {}  # by code, for this unit of work

    @property
    def session(self) -> Any:
        return self.work.session

    # -- accounts --------------------------------------------------------------------

    def account(
        self,
        code: str,
        *,
        kind: str | None = None,
        name: str | None = None,
        party_id: int | None = None,
        user_id: int | None = None,
        desk_id: int | None = None,
    ) -> FinanceAccount:
        """The account ``code``, created on first use (safe against a concurrent creator).

        System accounts (:data:`SYSTEM_ACCOUNTS`) need only their code.
        """
        cached = self._accounts.get(code)
        if cached is not None and inspect(cached).persistent:  # not undone by a savepoint
            return cached
        found = self.session.scalar(select(FinanceAccount).where(FinanceAccount.code == code))
        if found is not None:
            self._accounts[code] = found
            return found
        system = code in SYSTEM_ACCOUNTS
        if system:
            kind, default_name = SYSTEM_ACCOUNTS[code]
            name = name or default_name
        if kind not in ACCOUNT_KINDS:
            raise ValidationFailed(
                {"kind": [message("unknown account kind {kind}", kind=repr(kind))]}
            )
        values = {
            "code": code,
            "kind": kind,
            "name": name or code,
            "party_id": party_id,
            "user_id": user_id,
            "desk_id": desk_id,
            "system": system,
            "active": True,
            "created_at": utcnow(),
        }
        dialect = self.session.get_bind().dialect.name
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(FinanceAccount)
        self.session.execute(
            insert.values(**values).on_conflict_do_nothing(index_elements=["code"])
        )
        created = self.session.scalar(select(FinanceAccount).where(FinanceAccount.code == code))
        self._accounts[code] = created
        return created

    def receivable(self, party_id: int) -> FinanceAccount:
        """What a client owes us (a negative balance is money they paid in advance)."""
        return self.account(
            f"receivable:party:{party_id}",
            kind="receivable",
            name=Label("Receivable"),
            party_id=party_id,
        )

    def cashback(self, party_id: int) -> FinanceAccount:
        """The cashback a client may still spend."""
        return self.account(
            f"cashback:party:{party_id}", kind="cashback", name=Label("Cashback"), party_id=party_id
        )

    def payable(self, party_id: int) -> FinanceAccount:
        """What we owe a supplier."""
        return self.account(
            f"payable:party:{party_id}", kind="payable", name=Label("Payable"), party_id=party_id
        )

    def salary(self, user_id: int) -> FinanceAccount:
        """Salary accrued to an employee and not yet paid out."""
        return self.account(
            f"salary:user:{user_id}", kind="salary", name=Label("Salary"), user_id=user_id
        )

    def desk_account(self, desk_id: int, method: str) -> FinanceAccount:
        """The cash drawer (``cash``) or card terminal (``card``) of a desk."""
        if method not in ("cash", "card"):
            raise ValueError(method)
        return self.account(
            f"{method}:desk:{desk_id}",
            kind=method,
            name=Label("Cash drawer") if method == "cash" else Label("Card terminal"),
            desk_id=desk_id,
        )

    def categories(self, kind: str) -> list[FinanceAccount]:
        """Income or expense categories (accounts of that kind), by name."""
        if kind not in ("income", "expense"):
            raise ValidationFailed({"kind": [message("income or expense")]})
        self.ensure_system_accounts()
        return list(
            self.session.scalars(
                select(FinanceAccount)
                .where(FinanceAccount.kind == kind, FinanceAccount.active.is_(True))
                .order_by(FinanceAccount.name)
            )
        )

    def add_category(self, kind: str, name: str, code: str | None = None) -> FinanceAccount:
        """A new income or expense category (``expense:insurance``...)."""
        self.finance.require("finance_ledger", "create")
        if kind not in ("income", "expense"):
            raise ValidationFailed({"kind": [message("income or expense")]})
        if not (name or "").strip():
            raise ValidationFailed({"name": [message("a category needs a name")]})
        refuse_long_texts(FinanceAccount, name=name.strip(), code=code)
        code = code or f"{kind}:{_slug(name)}"
        if not code.startswith(f"{kind}:"):
            raise ValidationFailed(
                {"code": [message("the code of a {kind} category starts with {kind}:", kind=kind)]}
            )
        if self.session.scalar(select(FinanceAccount.id).where(FinanceAccount.code == code)):
            raise ValidationFailed({"code": [message("category {code} exists", code=code)]})
        account = self.account(code, kind=kind, name=name.strip())
        self.work.audit("finance_ledger", account.id, "create", {"code": [None, code]})
        return account

    def ensure_system_accounts(self) -> None:
        """Create any missing system account (cheap when they exist)."""
        existing = set(
            self.session.scalars(
                select(FinanceAccount.code).where(FinanceAccount.code.in_(list(SYSTEM_ACCOUNTS)))
            )
        )
        for code in SYSTEM_ACCOUNTS:
            if code not in existing:
                self.account(code)

    def get_account(self, code_or_id: str | int) -> FinanceAccount:
        """An account by code or id."""
        if isinstance(code_or_id, int):
            found = self.session.get(FinanceAccount, code_or_id)
        elif code_or_id in SYSTEM_ACCOUNTS:
            found = self.account(code_or_id)
        else:
            found = self.session.scalar(
                select(FinanceAccount).where(FinanceAccount.code == code_or_id)
            )
        if found is None:
            raise NotFound("finance_account", code_or_id)
        return found

    def named_account(self, code_or_id: str | int, field: str) -> FinanceAccount:
        """The account a form or a caller named in ``field``: an unknown one is refused
        naming the field (a mistyped choice, not a missing page); a desk's cash drawer
        (``cash:desk:<id>``) is found before its first cash, as :meth:`desk_account` makes it."""
        try:
            return self.get_account(code_or_id)
        except NotFound:
            code = str(code_or_id)
            desk_id = code.removeprefix("cash:desk:")
            if (
                code.startswith("cash:desk:")
                and desk_id.isdigit()
                and self.session.get(FinanceCashDesk, int(desk_id)) is not None
            ):
                return self.desk_account(int(desk_id), "cash")
            raise ValidationFailed(
                {field: [message("no account {account}", account=code)]}
            ) from None

    # -- posting ---------------------------------------------------------------------

    def post(
        self,
        kind: str,
        legs: Iterable[Leg],
        *,
        memo: str = "",
        record: tuple[str, int] | None = None,
        party_id: int | None = None,
        at: dt.datetime | None = None,
        reverses: FinanceTransaction | None = None,
        shift: Any = None,
    ) -> FinanceTransaction:
        """Write one balanced transaction; ``ValidationFailed`` (nothing written) otherwise.

        ``shift``: the cash desk shift whose drawer it pays from or into (its report lists it).

        Legs of zero are dropped and legs on the same account and currency are merged.
        Every amount must already be at its currency's minor unit.
        """
        merged: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
        accounts: dict[int, FinanceAccount] = {}
        for leg in legs:
            if round_money(leg.amount, leg.currency) != leg.amount:
                raise ValidationFailed(
                    {
                        "amount": [
                            message(
                                "{amount} is not a whole number of {currency} units",
                                amount=leg.amount,
                                currency=leg.currency,
                            )
                        ]
                    }
                )
            accounts[leg.account.id] = leg.account
            merged[(leg.account.id, leg.currency)] += leg.amount
        lines = [(key, amount) for key, amount in merged.items() if amount != 0]
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for (_, currency), amount in lines:
            sums[currency] += amount
        unbalanced = {c: s for c, s in sums.items() if s != 0}
        if unbalanced:
            detail = ", ".join(f"{s} {c}" for c, s in unbalanced.items())
            raise ValidationFailed(
                {"legs": [message("the transaction does not balance ({detail})", detail=detail)]}
            )
        if not lines:
            raise ValidationFailed({"legs": [message("a transaction moves some money")]})
        when = at or utcnow()
        on_date = self.finance.business_date(when)
        actor = self.work.actor
        transaction = FinanceTransaction(
            at=when,
            on_date=on_date,
            kind=kind,
            memo=memo,
            actor_id=actor.user_id,
            actor_label=actor.label,
            party_id=party_id,
            record_entity=record[0] if record else None,
            record_id=record[1] if record else None,
            reverses_id=reverses.id if reverses is not None else None,
            shift_id=shift.id if shift is not None else None,
        )
        self.session.add(transaction)
        self.work.flush()
        self.session.add_all(
            FinanceEntry(
                transaction_id=transaction.id,
                account_id=account_id,
                currency=currency,
                amount=amount,
                on_date=on_date,
            )
            for (account_id, currency), amount in lines
        )
        self.work.flush()
        return transaction

    def legs_of(self, transaction: FinanceTransaction | int) -> list[Leg]:
        """The legs of a posted transaction."""
        transaction_id = transaction if isinstance(transaction, int) else transaction.id
        rows = self.session.execute(
            select(FinanceEntry, FinanceAccount)
            .join(FinanceAccount, FinanceAccount.id == FinanceEntry.account_id)
            .where(FinanceEntry.transaction_id == transaction_id)
            .order_by(FinanceEntry.id)
        )
        return [Leg(account, entry.amount, entry.currency) for entry, account in rows]

    def reverse(
        self,
        transaction: FinanceTransaction | int,
        *,
        memo: str = "",
        kind: str | None = None,
        check_kind: bool = True,
    ) -> FinanceTransaction:
        """Undo a transaction with a new one whose legs are negated (at most once).

        Only journal transactions (expenses, income, manual postings, payouts) may be
        reversed here; a payment, an order charge or a stock move is corrected through its
        own service (void, refund, remove the line, return the goods), which keeps its
        records in step with the ledger.
        """
        original = self.get(transaction)
        if check_kind:
            self.finance.require("finance_ledger", "reverse")
            if original.kind not in JOURNAL_KINDS:
                raise ValidationFailed(
                    {
                        "transaction": [
                            message(
                                "a {kind} is corrected through its own service",
                                kind=Label(original.kind),
                            )
                        ]
                    }
                )
        if original.reverses_id is not None and check_kind:
            raise ValidationFailed(
                {"transaction": [message("a reversal cannot itself be reversed")]}
            )
        if self.session.scalar(
            select(FinanceTransaction.id).where(FinanceTransaction.reverses_id == original.id)
        ):
            raise ValidationFailed(
                {
                    "transaction": [
                        message("transaction {transaction} is reversed", transaction=original.id)
                    ]
                }
            )
        legs = [Leg(leg.account, -leg.amount, leg.currency) for leg in self.legs_of(original)]
        reversal = self.post(
            kind or original.kind,
            legs,
            memo=memo or f"reversal of #{original.id}",
            record=(original.record_entity, original.record_id) if original.record_entity else None,
            party_id=original.party_id,
            reverses=original,
        )
        self.work.audit(
            "finance_ledger", original.id, "reverse", {"reversed_by": [None, reversal.id]}
        )
        return reversal

    def get(self, transaction: FinanceTransaction | int) -> FinanceTransaction:
        """A transaction by id."""
        if isinstance(transaction, FinanceTransaction):
            return transaction
        found = self.session.get(FinanceTransaction, transaction)
        if found is None:
            raise NotFound("finance_transaction", transaction)
        return found

    def journal(
        self,
        *,
        kinds: Sequence[str] = ("manual",),
        account: FinanceAccount | None = None,
        memo: str = "",
        legs: Sequence[tuple[str, Decimal | str, str]] = (),
    ) -> FinanceTransaction:
        """A manual posting by the accountant: ``legs`` are (account code, amount, currency)."""
        self.finance.require("finance_ledger", "create")
        from crmkit_finance.money import exact_money

        prepared = [
            Leg(self.get_account(code), exact_money(amount, currency), currency)
            for code, amount, currency in legs
        ]
        transaction = self.post("manual", prepared, memo=memo)
        self.work.audit("finance_ledger", transaction.id, "create", {"memo": [None, memo]})
        return transaction

    # -- balances --------------------------------------------------------------------

    def raw_balance(
        self, account: FinanceAccount | int, currency: str, *, until: dt.date | None = None
    ) -> Decimal:
        """The sum of an account's entries in ``currency`` (debits positive)."""
        account_id = account if isinstance(account, int) else account.id
        statement = select(func.coalesce(func.sum(FinanceEntry.amount), 0)).where(
            FinanceEntry.account_id == account_id, FinanceEntry.currency == currency
        )
        if until is not None:
            statement = statement.where(FinanceEntry.on_date <= until)
        value = self.session.scalar(statement)
        return as_amount(value)

    def balance(
        self, account: FinanceAccount, currency: str, *, until: dt.date | None = None
    ) -> Decimal:
        """An account's balance in ``currency`` with the sign natural to its kind."""
        return normal_balance(account.kind, self.raw_balance(account, currency, until=until))

    def balances(self, account: FinanceAccount) -> dict[str, Decimal]:
        """An account's balance in every currency it has entries in (natural sign)."""
        rows = self.session.execute(
            select(FinanceEntry.currency, func.sum(FinanceEntry.amount))
            .where(FinanceEntry.account_id == account.id)
            .group_by(FinanceEntry.currency)
        )
        return {c: normal_balance(account.kind, as_amount(s)) for c, s in rows}

    def entries(self, account: FinanceAccount, *, limit: int = 200) -> list[FinanceEntry]:
        """An account's latest entries, newest first."""
        return list(
            self.session.scalars(
                select(FinanceEntry)
                .where(FinanceEntry.account_id == account.id)
                .order_by(FinanceEntry.id.desc())
                .limit(limit)
            )
        )

    def trial_balance(self) -> list[dict[str, Any]]:
        """Every account's balance per currency (raw, debit-positive) — sums to zero."""
        self.finance.require("finance_ledger", "read")
        rows = self.session.execute(
            select(
                FinanceAccount.code,
                FinanceAccount.kind,
                FinanceAccount.name,
                FinanceEntry.currency,
                func.sum(FinanceEntry.amount),
            )
            .join(FinanceAccount, FinanceAccount.id == FinanceEntry.account_id)
            .group_by(
                FinanceAccount.code, FinanceAccount.kind, FinanceAccount.name, FinanceEntry.currency
            )
            .order_by(FinanceAccount.code, FinanceEntry.currency)
        )
        return [
            {"code": code, "kind": kind, "name": name, "currency": cur, "balance": as_amount(s)}
            for code, kind, name, cur, s in rows
        ]

    def check(self) -> list[str]:
        """Problems found in the ledger (empty when sound): unbalanced transactions."""
        problems = []
        rows = self.session.execute(
            select(
                FinanceEntry.transaction_id, FinanceEntry.currency, func.sum(FinanceEntry.amount)
            )
            .group_by(FinanceEntry.transaction_id, FinanceEntry.currency)
            .having(func.sum(FinanceEntry.amount) != 0)
        )
        for transaction_id, currency, amount in rows:
            problems.append(
                f"transaction {transaction_id} is off by {as_amount(amount)} {currency}"
            )
        return problems


#: Transactions that only the ledger knows about, so that reversing them is the correction.
JOURNAL_KINDS = (
    "manual",
    "expense",
    "income",
    "salary_payout",
    "supplier_payment",
    "cash_in",
    "cash_out",
    "transfer",
)


def as_amount(value: Any) -> Decimal:
    """A SUM over an ``Amount`` column as a Decimal with two places (``None`` is zero).

    SQLAlchemy gives ``SUM``/``COALESCE`` the column's type, so the value arrives already
    converted from minor units.
    """
    return Decimal(value or 0).quantize(Decimal("0.01"))


def _slug(name: str) -> str:
    import re
    import unicodedata

    folded = unicodedata.normalize("NFKD", name.casefold())
    slug = re.sub(r"[^\w]+", "_", folded).strip("_")
    return slug[:80] or "category"


def summed(rows: Iterable[Mapping[str, Any]], key: str) -> Decimal:
    """The sum of ``key`` over rows (for report totals)."""
    return sum((Decimal(r[key] or 0) for r in rows), Decimal(0))
