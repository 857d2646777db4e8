"""The finance plugin's tables.  They join core tables by foreign key and never reopen them.

Money columns use the core :class:`~crmkit.model.Amount` type (an integer count of minor
units); quantities keep three decimals, exchange rates eight.  Tables that record a movement
of money or goods (ledger transactions and entries, payments, stock moves, amortization
runs) are **append-only**: database triggers refuse UPDATE and DELETE on them, so a
correction is always a new, reversing row.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    DDL,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.model import (
    Amount,
    Base,
    CustomFieldsMixin,
    IdMixin,
    IdType,
    JSONType,
    OwnedMixin,
    PipelineMixin,
    TimestampMixin,
    VersionedMixin,
    user_fk,
)
from crmkit_finance.money import QUANTITY_PLACES, RATE_PLACES

Quantity = Amount(QUANTITY_PLACES)
Rate = Amount(RATE_PLACES)


def _fk(target: str, *, nullable: bool = True, ondelete: str | None = None, **kw: Any) -> Any:
    return mapped_column(IdType, ForeignKey(target, ondelete=ondelete), nullable=nullable, **kw)


def _party_ref(nullable: bool = True, **kw: Any) -> Any:
    # No ON DELETE: a client or supplier with money history cannot be deleted, only merged.
    return _fk("party.id", nullable=nullable, **kw)


# -- money and the ledger ---------------------------------------------------------------


class FinanceRate(IdMixin, Base):
    """An exchange rate on a date: ``rate`` units of the base currency buy one ``currency``."""

    __table_args__ = (UniqueConstraint("currency", "on_date"),)

    currency: Mapped[str] = mapped_column(String(3))
    on_date: Mapped[dt.date] = mapped_column(Date)
    rate: Mapped[Decimal] = mapped_column(Rate)
    source: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FinanceAccount(IdMixin, Base):
    """A ledger account: a cash drawer, a client's receivable, an expense category...

    ``code`` identifies it (``receivable:party:12``, ``expense:rent``); ``kind`` says what it
    is (see :data:`crmkit_finance.ledger.ACCOUNT_KINDS`), which fixes its normal balance.
    Per-client, per-supplier and per-employee accounts point at their party or user.
    """

    __table_args__ = (Index("ix_finance_account_kind_party", "kind", "party_id"),)

    code: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    party_id: Mapped[int | None] = _party_ref()
    user_id: Mapped[int | None] = user_fk(index=True)
    desk_id: Mapped[int | None] = _fk("finance_cash_desk.id")
    system: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FinanceTransaction(IdMixin, Base):
    """One money movement: a balanced set of ledger entries.  Append-only.

    ``reverses_id`` marks a correction: the transaction it undoes (at most once).
    ``record_entity``/``record_id`` link the business record that caused it; ``shift_id``
    the cash desk shift whose drawer it paid from (or into), outside payments and refunds.
    """

    __table_args__ = (
        Index("ix_finance_transaction_record", "record_entity", "record_id"),
        Index("ix_finance_transaction_on_date", "on_date", "kind"),
    )

    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    on_date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(32))
    memo: Mapped[str] = mapped_column(Text, default="")
    actor_id: Mapped[int | None] = mapped_column(IdType)  # no FK: survives user deletion
    actor_label: Mapped[str] = mapped_column(String(200), default="")
    party_id: Mapped[int | None] = mapped_column(IdType, index=True)
    record_entity: Mapped[str | None] = mapped_column(String(64))
    record_id: Mapped[int | None] = mapped_column(IdType)
    reverses_id: Mapped[int | None] = _fk("finance_transaction.id", unique=True)
    # the shift of the cash drawer it takes money from or puts money into (a salary, a
    # supplier or an expense paid from the drawer); no FK: added later to an append-only
    # table, which SQLite could only rebuild without its triggers
    shift_id: Mapped[int | None] = mapped_column(IdType, index=True)


class FinanceEntry(IdMixin, Base):
    """One leg of a transaction: ``amount`` is a debit when positive, a credit when negative.

    The entries of a transaction sum to zero in each currency.  Append-only.
    """

    __table_args__ = (
        Index("ix_finance_entry_account", "account_id", "currency", "amount"),
        Index("ix_finance_entry_transaction", "transaction_id"),
    )

    transaction_id: Mapped[int] = _fk("finance_transaction.id", nullable=False)
    account_id: Mapped[int] = _fk("finance_account.id", nullable=False)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Amount(2))
    on_date: Mapped[dt.date] = mapped_column(Date)


# -- places, catalogue and prices ------------------------------------------------------


class FinanceLocation(IdMixin, Base):
    """A branch or a warehouse: where goods are kept and orders are taken."""

    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="branch")
    team_id: Mapped[int | None] = _fk("team.id", ondelete="SET NULL")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class FinanceItemCategory(IdMixin, Base):
    """A category of services or goods (nested); salary percents and reports use it."""

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="service")
    parent_id: Mapped[int | None] = _fk("finance_item_category.id", ondelete="RESTRICT")
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class FinanceItem(IdMixin, TimestampMixin, Base):
    """A service or a good that orders sell, with its list price."""

    __table_args__ = (Index("ix_finance_item_kind_category", "kind", "category_id"),)

    kind: Mapped[str] = mapped_column(String(16), default="service")
    name: Mapped[str] = mapped_column(String(300))
    sku: Mapped[str | None] = mapped_column(String(100), unique=True)
    category_id: Mapped[int | None] = _fk("finance_item_category.id", ondelete="RESTRICT")
    unit: Mapped[str] = mapped_column(String(16), default="pcs")
    price: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    track_stock: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(Text, default="")


class FinancePriceList(IdMixin, Base):
    """Prices for one price level (``None``: the default list) from a date on."""

    name: Mapped[str] = mapped_column(String(200))
    price_level: Mapped[str | None] = mapped_column(String(64), index=True)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    valid_from: Mapped[dt.date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class FinancePrice(IdMixin, Base):
    """The price of one item in one price list."""

    __table_args__ = (UniqueConstraint("price_list_id", "item_id"),)

    price_list_id: Mapped[int] = _fk("finance_price_list.id", nullable=False, ondelete="CASCADE")
    item_id: Mapped[int] = _fk("finance_item.id", nullable=False, ondelete="CASCADE")
    price: Mapped[Decimal] = mapped_column(Amount(2))


# -- clients' contracts and invoices ----------------------------------------------------


class FinanceContract(IdMixin, TimestampMixin, Base):
    """A corporate client's contract: deferred payment terms and a credit limit."""

    party_id: Mapped[int] = _party_ref(nullable=False, index=True)
    number: Mapped[str] = mapped_column(String(100))
    signed_on: Mapped[dt.date | None] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    payment_days: Mapped[int] = mapped_column(Integer, default=0)
    credit_limit: Mapped[Decimal | None] = mapped_column(Amount(2))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str] = mapped_column(Text, default="")


