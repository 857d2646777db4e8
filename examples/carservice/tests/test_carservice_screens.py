"""The car service's screens over HTTP: the desk, intake, the worker's orders, money refused."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa
from crmkit_carservice import carservice
from crmkit_carservice.model import CarserviceOrderCar
from crmkit_finance import finance
from service_fixtures import signed_in

from crmkit.clock import frozen_at
from crmkit.errors import PermissionDenied
from crmkit.i18n import pgettext
from crmkit.model import Party
from crmkit.testing.web import WebClient

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_each_role_lands_on_its_workspace(station):
    for username, path in (
        ("manager", "/service"),
        ("cashier", "/finance/cashdesk"),
        ("ivan", "/service/my"),
        ("director", "/service/director"),
        ("admin", "/admin"),
    ):
        client = await signed_in(station, username)
        assert (await client.get("/")).headers["location"] == path, username
        assert (await client.get(path)).status_code == 200, username


async def test_manager_finds_the_client_by_plate_typed_in_latin(station):
    order = station.order()
    client = await signed_in(station, "manager")
    page = await client.get("/service", params={"q": "a 123 bc 77"})
    assert page.status_code == 200
    results = page.text.split('id="plate-results"', 1)[1]
    assert "Сергей Волков" in results and f"/records/finance_order/{order.id}" in results
    assert "Приёмка" in page.text  # Russian by default


async def test_manager_takes_an_order_with_a_new_client_and_car_in_one_form(station):
    client = await signed_in(station, "manager")
    response = await client.post(
        "/service/intake",
        [
            ("client_name", "Анна Смирнова"),
            ("phone", "8 903 123-45-67"),
            ("client_kind", "person"),
            ("plate", "о 777 оо 77"),
            ("make", "Kia"),
            ("model", "Rio"),
            ("services", str(station.diagnostics.id)),
            ("services", str(station.oil_change.id)),
            ("assignee_id", str(station.ivan.id)),
            ("location_id", str(station.branch.id)),
        ],
    )
    assert response.status_code == 303, response.text
    order_url = response.headers["location"]
    page = await client.get(order_url)
    assert "Анна Смирнова" in page.text and "О 777 ОО 77" in page.text
    assert "Диагностика" in page.text and "Замена масла" in page.text
    # an extra service later
    order_id = order_url.rsplit("/", 1)[1]
    added = await client.post(
        f"/finance/orders/{order_id}/lines", {"item_id": station.oil.id, "qty": "4"}
    )
    assert added.status_code == 303
    page = await client.get(order_url)
    assert "Масло 5W-30" in page.text
    # and the plate, typed in Latin, now finds her
    found = await client.get("/service", params={"q": "O777OO77"})
    assert "Анна Смирнова" in found.text.split('id="plate-results"', 1)[1]


async def test_a_bad_intake_says_which_field_and_keeps_the_form(station):
    client = await signed_in(station, "manager")
    response = await client.post(
        "/service/intake",
        {"client_name": "", "plate": "Х001ХХ77", "location_id": station.branch.id},
    )
    assert response.status_code == 422
    assert 'id="form-error"' in response.text and 'value="Х001ХХ77"' in response.text


async def test_an_intake_with_a_service_that_is_not_a_number_names_the_row(station):
    client = await signed_in(station, "manager")
    response = await client.post(
        "/service/intake",
        [
            ("party_id", str(station.client.id)),
            ("services", str(station.diagnostics.id)),
            ("services", "1; drop"),
            ("location_id", str(station.branch.id)),
        ],
    )
    assert response.status_code == 422, response.status_code
    error = re.search(r'id="form-error">([^<]*)<', response.text).group(1)
    assert "2" in error and "1; drop" in error, error
    assert error.startswith(("services:", "услуги:")), error
    with station.crm.acting_as(station.users["manager"]) as work:
        assert len(work.records("finance_order").list(limit=50)) == 0


async def test_intake_and_assignment_refusals_speak_russian(station):
    # waits on the catalogs: the refusals are crmkit.i18n messages now
    with station.crm.acting_as(station.users["manager"]) as work:
        other = work.parties.create(kind="person", name="Другой Клиент")
    order = station.order()
    client = await signed_in(station, "manager")
    service = str(station.diagnostics.id)

    async def refusal(data):
        response = await client.post("/service/intake", data)
        assert response.status_code == 422, response.status_code
        return re.search(r'id="form-error">([^<]*)<', response.text).group(1)

    # someone else's car: refused, the form kept with the client chosen
    wrong_car = await refusal({"party_id": other.id, "car_id": station.car.id, "services": service})
    assert "машина принадлежит другому клиенту" in wrong_car, wrong_car
    # a client that is not there: the refusal, not a missing page
    assert "нет клиента 99999" in await refusal({"party_id": "99999", "services": service})
    moved = await client.post(f"/service/orders/{order.id}/assign", {"assignee_id": "99999"})
    assert moved.status_code == 303
    page = await client.get(moved.headers["location"])
    flash = " ".join(re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page.text))
    assert "нет действующего пользователя 99999" in flash, flash
    with station.crm.acting_as(station.users["manager"]) as work:
        assert carservice(work).views([order])[0].worker.id == station.ivan.id  # unchanged


async def test_a_worker_moves_their_order_and_cannot_open_anyone_elses(station):
    mine = station.order("ivan")
    theirs = station.order("petr")
    client = await signed_in(station, "ivan")
    page = await client.get("/service/my")
    assert f'data-order="{mine.id}"' in page.text and f'data-order="{theirs.id}"' not in page.text
    moved = await client.post(
        f"/records/finance_order/{mine.id}/move",
        {"to": "in_work", "next": "/service/my", "version": mine.version},
    )
    assert moved.status_code == 303 and moved.headers["location"] == "/service/my"
    assert (await client.get(f"/records/finance_order/{theirs.id}")).status_code == 404
    forbidden = await client.post(f"/records/finance_order/{theirs.id}/move", {"to": "in_work"})
    assert forbidden.status_code == 404
    # no money screens, no client base in the menu
    assert (await client.get("/service/director")).status_code == 404
    assert (await client.get("/lists/finance_payment")).status_code in (403, 404)
    menu = re.search(r"<nav.*?</nav>", page.text, re.S).group(0)
    assert "/lists/party" not in menu and "/service/my" in menu


async def test_moving_to_a_next_path_elsewhere_is_ignored(station):
    order = station.order("ivan")
    client = await signed_in(station, "ivan")
    moved = await client.post(
        f"/records/finance_order/{order.id}/move",
        {"to": "in_work", "next": "//evil.example/"},
    )
    assert moved.headers["location"] == f"/records/finance_order/{order.id}"


async def test_the_plate_search_is_not_the_workers(station):
    station.order("petr")
    with station.crm.acting_as(station.ivan) as work, pytest.raises(PermissionDenied):
        carservice(work).find_by_plate("А123ВС77")
    client = await signed_in(station, "ivan")
    assert (await client.get("/service", params={"q": "А123ВС77"})).status_code == 404


async def test_the_dashboard_takes_today_where_the_station_is(station):
    client = await signed_in(station, "director")
    # half past one on 1 April in Moscow, still 31 March in UTC
    with frozen_at(dt.datetime(2026, 3, 31, 22, 30, tzinfo=dt.UTC)):
        page = await client.get("/service/director")
    assert page.status_code == 200
    # last month's salaries are March's (not February's), named the Russian way
    assert re.search(r"<h3>[^<]*март 2026</h3>", page.text)


@pytest.mark.parametrize("typed", ["а123вс", "А 123 ВС 77", "a123bc77", "123вс"])
async def test_the_car_list_and_the_api_find_a_plate_in_any_alphabet(station, typed):
    with station.crm.acting_as(station.manager) as work:
        other = carservice(work).cars.create(party_id=station.client.id, plate="В777ОР99")
        found = work.records("carservice_car").list(search=typed).items
        assert [c.id for c in found] == [station.car.id]
        secret = work.api_tokens.create("desk").secret
    client = await signed_in(station, "manager")
    page = await client.get("/lists/carservice_car", params={"q": typed})
    assert page.status_code == 200
    assert f"/records/carservice_car/{station.car.id}" in page.text
    assert f"/records/carservice_car/{other.id}" not in page.text
    api = WebClient.for_crm(station.crm)
    listed = await api.get(
        "/api/v1/carservice_car",
        params={"q": typed},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert listed.status_code == 200, listed.text
    assert [c["id"] for c in listed.json()["items"]] == [station.car.id]


async def test_a_worker_moving_their_order_cannot_change_its_discount_or_note(station):
    """A worker may move their own order but not edit it: a discount or a note posted with
    the move (the form's ``field.*`` or the API's ``fields``) is refused by its name and
    nothing is written; the plain move still goes through."""
    from crmkit_finance import finance

    order = station.order("ivan")
    with station.crm.acting_as(station.ivan) as work:
        work.moves.move(order.id, "in_work", entity="finance_order")
        secret = work.api_tokens.create("phone").secret
    client = await signed_in(station, "ivan")
    refused = await client.post(
        f"/records/finance_order/{order.id}/move",
        {"to": "done", "next": "/service/my", "field.discount_percent": "100"},
    )
    assert refused.status_code == 403
    assert "скидка в процентах" in refused.text  # the field, named in the user's language
    api = WebClient.for_crm(station.crm)
    answer = await api.client.post(
        f"/api/v1/finance_order/{order.id}/move",
        json={"to": "done", "fields": {"note": "free of charge", "discount_percent": "100"}},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["detail"] == (
        "changing note, discount_percent is an edit, not part of the move to “Done”: "
        "it takes the permission to edit the record"
    )
    with station.crm.acting_as(station.accountant) as work:
        fin = finance(work)
        kept = fin.orders.get(order.id)
        totals = fin.orders.totals(order.id)
        assert (kept.stage, kept.discount_percent, kept.note) == ("in_work", 0, "")
        assert (totals.total, totals.due) == (1500, 1500)
    moved = await client.post(
        f"/records/finance_order/{order.id}/move", {"to": "done", "next": "/service/my"}
    )
    assert moved.status_code == 303 and moved.headers["location"] == "/service/my"
    with station.crm.acting_as(station.accountant) as work:
        totals = finance(work).orders.totals(order.id)
        assert finance(work).orders.get(order.id).stage == "done"
        assert (totals.total, totals.charged, totals.due) == (1500, 1500, 1500)


async def test_a_worker_opens_their_order_page_with_the_client_named_but_not_linked(station):
    """The order page is every role's (a worker's "My orders" link to it): a worker who may
    not read clients sees the client's name and the car in the car service's block, no link
    to the client card, which stays closed to them, and nothing of what was paid."""
    from crmkit_finance import finance

    order = station.order("ivan")
    with station.crm.acting_as(station.cashier) as work:
        finance(work).payments.take(order_id=order.id, amount="700.00", method="transfer")
    client = await signed_in(station, "ivan")
    mine = await client.get("/service/my")
    assert f'href="/records/finance_order/{order.id}"' in mine.text
    page = await client.get(f"/records/finance_order/{order.id}")
    assert page.status_code == 200, page.text[:500]
    block = page.text.split('id="order-car"', 1)[1].split("</dl>", 1)[0]
    assert "Сергей Волков" in block and "А123ВС77" in block
    assert f"/clients/{station.client.id}" not in page.text
    assert 'id="order-totals"' in page.text and 'id="order-due"' not in page.text
    assert (await client.get(f"/clients/{station.client.id}")).status_code in (403, 404)
    # nor what is due, a filter at a time
    assert (await client.get("/lists/finance_order?f.due__lte=0")).status_code == 403
    manager = await signed_in(station, "manager")
    office = await manager.get(f"/records/finance_order/{order.id}")
    assert f'href="/clients/{station.client.id}"' in office.text  # who may read it, opens it
    assert 'id="order-due"' in office.text


async def test_office_screens_follow_permissions_not_role_names(station):
    """The desk, the intake and the dashboard open to the roles they did, and to another
    role once it is granted the power they take, with their menu items."""
    crm = station.crm

    async def reached(username):
        client = await signed_in(station, username)
        paths = ("/service", "/service/intake", "/service/director")
        opened = {p for p in paths if (await client.get(p)).status_code == 200}
        page = await client.get("/profile")
        menu = re.search(r"<nav.*?</nav>", page.text, re.S).group(0)
        return opened, {p for p in (*paths, "/lists/carservice_car") if f'href="{p}"' in menu}

    office, dashboard = {"/service", "/service/intake"}, {"/service/director"}
    assert (await reached("manager"))[0] == office
    assert (await reached("director"))[0] == dashboard
    assert (await reached("admin"))[0] == office | dashboard
    for username in ("accountant", "cashier", "warehouse", "ivan"):
        assert (await reached(username))[0] == set(), username
    with crm.system() as work:
        work.permissions.set("accountant", "finance_order", "create", "all")
        work.permissions.set("accountant", "carservice_car", "create", "all")
        work.permissions.set("accountant", "finance_order", "report", "all")
    opened, menu = await reached("accountant")
    assert opened == office | dashboard
    assert menu == {"/service", "/service/director", "/lists/carservice_car"}


def _text(page):
    import html

    body = re.sub(r"(?s)<script.*?</script>", "", page.text)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


async def test_russian_pages_say_titles_stages_and_roles_in_russian(station):
    """The tab title is the screen's translated title; an order's stage history names
    stages by their Russian titles; a move the worker may not make names the roles that
    may by their titles, not their codes."""
    order = station.order()
    manager = await signed_in(station, "manager")
    ru = manager.app.state.catalogs["ru"].gettext
    desk = await manager.get("/service")
    assert f"<title>{ru('Service desk')} · crmkit</title>" in desk.text
    assert "<title>Service desk" not in desk.text
    director = await signed_in(station, "director")
    dashboard = await director.get("/service/director")
    assert f"<title>{ru('Dashboard')} · crmkit</title>" in dashboard.text
    worker = await signed_in(station, "ivan")
    page = await worker.get(f"/records/finance_order/{order.id}")
    moved = await worker.post(
        f"/records/finance_order/{order.id}/move",
        {"to": "diagnostics", "version": re.search(r'name="version" value="(\d+)"', page.text)[1]},
    )
    assert moved.status_code == 303, moved.text
    page = await manager.get(f"/records/finance_order/{order.id}")
    history = _text(page).split(ru("Stage history"), 1)[1]
    new = pgettext(ru, "carservice_order", "New")  # an order's stage, in its pipeline's words
    assert f"{new} → {ru('Diagnostics')}" in history
    assert "new → diagnostics" not in history and "→ new" not in history
    version = re.search(r'name="version" value="(\d+)"', page.text)[1]
    refused = await worker.post(
        f"/records/finance_order/{order.id}/move",
        {"to": "cancelled", "comment": "клиент передумал", "version": version},
    )
    shown = _text(refused)
    # the move takes the order action "cancel", named as the roles screen names it
    assert "нужно право «отменять» на «Заказы»" in shown
    assert "cancel" not in shown and "finance_order" not in shown


def _orders_of(station, party_id):
    with station.crm.acting_as(station.users["manager"]) as work:
        return list(work.records("finance_order").list(filters={"party_id": party_id}))


def _intake_form(station, **values):
    form = {
        "client_kind": "person",
        "services": str(station.diagnostics.id),
        "assignee_id": str(station.ivan.id),
        "location_id": str(station.branch.id),
    }
    form.update(values)
    return form


@pytest.mark.parametrize(
    ("name", "phone"),
    [
        ("Сергей Волков", "+7 999 765-43-21"),  # a common name with an unused phone
        ("Сергей Иванович Волков-Новый", "+7 916 100-20-30"),  # the client's phone, new name
    ],
)
async def test_a_returning_client_typed_as_new_is_offered_not_a_crash(station, name, phone):
    client = await signed_in(station, "manager")
    form = _intake_form(station, client_name=name, phone=phone, plate="Т 321 ТТ 77")
    shown = await client.post("/service/intake", form)
    assert shown.status_code == 409, shown.status_code
    # the existing client is listed with a button taking the order for them
    assert "Сергей Волков" in shown.text
    assert f'name="party_id" value="{station.client.id}"' in shown.text
    assert 'name="confirm_duplicates"' in shown.text and 'value="Т 321 ТТ 77"' in shown.text
    assert _orders_of(station, station.client.id) == []  # nothing was written
    # the manager picks the existing client: the order is theirs, no second client
    picked = await client.post("/service/intake", {**form, "party_id": str(station.client.id)})
    assert picked.status_code == 303, picked.text
    assert len(_orders_of(station, station.client.id)) == 1
    with station.crm.acting_as(station.users["manager"]) as work:
        assert [p.id for p in work.parties.list(search="Волков")] == [station.client.id]


async def test_a_namesake_confirmed_as_a_new_client_gets_the_order(station):
    client = await signed_in(station, "manager")
    form = _intake_form(station, client_name="Сергей Волков", phone="+7 999 765-43-21")
    assert (await client.post("/service/intake", form)).status_code == 409
    created = await client.post("/service/intake", {**form, "confirm_duplicates": "1"})
    assert created.status_code == 303, created.text
    with station.crm.acting_as(station.users["manager"]) as work:
        namesakes = [p for p in work.parties.list(search="Волков") if p.id != station.client.id]
        assert len(namesakes) == 1
    assert len(_orders_of(station, namesakes[0].id)) == 1
    assert _orders_of(station, station.client.id) == []


async def test_intake_offers_the_car_of_a_registered_plate_and_its_owner(station):
    client = await signed_in(station, "manager")
    form = _intake_form(station, client_name="Пётр Новый", phone="+7 999 000-11-22")
    shown = await client.post("/service/intake", {**form, "plate": "a123bc 77"})
    assert shown.status_code == 422, shown.status_code
    error = re.search(r'id="form-error">([^<]*)<', shown.text).group(1)
    assert "A123BC 77" in error, error
    offer = shown.text.split('id="known-car"', 1)[1].split("</p>", 1)[0]
    assert "Сергей Волков" in offer and f'name="car_id" value="{station.car.id}"' in offer
    taken = await client.post("/service/intake", {**form, "car_id": str(station.car.id)})
    assert taken.status_code == 303, taken.text
    [order] = _orders_of(station, station.client.id)
    with station.crm.acting_as(station.manager) as work:
        assert carservice(work).car_of(order.id)[0].id == station.car.id
        assert list(work.parties.list(search="Пётр Новый")) == []


async def test_the_cashier_finds_an_order_by_plate_and_by_number_sign(station):
    with station.crm.acting_as(station.manager) as work:
        car = carservice(work).cars.create(party_id=station.client.id, plate="Х001ХХ77")
    order = station.order()
    other = station.order()  # the client's other car: not found by the plate
    with station.crm.acting_as(station.manager) as work:
        work.session.execute(
            sa.update(CarserviceOrderCar)
            .where(CarserviceOrderCar.order_id == order.id)
            .values(car_id=car.id)
        )
    with station.crm.acting_as(station.cashier) as work:
        finance(work).cashdesk.open_shift(station.desk.id, counted="0.00")
    client = await signed_in(station, "cashier")
    for typed, expected in (
        ("Х001", [order.id]),
        ("x 001 xx 77 rus", [order.id]),
        (f"№{order.number}", [order.id]),
        (f"№ {other.number}", [other.id]),
    ):
        page = await client.get("/finance/cashdesk", params={"desk": station.desk.id, "q": typed})
        assert page.status_code == 200
        found = [int(i) for i in re.findall(r'class="found-order" id="order-(\d+)"', page.text)]
        assert found == expected, typed


async def test_a_huge_mileage_on_the_form_is_named_not_a_crash(station):
    client = await signed_in(station, "manager")
    form = _intake_form(station, party_id=str(station.client.id), car_id=str(station.car.id))
    response = await client.post("/service/intake", {**form, "mileage": "99999999999999999999"})
    assert response.status_code == 422, response.status_code
    error = re.search(r'id="form-error">([^<]*)<', response.text).group(1)
    assert error.startswith(("mileage:", "пробег:")), error
    assert _orders_of(station, station.client.id) == []


ODD_IDS = ("abc", "1.5", "²", "-1", "0", "9" * 25)
ID_LABELS = {
    "party_id": ("party_id", "клиент"),
    "car_id": ("car_id", "машина"),
    "assignee_id": ("assignee_id", "исполнитель"),
    "location_id": ("location_id", "филиал"),
}


@pytest.mark.parametrize("field", sorted(ID_LABELS))
async def test_an_intake_with_an_odd_id_names_the_field_and_takes_no_order(station, field):
    """A client, car, worker or branch id that is no id (letters, a fraction, 25 digits)
    is a 422 naming the field, the form kept, never a 500; no order is taken."""
    client = await signed_in(station, "manager")
    for odd in ODD_IDS:
        form = _intake_form(station, party_id=str(station.client.id), car_id=str(station.car.id))
        response = await client.post("/service/intake", {**form, field: odd})
        assert response.status_code == 422, (odd, response.status_code)
        error = re.search(r'id="form-error">([^<]*)<', response.text).group(1)
        assert error.startswith(tuple(f"{label}: " for label in ID_LABELS[field])), error
        assert "2^63-1" in error, error
    assert _orders_of(station, station.client.id) == []


async def test_an_intake_with_a_service_id_no_column_holds_names_the_row(station):
    client = await signed_in(station, "manager")
    form = _intake_form(station, party_id=str(station.client.id), car_id=str(station.car.id))
    for odd in ("9" * 25, "0", "١"):
        services = [("services", str(station.diagnostics.id)), ("services", odd)]
        data = [*((k, v) for k, v in form.items() if k != "services"), *services]
        response = await client.post("/service/intake", data)
        assert response.status_code == 422, (odd, response.status_code)
        error = re.search(r'id="form-error">([^<]*)<', response.text).group(1)
        assert error.startswith(("services:", "услуги:")) and "2" in error and odd in error, error
    assert _orders_of(station, station.client.id) == []


async def test_the_intake_page_and_an_assignment_refuse_odd_ids_naming_them(station):
    client = await signed_in(station, "manager")
    order = station.order()
    for odd in ODD_IDS:
        page = await client.get("/service/intake", params={"party_id": odd})
        assert page.status_code == 422 and "2^63-1" in page.text, odd
        assert any(f"{label}: " in page.text for label in ID_LABELS["party_id"]), odd
        moved = await client.post(f"/service/orders/{order.id}/assign", {"assignee_id": odd})
        assert moved.status_code == 303, odd
        shown = await client.get(moved.headers["location"])
        flash = " ".join(re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', shown.text))
        assert "2^63-1" in flash and flash.startswith(ID_LABELS["assignee_id"]), flash
    with station.crm.acting_as(station.users["manager"]) as work:
        assert carservice(work).views([order])[0].worker.id == station.ivan.id  # unchanged
    huge = await client.post(f"/service/orders/{'9' * 25}/assign", {"assignee_id": "1"})
    assert huge.status_code == 404


async def test_a_path_id_past_an_id_column_is_a_404_on_the_car_service_pages(station):
    from crmkit.testing import add_user
    from crmkit.testing.web import id_paths, int_paths

    add_user(station.crm, "root", ["admin"])
    client = await signed_in(station, "root")
    assert not int_paths(client.app)
    paths = [
        (method, path) for method, path in id_paths(client.app) if path.startswith("/service/")
    ]
    assert sorted(paths) == [
        ("GET", f"/service/orders/{'9' * 25}/print"),
        ("POST", f"/service/orders/{'9' * 25}/assign"),
    ]
    assert (await client.get(f"/service/orders/{'9' * 25}/print")).status_code == 404
    assign = f"/service/orders/{'9' * 25}/assign"
    assert (await client.post(assign, {"assignee_id": "1"})).status_code == 404


async def test_an_intakes_note_is_capped_at_20000_characters_and_nothing_is_taken(station):
    """The intake's note becomes the order's, whose schema holds 20000 characters: a longer
    one is refused naming the field, and neither the new client nor the order is kept."""
    client = await signed_in(station, "manager")
    intake = {
        "client_name": "Анна Многословная", "phone": "8 903 123-45-67", "client_kind": "person",
        "plate": "о 778 оо 77", "services": str(station.diagnostics.id),
        "location_id": str(station.branch.id),
    }  # fmt: skip
    response = await client.post("/service/intake", {**intake, "note": "д" * 20001})
    assert response.status_code == 422, response.status_code
    error = re.search(r'id="form-error">([^<]*)<', response.text).group(1)
    assert error.startswith("заметка:") and "20000" in error, error  # the schema's words
    with station.crm.acting_as(station.users["manager"]) as work:
        assert work.records("finance_order").list(limit=50).items == []
        named = sa.select(Party.id).where(Party.name == "Анна Многословная")
        assert work.session.scalars(named).all() == []
    taken = await client.post("/service/intake", {**intake, "note": "д" * 20000})
    assert taken.status_code == 303, taken.text[:300]
    with station.crm.acting_as(station.users["manager"]) as work:
        [order] = work.records("finance_order").list(limit=50).items
        assert len(order.note) == 20000


async def test_a_worker_sees_an_old_open_order_behind_a_hundred_finished_ones(station):
    # a car waiting for parts since spring, and a busy summer of finished work after it
    with frozen_at(dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)):
        waiting = station.order("ivan")
    with station.crm.acting_as(station.manager) as work:
        orders = finance(work).orders
        later = [
            orders.create({"party_id": station.client.id, "assignee_id": station.ivan.id}).id
            for _ in range(120)
        ]
        work.session.execute(
            sa.update(type(waiting)).where(type(waiting).id.in_(later)).values(stage="closed")
        )
    client = await signed_in(station, "ivan")
    page = await client.get("/service/my")
    assert page.status_code == 200
    open_part = page.text.split("<h2>", 1)[0]
    assert f'data-order="{waiting.id}"' in open_part


async def test_a_car_with_orders_is_not_deleted_and_its_orders_keep_it(station):
    order = station.order()
    with station.crm.acting_as(station.manager) as work:
        spare = carservice(work).cars.create(party_id=station.client.id, plate="Е001КХ77")
        secret = work.api_tokens.create("desk").secret
    api = WebClient.for_crm(station.crm)
    bearer = {"Authorization": f"Bearer {secret}"}
    refused = await api.client.delete(f"/api/v1/carservice_car/{station.car.id}", headers=bearer)
    assert refused.status_code == 422, refused.text
    assert "А123ВС77" in refused.text
    with station.crm.acting_as(station.manager) as work:
        car, _ = carservice(work).car_of(order.id)
        assert car is not None and car.id == station.car.id
    # a car never serviced (entered by mistake) still goes
    gone = await api.client.delete(f"/api/v1/carservice_car/{spare.id}", headers=bearer)
    assert gone.status_code == 204, gone.text


async def test_an_intake_sent_twice_takes_one_order(station):
    client = await signed_in(station, "manager")
    form = await client.get(
        "/service/intake", params={"party_id": station.client.id, "car_id": station.car.id}
    )
    token = re.search(r'name="form_token" value="([^"]+)"', form.text)
    assert token, "the intake form carries a one-time token"
    sent = [
        ("party_id", str(station.client.id)),
        ("car_id", str(station.car.id)),
        ("services", str(station.diagnostics.id)),
        ("assignee_id", str(station.ivan.id)),
        ("form_token", token.group(1)),
    ]
    first = await client.post("/service/intake", sent)
    again = await client.post("/service/intake", sent)  # a double click
    assert first.status_code == again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    with station.crm.acting_as(station.manager) as work:
        orders = work.records("finance_order").list(filters={"party_id": station.client.id})
        assert len(orders.items) == 1


async def test_a_plate_found_at_the_desk_lists_that_cars_orders_not_the_fleets(station):
    # a corporate client's fleet: the manager asks about one car and sees its history
    with station.crm.acting_as(station.manager) as work:
        other = carservice(work).cars.create(party_id=station.client.id, plate="К555МН77")
    this_car = station.order()
    with station.crm.acting_as(station.manager) as work:
        other_car = carservice(work).intake(
            party_id=station.client.id,
            car_id=other.id,
            services=[station.oil_change.id],
            assignee_id=station.petr.id,
        )
    client = await signed_in(station, "manager")
    page = await client.get("/service", params={"q": "k555mh77"})
    found = page.text.split('id="plate-results"', 1)[1].split("</section>", 1)[0]
    assert f"/records/finance_order/{other_car.id}" in found
    assert f"/records/finance_order/{this_car.id}" not in found


async def test_giving_orders_to_workers_is_the_assign_cell(station):
    """A role granted ``finance_order`` ``assign`` (a shift supervisor: here the accountant)
    gets the order page's worker form and gives the order to a worker with it."""
    order = station.order("ivan")
    client = await signed_in(station, "accountant")
    assert 'id="assign"' not in (await client.get(f"/records/finance_order/{order.id}")).text
    with station.crm.system() as work:
        work.permissions.set("accountant", "finance_order", "assign", "all")
    page = await client.get(f"/records/finance_order/{order.id}")
    assert 'id="assign"' in page.text
    given = await client.post(
        f"/service/orders/{order.id}/assign", {"assignee_id": str(station.petr.id)}
    )
    assert given.status_code == 303, given.text
    with station.crm.acting_as(station.manager) as work:
        assert work.records("finance_order").get(order.id).assignee_id == station.petr.id


