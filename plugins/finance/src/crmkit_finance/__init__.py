"""crmkit-finance: money, orders and payments, cash desk, stock, salary, cashback, reports.

``finance(work)`` gives the plugin's services inside a unit of work::

    from crmkit_finance import finance

    with crm.acting_as("cashier") as work:
        finance(work).payments.take(order_id=order.id, amount="1500.00", method="card", desk_id=1)
"""

from crmkit_finance.money import Money, round_money
from crmkit_finance.services import Finance, finance

__version__ = "0.1.0"

__all__ = ["Finance", "Money", "finance", "round_money"]