class FinanceInvoice(IdMixin, TimestampMixin, Base):
    """An invoice to a (corporate) client for one or more completed orders."""

    __table_args__ = (Index("ix_finance_invoice_party_status", "party_id", "status"),)

    number: Mapped[str] = mapped_column(String(50), unique=True)
    party_id: Mapped[int] = _party_ref(nullable=False)
    contract_id: Mapped[int | None] = _fk("finance_contract.id")
    issued_on: Mapped[dt.date] = mapped_column(Date)
    due_on: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Amount(2))
    status: Mapped[str] = mapped_column(String(16), default="issued")
    created_by_id: Mapped[int | None] = user_fk()


# -- orders -----------------------------------------------------------------------------


class FinanceOrder(IdMixin, TimestampMixin, OwnedMixin, CustomFieldsMixin, PipelineMixin, Base):
    """A client's order: lines of services and goods, a worker, totals, a status pipeline.

    ``owner_id`` is who took the order, ``assignee_id`` the worker doing it; both make the
    order "theirs" for access scopes.  Totals are kept up to date from the lines;
    ``base_total`` is the recognized revenue in the base currency (what reports add up).
    ``completed_at``/``completed_on`` are set when the revenue was recognized (the order
    entered a success stage), ``cancelled_at`` when it reached a dead end.
    """

    __table_args__ = (
        # no report reads it since finance_0006 (they read finance_order_completion), but
        # the order list and the API filter by ``completed_on`` and both databases search
        # this index for it, so it stays
        Index("ix_finance_order_completed", "completed_on", "base_total"),
        Index("ix_finance_order_assignee_stage", "assignee_id", "pipeline", "stage"),
        Index("ix_finance_order_party", "party_id", "id"),
        Index("ix_finance_order_pipeline_stage", "pipeline", "stage", "id"),
    )

    number: Mapped[str | None] = mapped_column(String(50), unique=True)
    party_id: Mapped[int] = _party_ref(nullable=False)
    assignee_id: Mapped[int | None] = user_fk()
    team_id: Mapped[int | None] = _fk("team.id", ondelete="SET NULL")
    location_id: Mapped[int | None] = _fk("finance_location.id")
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    price_level: Mapped[str | None] = mapped_column(String(64))
    discount_percent: Mapped[Decimal] = mapped_column(
        Amount(2), default=Decimal(0), info={"format": "percent"}
    )
    subtotal: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    discount_total: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    total: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    base_total: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    contract_id: Mapped[int | None] = _fk("finance_contract.id")
    invoice_id: Mapped[int | None] = _fk("finance_invoice.id")
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    completed_at: Mapped[dt.datetime | None] = mapped_column()
    completed_on: Mapped[dt.date | None] = mapped_column(Date)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column()
    note: Mapped[str] = mapped_column(Text, default="")