async def test_an_intake_for_a_branch_that_is_not_there_names_the_branch(station):
    """A branch id no branch has (deleted since the form was shown, a stale tab) is the
    form again with the branch named, not a missing page; no order is taken."""
    client = await signed_in(station, "manager")
    form = _intake_form(station, party_id=str(station.client.id), car_id=str(station.car.id))
    response = await client.post("/service/intake", {**form, "location_id": "99999"})
    assert response.status_code == 422, response.status_code
    error = re.search(r'id="form-error">([^<]*)<', response.text).group(1)
    assert error.startswith(tuple(f"{label}: " for label in ID_LABELS["location_id"])), error
    assert "99999" in error, error
    assert 'name="client_kind"' in response.text or 'name="services"' in response.text
    assert _orders_of(station, station.client.id) == []


def _flash(page, kind):
    return " ".join(re.findall(rf'<p class="flash {kind}"[^>]*>([^<]*)</p>', page.text))


async def test_goods_for_an_order_without_a_branch_take_the_branch_chosen_on_their_form(station):
    """An order taken without a branch, at a station of two where the manager works at
    neither: the goods form offers the branch, none chosen; goods sent without it are
    refused naming the branch and nothing is added; chosen, the branch becomes the order's
    and the goods leave its warehouse."""
    with station.crm.system() as work:
        second = work.records("finance_location").create(name="Филиал 2")
        finance(work).stock.receive(station.oil.id, second.id, "5", "400.00")
    with station.crm.acting_as(station.manager) as work:
        order = carservice(work).intake(
            party_id=station.client.id, car_id=station.car.id, services=[station.diagnostics.id]
        )
    client = await signed_in(station, "manager")
    page_url = f"/records/finance_order/{order.id}"
    form = (await client.get(page_url)).text.split('id="add-line"', 1)[1].split("</form>")[0]
    branch_field = re.search(r'<select name="location_id"[^>]*>(.*?)</select>', form, re.S)
    assert branch_field, form
    assert "Филиал 2" in branch_field.group(1) and "selected" not in branch_field.group(1)
    goods = {"item_id": str(station.oil.id), "qty": "2"}
    sent = await client.post(f"/finance/orders/{order.id}/lines", {**goods, "location_id": ""})
    assert sent.status_code == 303, sent.text
    refused = _flash(await client.get(sent.headers["location"]), "error")
    assert refused.startswith("Филиал: "), refused
    assert "no branch" in refused or "нет филиала" in refused, refused
    with station.crm.acting_as(station.manager) as work:
        fin = finance(work)
        assert [line.item_id for line in fin.orders.lines(order.id)] == [station.diagnostics.id]
    sent = await client.post(
        f"/finance/orders/{order.id}/lines", {**goods, "location_id": str(second.id)}
    )
    page = await client.get(sent.headers["location"])
    assert "Филиал 2" in _flash(page, "ok"), page.text
    assert 'name="location_id"' not in page.text.split('id="add-line"', 1)[1].split("</form>")[0]
    with station.crm.acting_as(station.manager) as work:
        fin = finance(work)
        assert fin.orders.get(order.id).location_id == second.id
        assert [line.item_id for line in fin.orders.lines(order.id)][-1] == station.oil.id


