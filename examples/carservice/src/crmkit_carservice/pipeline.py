"""The statuses of a service order (заказ-наряд), as the car service works.

Revenue is recognized by the finance plugin when an order enters a success stage (``done``);
``paid`` and ``closed`` are success stages too, so moving on from ``done`` changes no books.
Workers move their own orders through the workshop stages; handing the car over as paid is
the cashier's (or the manager's), and only when the order is paid or the client pays by
contract.
"""

from __future__ import annotations

from crmkit_finance.services.orders import paid_or_on_contract

from crmkit import Pipeline, Stage, StageKind, Transition

WORKSHOP = ("new", "diagnostics", "in_work", "waiting_parts")
OFFICE = ("manager", "admin")

SERVICE_ORDER = Pipeline(
    name="carservice_order",
    entity="finance_order",
    label="Service orders",
    default=True,
    stages=[
        Stage("new", "New"),
        Stage("diagnostics", "Diagnostics"),
        Stage("in_work", "In work"),
        Stage("waiting_parts", "Waiting for parts"),
        Stage("done", "Done", kind=StageKind.SUCCESS),
        Stage("paid", "Paid", kind=StageKind.SUCCESS),
        Stage("closed", "Closed", kind=StageKind.SUCCESS),
        Stage("cancelled", "Cancelled", kind=StageKind.DEAD_END),
    ],
    transitions=[
        Transition("new", "diagnostics"),
        Transition(("new", "diagnostics", "waiting_parts"), "in_work"),
        Transition(("diagnostics", "in_work"), "waiting_parts"),
        Transition(("diagnostics", "in_work"), "done"),
        Transition("diagnostics", "new", backward=True, label="back"),
        Transition(
            "done", "in_work", backward=True, label="reopen", requires_comment=True, roles=OFFICE
        ),
        Transition(
            "done",
            "paid",
            guards=(paid_or_on_contract,),
            roles=("cashier", "accountant", *OFFICE),
        ),
        Transition("paid", "closed", roles=OFFICE),
        Transition(WORKSHOP, "cancelled", requires_comment=True, roles=OFFICE),
        Transition("cancelled", "new", backward=True, label="restore", roles=OFFICE),
    ],
)