class FinanceOrderLine(IdMixin, Base):
    """A service or good on an order.

    ``amount`` = ``qty`` x ``unit_price`` − ``discount`` (rounded half up).  ``cost`` is what
    the goods cost the business (their stock value), zero for services.  Once the order is
    completed a line is **recognized**: ``recognized_on`` is the business date its revenue
    counts on and ``base_amount``/``base_cost`` are in the base currency, and
    ``assignee_id`` is the order's assignee then (the worker of record whose orders the
    revenue counts for, for a salary on basis ``orders``).  ``performer_chosen`` tells a
    performer chosen by hand from one recognition filled in from the assignee.  A recognized
    line is never edited: removing it appends a negative line (``reverses_line_id``).
    """

    __table_args__ = (
        Index(
            "ix_finance_order_line_recognized",
            "recognized_on",
            "category_id",
            "base_amount",
            "base_cost",
        ),
        Index("ix_finance_order_line_order", "order_id", "position"),
        Index("ix_finance_order_line_performer", "performer_id", "recognized_on"),
        Index("ix_finance_order_line_assignee", "assignee_id", "recognized_on"),
    )

    order_id: Mapped[int] = _fk("finance_order.id", nullable=False, ondelete="CASCADE")
    position: Mapped[int] = mapped_column(Integer, default=0)
    item_id: Mapped[int | None] = _fk("finance_item.id")
    kind: Mapped[str] = mapped_column(String(16), default="service")
    category_id: Mapped[int | None] = _fk("finance_item_category.id")
    description: Mapped[str] = mapped_column(String(300), default="")
    main: Mapped[bool] = mapped_column(Boolean, default=False)
    qty: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(1))
    unit_price: Mapped[Decimal] = mapped_column(Amount(2))
    discount: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    amount: Mapped[Decimal] = mapped_column(Amount(2))
    cost: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    performer_id: Mapped[int | None] = user_fk()
    #: the performer was chosen by hand (a form, the API, a service given ``performer_id``),
    #: not filled in from the order's assignee by recognition: a reopening keeps a chosen
    #: performer, and empties a filled-in one so the order done again pays its new assignee
    performer_chosen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    added_by_id: Mapped[int | None] = user_fk()
    recognized_on: Mapped[dt.date | None] = mapped_column(Date)
    base_amount: Mapped[Decimal | None] = mapped_column(Amount(2))
    base_cost: Mapped[Decimal | None] = mapped_column(Amount(2))
    charge_transaction_id: Mapped[int | None] = _fk("finance_transaction.id")
    reverses_line_id: Mapped[int | None] = _fk("finance_order_line.id", unique=True)
    #: the order's assignee when the line was recognized (a user id; no foreign key, as
    #: the column came later and SQLite adds no constraint to a table in place)
    assignee_id: Mapped[int | None] = mapped_column(IdType, nullable=True)