async def test_the_goods_form_of_an_order_without_a_branch_offers_the_stations_only_one(station):
    with station.crm.acting_as(station.manager) as work:
        order = carservice(work).intake(
            party_id=station.client.id, car_id=station.car.id, services=[station.diagnostics.id]
        )
    client = await signed_in(station, "manager")
    page = await client.get(f"/records/finance_order/{order.id}")
    form = page.text.split('id="add-line"', 1)[1].split("</form>")[0]
    assert re.search(rf'<option value="{station.branch.id}" selected>Филиал 1</option>', form)
    sent = await client.post(
        f"/finance/orders/{order.id}/lines", {"item_id": str(station.oil.id), "qty": "1"}
    )  # a form without the field (an older page): the only branch all the same
    assert "Филиал 1" in _flash(await client.get(sent.headers["location"]), "ok")
    with station.crm.acting_as(station.manager) as work:
        assert finance(work).orders.get(order.id).location_id == station.branch.id


async def test_the_desk_lists_the_orders_in_progress_not_the_closed_ones(station):
    """The desk's table is the station's work in progress: an order waiting for parts
    since spring stays on it behind a busy summer of closed and cancelled orders, and
    each row says when the order was taken."""
    with frozen_at(dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)):
        waiting = station.order("ivan")
    cancelled = station.order("petr")
    with station.crm.acting_as(station.manager) as work:
        work.moves.move(cancelled.id, "cancelled", entity="finance_order", comment="передумал")
        orders = finance(work).orders
        later = [
            orders.create({"party_id": station.client.id, "assignee_id": station.ivan.id}).id
            for _ in range(40)
        ]
        work.session.execute(
            sa.update(type(waiting)).where(type(waiting).id.in_(later)).values(stage="closed")
        )
    client = await signed_in(station, "manager")
    page = await client.get("/service")
    assert page.status_code == 200
    table = page.text.split('id="recent-orders"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-order="(\d+)"', table)
    assert rows == [str(waiting.id)], rows
    assert "2 мар. 2026" in table, table  # when it was taken, the Russian way
    # the whole list of open orders is one click away
    assert "/lists/finance_order?f.stage__not_in=closed,cancelled" in page.text


