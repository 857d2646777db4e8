"""Checks that the books agree with themselves (``crmkit finance check`` and the tests).

* every transaction balances in each currency;
* the inventory account equals the value of the stock on hand;
* goods issued to open orders equal the cost of their open goods lines;
* each client's cashback account equals their unexpired cashback lots.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from crmkit_finance.model import (
    FinanceAccount,
    FinanceCashbackLot,
    FinanceEntry,
    FinanceOrder,
    FinanceOrderLine,
)
from crmkit_finance.services import finance


def problems(work: Any) -> list[str]:
    """Every disagreement found (empty when the books are sound)."""
    fin = finance(work)
    ledger = fin.ledger
    session = work.session
    base = fin.base_currency
    found = ledger.check()
    inventory = ledger.raw_balance(ledger.account("inventory:stock"), base)
    stock = fin.stock.total_value()
    if inventory != stock:
        found.append(f"inventory account {inventory} != stock value {stock}")
    wip = ledger.raw_balance(ledger.account("wip:orders"), base)
    open_cost = Decimal(
        session.scalar(
            select(func.coalesce(func.sum(FinanceOrderLine.cost), 0))
            .join(FinanceOrder, FinanceOrder.id == FinanceOrderLine.order_id)
            .where(
                FinanceOrderLine.recognized_on.is_(None),
                FinanceOrder.cancelled_at.is_(None),
            )
        )
    )
    if wip != open_cost:
        found.append(f"goods issued to orders {wip} != cost of open goods lines {open_cost}")
    lots = dict(
        session.execute(
            select(FinanceCashbackLot.party_id, func.sum(FinanceCashbackLot.remaining))
            .where(FinanceCashbackLot.expired_at.is_(None))
            .group_by(FinanceCashbackLot.party_id)
        ).all()
    )
    accounts = session.execute(
        select(FinanceAccount.party_id, func.sum(FinanceEntry.amount))
        .join(FinanceEntry, FinanceEntry.account_id == FinanceAccount.id)
        .where(FinanceAccount.kind == "cashback", FinanceEntry.currency == base)
        .group_by(FinanceAccount.party_id)
    )
    balances = {party_id: -Decimal(raw) for party_id, raw in accounts}
    for party_id in set(lots) | set(balances):
        lot_sum = Decimal(lots.get(party_id) or 0)
        balance = balances.get(party_id, Decimal(0))
        if lot_sum != balance:
            found.append(f"client {party_id}: cashback lots {lot_sum} != account {balance}")
    return found
