"""The car service's automation rules (registered in code, run by the assistant).

* a booking is confirmed when it is made, and the client is reminded the day before;
* the client is asked for a review once the order is closed (the car handed back);
* an order paid in full moves from ``done`` to ``paid`` and its manager is told, whether
  the last payment came after the work was done or the client paid before.

Messages go to the client by mail (channel ``mail``, the ``crmkit-mail`` plugin).  A client
without an email address gets no message: the rule leaves a note on the timeline and a
task for the staff instead (a call), so nobody is forgotten.  Everything the assistant does
is on the client's timeline, signed "assistant".
"""

from __future__ import annotations

from typing import Any

from crmkit.automation import Action, Rule, Trigger

CHANNEL = "mail"
WHEN = '{{ record.starts_at|local(zone)|date("%d.%m.%Y в %H:%M") }}'

HAS_MAIL = {"field": "party.email", "op": "not_null"}
NO_MAIL = {"field": "party.email", "op": "is_null"}
IS_BOOKING = {"field": "kind", "op": "eq", "value": "booking"}


def _both(
    name: str,
    label: str,
    when: Trigger,
    *,
    condition: dict[str, Any] | None,
    subject: str,
    body: str,
    task: str,
    due_in_hours: float,
) -> list[Rule]:
    """A rule writing to clients with an email, and its twin giving the staff a call task."""
    only = [condition] if condition else []
    return [
        Rule(
            name,
            when,
            (Action("send_message", {"channel": CHANNEL, "subject": subject, "body": body}),),
            condition={"all": [*only, HAS_MAIL]},
            label=label,
        ),
        Rule(
            f"{name}-call",
            when,
            (
                Action("add_note", {"body": f"{label}: у клиента нет адреса почты, нужен звонок"}),
                Action(
                    "create_task",
                    {"title": task, "assignee": "owner", "due_in_hours": due_in_hours},
                ),
            ),
            condition={"all": [*only, NO_MAIL]},
            label=label,
        ),
    ]


def rules() -> list[Rule]:
    """Every rule of the deployment."""
    found: list[Rule] = []
    found += _both(
        "carservice-booking-confirm",
        "Подтверждение записи",
        Trigger("booking.made", entity="calendar_event"),
        condition=IS_BOOKING,
        subject="Вы записаны в автосервис",
        body=(
            "Здравствуйте, {{ party.name }}!\n\nВы записаны на "
            + WHEN
            + " ({{ record.title }}). Если планы изменятся, ответьте на это письмо."
        ),
        task="Подтвердить запись по телефону: {{ party.name }}, " + WHEN,
        due_in_hours=2,
    )
    found += _both(
        "carservice-booking-reminder",
        "Напоминание о записи",
        Trigger("booking.upcoming", entity="calendar_event", hours=24),
        condition=IS_BOOKING,
        subject="Напоминаем о записи на завтра",
        body="Здравствуйте, {{ party.name }}!\n\nЖдём вас " + WHEN + ".",
        task="Напомнить о записи: {{ party.name }}, " + WHEN,
        due_in_hours=4,
    )
    found += _both(
        "carservice-review-request",
        "Просьба об отзыве",
        Trigger("stage.entered", entity="finance_order", stage="closed"),
        condition=None,
        subject="Как прошёл визит?",
        body=(
            "Здравствуйте, {{ party.name }}!\n\nСпасибо, что выбрали нас. Ответьте на это "
            "письмо парой слов о заказе {{ record.number }}: нам важен ваш отзыв."
        ),
        task="Спросить отзыв о заказе {{ record.number }}: {{ party.name }}",
        due_in_hours=24,
    )
    found += _paid_in_full()
    return found


#: An order of the car service waiting in ``done`` (the order as it is when the rule runs).
IS_DONE = [
    {"field": "pipeline", "op": "eq", "value": "carservice_order"},
    {"field": "stage", "op": "eq", "value": "done"},
]
#: Nothing left to pay: the finance plugin's computed ``due`` (negative when overpaid), a
#: query, so it comes after the fields the order carries.
PAID_UP = {"field": "due", "op": "lte", "value": 0}


def _paid_in_full() -> list[Rule]:
    """An order done and paid in full moves to ``paid`` and its manager is told, whichever
    came last: the payment (``carservice-order-paid``) or the work (``-prepaid``).

    Both check the order as it is when they run: the first to run moves it, the other finds
    it no longer ``done`` and does nothing, so the manager is told once.
    """
    actions = (
        Action("move", {"to": "paid"}),
        Action(
            "notify",
            {"to": "owner", "text": "Заказ {{ record.number }} оплачен ({{ party.name }})"},
        ),
    )
    return [
        Rule(
            "carservice-order-paid",
            Trigger("payment.received"),
            actions,
            subject=("finance_order", "order_id"),
            condition={"all": [*IS_DONE, PAID_UP]},
            label="Заказ оплачен",
        ),
        Rule(
            "carservice-order-prepaid",
            Trigger("stage.entered", entity="finance_order", stage="done"),
            actions,
            # a free order (nothing to pay) is not "paid": the office hands it over
            condition={"all": [*IS_DONE, {"field": "total", "op": "gt", "value": 0}, PAID_UP]},
            label="Заказ оплачен заранее",
        ),
    ]