class FinanceOrderCompletion(IdMixin, Base):
    """The orders completed and reopened, day by day, as the director's reports count them.

    Written once and never edited, as a recognized line is: completing an order appends
    ``orders`` 1 on the business date with ``base_total`` the revenue it recognized;
    reopening it (before a cancellation, or to work on it again) appends ``orders`` -1 on
    the day of the reopening with the revenue it credited back, negative.  So a month's
    count of orders, like its revenue, never changes once the month is over.
    """

    __table_args__ = (
        Index("ix_finance_order_completion_day", "completed_on", "orders", "base_total"),
    )

    order_id: Mapped[int] = _fk("finance_order.id", nullable=False, ondelete="CASCADE")
    completed_on: Mapped[dt.date] = mapped_column(Date)
    orders: Mapped[int] = mapped_column(Integer)
    base_total: Mapped[Decimal] = mapped_column(Amount(2))


# -- cash desk and payments -------------------------------------------------------------


class FinanceCashDesk(IdMixin, Base):
    """A till: a cash drawer and a card terminal at a location."""

    name: Mapped[str] = mapped_column(String(200), unique=True)
    location_id: Mapped[int | None] = _fk("finance_location.id")
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class FinanceShift(IdMixin, VersionedMixin, Base):
    """A cashier's shift at a desk: opened and closed with a count of the cash in the drawer.

    ``*_expected`` is what the ledger says the drawer holds; a difference from the count is
    posted as a cash surplus or shortage.  At most one shift per desk is open.
    """

    __table_args__ = (
        Index(
            "ix_finance_shift_one_open",
            "desk_id",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
        Index("ix_finance_shift_desk_opened", "desk_id", "opened_at"),
    )

    desk_id: Mapped[int] = _fk("finance_cash_desk.id", nullable=False)
    cashier_id: Mapped[int | None] = user_fk()
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    opening_count: Mapped[Decimal] = mapped_column(Amount(2))
    opening_expected: Mapped[Decimal] = mapped_column(Amount(2))
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    closing_count: Mapped[Decimal | None] = mapped_column(Amount(2))
    closing_expected: Mapped[Decimal | None] = mapped_column(Amount(2))
    note: Mapped[str] = mapped_column(Text, default="")


class FinancePayment(IdMixin, Base):
    """Money received from (positive) or returned to (negative) a client.  Append-only.

    ``method`` is ``cash``, ``card``, ``transfer`` or ``cashback``; ``amount`` is in
    ``currency``, ``order_amount`` in the order's (or the receivable's) currency and
    ``base_amount`` in the base currency.  A refund points at the payment it returns
    (``refund_of_id``); a voided mistake at the payment it cancels (``voids_id``).
    """

    __table_args__ = (
        Index("ix_finance_payment_order", "order_id", "order_amount"),
        Index("ix_finance_payment_party", "party_id", "base_amount"),
        Index("ix_finance_payment_shift", "shift_id", "method"),
        Index("ix_finance_payment_on_date", "on_date", "method"),
    )

    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    on_date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16), default="payment")
    party_id: Mapped[int] = _party_ref(nullable=False)
    order_id: Mapped[int | None] = _fk("finance_order.id")
    invoice_id: Mapped[int | None] = _fk("finance_invoice.id", index=True)
    method: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Amount(2))
    currency: Mapped[str] = mapped_column(String(3))
    order_amount: Mapped[Decimal] = mapped_column(Amount(2))
    order_currency: Mapped[str] = mapped_column(String(3))
    base_amount: Mapped[Decimal] = mapped_column(Amount(2))
    desk_id: Mapped[int | None] = _fk("finance_cash_desk.id")
    shift_id: Mapped[int | None] = _fk("finance_shift.id")
    cashier_id: Mapped[int | None] = mapped_column(IdType)
    transaction_id: Mapped[int] = _fk("finance_transaction.id", nullable=False)
    refund_of_id: Mapped[int | None] = _fk("finance_payment.id")
    voids_id: Mapped[int | None] = _fk("finance_payment.id", unique=True)
    reference: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")