async def test_the_dashboard_names_its_months_the_russian_way(station):
    """The director reads "март 2026", not "2026-03": in the table, on the chart's axis and
    over last month's salaries; the month keys stay in the rows' data."""
    order = station.order("ivan")
    march = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)
    with frozen_at(march), station.crm.acting_as(station.ivan) as work:
        for stage in ("in_work", "done"):
            work.moves.move(order.id, stage, entity="finance_order")
    client = await signed_in(station, "director")
    with frozen_at(dt.datetime(2026, 4, 15, 9, tzinfo=dt.UTC)):
        page = await client.get("/service/director")
    assert page.status_code == 200
    table = page.text.split('id="by-month"', 1)[1].split("</table>", 1)[0]
    march = re.search(r'<tr data-month="2026-03"><td>([^<]*)</td>', table).group(1)
    assert march == "март 2026", march
    assert "2026-03<" not in table and "2026-04<" not in table
    chart = re.search(r'data-chart="([^"]*)"', page.text).group(1)
    labels = json.loads(html.unescape(chart))["data"]["labels"]
    assert "март 2026" in labels and "2026-03" not in labels, labels
    assert re.search(r"<h3>[^<]*март 2026</h3>", page.text)


def _details(page_text):
    """The record page's field block as {label: text}."""
    block = page_text.split('<dl class="details">', 1)[1].split("</dl>", 1)[0]
    pairs = re.findall(r"<dt>([^<]*)</dt><dd>(.*?)</dd>", block, re.S)
    return {
        label: html.unescape(re.sub(r"<[^>]+>", "", value)).replace("\xa0", " ").strip()
        for label, value in pairs
    }


