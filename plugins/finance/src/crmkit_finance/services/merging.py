"""Two clients merged: their finance follows the survivor.

Orders, contracts, invoices, the supplier record and unspent cashback lots move to the
survivor.  Ledger entries are never rewritten: the merged client's receivable, cashback and
payable balances are carried over by a transfer transaction, and its accounts stay its own
(emptied).  Payments keep the party they were taken from (history), and the survivor's
totals include them.  When both were suppliers the survivor's supplier record stays the
one in use; the merged one keeps its purchase history and is marked no longer used.

The core's merge leaves every party column of the finance tables to this module
(:data:`PARTY_COLUMNS`, declared through ``crmkit_register_party_merge_columns``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from crmkit_finance.ledger import Leg
from crmkit_finance.model import (
    FinanceAccount,
    FinanceCashbackLot,
    FinanceContract,
    FinanceEntry,
    FinanceInvoice,
    FinanceOrder,
    FinancePayment,
    FinanceSupplier,
)
from crmkit_finance.services import finance

#: Every finance column referencing a party: merged here, not by the core's generic move.
PARTY_COLUMNS = (
    FinanceOrder.party_id,
    FinanceContract.party_id,
    FinanceInvoice.party_id,
    FinanceCashbackLot.party_id,
    FinanceSupplier.party_id,
    FinanceAccount.party_id,
    FinancePayment.party_id,
)


def merge_party_finance(work: Any, survivor: Any, merged: Any) -> None:
    """Move the merged party's finance records and balances to the survivor."""
    session = work.session
    for model in (FinanceOrder, FinanceContract, FinanceInvoice, FinanceCashbackLot):
        session.execute(
            update(model)
            .where(model.party_id == merged.id)
            .values(party_id=survivor.id)
            .execution_options(synchronize_session=False)
        )
    # a party has one supplier record: the survivor's stays in use if it has one
    has_own = session.scalar(
        select(FinanceSupplier.id).where(FinanceSupplier.party_id == survivor.id)
    )
    session.execute(
        update(FinanceSupplier)
        .where(FinanceSupplier.party_id == merged.id)
        .values({"active": False} if has_own is not None else {"party_id": survivor.id})
        .execution_options(synchronize_session=False)
    )
    ledger = finance(work).ledger
    accounts = session.scalars(
        select(FinanceAccount).where(
            FinanceAccount.party_id == merged.id,
            FinanceAccount.kind.in_(("receivable", "cashback", "payable")),
        )
    )
    for account in list(accounts):
        target = getattr(ledger, account.kind)(survivor.id)
        legs = []
        for currency in sorted(
            set(
                session.scalars(
                    select(FinanceEntry.currency).where(FinanceEntry.account_id == account.id)
                )
            )
        ):
            raw = ledger.raw_balance(account, currency)
            if raw:
                legs += [Leg(account, -raw, currency), Leg(target, raw, currency)]
        if legs:
            ledger.post(
                "transfer",
                legs,
                memo=f"client {merged.id} merged into {survivor.id}",
                record=("party", survivor.id),
                party_id=survivor.id,
            )
    work.flush()