# -- purchases and stock ----------------------------------------------------------------


class FinanceSupplier(IdMixin, Base):
    """A party the business buys from, with its payment terms."""

    party_id: Mapped[int] = _party_ref(nullable=False, unique=True)
    payment_days: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str] = mapped_column(Text, default="")


class FinancePurchaseOrder(IdMixin, TimestampMixin, VersionedMixin, Base):
    """Goods ordered from a supplier, possibly for one client order (``client_order_id``)."""

    __table_args__ = (Index("ix_finance_purchase_order_status", "status", "expected_on"),)

    supplier_id: Mapped[int] = _fk("finance_supplier.id", nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(32), default="draft")
    location_id: Mapped[int] = _fk("finance_location.id", nullable=False)
    client_order_id: Mapped[int | None] = _fk("finance_order.id", index=True)
    task_id: Mapped[int | None] = _fk("task.id", ondelete="SET NULL")
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    expected_on: Mapped[dt.date | None] = mapped_column(Date)
    created_by_id: Mapped[int | None] = user_fk()
    note: Mapped[str] = mapped_column(Text, default="")


class FinancePurchaseLine(IdMixin, Base):
    """One item of a purchase order: ordered and received quantities, unit cost."""

    purchase_order_id: Mapped[int] = _fk(
        "finance_purchase_order.id", nullable=False, ondelete="CASCADE", index=True
    )
    item_id: Mapped[int] = _fk("finance_item.id", nullable=False)
    qty: Mapped[Decimal] = mapped_column(Quantity)
    unit_cost: Mapped[Decimal] = mapped_column(Amount(2))
    received_qty: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))


class FinanceStockLevel(IdMixin, VersionedMixin, Base):
    """What is on hand of one item at one location and what it is worth (moving average).

    Kept in step with the stock moves in the same transaction; ``min_qty`` is the level
    below which the warehouse head is reminded to reorder.
    """

    __table_args__ = (UniqueConstraint("item_id", "location_id"),)

    item_id: Mapped[int] = _fk("finance_item.id", nullable=False)
    location_id: Mapped[int] = _fk("finance_location.id", nullable=False, index=True)
    qty: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))
    value: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    min_qty: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))


class FinanceStockMove(IdMixin, Base):
    """Goods coming in (positive ``qty``) or going out (negative), with their value.  Append-only.

    ``kind``: ``receipt``, ``issue`` (to an order), ``return`` (from an order),
    ``supplier_return``, ``write_off``, ``count`` (inventory adjustment), ``transfer``.
    """

    __table_args__ = (
        Index("ix_finance_stock_move_item", "item_id", "location_id", "id"),
        Index("ix_finance_stock_move_order", "order_id"),
    )

    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    on_date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    item_id: Mapped[int] = _fk("finance_item.id", nullable=False)
    location_id: Mapped[int] = _fk("finance_location.id", nullable=False)
    qty: Mapped[Decimal] = mapped_column(Quantity)
    value: Mapped[Decimal] = mapped_column(Amount(2))
    order_id: Mapped[int | None] = _fk("finance_order.id")
    # no foreign key: an open order's line may be deleted, its stock history stays
    order_line_id: Mapped[int | None] = mapped_column(IdType)
    purchase_order_id: Mapped[int | None] = _fk("finance_purchase_order.id")
    supplier_id: Mapped[int | None] = _fk("finance_supplier.id")
    transaction_id: Mapped[int | None] = _fk("finance_transaction.id")
    actor_id: Mapped[int | None] = mapped_column(IdType)
    note: Mapped[str] = mapped_column(Text, default="")


