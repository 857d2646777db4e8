"""Two clients merged: their finance follows the survivor.

Every finance column that names a party, and what a merge does with it:

* moved to the survivor: orders, contracts, invoices and cashback lots (``party_id``);
  the supplier record (``finance_supplier.party_id``), unless the survivor has one: then
  the survivor's stays the one in use, the merged one is marked no longer used, and its
  purchase orders (``finance_purchase_order.supplier_id``, open and done alike, as a
  client's orders) move to the survivor's record, so the survivor's purchases show them and
  what still arrives is owed to the survivor;
* kept, because the table is append-only history and the row says who it was then:
  payments (``finance_payment.party_id``: the payer; the survivor's totals include them),
  ledger transactions (``finance_transaction.party_id``, no foreign key, and their link
  ``record_entity = 'party'``: an advance or a cashback given by hand names the client it
  was booked for), and stock moves (``finance_stock_move.supplier_id``: the supplier record
  a receipt or a return was booked with);
* kept and emptied: the merged party's receivable, cashback and payable accounts
  (``finance_account.party_id``); their balances are carried over to the survivor's by one
  transfer transaction per account, so the ledger is never rewritten.

The core's merge leaves all of these columns to this module (:data:`PARTY_COLUMNS`, declared
through ``crmkit_register_party_merge_columns``).
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
    FinancePurchaseOrder,
    FinanceSupplier,
    FinanceTransaction,
)
from crmkit_finance.services import finance

#: Every finance column referencing a party: merged here, not by the core's generic move
#: (``FinanceTransaction.record_id``: the transactions' loose links to a party, kept).
PARTY_COLUMNS = (
    FinanceOrder.party_id,
    FinanceContract.party_id,
    FinanceInvoice.party_id,
    FinanceCashbackLot.party_id,
    FinanceSupplier.party_id,
    FinanceAccount.party_id,
    FinancePayment.party_id,
    FinanceTransaction.record_id,
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
    # a party has one supplier record: the survivor's stays in use if it has one, and the
    # merged one's purchase orders go to it
    has_own = session.scalar(
        select(FinanceSupplier.id).where(FinanceSupplier.party_id == survivor.id)
    )
    if has_own is not None:
        session.execute(
            update(FinancePurchaseOrder)
            .where(
                FinancePurchaseOrder.supplier_id.in_(
                    select(FinanceSupplier.id).where(FinanceSupplier.party_id == merged.id)
                )
            )
            .values(supplier_id=has_own, version=FinancePurchaseOrder.version + 1)
            .execution_options(synchronize_session=False)
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