async def test_the_order_page_names_the_branch_and_the_pipeline_and_says_percent(station):
    """The order page's fields read as a person wrote them: the branch by its name (a
    link to it), the pipeline by its title, the discount in percent, not "1", "carservice_
    order" and a ruble amount."""
    order = station.order("ivan")
    with station.crm.acting_as(station.manager) as work:
        finance(work).orders.set_discount(order.id, "10")
    client = await signed_in(station, "manager")
    page = await client.get(f"/records/finance_order/{order.id}")
    assert page.status_code == 200
    fields = _details(page.text)
    assert "Филиал 1" in fields.values(), fields
    assert f'href="/records/finance_location/{station.branch.id}"' in page.text
    # the pipeline by its title, as the stage line's label (not among the fields)
    assert 'aria-label="Заказ-наряды"' in page.text
    assert "carservice_order" not in fields.values(), fields
    percent = [v for v in fields.values() if "%" in v]
    assert percent == ["10 %"], fields
    assert "10,00 ₽" not in fields.values(), fields


async def test_the_director_picks_the_dashboards_period_on_the_page(station):
    """The dashboard has a period form (start and end dates, today's period filled in);
    sent, it shows those months only and keeps them in the form."""
    client = await signed_in(station, "director")
    with frozen_at(dt.datetime(2026, 4, 15, 9, tzinfo=dt.UTC)):
        page = await client.get("/service/director")
        assert page.status_code == 200
        form = page.text.split('id="period"', 1)[1].split("</form>", 1)[0]
        assert 'name="start"' in form and 'name="end"' in form and 'type="date"' in form
        assert 'value="2025-05-01"' in form and 'value="2026-04-15"' in form, form
        picked = await client.get(
            "/service/director", params={"start": "2026-01-01", "end": "2026-02-28"}
        )
    assert picked.status_code == 200
    months = re.findall(r'<tr data-month="([^"]+)"', picked.text)
    assert months == ["2026-01", "2026-02"], months
    form = picked.text.split('id="period"', 1)[1].split("</form>", 1)[0]
    assert 'value="2026-01-01"' in form and 'value="2026-02-28"' in form, form


