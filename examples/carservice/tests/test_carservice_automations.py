"""The car service's assistant: booking confirmation and reminder, review request, paid orders.

Each rule runs as the worker would run it (the ``automation`` outbox items delivered here)
and its effect is checked where a user sees it: the client's timeline, signed "assistant".
"""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_booking import booking
from crmkit_finance import finance
from crmkit_mail import plugin as mail_plugin
from service_fixtures import PLUGINS, build_station
from sqlalchemy import select

from crmkit.automation.engine import scan_clock
from crmkit.clock import utcnow
from crmkit.jobs.delivery import deliver_due
from crmkit.model import Activity, AutomationFailure, Notification, OutboxItem, Task


@pytest.fixture
def station(make_crm):
    return build_station(make_crm(plugins=[*PLUGINS, mail_plugin]))


def run_rules(crm) -> int:
    """Run the queued assistant rules (not the mail they queue: that is the mail plugin's)."""
    with crm.system() as work:
        ids = list(
            work.session.scalars(
                select(OutboxItem.id).where(
                    OutboxItem.kind == "automation", OutboxItem.status == "pending"
                )
            )
        )
    outcome = deliver_due(crm, ids)
    assert set(outcome) <= {"delivered"}, outcome
    return len(ids)


def signed(crm, party_id: int) -> list[Activity]:
    """What the assistant wrote on a client's timeline, oldest first."""
    with crm.system() as work:
        return list(
            work.session.scalars(
                select(Activity)
                .where(Activity.party_id == party_id, Activity.by_assistant.is_(True))
                .order_by(Activity.id)
            )
        )


def book(station, party_id: int, starts_at: dt.datetime):
    with station.crm.acting_as(station.manager) as work:
        journal = booking(work)
        bay = journal.add_resource("Пост 1", kind="bay")
        return journal.book(
            party_id=party_id,
            resource_id=bay.id,
            starts_at=starts_at,
            duration=dt.timedelta(hours=1),
        )


def client_with_mail(station):
    with station.crm.acting_as(station.manager) as work:
        return work.parties.create(
            kind="person",
            name="Анна Смирнова",
            customer_type="individual",
            contact_points=[
                {"kind": "phone", "value": "+7 903 123-45-67"},
                {"kind": "email", "value": "anna@example.ru"},
            ],
        )


def test_a_booking_is_confirmed_by_mail_and_reminded_the_day_before(station):
    crm = station.crm
    anna = client_with_mail(station)
    # 10:00 Moscow time the day after tomorrow
    day = (utcnow() + dt.timedelta(days=2)).date()
    starts = dt.datetime.combine(day, dt.time(7, 0), dt.UTC)
    event = book(station, anna.id, starts)
    assert run_rules(crm) == 2  # the confirmation and its "no address" twin
    [mail] = signed(crm, anna.id)[:1]
    assert mail.kind == "mail" and mail.status == "queued"
    assert mail.data["to"] == "anna@example.ru" and mail.subject == "Вы записаны в автосервис"
    assert f"{day:%d.%m.%Y} в 10:00" in mail.body  # in the station's time zone
    [entry] = [a for a in signed(crm, anna.id) if a.kind == "automation"]
    assert entry.subject == "Подтверждение записи" and entry.record_id == event.id
    # the day before: the clock scan queues the reminder once
    assert scan_clock(crm, now=starts - dt.timedelta(days=3)) == 0  # too early
    assert scan_clock(crm, now=starts - dt.timedelta(hours=20)) == 2
    assert scan_clock(crm, now=starts - dt.timedelta(hours=19)) == 0
    run_rules(crm)
    reminders = [a for a in signed(crm, anna.id) if a.subject == "Напоминаем о записи на завтра"]
    assert len(reminders) == 1 and reminders[0].data["to"] == "anna@example.ru"
    with crm.system() as work:
        assert work.session.scalars(select(Task)).all() == []  # nobody had to call


def test_a_client_without_mail_gets_a_call_task_instead(station):
    crm = station.crm
    volkov = station.client  # a phone only
    starts = utcnow().replace(microsecond=0) + dt.timedelta(days=3)
    book(station, volkov.id, starts)
    run_rules(crm)
    kinds = [a.kind for a in signed(crm, volkov.id)]
    assert "mail" not in kinds and kinds.count("note") == 1
    [note] = [a for a in signed(crm, volkov.id) if a.kind == "note"]
    assert "нет адреса почты" in note.body
    with crm.system() as work:
        [task] = work.session.scalars(select(Task)).all()
    assert task.title.startswith("Подтвердить запись по телефону: Сергей Волков")
    assert task.assignee_id == station.manager.id  # who booked it (the bay has no person)


