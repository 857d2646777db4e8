"""Hook implementations of the finance plugin (entry point ``crmkit: finance``)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, not_, or_, select, type_coerce
from sqlalchemy.orm import aliased

from crmkit import (
    EntityType,
    FilterField,
    Job,
    MigrationBranch,
    Pipeline,
    Schedule,
    Setting,
    Stage,
    StageKind,
    TimelineKind,
    Transition,
    hookimpl,
)
from crmkit.config import currency_code
from crmkit.errors import ValidationFailed
from crmkit.i18n import Label, message
from crmkit.model import Amount, Party
from crmkit_finance import access, schemas
from crmkit_finance.model import (
    FinanceAsset,
    FinanceCashbackLot,
    FinanceCashDesk,
    FinanceContract,
    FinanceInvoice,
    FinanceItem,
    FinanceItemCategory,
    FinanceLocation,
    FinanceOrder,
    FinancePayment,
    FinancePayScheme,
    FinancePayslip,
    FinancePlan,
    FinancePriceList,
    FinancePurchaseOrder,
    FinanceRate,
    FinanceShift,
    FinanceStockLevel,
    FinanceSupplier,
    FinanceTransaction,
)
from crmkit_finance.money import to_decimal
from crmkit_finance.services.orders import BUILTIN_PIPELINE, OrderService, follow_stage_move

crmkit_plugin_name = "finance"

MIGRATIONS = Path(__file__).parent / "migrations"

#: The order pipeline used when the deployment declares none of its own.
ORDER_PIPELINE = Pipeline(
    name=BUILTIN_PIPELINE,
    entity="finance_order",
    label="Orders",
    stages=[
        Stage("new", "New"),
        Stage("in_work", "In work"),
        Stage("done", "Done", kind=StageKind.SUCCESS),
        Stage("cancelled", "Cancelled", kind=StageKind.DEAD_END),
    ],
    transitions=[
        Transition("new", "in_work"),
        Transition(("new", "in_work"), "done"),
        Transition("done", "in_work", backward=True, label="reopen", requires_comment=True),
        Transition(("new", "in_work"), "cancelled", requires_comment=True),
        Transition("cancelled", "new", backward=True, label="restore"),
    ],
)

ORDER_ACTIONS = ("read", "create", "update", "delete", "move", "assign", "export", "price")


def _entity(name: str, model: Any, label: str, plural: str, **kwargs: Any) -> EntityType:
    return EntityType(name, model, label=label, label_plural=plural, **kwargs)


@hookimpl
def crmkit_register_entities() -> list[EntityType]:
    return [
        _entity(
            "finance_order",
            FinanceOrder,
            "Order",
            "Orders",
            schema=schemas.OrderSchema,
            service=OrderService,
            owner_attrs=("assignee_id", "owner_id"),
            team_attr="team_id",
            party_attr="party_id",
            title_attr="number",
            # the page's title is the number; the order panel shows the money (lines,
            # totals, paid, due) in the order's currency
            page_hidden_attrs=(
                "number",
                "currency",
                "subtotal",
                "discount_total",
                "total",
                "base_total",
            ),
            # the core's "number" is a field type («число»): the order's is its number
            field_labels={"number": Label("order number")},
            search_attrs=("number",),
            filter_attrs=(
                "party_id",
                "assignee_id",
                "owner_id",
                "team_id",
                "location_id",
                "pipeline",
                "stage",
                "currency",
                "completed_on",
                "created_at",
                "contract_id",
                "invoice_id",
            ),
            sort_attrs=("created_at", "updated_at", "completed_at", "total", "stage", "number"),
            default_sort=("-created_at",),
            custom_fields=True,
            actions=ORDER_ACTIONS,
        ),
        _entity(
            "finance_item",
            FinanceItem,
            "Item",
            "Catalogue",
            schema=schemas.ItemSchema,
            title_attr="name",
            search_attrs=("name", "sku"),
            filter_attrs=("kind", "category_id", "active", "track_stock", "currency"),
            sort_attrs=("name", "price", "created_at"),
            default_sort=("name",),
        ),
        _entity(
            "finance_item_category",
            FinanceItemCategory,
            "Category",
            "Categories",
            schema=schemas.ItemCategorySchema,
            title_attr="name",
            filter_attrs=("kind", "parent_id", "active"),
            sort_attrs=("name", "position"),
            default_sort=("position",),
        ),
        _entity(
            "finance_price_list",
            FinancePriceList,
            "Price list",
            "Price lists",
            schema=schemas.PriceListSchema,
            title_attr="name",
            filter_attrs=("price_level", "active", "currency"),
            sort_attrs=("name", "valid_from"),
            default_sort=("name",),
        ),
        _entity(
            "finance_location",
            FinanceLocation,
            "Location",
            "Locations",
            schema=schemas.LocationSchema,
            title_attr="name",
            filter_attrs=("kind", "active"),
            sort_attrs=("name",),
            default_sort=("name",),
        ),
        _entity(
            "finance_cash_desk",
            FinanceCashDesk,
            "Cash desk",
            "Cash desks",
            schema=schemas.CashDeskSchema,
            title_attr="name",
            filter_attrs=("location_id", "active"),
            sort_attrs=("name",),
            default_sort=("name",),
        ),
        _entity(
            "finance_shift",
            FinanceShift,
            "Shift",
            "Shifts",
            owner_attrs=("cashier_id",),
            filter_attrs=("desk_id", "cashier_id", "closed_at"),
            sort_attrs=("opened_at",),
            default_sort=("-opened_at",),
            audited=False,
            actions=("read", "create", "update"),
        ),
        _entity(
            "finance_payment",
            FinancePayment,
            "Payment",
            "Payments",
            owner_attrs=("cashier_id",),
            party_attr="party_id",
            filter_attrs=(
                "party_id",
                "order_id",
                "method",
                "kind",
                "shift_id",
                "on_date",
                "invoice_id",
            ),
            sort_attrs=("at", "amount"),
            default_sort=("-at",),
            audited=False,
            actions=("read", "create", "refund", "void", "export"),
        ),
        _entity(
            "finance_supplier",
            FinanceSupplier,
            "Supplier",
            "Suppliers",
            schema=schemas.SupplierSchema,
            party_attr="party_id",
            filter_attrs=("party_id", "active"),
        ),
        _entity(
            "finance_contract",
            FinanceContract,
            "Contract",
            "Contracts",
            schema=schemas.ContractSchema,
            party_attr="party_id",
            title_attr="number",
            search_attrs=("number",),
            filter_attrs=("party_id", "active"),
            sort_attrs=("signed_on",),
        ),
        _entity(
            "finance_invoice",
            FinanceInvoice,
            "Invoice",
            "Invoices",
            party_attr="party_id",
            title_attr="number",
            search_attrs=("number",),
            filter_attrs=("party_id", "status", "due_on", "issued_on"),
            sort_attrs=("issued_on", "due_on", "amount"),
            default_sort=("-issued_on",),
            audited=False,
        ),
        _entity(
            "finance_ledger",
            FinanceTransaction,
            "Transaction",
            "Ledger",
            filter_attrs=("kind", "on_date", "party_id", "record_entity", "record_id"),
            sort_attrs=("at", "on_date"),
            default_sort=("-at",),
            audited=False,
            actions=("read", "create", "reverse", "export"),
        ),
        _entity(
            "finance_stock",
            FinanceStockLevel,
            "Stock",
            "Stock",
            filter_attrs=("item_id", "location_id"),
            sort_attrs=("qty", "value"),
            audited=False,
            actions=("read", "create", "update", "export"),
        ),
        _entity(
            "finance_purchase_order",
            FinancePurchaseOrder,
            "Purchase order",
            "Purchase orders",
            owner_attrs=("created_by_id",),
            filter_attrs=("supplier_id", "status", "client_order_id", "location_id"),
            sort_attrs=("created_at", "expected_on"),
            default_sort=("-created_at",),
            audited=False,
            actions=("read", "create", "update", "export"),
        ),
        _entity(
            "finance_pay_scheme",
            FinancePayScheme,
            "Pay scheme",
            "Pay schemes",
            owner_attrs=("user_id",),
            filter_attrs=("user_id", "basis"),
            sort_attrs=("valid_from",),
            audited=False,
            actions=("read", "create", "update"),
        ),
        _entity(
            "finance_payroll",
            FinancePayslip,
            "Payslip",
            "Payroll",
            owner_attrs=("user_id",),
            filter_attrs=("user_id", "period_start", "status"),
            sort_attrs=("period_start",),
            default_sort=("-period_start",),
            audited=False,
            actions=("read", "create", "pay", "reverse", "export"),
        ),
        _entity(
            "finance_cashback",
            FinanceCashbackLot,
            "Cashback",
            "Cashback",
            party_attr="party_id",
            filter_attrs=("party_id", "kind", "expires_at"),
            sort_attrs=("accrued_at", "expires_at"),
            audited=False,
            actions=("read", "create", "update", "export"),
        ),
        _entity(
            "finance_asset",
            FinanceAsset,
            "Asset",
            "Assets",
            title_attr="name",
            filter_attrs=("location_id",),
            sort_attrs=("acquired_on", "cost"),
            audited=False,
            actions=("read", "create", "update", "export"),
        ),
        _entity(
            "finance_plan",
            FinancePlan,
            "Plan",
            "Plans",
            filter_attrs=("month", "metric"),
            sort_attrs=("month",),
            audited=False,
            actions=("read", "create", "update", "export"),
        ),
        _entity(
            "finance_rate",
            FinanceRate,
            "Exchange rate",
            "Exchange rates",
            filter_attrs=("currency", "on_date"),
            sort_attrs=("on_date",),
            default_sort=("-on_date",),
            audited=False,
            actions=("read", "create"),
        ),
    ]


@hookimpl
def crmkit_register_pipelines() -> list[Pipeline]:
    return [ORDER_PIPELINE]


@hookimpl
def crmkit_register_roles() -> list[Any]:
    return list(access.ROLES)


@hookimpl
def crmkit_register_permissions() -> list[Any]:
    return access.permissions()


@hookimpl
def crmkit_register_settings() -> list[Setting]:
    return [
        Setting(
            "finance.base_currency",
            str,
            "",
            "Currency of reports and of the ledger's income, expense, stock and cashback "
            "accounts; empty uses locale.currency.",
            check=currency_code,
        ),
        Setting(
            "finance.order_pipeline",
            str,
            "",
            "Pipeline of new orders; empty uses the deployment's default order pipeline, "
            "else the plugin's own `finance_order` pipeline.",
        ),
        Setting(
            "finance.low_stock_role",
            str,
            "warehouse_head",
            "Role whose users are reminded when goods fall below their minimum.",
        ),
        Setting(
            "finance.form_token_days",
            int,
            7,
            "Days a form that books money or goods may be sent after its page was shown, "
            "and its one-time token kept against a second submission (at least 1).",
            minimum=1,
        ),
    ]


@hookimpl
def crmkit_register_message_templates() -> list[Any]:
    from crmkit_finance.services.letters import DEFAULT_TEMPLATE

    return [DEFAULT_TEMPLATE]


@hookimpl
def crmkit_register_migrations() -> list[MigrationBranch]:
    return [MigrationBranch("finance", MIGRATIONS)]


@hookimpl
def crmkit_after_stage_move(move: Any) -> None:
    follow_stage_move(move)


@hookimpl
def crmkit_register_timeline_kinds() -> list[TimelineKind]:
    # a payment or a refund at the cash desk, on the client's timeline (a core kind too)
    return [TimelineKind("payment")]


@hookimpl
def crmkit_party_merged(work: Any, survivor: Any, merged: Any) -> None:
    from crmkit_finance.services.merging import merge_party_finance

    merge_party_finance(work, survivor, merged)


@hookimpl
def crmkit_register_party_merge_columns() -> list[Any]:
    from crmkit_finance.services.merging import PARTY_COLUMNS

    return list(PARTY_COLUMNS)


# -- computed filter fields ------------------------------------------------------------


def _compared(name: str, amount: Any, op: str, value: Any) -> Any:
    """``amount`` (a SQL expression over stored amounts) compared with a condition's value.

    Amounts are stored as minor units (:class:`crmkit.model.Amount`); a difference of two
    is a plain integer to SQLAlchemy, so the value would be compared unscaled (1000 ₽ with
    10 ₽).  Typed as an amount, the value is bound in minor units too."""
    if op not in ("eq", "ne", "lt", "lte", "gt", "gte"):
        raise ValidationFailed(
            {name: [message("operator {op} does not apply to an amount", op=op)]}
        )
    given = to_decimal(value, name)
    if given != given.quantize(Decimal("0.01")):
        raise ValidationFailed(
            {
                name: [
                    message("{value} has more than {places} decimal places", value=value, places=2)
                ]
            }
        )
    amount = type_coerce(amount, Amount(2))
    return {
        "eq": amount == given,
        "ne": not_(amount == given),
        "lt": amount < given,
        "lte": amount <= given,
        "gt": amount > given,
        "gte": amount >= given,
    }[op]


def _total_paid(entity: EntityType, op: str, value: Any) -> Any:
    payer = aliased(Party)
    # payments of the party and of the parties merged into it (their history is its own)
    paid = (
        select(func.coalesce(func.sum(FinancePayment.base_amount), 0))
        .join(payer, payer.id == FinancePayment.party_id)
        .where(or_(payer.id == entity.model.id, payer.merged_into_id == entity.model.id))
        .scalar_subquery()
    )
    return _compared("total_paid", paid, op, value)


def _order_due(entity: EntityType, op: str, value: Any) -> Any:
    # the total less what was paid for the order (refunds deducted): payment.received's
    # order_due, but negative when overpaid; a cancelled order's total is not due
    paid = (
        select(func.coalesce(func.sum(FinancePayment.order_amount), 0))
        .where(FinancePayment.order_id == FinanceOrder.id)
        .scalar_subquery()
    )
    total = case((FinanceOrder.cancelled_at.is_not(None), 0), else_=FinanceOrder.total)
    return _compared("due", total - paid, op, value)


@hookimpl
def crmkit_register_filter_fields() -> list[FilterField]:
    return [
        # what was paid is the payments': a condition on it takes reading them
        FilterField(
            "total_paid",
            "party",
            _total_paid,
            label="Total paid",
            kind="money",
            permission=("finance_payment", "read"),
        ),
        FilterField(
            "due",
            "finance_order",
            _order_due,
            label="Due",
            kind="money",
            permission=("finance_payment", "read"),
        ),
    ]


# -- reports, jobs and commands ------------------------------------------------------


@hookimpl
def crmkit_register_screens() -> list[Any]:
    from crmkit_finance.screens import screens

    return screens()


@hookimpl
def crmkit_register_menu_items() -> list[Any]:
    from crmkit_finance.screens import menu_items

    return menu_items()


@hookimpl
def crmkit_register_card_panels() -> list[Any]:
    from crmkit_finance.screens import panels

    return panels()


@hookimpl
def crmkit_register_reports() -> list[Any]:
    from crmkit_finance.reports import REPORTS

    return list(REPORTS)


@hookimpl
def crmkit_register_jobs() -> list[Job]:
    from crmkit_finance import jobs

    return [
        Job("finance.expire_cashback", jobs.expire_cashback, description="Expire old cashback."),
        Job(
            "finance.amortize",
            jobs.amortize_last_month,
            description="Book last month's amortization of equipment.",
        ),
        Job(
            "finance.check_low_stock",
            jobs.check_low_stock,
            description="Remind about goods below their minimum.",
        ),
        Job(
            "finance.purge_form_tokens",
            jobs.purge_form_tokens,
            description="Delete one-time form tokens older than finance.form_token_days.",
        ),
    ]


@hookimpl
def crmkit_register_schedules() -> list[Schedule]:
    return [
        Schedule("finance.expire_cashback.daily", "finance.expire_cashback", cron="10 0 * * *"),
        Schedule("finance.amortize.monthly", "finance.amortize", cron="30 0 1 * *"),
        Schedule("finance.check_low_stock.hourly", "finance.check_low_stock", every_seconds=3600),
        Schedule("finance.purge_form_tokens.daily", "finance.purge_form_tokens", cron="40 0 * * *"),
    ]


@hookimpl
def crmkit_register_commands(cli: Any) -> None:
    from crmkit_finance.cli import finance_group

    if "finance" not in cli.commands:
        cli.add_command(finance_group)


ZERO = Decimal(0)