# -- salary -----------------------------------------------------------------------------


class FinancePayScheme(IdMixin, Base):
    """How an employee is paid from ``valid_from`` on: a fixed monthly sum, a percent, or both.

    ``basis`` is ``orders`` (revenue of the orders they were assigned to) or ``lines``
    (revenue of the lines they performed); ``percent`` applies to service lines, and
    per-category rates (:class:`FinancePayRate`) override it.
    """

    __table_args__ = (UniqueConstraint("user_id", "valid_from"),)

    user_id: Mapped[int] = _fk("user.id", nullable=False, ondelete="CASCADE")
    valid_from: Mapped[dt.date] = mapped_column(Date)
    fixed_amount: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    percent: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    basis: Mapped[str] = mapped_column(String(16), default="lines")
    include_goods: Mapped[bool] = mapped_column(Boolean, default=False)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FinancePayRate(IdMixin, Base):
    """A pay scheme's percent for one category of services or goods."""

    __table_args__ = (UniqueConstraint("scheme_id", "category_id"),)

    scheme_id: Mapped[int] = _fk("finance_pay_scheme.id", nullable=False, ondelete="CASCADE")
    category_id: Mapped[int] = _fk("finance_item_category.id", nullable=False)
    percent: Mapped[Decimal] = mapped_column(Amount(2))


class FinancePayslip(IdMixin, Base):
    """Salary accrued to one employee for one period (a calendar month).

    ``details`` lists the fixed part and each commission group (revenue, percent, sum).
    A reversed payslip stays, marked ``reversed``; at most one accrued payslip per
    employee and period.
    """

    __table_args__ = (
        Index(
            "ix_finance_payslip_one_accrued",
            "user_id",
            "period_start",
            unique=True,
            sqlite_where=text("status = 'accrued'"),
            postgresql_where=text("status = 'accrued'"),
        ),
        Index("ix_finance_payslip_period", "period_start", "user_id"),
    )

    user_id: Mapped[int] = _fk("user.id", nullable=False)
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    fixed_amount: Mapped[Decimal] = mapped_column(Amount(2))
    commission: Mapped[Decimal] = mapped_column(Amount(2))
    total: Mapped[Decimal] = mapped_column(Amount(2))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="accrued")
    transaction_id: Mapped[int] = _fk("finance_transaction.id", nullable=False)
    reversal_transaction_id: Mapped[int | None] = _fk("finance_transaction.id")
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# -- cashback ---------------------------------------------------------------------------


class FinanceCashbackProgram(IdMixin, Base):
    """The cashback rule from ``valid_from`` on: a percent of paid orders, kept for N days."""

    valid_from: Mapped[dt.date] = mapped_column(Date, unique=True)
    percent: Mapped[Decimal] = mapped_column(Amount(2))
    expiry_days: Mapped[int] = mapped_column(Integer, default=365)
    created_by_id: Mapped[int | None] = user_fk()