def test_a_paid_order_moves_to_paid_the_manager_is_told_and_a_review_is_asked(station):
    crm = station.crm
    order = station.order()
    with crm.acting_as(station.ivan) as work:
        for stage in ("diagnostics", "in_work", "done"):
            work.moves.move(order.id, stage, entity="finance_order")
    with crm.acting_as(station.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(station.desk.id, counted="0.00")
        fin.payments.take(
            order_id=order.id, amount="500.00", method="cash", desk_id=station.desk.id
        )
    run_rules(crm)
    with crm.system() as work:
        assert work.records("finance_order").get(order.id).stage == "done"  # 1000 still due
    with crm.acting_as(station.cashier) as work:
        finance(work).payments.take(
            order_id=order.id, amount="1000.00", method="card", desk_id=station.desk.id
        )
    run_rules(crm)
    with crm.system() as work:
        paid = work.records("finance_order").get(order.id)
        assert paid.stage == "paid"
        [last] = work.moves.history(paid, entity="finance_order")[-1:]
        assert last.to_stage == "paid" and last.actor_id is None
        assert last.comment == "assistant: Заказ оплачен"
        [told] = work.session.scalars(
            select(Notification).where(Notification.user_id == station.manager.id)
        )
    assert told.kind == "assistant" and told.text == f"Заказ {paid.number} оплачен (Сергей Волков)"
    [entry] = [a for a in signed(crm, station.client.id) if a.kind == "automation"]
    assert entry.subject == "Заказ оплачен" and entry.record_id == order.id
    # handing the car back closes the order: the client (no mail) gets a call for a review
    with crm.acting_as(station.manager) as work:
        work.moves.move(order.id, "closed", entity="finance_order")
    run_rules(crm)
    with crm.system() as work:
        [task] = work.session.scalars(select(Task)).all()
    assert task.title == f"Спросить отзыв о заказе {paid.number}: Сергей Волков"
    assert task.record_id == order.id and task.assignee_id == station.manager.id


def prepay(station, order, amount: str) -> None:
    """The cashier takes ``amount`` for the order (whatever stage it is in)."""
    with station.crm.acting_as(station.cashier) as work:
        fin = finance(work)
        if fin.cashdesk.current_shift(station.desk.id) is None:
            fin.cashdesk.open_shift(station.desk.id, counted="0.00")
        fin.payments.take(order_id=order.id, amount=amount, method="cash", desk_id=station.desk.id)


def work_through(station, order, stages=("diagnostics", "in_work", "done")) -> None:
    with station.crm.acting_as(station.ivan) as work:
        for stage in stages:
            work.moves.move(order.id, stage, entity="finance_order")


def stage_of(crm, order) -> str:
    with crm.system() as work:
        return work.records("finance_order").get(order.id).stage


def manager_told(station) -> list[str]:
    with station.crm.system() as work:
        return list(
            work.session.scalars(
                select(Notification.text).where(Notification.user_id == station.manager.id)
            )
        )


@pytest.mark.parametrize("amount", ["1500.00", "2000.00"], ids=["in-full", "overpaid"])
def test_an_order_prepaid_in_full_moves_to_paid_once_it_is_done(station, amount):
    crm = station.crm
    order = station.order()  # 1500 ₽ of diagnostics
    work_through(station, order, ("diagnostics", "in_work"))
    prepay(station, order, amount)  # the client pays before the work is finished
    run_rules(crm)
    assert stage_of(crm, order) == "in_work"  # not done yet: nothing to hand over
    work_through(station, order, ("done",))
    run_rules(crm)
    assert stage_of(crm, order) == "paid"
    with crm.system() as work:
        [last] = work.moves.history(order.id, entity="finance_order")[-1:]
        number = work.records("finance_order").get(order.id).number
    assert last.from_stage == "done" and last.actor_id is None
    assert last.comment == "assistant: Заказ оплачен заранее"
    assert manager_told(station) == [f"Заказ {number} оплачен (Сергей Волков)"]
    [entry] = [a for a in signed(crm, station.client.id) if a.kind == "automation"]
    assert entry.subject == "Заказ оплачен заранее" and entry.record_id == order.id
    assert run_rules(crm) == 0  # nothing more queued: told once


def test_a_partly_prepaid_order_waits_in_done_for_the_rest(station):
    crm = station.crm
    order = station.order()
    prepay(station, order, "500.00")
    work_through(station, order)
    run_rules(crm)
    assert stage_of(crm, order) == "done"  # 1000 ₽ still due
    assert manager_told(station) == []
    prepay(station, order, "1000.00")
    run_rules(crm)
    assert stage_of(crm, order) == "paid"
    assert len(manager_told(station)) == 1
    with crm.system() as work:
        [last] = work.moves.history(order.id, entity="finance_order")[-1:]
    assert last.comment == "assistant: Заказ оплачен"


def test_an_order_reopened_and_done_again_moves_on_when_paid_up_meanwhile(station):
    crm = station.crm
    order = station.order()
    prepay(station, order, "500.00")
    work_through(station, order)
    run_rules(crm)
    with crm.acting_as(station.manager) as work:  # the client came back: more work
        work.moves.move(order.id, "in_work", entity="finance_order", comment="стук в подвеске")
    prepay(station, order, "1000.00")  # paid up while the car is back in the workshop
    run_rules(crm)
    assert stage_of(crm, order) == "in_work"
    work_through(station, order, ("done",))
    run_rules(crm)
    assert stage_of(crm, order) == "paid"
    assert len(manager_told(station)) == 1


def test_a_free_order_done_is_left_to_the_office(station):
    crm = station.crm
    order = station.order()
    with crm.acting_as(station.manager) as work:  # a warranty job: nothing to pay
        finance(work).orders.set_discount(order.id, 100)
    work_through(station, order)
    run_rules(crm)
    assert stage_of(crm, order) == "done" and manager_told(station) == []


def test_paid_and_done_in_one_go_is_moved_and_told_once(station):
    """The payment's rule and the stage's rule both match; whichever runs first moves the
    order, the other finds it paid: one move, one notification, no failure."""
    crm = station.crm
    order = station.order()
    work_through(station, order, ("diagnostics", "in_work"))
    with crm.acting_as(station.admin) as work:  # one transaction: the money and the move
        work.moves.move(order.id, "done", entity="finance_order")
        fin = finance(work)
        fin.cashdesk.open_shift(station.desk.id, counted="0.00")
        fin.payments.take(
            order_id=order.id, amount="1500.00", method="cash", desk_id=station.desk.id
        )
    assert run_rules(crm) == 2
    assert stage_of(crm, order) == "paid"
    assert len(manager_told(station)) == 1
    with crm.system() as work:
        moves = [h.to_stage for h in work.moves.history(order.id, entity="finance_order")]
        assert moves.count("paid") == 1
        assert work.session.scalars(select(AutomationFailure)).all() == []


def test_two_workers_running_both_rules_at_once_tell_the_manager_once(station, monkeypatch):
    """Two workers take the payment's and the stage's rule at the same moment: both would
    read the order as done before either moves it, unless the first holds the order."""
    import contextlib
    import threading

    from crmkit.automation import engine

    crm = station.crm
    order = station.order()
    work_through(station, order, ("diagnostics", "in_work"))
    prepay(station, order, "1500.00")
    run_rules(crm)  # the payment's rule: not done yet
    work_through(station, order, ("done",))
    prepay(station, order, "0.01")  # a payment's rule queued beside the stage's
    with crm.system() as work:
        ids = list(
            work.session.scalars(
                select(OutboxItem.id).where(
                    OutboxItem.kind == "automation", OutboxItem.status == "pending"
                )
            )
        )
    assert len(ids) == 2
    both_checked = threading.Barrier(2)
    evaluate = engine.evaluate

    def evaluate_then_wait(*args):
        holds = evaluate(*args)
        # the other one may be waiting for the order: then go on alone
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait(2)
        return holds

    monkeypatch.setattr(engine, "evaluate", evaluate_then_wait)
    outcomes = []
    threads = [
        threading.Thread(target=lambda i=i: outcomes.append(deliver_due(crm, [i]))) for i in ids
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    monkeypatch.undo()
    assert outcomes == [{"delivered": 1}, {"delivered": 1}]
    assert stage_of(crm, order) == "paid"
    assert len(manager_told(station)) == 1
    with crm.system() as work:
        assert work.session.scalars(select(AutomationFailure)).all() == []