async def test_the_order_page_shows_its_money_once_in_the_finance_block(station):
    """The order page's field block leaves the number (the page's title), the currency and
    the totals to the finance block, which shows them with what is paid and due: above the
    fold a receptionist sees the client, the worker and the branch, not "итог в базовой
    валюте 0,00 ₽" next to a total of 1 500 ₽."""
    order = station.order("ivan")
    client = await signed_in(station, "manager")
    page = await client.get(f"/records/finance_order/{order.id}")
    assert page.status_code == 200
    fields = _details(page.text)
    for label in ("число", "номер", "валюта", "сумма без скидки", "скидка", "итого"):
        assert label not in fields, fields
    assert not [k for k in fields if "базовой" in k], fields
    # the client and the worker are the car block's (see test_carservice_order_page)
    assert "RUB" not in fields.values() and "Сергей Волков" not in fields.values(), fields
    totals = page.text.split('id="order-totals"', 1)[1].split("</dl>", 1)[0]
    assert "1 500,00" in totals.replace("\xa0", " "), totals
    # the list keeps them
    listed = await client.get("/lists/finance_order", params={"cols": "number,total,currency"})
    assert listed.status_code == 200 and "RUB" in listed.text


async def test_the_order_page_leads_back_to_the_readers_car_service_screen(station):
    """From an order the worker goes back to *My orders*, the manager to the desk, without
    the menu; a reader with neither screen (the cashier) gets no such link."""
    order = station.order()
    for username, path, label in (
        ("ivan", "/service/my", "Мои заказы"),
        ("manager", "/service", "Приёмка"),
    ):
        client = await signed_in(station, username)
        page = await client.get(f"/records/finance_order/{order.id}")
        back = re.search(r'<a href="([^"]*)"[^>]*id="order-back"[^>]*>([^<]*)<', page.text)
        assert back, username
        assert back.group(1) == path and label in html.unescape(back.group(2)), back.groups()
        assert (await client.get(path)).status_code == 200, username
    cashier = await signed_in(station, "cashier")
    page = await cashier.get(f"/records/finance_order/{order.id}")
    assert page.status_code == 200 and 'id="order-back"' not in page.text


