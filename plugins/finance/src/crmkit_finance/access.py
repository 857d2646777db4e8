"""Roles of the finance plugin and what each may do (seeded into the permission table).

* **cashier**: takes payments, refunds and voids them, opens and closes shifts (their own),
  reads orders, clients, cashback balances and invoices; no salaries, no costs, no stock.
* **accountant**: everything about money: the ledger, payments, invoices and contracts,
  salaries and pay schemes, cashback, expenses, assets, plans, rates; reads orders and stock;
  closes (counts) any cashier's shift.
* **warehouse_head**: the catalogue (goods, categories, prices), suppliers, purchase orders,
  receipts, write-offs and counts; reads orders (to supply them).
* **director**: reads and exports everything, sets plans.

The core ``manager`` role takes orders (create, edit, assign a worker, move, set prices);
the core ``admin`` may do everything, and runs every report (``report`` on the reported
entities: a deployment hands a supervisor the finance reports with the same cells).
A deployment's worker role is its own: typically
``grant("worker", "finance_order", ("read", "move"), "own")``, which shows a worker only the
orders assigned to them.
"""

from __future__ import annotations

from crmkit.access.rules import Permission, Role, Scope, grant

CATALOGUE = ("finance_item", "finance_item_category", "finance_price_list")
PLACES = ("finance_location", "finance_cash_desk")
MONEY = (
    "finance_payment",
    "finance_ledger",
    "finance_invoice",
    "finance_contract",
    "finance_payroll",
    "finance_pay_scheme",
    "finance_cashback",
    "finance_asset",
    "finance_plan",
    "finance_rate",
)
GOODS = ("finance_stock", "finance_purchase_order", "finance_supplier")
ALL_FINANCE = ("finance_order", *CATALOGUE, *PLACES, *MONEY, *GOODS, "finance_shift")
#: The entities the finance reports are about (``Report.entity``): ``report`` on one runs its
#: reports whatever their ``roles`` (see :func:`crmkit_finance.reports.guard`).
REPORTED = (
    "finance_order",
    "finance_ledger",
    "finance_plan",
    "finance_payment",
    "finance_payroll",
    "finance_stock",
    "finance_shift",
)

ROLES = (
    Role(
        "cashier",
        "Cashier",
        "Takes payments; opens and closes cash desk shifts.",
        "finance_cashdesk",
    ),
    Role(
        "accountant",
        "Accountant",
        "Salaries, cashback, payments, invoices, the ledger.",
        "finance_payroll",
    ),
    Role(
        "warehouse_head",
        "Warehouse head",
        "Goods, suppliers, purchases and stock.",
        "finance_stock",
    ),
    Role("director", "Director", "Reads every report and sets plans.", "/reports/finance.director"),
)


def permissions() -> list[Permission]:
    """The seeded permission cells."""
    everyone_reads = ("read",)
    return [
        # cashier
        *grant("cashier", "finance_order", ("read",), Scope.ALL),
        *grant("cashier", "finance_payment", ("read", "create", "refund", "void"), Scope.ALL),
        *grant("cashier", "finance_shift", ("read", "create", "update"), Scope.OWN),
        *grant("cashier", (*PLACES, *CATALOGUE), everyone_reads, Scope.ALL),
        *grant(
            "cashier",
            ("finance_cashback", "finance_invoice", "finance_contract"),
            ("read",),
            Scope.ALL,
        ),
        *grant("cashier", ("party", "contact_point"), ("read",), Scope.ALL),
        *grant("cashier", "activity", ("read", "create"), Scope.ALL),
        # accountant
        *grant("accountant", MONEY, ("read", "create", "update", "export"), Scope.ALL),
        *grant("accountant", "finance_ledger", ("reverse",), Scope.ALL),
        *grant("accountant", "finance_payment", ("refund", "void"), Scope.ALL),
        *grant("accountant", "finance_payroll", ("pay", "reverse"), Scope.ALL),
        *grant("accountant", ("finance_order", "finance_shift"), ("read", "export"), Scope.ALL),
        # closes a shift its cashier left open (see CashDeskService.may_close)
        *grant("accountant", "finance_shift", ("update",), Scope.ALL),
        *grant("accountant", "finance_cash_desk", ("read", "create", "update"), Scope.ALL),
        *grant(
            "accountant", (*CATALOGUE, *GOODS, "finance_location"), ("read", "export"), Scope.ALL
        ),
        *grant("accountant", "finance_supplier", ("update",), Scope.ALL),
        *grant("accountant", ("party", "contact_point"), ("read",), Scope.ALL),
        *grant("accountant", "activity", ("read", "create"), Scope.ALL),
        # warehouse head
        *grant(
            "warehouse_head",
            (*CATALOGUE, *GOODS),
            ("read", "create", "update", "export"),
            Scope.ALL,
        ),
        *grant("warehouse_head", CATALOGUE, ("delete",), Scope.ALL),
        *grant("warehouse_head", "finance_location", ("read", "create", "update"), Scope.ALL),
        *grant("warehouse_head", "finance_order", ("read",), Scope.ALL),
        # reads the client base; creates supplier parties and edits those they created (own),
        # never a client's name or contacts
        *grant("warehouse_head", ("party", "contact_point"), ("read", "create"), Scope.ALL),
        *grant("warehouse_head", ("party", "contact_point"), ("update",), Scope.OWN),
        *grant("warehouse_head", ("task", "reminder"), ("read", "create", "update"), Scope.OWN),
        *grant("warehouse_head", "activity", ("read", "create"), Scope.ALL),
        # director
        *grant("director", ALL_FINANCE, ("read", "export"), Scope.ALL),
        *grant("director", "finance_plan", ("create", "update"), Scope.ALL),
        *grant(
            "director",
            ("party", "contact_point", "activity", "deal", "task"),
            ("read", "export"),
            Scope.ALL,
        ),
        # the core manager takes orders
        *grant(
            "manager",
            "finance_order",
            ("read", "create", "update", "move", "assign", "export", "price"),
            Scope.ALL,
        ),
        *grant("manager", (*CATALOGUE, *PLACES, "finance_contract"), ("read",), Scope.ALL),
        *grant("manager", ("finance_cashback", "finance_payment"), ("read",), Scope.ALL),
        *grant("manager", "finance_contract", ("create", "update"), Scope.ALL),
        # every finance report, whatever its roles: the admin's (its ``* / *`` cell says the
        # same; named here so the power is a cell a deployment can read and hand out)
        *grant("admin", REPORTED, ("report",), Scope.ALL),
    ]
