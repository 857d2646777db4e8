"""The statuses of a service order (заказ-наряд), as the car service works.

Revenue is recognized by the finance plugin when an order enters a success stage (``done``);
``paid`` and ``closed`` are success stages too, so moving on from ``done`` changes no books.
Workers (and the office) move orders through the workshop stages; handing the car over as
paid is the cashier's or the accountant's (or the office's), and only when the order is paid
or the client pays by contract.  Each transition takes a permission on the order (``repair``,
``pay``...), not a list of roles, so an admin gives a new role a move by granting its cell.
"""

from __future__ import annotations

from crmkit_finance.services.orders import paid_or_on_contract

from crmkit import Pipeline, Stage, StageKind, Transition

WORKSHOP = ("new", "diagnostics", "in_work", "waiting_parts")

#: Who may take which move is a permission on ``finance_order`` (seeded in
#: :mod:`crmkit_carservice.access`, edited by the admin on *Roles and permissions*): moving an
#: order needs ``move`` on it and the transition's action, whose scope must reach the order.
#: ``repair``: the workshop stages (to ``done`` included), the workers' (own) and the office's;
REPAIR = "repair"
#: ``pay``: handing a done order over as paid, the cashier's, the accountant's and the office's;
PAY = "pay"
#: ``reopen``, ``close`` and ``cancel`` (cancelling and restoring): the office's.
REOPEN, CLOSE, CANCEL = "reopen", "close", "cancel"
#: every action the pipeline's transitions take
ACTIONS = (REPAIR, PAY, REOPEN, CLOSE, CANCEL)

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
        Transition("new", "diagnostics", permission=REPAIR),
        Transition(("new", "diagnostics", "waiting_parts"), "in_work", permission=REPAIR),
        Transition(("diagnostics", "in_work"), "waiting_parts", permission=REPAIR),
        Transition(("diagnostics", "in_work"), "done", permission=REPAIR),
        Transition("diagnostics", "new", backward=True, label="back", permission=REPAIR),
        Transition(
            "done",
            "in_work",
            backward=True,
            label="reopen",
            requires_comment=True,
            permission=REOPEN,
        ),
        Transition("done", "paid", guards=(paid_or_on_contract,), permission=PAY),
        Transition("paid", "closed", permission=CLOSE),
        Transition(WORKSHOP, "cancelled", requires_comment=True, permission=CANCEL),
        Transition("cancelled", "new", backward=True, label="restore", permission=CANCEL),
    ],
)
