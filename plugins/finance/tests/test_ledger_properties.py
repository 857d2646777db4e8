"""Property test: whatever people do, the books balance and no money appears or vanishes.

Hypothesis drives random sequences of real operations (orders with services and goods,
completion, reopening, cancellation, lines removed, payments by every method, refunds,
voids, receipts, write-offs, expenses and their reversals, shifts with miscounted cash,
cashback expiry) through the services, against a real database.  Operations the services
refuse are part of the game: a refused one must leave nothing behind.  After every step:

* every account's balance, as the services report it, equals the sum of its entries read
  back independently;
* in each currency, all entries together sum to zero (nothing created or lost), and every
  transaction balances on its own;
* the operational records agree with the ledger: stock value with the inventory account,
  goods issued to open orders with their account, cashback lots with cashback accounts,
  each client's receivable with (recognized lines - payments), the drawer with cash
  payments and counted differences.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import defaultdict
from decimal import Decimal

import pytest
from crmkit_finance import finance
from crmkit_finance import plugin as finance_plugin
from crmkit_finance.integrity import problems
from crmkit_finance.model import (
    FinanceAccount,
    FinanceEntry,
    FinanceOrderLine,
    FinancePayment,
    FinanceTransaction,
)
from finance_fixtures import build_shop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from crmkit import testing
from crmkit.errors import CrmkitError


def machine_for(db: str, root):
    counter = itertools.count()

    class Books:
        """Random business days of a small shop."""

        def __init__(self):
            self.crm = testing.make_crm(
                [finance_plugin], db=db, directory=root / f"b{next(counter)}"
            )
            self.shop = build_shop(self.crm)
            self.orders: list[int] = []
            self.payments: list[int] = []
            self.expenses: list[int] = []
            self.drawer = Decimal(0)  # what the cash drawer should hold, tracked by hand
            with self.crm.acting_as(self.shop.cashier) as work:
                self.shift = finance(work).cashdesk.open_shift(self.shop.desk.id, counted="0").id

        def teardown(self):
            crm = getattr(self, "crm", None)
            if crm is not None:
                crm.close()

        def attempt(self, who, action):
            """Run ``action(work)`` as ``who``; a refusal must leave nothing written."""
            try:
                with self.crm.acting_as(who) as work:
                    return action(work)
            except CrmkitError:
                return None

        # -- operations ---------------------------------------------------------------

        def take_order(self, services, oil, discount):
            shop = self.shop

            def act(work):
                fin = finance(work)
                order = shop.order(work, discount_percent=discount)
                fin.orders.add_line(order, shop.oil_change.id)
                if services > 1:
                    fin.orders.add_line(order, shop.diagnostics.id, discount="100.00")
                if oil != "0":
                    fin.orders.add_line(order, shop.oil.id, qty=oil)
                return order.id

            order_id = self.attempt(shop.manager, act)
            if order_id:
                self.orders.append(order_id)

        def move(self, pick, stage):
            if not self.orders:
                return
            order_id = self.orders[pick % len(self.orders)]
            self.attempt(
                self.shop.manager,
                lambda work: work.moves.move(
                    order_id, stage, entity="finance_order", comment="why"
                ),
            )

        def change_lines(self, pick, extra):
            if not self.orders:
                return
            order_id = self.orders[pick % len(self.orders)]

            def act(work):
                fin = finance(work)
                if extra:
                    fin.orders.add_line(order_id, self.shop.diagnostics.id)
                else:
                    lines = [ln for ln in fin.orders.lines(order_id) if ln.reverses_line_id is None]
                    if lines:
                        fin.orders.remove_line(lines[pick % len(lines)], reason="changed mind")

            self.attempt(self.shop.manager, act)

        def pay(self, pick, fraction, method):
            if not self.orders:
                return
            order_id = self.orders[pick % len(self.orders)]

            def act(work):
                fin = finance(work)
                due = fin.orders.totals(order_id).due
                amount = (due * fraction).quantize(Decimal("0.01"))
                if method == "cashback":
                    amount = min(amount, fin.cashback.balance(self.shop.client.id))
                if amount <= 0:
                    return None
                payment = fin.payments.take(
                    order_id=order_id, amount=amount, method=method, desk_id=self.shop.desk.id
                )
                return payment.id, method, amount

            done = self.attempt(self.shop.cashier, act)
            if done:
                self.payments.append(done[0])
                if done[1] == "cash":
                    self.drawer += done[2]

        def give_back(self, pick, fraction, void):
            if not self.payments:
                return
            payment_id = self.payments[pick % len(self.payments)]

            def act(work):
                fin = finance(work)
                payment = fin.payments.get(payment_id)
                if void:
                    fin.payments.void(payment_id, reason="mistake")
                    return payment.method, payment.amount
                amount = ((payment.amount - fin.payments.refunded(payment)) * fraction).quantize(
                    Decimal("0.01")
                )
                if amount <= 0:
                    return None
                fin.payments.refund(payment_id, amount)
                return payment.method, amount

            done = self.attempt(self.shop.cashier, act)
            if done and done[0] == "cash":
                self.drawer -= done[1]

        def receive(self, qty, cost):
            shop = self.shop
            self.attempt(
                shop.warehouse,
                lambda work: finance(work).stock.receive(shop.oil.id, shop.branch.id, qty, cost),
            )

        def write_off(self, qty):
            shop = self.shop
            self.attempt(
                shop.warehouse,
                lambda work: finance(work).stock.write_off(
                    shop.oil.id, shop.branch.id, qty, reason="x"
                ),
            )

        def expense(self, amount, reverse):
            def act(work):
                fin = finance(work)
                if reverse and self.expenses:
                    fin.ledger.reverse(self.expenses.pop(), memo="wrong")
                    return None
                return fin.expenses.expense("expense:rent", amount).id

            done = self.attempt(self.shop.accountant, act)
            if done:
                self.expenses.append(done)

        def next_shift(self, miscount):
            def act(work):
                desk = finance(work).cashdesk
                counted = self.drawer + Decimal(miscount)
                if counted < 0:
                    return None
                desk.close_shift(self.shift, counted=counted)
                return desk.open_shift(self.shop.desk.id, counted=counted).id

            done = self.attempt(self.shop.cashier, act)
            if done:
                self.shift = done
                self.drawer += Decimal(miscount)

        def cashback(self, percent, days):
            def act(work):
                fin = finance(work)
                fin.cashback.set_program(percent, 10, valid_from=dt.date(2020, 1, 1))
                fin.cashback.expire(dt.datetime.now(dt.UTC) + dt.timedelta(days=days))

            self.attempt(self.shop.accountant, act)

        # -- invariants -----------------------------------------------------------------

        def books_balance(self):
            with self.crm.system() as work:
                fin = finance(work)
                session = work.session
                by_account = defaultdict(Decimal)
                by_currency = defaultdict(Decimal)
                by_transaction = defaultdict(Decimal)
                for account_id, transaction_id, currency, amount in session.execute(
                    select(
                        FinanceEntry.account_id,
                        FinanceEntry.transaction_id,
                        FinanceEntry.currency,
                        FinanceEntry.amount,
                    )
                ):
                    by_account[(account_id, currency)] += amount
                    by_currency[currency] += amount
                    by_transaction[(transaction_id, currency)] += amount
                assert all(v == 0 for v in by_currency.values()), dict(by_currency)
                assert all(v == 0 for v in by_transaction.values())
                for account in session.scalars(select(FinanceAccount)):
                    for currency in ("RUB",):
                        assert (
                            fin.ledger.raw_balance(account, currency)
                            == by_account[(account.id, currency)]
                        ), account.code
                assert problems(work) == []
                ledger = fin.ledger
                client = self.shop.client.id
                charged = session.scalar(
                    select(func.coalesce(func.sum(FinanceOrderLine.amount), 0)).where(
                        FinanceOrderLine.recognized_on.is_not(None)
                    )
                )
                paid = session.scalar(
                    select(func.coalesce(func.sum(FinancePayment.order_amount), 0))
                )
                assert ledger.balance(ledger.receivable(client), "RUB") == charged - paid
                assert fin.cashdesk.drawer_balance(self.shop.desk) == self.drawer
                reversed_twice = session.scalar(
                    select(func.count())
                    .select_from(FinanceTransaction)
                    .where(FinanceTransaction.reverses_id.is_not(None))
                    .group_by(FinanceTransaction.reverses_id)
                    .having(func.count() > 1)
                )
                assert reversed_twice is None

    return Books


#: Operations and how often a business day has them (payments and completions are common).
WEIGHTS = {
    "take_order": 5,
    "move": 6,
    "change_lines": 3,
    "pay": 6,
    "give_back": 2,
    "receive": 2,
    "write_off": 1,
    "expense": 2,
    "next_shift": 1,
    "cashback": 1,
}


def arguments(name: str, rng) -> dict:
    """Arguments of one operation, drawn from ``rng`` (a hypothesis-controlled Random)."""
    pick = rng.randrange(10_000)
    fraction = rng.choice(
        [Decimal("0.1"), Decimal("0.33"), Decimal("0.5"), Decimal("1"), Decimal("1")]
    )
    return {
        "take_order": lambda: {
            "services": rng.randint(1, 2),
            "oil": rng.choice(["0", "0.5", "2", "12"]),
            "discount": rng.choice(["0", "5", "12.5"]),
        },
        "move": lambda: {
            "pick": pick,
            "stage": rng.choice(["done", "done", "in_work", "cancelled", "new"]),
        },
        "change_lines": lambda: {"pick": pick, "extra": rng.random() < 0.5},
        "pay": lambda: {
            "pick": pick,
            "fraction": fraction,
            "method": rng.choice(["cash", "card", "transfer", "cashback"]),
        },
        "give_back": lambda: {"pick": pick, "fraction": fraction, "void": rng.random() < 0.4},
        "receive": lambda: {
            "qty": rng.choice(["1", "2.5", "7"]),
            "cost": rng.choice(["333.33", "410.00", "0.01"]),
        },
        "write_off": lambda: {"qty": rng.choice(["0.5", "1", "3"])},
        "expense": lambda: {
            "amount": Decimal(rng.randint(1, 500_000)) / 100,
            "reverse": rng.random() < 0.3,
        },
        "next_shift": lambda: {"miscount": rng.choice(["0", "-10.00", "0.01"])},
        "cashback": lambda: {"percent": rng.choice(["0", "3", "10"]), "days": rng.randint(-2, 30)},
    }[name]()


@pytest.mark.slow
def test_no_sequence_of_operations_creates_or_loses_money(db_backend, tmp_path):
    if db_backend == "postgresql":
        testing.require(testing.postgres_reachable(), "PostgreSQL")
    Books = machine_for(db_backend, tmp_path)
    names = list(WEIGHTS)

    @settings(
        max_examples=12 if db_backend == "sqlite" else 5,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    # A seeded Random rather than hypothesis's own draws: its first, "simplest" examples
    # would be days where nothing gets paid.  A failure reports the seed and the length,
    # and hypothesis shrinks the length to the shortest failing day.
    @given(seed=st.integers(0, 2**32 - 1), length=st.integers(10, 50))
    def run(seed, length):
        rng = random.Random(seed)
        books = Books()
        try:
            for name in rng.choices(names, weights=[WEIGHTS[n] for n in names], k=length):
                getattr(books, name)(**arguments(name, rng))
                books.books_balance()
        finally:
            books.teardown()

    run()