async def test_the_dashboards_figures_line_up_on_the_right(station):
    """The month table's counts and sums are numbers: right-aligned, each in one piece."""
    client = await signed_in(station, "director")
    page = await client.get("/service/director")
    head = page.text.split('id="by-month"', 1)[1].split("</thead>", 1)[0]
    table = re.search(r'<table id="by-month"[^>]*>', page.text).group(0)
    assert 'class="report"' in table, table
    cells = re.findall(r"<th( class=\"num\")?>", head)
    assert cells == ["", ' class="num"', ' class="num"', ' class="num"', ' class="num"'], cells


async def test_the_workers_finished_orders_say_which_were_done_and_which_cancelled(station):
    """*Finished* holds orders done and orders cancelled: each says which, in Russian."""
    done, cancelled = station.order(), station.order()
    with station.crm.acting_as(station.ivan) as work:
        for stage in ("in_work", "done"):
            work.moves.move(done.id, stage, entity="finance_order")
    with station.crm.acting_as(station.manager) as work:
        work.moves.move(cancelled.id, "cancelled", entity="finance_order", comment="передумал")
    client = await signed_in(station, "ivan")
    page = await client.get("/service/my")
    finished = html.unescape(page.text.split("<h2>", 1)[1])
    rows = dict(re.findall(r'<li data-finished="(\d+)">(.*?)</li>', finished, re.S))
    assert "Готов" in rows[str(done.id)] and "Отменён" not in rows[str(done.id)], rows
    assert "Отменён" in rows[str(cancelled.id)], rows


