"""Service orders: the pipeline as the workshop works, intake in one go, plate search."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from crmkit_carservice import carservice
from crmkit_carservice.model import CarserviceCar
from crmkit_finance import finance
from sqlalchemy import func, select

from crmkit.clock import frozen_at
from crmkit.errors import MoveRefused, ValidationFailed
from crmkit.model import Party


def test_an_order_goes_through_the_workshop_and_is_handed_over_paid(station):
    crm = station.crm
    order = station.order()
    assert order.pipeline == "carservice_order" and order.stage == "new"
    with crm.acting_as(station.ivan) as work:
        for stage in ("diagnostics", "in_work", "waiting_parts", "in_work", "done"):
            work.moves.move(order.id, stage, entity="finance_order")
        # handing over is not the worker's
        with pytest.raises(MoveRefused):
            work.moves.move(order.id, "paid", entity="finance_order")
    with crm.acting_as(station.manager) as work:
        done = work.records("finance_order").get(order.id)
        assert done.completed_on is not None  # revenue recognized on entering "done"
        assert done.total == Decimal("1500.00")
    with crm.acting_as(station.cashier) as work, pytest.raises(MoveRefused, match="not paid"):
        work.moves.move(order.id, "paid", entity="finance_order")
    with crm.acting_as(station.cashier) as work:
        fin = finance(work)
        fin.cashdesk.open_shift(station.desk.id, counted="0.00")
        fin.payments.take(
            order_id=order.id, amount="1500.00", method="card", desk_id=station.desk.id
        )
        work.moves.move(order.id, "paid", entity="finance_order")
    with crm.acting_as(station.manager) as work:
        work.moves.move(order.id, "closed", entity="finance_order")
        closed = work.records("finance_order").get(order.id)
        assert closed.stage == "closed"
        history = [m.to_stage for m in work.moves.history(closed, entity="finance_order")]
    assert history[-3:] == ["done", "paid", "closed"]


@pytest.mark.parametrize("role", ["cashier", "accountant"])
def test_the_cashier_and_the_accountant_do_not_move_orders_through_the_workshop(station, role):
    order = station.order()
    office = getattr(station, role)
    with station.crm.acting_as(office) as work:
        for stage in ("diagnostics", "in_work"):
            with pytest.raises(MoveRefused, match="takes the permission “repair” on Orders"):
                work.moves.move(order.id, stage, entity="finance_order")
    with station.crm.acting_as(station.ivan) as work:  # the order's worker may
        work.moves.move(order.id, "in_work", entity="finance_order")
    with station.crm.acting_as(office) as work:
        for stage in ("waiting_parts", "done"):
            with pytest.raises(MoveRefused, match="takes the permission “repair” on Orders"):
                work.moves.move(order.id, stage, entity="finance_order")
    with station.crm.acting_as(station.manager) as work:
        assert work.records("finance_order").get(order.id).stage == "in_work"
        assert work.records("finance_order").get(order.id).completed_on is None
        work.moves.move(order.id, "done", entity="finance_order")  # the office may


def test_cancelling_needs_a_reason_and_the_office(station):
    order = station.order()
    with station.crm.acting_as(station.ivan) as work, pytest.raises(MoveRefused):
        work.moves.move(order.id, "cancelled", entity="finance_order", comment="client left")
    with station.crm.acting_as(station.manager) as work, pytest.raises(MoveRefused):
        work.moves.move(order.id, "cancelled", entity="finance_order")
    with station.crm.acting_as(station.manager) as work:
        work.moves.move(order.id, "cancelled", entity="finance_order", comment="client left")
        assert work.records("finance_order").get(order.id).cancelled_at is not None


@pytest.mark.parametrize("typed", ["А123ВС77", "a 123 bc 77", "A123BC77", "а123вс 77", "A123"])
def test_plate_search_finds_the_client_and_their_orders(station, typed):
    order = station.order()
    with station.crm.acting_as(station.manager) as work:
        matches = carservice(work).find_by_plate(typed)
    assert [m.car.id for m in matches] == [station.car.id]
    assert matches[0].party.id == station.client.id
    assert [o.id for o in matches[0].orders] == [order.id]


def test_plate_search_finds_a_plate_inside_exact_and_prefix_first(station):
    with station.crm.acting_as(station.manager) as work:
        cars = carservice(work).cars
        other = cars.create(party_id=station.client.id, plate="МА123ВС50")
        short = cars.create(party_id=station.client.id, plate="А123ВС")
        # the digits and letters without the first one, as a client remembers them
        assert [m.car.id for m in carservice(work).find_by_plate("123 вс 77")] == [station.car.id]
        found = [m.car.id for m in carservice(work).find_by_plate("а123вс")]
    assert found == [short.id, station.car.id, other.id]  # exact, starts with, contains


def test_plate_search_misses_other_plates(station):
    with station.crm.acting_as(station.manager) as work:
        assert carservice(work).find_by_plate("В777ОР99") == []
        assert carservice(work).find_by_plate("  ") == []


def test_intake_creates_client_car_and_order_in_one_go(station):
    with station.crm.acting_as(station.manager) as work:
        order = carservice(work).intake(
            client={"name": "ООО «Логистик»", "kind": "organisation", "phone": "8 495 111-22-33"},
            car={"plate": "к 001 мм 197", "make": "Ford", "model": "Transit"},
            services=[station.diagnostics.id, station.oil_change.id],
            assignee_id=station.petr.id,
            location_id=station.branch.id,
            mileage=120000,
        )
        client = work.parties.get(order.party_id)
        car, mileage = carservice(work).car_of(order.id)
        lines = finance(work).orders.lines(order)
    assert client.customer_type == "corporate"
    assert car.plate == "К 001 ММ 197" and car.plate_key == "K001MM197" and mileage == 120000
    assert [line.item_id for line in lines] == [station.diagnostics.id, station.oil_change.id]
    assert order.total == Decimal("3500.00") and order.assignee_id == station.petr.id


def test_a_refused_intake_leaves_nothing_behind(station):
    crm = station.crm
    with crm.system() as work:
        parties_before = work.session.scalar(select(func.count()).select_from(Party))
    with crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed):
        carservice(work).intake(
            client={"name": "Новый клиент", "phone": "+7 916 555-44-33"},
            car={"plate": "Е555КХ99"},
            services=[999999],  # no such service
            location_id=station.branch.id,
        )
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == parties_before
        assert (
            work.session.scalar(select(func.count()).where(CarserviceCar.plate_key == "E555KX99"))
            == 0
        )


def test_a_service_that_is_not_a_number_is_refused_naming_its_row(station):
    crm = station.crm
    with crm.system() as work:
        parties_before = work.session.scalar(select(func.count()).select_from(Party))
    with crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed) as refused:
        carservice(work).intake(
            client={"name": "Новый клиент", "phone": "+7 916 555-44-33"},
            car={"plate": "Е556КХ99"},
            services=[str(station.diagnostics.id), "oil"],
            location_id=station.branch.id,
        )
    assert set(refused.value.errors) == {"services"}
    assert "row 2: not a number: 'oil'" in str(refused.value.errors["services"][0])
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == parties_before
    # ids as a form sends them are taken
    with crm.acting_as(station.manager) as work:
        order = carservice(work).intake(
            party_id=station.client.id,
            services=[str(station.diagnostics.id), f" {station.oil_change.id} "],
            location_id=station.branch.id,
        )
        lines = finance(work).orders.lines(order)
    assert [line.item_id for line in lines] == [station.diagnostics.id, station.oil_change.id]


def test_extra_services_can_be_added_after_the_work_is_done(station):
    order = station.order()
    with station.crm.acting_as(station.ivan) as work:
        work.moves.move(order.id, "in_work", entity="finance_order")
        work.moves.move(order.id, "done", entity="finance_order")
    with station.crm.acting_as(station.manager) as work:
        fin = finance(work)
        fin.orders.add_line(fin.orders.get(order.id), station.oil_change.id)
        assert fin.orders.get(order.id).total == Decimal("3500.00")
        assert fin.orders.get(order.id).base_total == Decimal("3500.00")  # recognized at once


def test_assigning_a_blocked_worker_is_refused(station):
    order = station.order()
    with station.crm.system() as work:
        work.users.block(station.petr.id, reason="left")
    with station.crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed):
        carservice(work).assign(order.id, station.petr.id)


def test_a_second_car_with_a_registered_plate_is_refused_naming_the_plate(station):
    with station.crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed) as refused:
        other = work.parties.create(kind="person", name="Другой Клиент")
        carservice(work).cars.create(party_id=other.id, plate="a 123 bc 77")  # Latin, spaced
    # the plate as it is registered: a Russian plate typed in Latin reads in Cyrillic
    assert "А 123 ВС 77" in str(refused.value.errors["plate"][0])
    with station.crm.acting_as(station.manager) as work:
        second = carservice(work).cars.create(party_id=station.client.id, plate="В777ОР99")
        with pytest.raises(ValidationFailed) as renamed:
            carservice(work).cars.update(second.id, {"plate": "А123ВС 77"})
        assert "А123ВС 77" in str(renamed.value.errors["plate"][0])
    with station.crm.system() as work:
        keys = work.session.scalars(select(CarserviceCar.plate_key)).all()
    assert sorted(keys) == ["A123BC77", "B777OP99"]


def test_intake_for_the_client_with_their_plate_typed_takes_their_car(station):
    with station.crm.acting_as(station.manager) as work:
        order = carservice(work).intake(
            party_id=station.client.id,
            car={"plate": "a123bc77"},
            services=[station.diagnostics.id],
            location_id=station.branch.id,
        )
        car, _ = carservice(work).car_of(order.id)
        assert car.id == station.car.id
        assert len(carservice(work).cars.of_party(station.client.id)) == 1


def test_intake_of_a_registered_plate_under_a_new_client_is_refused(station):
    crm = station.crm
    with crm.system() as work:
        parties_before = work.session.scalar(select(func.count()).select_from(Party))
    with crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed) as refused:
        carservice(work).intake(
            client={"name": "Пётр Новый", "phone": "+7 999 000-11-22"},
            car={"plate": "А 123 ВС 77"},
            services=[station.diagnostics.id],
            location_id=station.branch.id,
        )
    assert "А 123 ВС 77" in str(refused.value.errors["plate"][0])
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == parties_before
        assert work.session.scalar(select(func.count()).select_from(CarserviceCar)) == 1


@pytest.mark.parametrize("typed", ["M225TP 177 RUS", "М225ТР|177", "м225тр/177", "М225ТР177 РУС"])
def test_plate_search_takes_the_forms_people_type(station, typed):
    with station.crm.acting_as(station.manager) as work:
        car = carservice(work).cars.create(party_id=station.client.id, plate="М225ТР 177")
        assert [m.car.id for m in carservice(work).find_by_plate(typed)] == [car.id]


def _count_orders(station):
    with station.crm.system() as work:
        return len(work.records("finance_order").list(limit=100))


def test_intake_refuses_goods_as_a_service_naming_the_row(station):
    with station.crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed) as refused:
        carservice(work).intake(
            party_id=station.client.id,
            car_id=station.car.id,
            services=[station.diagnostics.id, station.oil.id],
            location_id=station.branch.id,
        )
    [why] = refused.value.errors["services"]
    assert "2" in str(why.params["row"]) and why.params["item"] == "Масло 5W-30"
    assert _count_orders(station) == 0


@pytest.mark.parametrize("who", ["cashier", "accountant"])
def test_an_order_is_not_given_to_one_who_does_not_work_on_orders(station, who):
    with station.crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed) as refused:
        carservice(work).intake(
            party_id=station.client.id,
            car_id=station.car.id,
            services=[station.diagnostics.id],
            assignee_id=station.users[who].id,
            location_id=station.branch.id,
        )
    assert "assignee_id" in refused.value.errors
    assert _count_orders(station) == 0
    order = station.order()
    with station.crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed):
        carservice(work).assign(order.id, station.users[who].id)
    with station.crm.acting_as(station.manager) as work:
        assert work.records("finance_order").get(order.id).assignee_id == station.ivan.id


@pytest.mark.parametrize("mileage", [-5, "-5", 10**12, "99999999999999999999", "12a"])
def test_intake_refuses_a_mileage_out_of_range_naming_the_field(station, mileage):
    with station.crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed) as refused:
        carservice(work).intake(
            party_id=station.client.id,
            car_id=station.car.id,
            services=[station.diagnostics.id],
            location_id=station.branch.id,
            mileage=mileage,
        )
    assert list(refused.value.errors) == ["mileage"]
    assert _count_orders(station) == 0


@pytest.mark.parametrize("typed", ["!!!", "%%%", "***", "- -"])
def test_a_plate_of_no_letters_or_digits_is_refused(station, typed):
    with station.crm.acting_as(station.manager) as work, pytest.raises(ValidationFailed) as refused:
        carservice(work).cars.create(party_id=station.client.id, plate=typed)
    assert "plate" in refused.value.errors
    with station.crm.acting_as(station.manager) as work:
        assert work.session.scalar(select(func.count()).select_from(CarserviceCar)) == 1


@pytest.mark.parametrize("basis", ["lines", "orders"])
def test_an_order_given_to_another_worker_after_it_was_done_leaves_the_percent_earned(
    station, basis
):
    """Ivan did the work in March; in April the order goes to Petr for a warranty look and
    a line is taken back: March's percent stays Ivan's, April's clawback is Ivan's too,
    whether they are paid for the lines they did or for the orders they had."""
    with station.crm.acting_as(station.accountant) as work:
        for worker in (station.ivan, station.petr):
            finance(work).payroll.set_scheme(
                worker.id, percent="40", basis=basis, valid_from=dt.date(2026, 1, 1)
            )
    with frozen_at(dt.datetime(2026, 3, 20, 10, tzinfo=dt.UTC)):
        with station.crm.acting_as(station.manager) as work:
            order = carservice(work).intake(
                party_id=station.client.id,
                car_id=station.car.id,
                services=[station.diagnostics.id, station.oil_change.id],
                assignee_id=station.ivan.id,
                location_id=station.branch.id,
            )
        with station.crm.acting_as(station.ivan) as work:
            for stage in ("in_work", "done"):
                work.moves.move(order.id, stage, entity="finance_order")
    warranty_day = dt.datetime(2026, 4, 6, 10, tzinfo=dt.UTC)
    with frozen_at(warranty_day), station.crm.acting_as(station.manager) as work:
        carservice(work).assign(order.id, station.petr.id)
        fin = finance(work)
        oil_line = next(
            line for line in fin.orders.lines(order.id) if line.item_id == station.oil_change.id
        )
        fin.orders.remove_line(oil_line.id, reason="warranty: the oil change is on us")
    with station.crm.acting_as(station.accountant) as work:
        payroll = finance(work).payroll

        def percent(worker, month):
            return payroll.calculate(worker.id, month)["commission"]

        march, april = dt.date(2026, 3, 1), dt.date(2026, 4, 1)
        assert percent(station.ivan, march) == Decimal("1400.00")  # 40 % of 1500 + 2000
        assert percent(station.petr, march) == Decimal("0.00")
        assert percent(station.ivan, april) == Decimal("-800.00")  # the oil change taken back
        assert percent(station.petr, april) == Decimal("0.00")


def test_an_order_done_in_march_and_cancelled_in_april_stays_in_marchs_count(station):
    """The director's March is written once: an order done in March and reopened and
    cancelled in April keeps its place in March's orders as its revenue keeps March's; April
    takes both back (the revenue credited, the order counted off)."""
    from crmkit_finance.reports import run_report

    def take(services, day):
        with frozen_at(day), station.crm.acting_as(station.manager) as work:
            order = carservice(work).intake(
                party_id=station.client.id,
                car_id=station.car.id,
                services=services,
                assignee_id=station.ivan.id,
                location_id=station.branch.id,
            )
        with frozen_at(day), station.crm.acting_as(station.ivan) as work:
            for stage in ("in_work", "done"):
                work.moves.move(order.id, stage, entity="finance_order")
        return order

    def months():
        with station.crm.acting_as(station.users["director"]) as work:
            params = {"start": "2026-03-01", "end": "2026-04-30"}
            report = run_report(work, "finance.director", params)
            checks = run_report(work, "finance.average_check", params)
        return (
            {r["month"]: (r["orders"], r["revenue"], r["average_check"]) for r in report.rows},
            (report.totals["orders"], report.totals["revenue"]),
            {r["month"]: (r["orders"], r["average_check"]) for r in checks.rows},
        )

    march = dt.datetime(2026, 3, 20, 10, tzinfo=dt.UTC)
    first = take([station.diagnostics.id, station.oil_change.id], march)  # 1500 + 2000
    before = months()
    assert before[0]["2026-03"] == (1, Decimal("3500.00"), Decimal("3500.00"))
    april = dt.datetime(2026, 4, 6, 10, tzinfo=dt.UTC)
    take([station.diagnostics.id], april)
    with frozen_at(april), station.crm.acting_as(station.manager) as work:
        work.moves.move(first.id, "in_work", entity="finance_order", comment="the client came back")
        work.moves.move(first.id, "cancelled", entity="finance_order", comment="refused the work")
    by_month, totals, checks = months()
    assert by_month["2026-03"] == before[0]["2026-03"]  # March as the director read it then
    assert checks["2026-03"] == (1, Decimal("3500.00"))
    # April: one order done (1500), one of March's counted off with its 3500 credited
    assert by_month["2026-04"][:2] == (0, Decimal("-2000.00"))
    assert by_month["2026-04"][2] == checks["2026-04"][1] == Decimal("1500.00")
    assert totals == (1, Decimal("1500.00"))  # the one order standing, and its revenue


def _order_without_branch(station):
    """An order taken with no branch (over the API, by a form of another deployment)."""
    with station.crm.acting_as(station.manager) as work:
        return carservice(work).intake(
            party_id=station.client.id,
            car_id=station.car.id,
            services=[station.diagnostics.id],
            assignee_id=station.ivan.id,
        )


def _second_branch(station, *, team_members=()):
    """A second branch with oil in stock, its staff (``team_members``) in its team."""
    with station.crm.system() as work:
        team = work.users.create_team("Филиал 2", members=[u.id for u in team_members])
        branch = work.records("finance_location").create(name="Филиал 2", team_id=team.id)
    with station.crm.acting_as(station.warehouse) as work:
        finance(work).stock.receive(station.oil.id, branch.id, "5", "400.00")
    return branch


def _on_hand(station, branch):
    with station.crm.acting_as(station.warehouse) as work:
        return finance(work).stock.on_hand(station.oil.id, branch.id)


def test_goods_on_an_order_without_a_branch_come_from_the_stations_only_branch(station):
    order = _order_without_branch(station)
    assert order.location_id is None
    with station.crm.acting_as(station.manager) as work:
        fin = finance(work)
        fin.orders.add_line(order.id, station.oil.id, qty="2")
        assert fin.orders.get(order.id).location_id == station.branch.id
    assert _on_hand(station, station.branch) == Decimal("18")


def test_goods_on_an_order_without_a_branch_come_from_the_branch_of_who_adds_them(station):
    second = _second_branch(station, team_members=[station.manager])
    order = _order_without_branch(station)
    with station.crm.acting_as(station.manager) as work:
        fin = finance(work)
        fin.orders.add_line(order.id, station.oil.id, qty="2")
        assert fin.orders.get(order.id).location_id == second.id
    assert (_on_hand(station, second), _on_hand(station, station.branch)) == (
        Decimal("3"),
        Decimal("20"),
    )


def test_goods_are_refused_naming_the_branch_until_one_is_chosen(station):
    """Two branches and the manager at neither (or at both): which warehouse the goods
    leave cannot be told, so adding them is refused naming the branch field, nothing is
    written; naming the branch with the goods sets it on the order and takes them."""
    second = _second_branch(station, team_members=[station.cashier])
    order = _order_without_branch(station)
    with station.crm.acting_as(station.manager) as work:
        fin = finance(work)
        with pytest.raises(ValidationFailed) as refused:
            fin.orders.add_line(order.id, station.oil.id, qty="2")
        assert list(refused.value.errors) == ["location_id"]
        assert "no branch" in str(refused.value.errors["location_id"][0])
        assert [line.item_id for line in fin.orders.lines(order.id)] == [station.diagnostics.id]
        assert fin.orders.get(order.id).location_id is None
        # a service needs no branch
        fin.orders.add_line(order.id, station.oil_change.id)
        assert fin.orders.get(order.id).location_id is None
        fin.orders.add_line(order.id, station.oil.id, qty="2", location_id=second.id)
        assert fin.orders.get(order.id).location_id == second.id
    assert (_on_hand(station, second), _on_hand(station, station.branch)) == (
        Decimal("3"),
        Decimal("20"),
    )
    # a manager at both branches cannot be told either
    other = _order_without_branch(station)
    with station.crm.system() as work:
        first_team = work.users.create_team("Филиал 1", members=[station.manager.id])
        work.records("finance_location").update(station.branch.id, team_id=first_team.id)
        work.users.set_team_members(second.team_id, [station.cashier.id, station.manager.id])
    with station.crm.acting_as(station.manager) as work:
        with pytest.raises(ValidationFailed) as refused:
            finance(work).orders.add_line(other.id, station.oil.id)
        assert list(refused.value.errors) == ["location_id"]


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("y701xb99", "У701ХВ99"),  # a Latin keyboard: the Russian plate in Cyrillic
        ("x 001 xx 777", "Х 001 ХХ 777"),
        ("M225tp177 RUS", "М225ТР177 RUS"),
        ("о777оо77", "О777ОО77"),
        ("AB 1234 CD", "AB 1234 CD"),  # not a Russian plate: as typed
        ("7ABC123", "7ABC123"),
    ],
)
def test_a_russian_plate_typed_in_latin_is_kept_in_cyrillic(station, typed, kept):
    """A Russian plate is written in Cyrillic (on the car, the work order, the act): one
    typed on a Latin keyboard is kept in its Cyrillic letters, so the desk, the order and
    the documents show it as it reads on the car; a plate of another form stays as typed."""
    with station.crm.acting_as(station.manager) as work:
        car = carservice(work).cars.create(party_id=station.client.id, plate=typed)
        assert car.plate == kept
        assert [m.car.id for m in carservice(work).find_by_plate(typed)] == [car.id]
