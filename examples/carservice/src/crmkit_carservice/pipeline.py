"""The statuses of a service order (заказ-наряд), as the car service works.

Revenue is recognized by the finance plugin when an order enters a success stage (``done``);
``paid`` and ``closed`` are success stages too, so moving on from ``done`` changes no books.
Workers (and the office) move orders through the workshop stages; handing the car over as
paid is the cashier's or the accountant's (or the office's), and only when the order is paid
or the client pays by contract.
"""

from __future__ import annotations

from crmkit_finance.services.orders import paid_or_on_contract

from crmkit import Pipeline, Stage, StageKind, Transition

WORKSHOP = ("new", "diagnostics", "in_work", "waiting_parts")
OFFICE = ("manager", "admin")
#: who moves an order through the workshop stages (to ``done`` included): the workers (on
#: their own orders, by their scope) and the office; the cashier and the accountant, who
#: may move any order for the handing over, are not among them
WORKSHOP_ROLES = ("worker", *OFFICE)

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
        Transition("new", "diagnostics", roles=WORKSHOP_ROLES),
        Transition(("new", "diagnostics", "waiting_parts"), "in_work", roles=WORKSHOP_ROLES),
        Transition(("diagnostics", "in_work"), "waiting_parts", roles=WORKSHOP_ROLES),
        Transition(("diagnostics", "in_work"), "done", roles=WORKSHOP_ROLES),
        Transition("diagnostics", "new", backward=True, label="back", roles=WORKSHOP_ROLES),
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
