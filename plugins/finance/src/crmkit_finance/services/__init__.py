"""The finance services, reached through one facade per unit of work::

    from crmkit_finance import finance

    with crm.acting_as(cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(desk, counted="5000.00")
        fin.payments.take(order, "1500.00", method="card")

Every service checks the actor's permissions (the role x entity x action table) and runs in
the unit of work's transaction, so a failed operation leaves nothing written.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from crmkit.access.rules import Scope
from crmkit.errors import ConfigError, PermissionDenied
from crmkit.i18n import Label, message
from crmkit_finance.money import minor_units

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork
    from crmkit_finance.ledger import LedgerService
    from crmkit_finance.services.cashback import CashbackService
    from crmkit_finance.services.cashdesk import CashDeskService, PaymentService
    from crmkit_finance.services.catalogue import CatalogueService
    from crmkit_finance.services.expenses import AssetService, ExpenseService, PlanService
    from crmkit_finance.services.invoices import InvoiceService
    from crmkit_finance.services.letters import SupplierLetterService
    from crmkit_finance.services.orders import OrderService
    from crmkit_finance.services.payroll import PayrollService
    from crmkit_finance.services.rates import RateService
    from crmkit_finance.services.stock import PurchaseService, StockService


def finance(work: UnitOfWork) -> Finance:
    """The finance services of this unit of work (built once per transaction)."""
    return work.service("finance", Finance)


class Finance:
    """Every finance service for one unit of work, plus the plugin's settings."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work
        self.config = work.crm.config

    # -- settings ----------------------------------------------------------------------

    @cached_property
    def base_currency(self) -> str:
        """The currency reports are kept in (``finance.base_currency``, else the locale's)."""
        code = str(self.config["finance.base_currency"] or self.config["locale.currency"])
        minor_units(code)  # refuses an unsupported currency
        return code

    @cached_property
    def form_token_lifetime(self) -> dt.timedelta:
        """How long a form's one-time token is good for and its claim is kept
        (``finance.form_token_days``; see :mod:`crmkit_finance.services.forms`)."""
        days = self.config["finance.form_token_days"]
        if days < 1:
            raise ConfigError(f"setting 'finance.form_token_days' must be at least 1, got {days}")
        return dt.timedelta(days=days)

    @cached_property
    def timezone(self) -> ZoneInfo:
        """The business's time zone: which day (and month) a moment belongs to."""
        return self.config.zone

    def business_date(self, moment: dt.datetime) -> dt.date:
        """The calendar date of ``moment`` where the business is."""
        return moment.astimezone(self.timezone).date()

    def start_of_day(self, day: dt.date) -> dt.datetime:
        """The UTC moment a business day begins."""
        return dt.datetime.combine(day, dt.time(), self.timezone).astimezone(dt.UTC)

    # -- access ------------------------------------------------------------------------

    def require(self, entity: str, action: str) -> Scope:
        """The actor's scope for ``action`` on ``entity``; ``PermissionDenied`` without one."""
        return self.work.access.require(entity, action)

    def can(self, entity: str, action: str) -> bool:
        """Whether the actor may ``action`` some ``entity`` records."""
        return self.work.access.can(entity, action)

    def require_report(self, roles: tuple[str, ...], entity: str, what: str) -> None:
        """Go on only for the system, one of ``roles``, or a holder of the ``report``
        permission on ``entity`` (any scope): the rule of the report screens (``may_run``),
        a power of the permission table rather than of a role's name."""
        actor = self.work.actor
        if actor.system or (actor.roles & set(roles)) or self.can(entity, "report"):
            return
        raise PermissionDenied(
            entity,
            "report",
            message("{what} is for {roles}", what=Label(what), roles=", ".join(roles)),
        )

    # -- services --------------------------------------------------------------------

    @cached_property
    def ledger(self) -> LedgerService:
        """Accounts, balanced transactions, balances, reversals."""
        from crmkit_finance.ledger import LedgerService

        return LedgerService(self)

    @cached_property
    def rates(self) -> RateService:
        """Dated exchange rates and conversion."""
        from crmkit_finance.services.rates import RateService

        return RateService(self)

    @cached_property
    def catalogue(self) -> CatalogueService:
        """Services, goods, categories, price lists and price resolution."""
        from crmkit_finance.services.catalogue import CatalogueService

        return CatalogueService(self)

    @property
    def orders(self) -> OrderService:
        """Orders and their lines (the ``finance_order`` entity service)."""
        return self.work.records("finance_order")

    @cached_property
    def payments(self) -> PaymentService:
        """Payments, prepayments, refunds, voids; receivables."""
        from crmkit_finance.services.cashdesk import PaymentService

        return PaymentService(self)

    @cached_property
    def cashdesk(self) -> CashDeskService:
        """Desks and shifts with cash counts and shift reports."""
        from crmkit_finance.services.cashdesk import CashDeskService

        return CashDeskService(self)

    @cached_property
    def stock(self) -> StockService:
        """Stock levels, moves and valuation (moving average)."""
        from crmkit_finance.services.stock import StockService

        return StockService(self)

    @cached_property
    def purchases(self) -> PurchaseService:
        """Suppliers, purchase orders, receipts, supplier payments."""
        from crmkit_finance.services.stock import PurchaseService

        return PurchaseService(self)

    @cached_property
    def letters(self) -> SupplierLetterService:
        """Letters to suppliers about purchase orders, through a mail channel."""
        from crmkit_finance.services.letters import SupplierLetterService

        return SupplierLetterService(self)

    @cached_property
    def payroll(self) -> PayrollService:
        """Pay schemes, accrual, payout, payslips."""
        from crmkit_finance.services.payroll import PayrollService

        return PayrollService(self)

    @cached_property
    def cashback(self) -> CashbackService:
        """Cashback program, accrual, spending, expiry, balances."""
        from crmkit_finance.services.cashback import CashbackService

        return CashbackService(self)

    @cached_property
    def invoices(self) -> InvoiceService:
        """Contracts and invoices of corporate clients."""
        from crmkit_finance.services.invoices import InvoiceService

        return InvoiceService(self)

    @cached_property
    def expenses(self) -> ExpenseService:
        """Income and expenses by category."""
        from crmkit_finance.services.expenses import ExpenseService

        return ExpenseService(self)

    @cached_property
    def assets(self) -> AssetService:
        """Equipment and its straight-line amortization."""
        from crmkit_finance.services.expenses import AssetService

        return AssetService(self)

    @cached_property
    def plans(self) -> PlanService:
        """Monthly plans for plan-versus-fact."""
        from crmkit_finance.services.expenses import PlanService

        return PlanService(self)