class FinanceCashbackLot(IdMixin, VersionedMixin, Base):
    """Cashback accrued to a client at once, spent first-to-expire first, then expiring.

    ``remaining`` is what is left of it; the sum of the remaining amounts of a client's
    lots always equals the balance of their cashback account in the ledger.
    """

    __table_args__ = (
        Index("ix_finance_cashback_lot_party", "party_id", "expires_at"),
        Index("ix_finance_cashback_lot_expiry", "expired_at", "expires_at"),
    )

    party_id: Mapped[int] = _party_ref(nullable=False)
    order_id: Mapped[int | None] = _fk("finance_order.id", unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="accrual")
    amount: Mapped[Decimal] = mapped_column(Amount(2))
    basis: Mapped[Decimal | None] = mapped_column(Amount(2))
    remaining: Mapped[Decimal] = mapped_column(Amount(2))
    accrued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    expired_at: Mapped[dt.datetime | None] = mapped_column()
    transaction_id: Mapped[int] = _fk("finance_transaction.id", nullable=False)
    note: Mapped[str] = mapped_column(Text, default="")


# -- assets and plans -------------------------------------------------------------------


class FinanceAsset(IdMixin, TimestampMixin, Base):
    """Equipment amortized straight-line over its useful life."""

    name: Mapped[str] = mapped_column(String(300))
    cost: Mapped[Decimal] = mapped_column(Amount(2))
    salvage_value: Mapped[Decimal] = mapped_column(Amount(2), default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    acquired_on: Mapped[dt.date] = mapped_column(Date)
    useful_life_months: Mapped[int] = mapped_column(Integer)
    location_id: Mapped[int | None] = _fk("finance_location.id")
    transaction_id: Mapped[int | None] = _fk("finance_transaction.id")
    disposed_on: Mapped[dt.date | None] = mapped_column(Date)


class FinanceAmortization(IdMixin, Base):
    """One month's amortization of one asset.  Append-only; one row per asset and month."""

    __table_args__ = (UniqueConstraint("asset_id", "month"),)

    asset_id: Mapped[int] = _fk("finance_asset.id", nullable=False)
    month: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Amount(2))
    transaction_id: Mapped[int] = _fk("finance_transaction.id", nullable=False)


class FinancePlan(IdMixin, Base):
    """A planned figure for a month: ``metric`` is ``revenue``, ``expenses``, ``profit`` or an
    account code (``expense:rent``)."""

    __table_args__ = (UniqueConstraint("month", "metric"),)

    month: Mapped[dt.date] = mapped_column(Date)
    metric: Mapped[str] = mapped_column(String(100))
    amount: Mapped[Decimal] = mapped_column(Amount(2))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")


class FinanceFormToken(IdMixin, Base):
    """A money form submitted once: the random ``token`` the form carried, the ``action`` it
    did and the ids of what it wrote (``result``, comma-separated), so a second submission
    of the same form (a double click, a reload) returns the first one's result instead of
    taking the money again.  The unique token makes two submissions at once wait for each
    other: the second finds the first's claim once that commits."""

    token: Mapped[str] = mapped_column(String(64), unique=True)
    action: Mapped[str] = mapped_column(String(32))
    result: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FinanceSequence(Base):
    """Gap-free counters (invoice numbers per year, order numbers)."""

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


# -- append-only tables -----------------------------------------------------------------

APPEND_ONLY_TABLES = (
    "finance_transaction",
    "finance_entry",
    "finance_payment",
    "finance_stock_move",
    "finance_amortization",
)

_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION crmkit_finance_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$ LANGUAGE plpgsql"
)


def append_only_statements(dialect: str, table: str) -> tuple[str, ...]:
    """SQL that makes ``table`` refuse UPDATE and DELETE on ``dialect`` (models and migrations)."""
    if dialect == "sqlite":
        return (
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
        )
    if dialect == "postgresql":
        return (
            _PG_FUNCTION,
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION crmkit_finance_append_only()",
        )
    return ()


for _table_name in APPEND_ONLY_TABLES:
    _table = Base.metadata.tables[_table_name]
    for _dialect in ("sqlite", "postgresql"):
        for _statement in append_only_statements(_dialect, _table_name):
            event.listen(
                _table,
                "after_create",
                # DDL() formats the text with %; the trigger message has a literal one
                DDL(_statement.replace("%", "%%")).execute_if(dialect=_dialect),
            )