async def test_a_dashboard_period_without_orders_says_so_instead_of_an_empty_chart(station):
    """A period with no order completed reads «no orders completed in this period», not a
    chart with a 0-to-1 axis and no bars; a period with orders has its chart, no such line."""
    order = station.order("ivan")
    with station.crm.acting_as(station.ivan) as work:
        for stage in ("in_work", "done"):
            work.moves.move(order.id, stage, entity="finance_order")
    client = await signed_in(station, "director")
    empty = await client.get(
        "/service/director", params={"start": "2020-01-01", "end": "2020-02-29"}
    )
    assert empty.status_code == 200
    assert 'id="no-orders"' in empty.text and 'id="revenue-chart"' not in empty.text
    assert re.findall(r'<tr data-month="([^"]+)"', empty.text) == ["2020-01", "2020-02"]
    busy = await client.get("/service/director")
    assert 'id="revenue-chart"' in busy.text and 'id="no-orders"' not in busy.text


async def test_the_intake_links_back_to_the_desk_and_says_the_mileage_unit(station):
    client = await signed_in(station, "manager")
    page = await client.get("/service/intake")
    ru = client.app.state.catalogs["ru"].gettext
    back = re.search(r'<a href="/service"[^>]*>(.*?)</a>', page.text)
    assert back and ru("Service desk") in html.unescape(back[1])
    label = re.search(r"<label>([^<]*)<input name=\"mileage\"", page.text)
    assert label and html.unescape(label[1]) == ru("Mileage, km")
    assert "км" in label[1] or "km" in label[1]


async def test_the_dashboards_salaries_follow_the_period_picked(station):
    """The salaries card is for the last month the period covers to its end (a period
    ending mid-month, the month before; one within a month, that month so far) and names
    it; with no period picked it is last month's, as before."""
    with station.crm.acting_as(station.accountant) as work:
        finance(work).payroll.set_scheme(
            station.ivan.id, percent="40", valid_from=dt.date(2026, 1, 1)
        )
    order = station.order("ivan")  # diagnostics, 1500
    february = dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC)
    with frozen_at(february), station.crm.acting_as(station.ivan) as work:
        for stage in ("in_work", "done"):
            work.moves.move(order.id, stage, entity="finance_order")
    client = await signed_in(station, "director")

    async def card(**period):
        with frozen_at(dt.datetime(2026, 4, 15, 9, tzinfo=dt.UTC)):
            page = await client.get("/service/director", params=period)
        assert page.status_code == 200, page.text[:300]
        month = re.search(r"<h3>[^<]*, ([^<]*)</h3><p id=\"salaries\"", page.text)[1]
        return month, Decimal(re.search(r'id="salaries" data-value="([^"]*)"', page.text)[1])

    assert await card() == ("март 2026", 0)
    assert await card(start="2026-01-01", end="2026-02-28") == ("февраль 2026", 600)
    assert await card(start="2026-01-01", end="2026-03-15") == ("февраль 2026", 600)
    assert await card(start="2026-01-01", end="2026-02-15") == ("январь 2026", 0)
    assert await card(start="2026-02-03", end="2026-02-20") == ("февраль 2026", 600)
    # a period running past today: the months up to today
    assert await card(start="2026-04-01", end="2026-06-30") == ("апрель 2026", 0)


async def test_the_workers_list_of_orders_names_the_stage_and_the_car(station):
    """A worker, who may not read clients, sees no client column empty on every row in
    /lists/finance_order: each of their orders with its stage and its car; the manager's
    list keeps the client."""
    order = station.order("ivan")

    def table(page):
        head = re.findall(r"<th>(.*?)</th>", page.text.split("<thead>", 1)[1].split("</thead>")[0])
        headers = [html.unescape(re.sub(r"<[^>]+>|[▲▼]", "", h)).strip() for h in head]
        body = page.text.split("<tbody>", 1)[1].split("</tbody>")[0]
        rows = [
            [
                html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
            ]
            for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
        ]
        return headers, rows

    ivan = await signed_in(station, "ivan")
    page = await ivan.get("/lists/finance_order")
    assert page.status_code == 200
    headers, rows = table(page)
    assert "Клиент" not in headers, headers
    assert "Стадия" in headers and "Автомобиль" in headers, headers
    assert len(rows) == 1, rows
    cells = dict(zip(headers, rows[0][-len(headers) :], strict=True))
    assert cells["Стадия"] == "Новый", cells
    assert cells["Автомобиль"] == "А123ВС77 Lada Vesta", cells
    manager = await signed_in(station, "manager")
    headers, rows = table(await manager.get("/lists/finance_order"))
    assert "Клиент" in headers and "Автомобиль" in headers, headers
    assert order.id and any("Сергей Волков" in row for row in rows), rows
