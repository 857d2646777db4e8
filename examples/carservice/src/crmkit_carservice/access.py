"""Who does what at the car service: roles, their start screens and permission cells.

The finance plugin seeds the money roles (cashier, accountant, warehouse head, director);
this deployment adds the **worker** (the executor of orders) and decides where each role
lands after sign-in.  A worker reads and moves only the orders assigned to them (scope
``own`` over the order's ``assignee_id``/``owner_id``), and holds no permission on any money
entity, so every money screen and report refuses them.  Who takes which move of the order
pipeline is a cell too (``repair``, ``pay``, ``reopen``, ``close``, ``cancel`` on
``finance_order``, see :mod:`crmkit_carservice.pipeline`), seeded below for the roles the
pipeline named before.
"""

from __future__ import annotations

from crmkit.access.rules import Permission, Role, Scope, grant
from crmkit_carservice import pipeline
from crmkit_carservice.pipeline import PAY, REPAIR

ROLES = (
    Role("worker", "Worker", "Does the work on the orders assigned to them.", "carservice-my"),
    Role("manager", "Manager", "Takes orders, finds clients by plate, books.", "carservice-desk"),
    Role("director", "Director", "Reads every report and sets plans.", "carservice-director"),
    Role("cashier", "Cashier", "Takes payments; opens and closes shifts.", "finance_cashdesk"),
)

CARS = ("carservice_car",)
#: What the director's dashboard shows: the director's report (orders), corporate income
#: (payments), stock and salaries.
DASHBOARD_REPORTS = ("finance_order", "finance_payment", "finance_stock", "finance_payroll")


def permissions() -> list[Permission]:
    """The car service's permission cells (added to the core's and the finance plugin's)."""
    return [
        # the worker: their own orders, their tasks and calendar, nothing about money
        *grant("worker", "finance_order", ("read", "move"), Scope.OWN),
        *grant("worker", ("task", "calendar_event"), ("read", "update"), Scope.OWN),
        *grant("worker", ("finance_item", "finance_item_category"), ("read",), Scope.ALL),
        *grant("worker", "resource", ("read",), Scope.ALL),
        # the manager: cars like clients
        *grant("manager", CARS, ("read", "create", "update", "delete", "export"), Scope.ALL),
        # the pipeline's moves (see pipeline.SERVICE_ORDER): ``move`` on the order and the
        # transition's action.  The worker takes their own orders through the workshop; the
        # cashier and the accountant move every order, but only done -> paid (``pay``); the
        # office (manager, admin) does everything, as its role names did before
        *grant("worker", "finance_order", (REPAIR,), Scope.OWN),
        *grant("cashier", "finance_order", ("move", PAY), Scope.ALL),
        *grant("cashier", CARS, ("read",), Scope.ALL),
        *grant("accountant", "finance_order", ("move", PAY), Scope.ALL),
        *[
            p
            for role in ("manager", "admin")
            for p in grant(role, "finance_order", pipeline.ACTIONS, Scope.ALL)
        ],
        *[
            p
            for role in ("director", "accountant", "warehouse_head")
            for p in grant(role, CARS, ("read", "export"), Scope.ALL)
        ],
        # the director's dashboard (the screen takes ``report`` on orders) and the reports
        # it shows; the admin has the same through its ``* / *`` cell
        *grant("director", DASHBOARD_REPORTS, ("report",), Scope.ALL),
    ]
