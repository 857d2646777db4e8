"""The intake form's live plate check: ``/service/intake/plate`` tells, as the plate is typed,
whose car it is and which of its orders are still open, before the rest of the form is filled.
"""

from __future__ import annotations

import html

import pytest
from crmkit_carservice import carservice
from service_fixtures import PLUGINS, build_station, signed_in

from crmkit import hookimpl
from crmkit.access.rules import Role, Scope, grant
from crmkit.testing import add_user

pytestmark = pytest.mark.anyio

CHECK = "/service/intake/plate"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def shown(response) -> str:
    """The fragment's text as a reader sees it (entities decoded, spacing folded)."""
    return " ".join(html.unescape(response.text).split())


async def test_a_known_plate_typed_in_latin_shows_the_owner_the_car_and_its_open_order(station):
    open_order = station.order()
    cancelled = station.order()
    with station.crm.acting_as(station.manager) as work:
        work.moves.move(cancelled.id, "cancelled", entity="finance_order", comment="передумал")
    client = await signed_in(station, "manager")
    response = await client.get(CHECK, params={"plate": "a 123 bc 77"})
    assert response.status_code == 200, response.text
    text = shown(response)
    assert "А123ВС77" in text  # the plate in Cyrillic, as the server writes it
    assert "Lada Vesta" in text and "Сергей Волков" in text
    assert f'href="/clients/{station.client.id}"' in response.text
    assert f'href="/records/finance_order/{open_order.id}"' in response.text
    assert f'href="/records/finance_order/{cancelled.id}"' not in response.text
    # the form for this car is one click away, the client and the car chosen
    link = f'href="/service/intake?party_id={station.client.id}&car_id={station.car.id}"'
    assert link in html.unescape(response.text)
    assert "зарегистрирован" in text or "registered" in text  # Russian once the catalog has it


async def test_a_known_plate_without_open_orders_says_so(station):
    client = await signed_in(station, "manager")
    response = await client.get(CHECK, params={"plate": "А123ВС77"})
    assert response.status_code == 200
    assert "Сергей Волков" in shown(response)
    assert "/records/finance_order/" not in response.text
    assert 'class="open-orders"' not in response.text


async def test_a_new_plate_or_an_empty_one_shows_nothing(station):
    client = await signed_in(station, "manager")
    for typed in ("О777ОО77", "", "  ", "!!!", "А123ВС7"):  # a prefix is not the car
        response = await client.get(CHECK, params={"plate": typed})
        assert response.status_code == 200, typed
        assert 'class="known-plate"' not in response.text, typed
        assert "Сергей Волков" not in response.text, typed


async def test_the_chosen_clients_own_car_is_not_offered_as_another_form(station):
    """Intake for this very client: the plate typed is their car, which the order takes."""
    client = await signed_in(station, "manager")
    response = await client.get(
        CHECK, params={"plate": "a123bc77", "party_id": str(station.client.id)}
    )
    assert response.status_code == 200
    assert 'class="known-plate own"' in response.text
    assert "/service/intake?party_id=" not in response.text
    # another client chosen: the car is someone else's, the order would be refused
    with station.crm.acting_as(station.manager) as work:
        other = work.parties.create(kind="person", name="Олег Орлов", customer_type="individual")
    response = await client.get(CHECK, params={"plate": "a123bc77", "party_id": str(other.id)})
    assert 'class="known-plate"' in response.text and "Сергей Волков" in shown(response)


class Receptionist:
    """A role that takes orders for its own clients only (their cars through them)."""

    @hookimpl
    def crmkit_register_roles(self):
        return [Role("receptionist", "Receptionist")]

    @hookimpl
    def crmkit_register_permissions(self):
        return [
            *grant("receptionist", "finance_order", ("read", "create"), Scope.OWN),
            *grant("receptionist", ("party", "carservice_car"), ("read", "create"), Scope.OWN),
        ]


async def test_a_car_the_reader_may_not_see_is_named_taken_without_its_owner(make_crm):
    """A plate is unique across the station: one registered to a client the reader may not
    read is refused on submit, so the check says the plate is taken, and no more."""
    station = build_station(make_crm(plugins=[*PLUGINS, Receptionist()]))
    add_user(station.crm, "reception", ["receptionist"])
    client = await signed_in(station, "reception")
    response = await client.get(CHECK, params={"plate": "a123bc77"})
    assert response.status_code == 200, response.text
    text = shown(response)
    assert 'class="known-plate taken"' in response.text and "А123ВС77" in text
    assert "Сергей Волков" not in text and "Lada" not in text
    assert f"/clients/{station.client.id}" not in response.text
    assert "/service/intake?party_id=" not in response.text


async def test_only_who_takes_orders_may_ask(station):
    for username in ("ivan", "cashier"):
        client = await signed_in(station, username)
        response = await client.get(CHECK, params={"plate": "А123ВС77"})
        assert response.status_code in (403, 404), username
        assert "Сергей Волков" not in response.text, username


async def test_the_intake_form_asks_as_the_plate_is_typed(station):
    client = await signed_in(station, "manager")
    page = await client.get("/service/intake")
    plate = page.text.split('name="plate"', 1)[1].split(">", 1)[0]
    assert f'hx-get="{CHECK}"' in plate and "delay:" in plate and "blur" in plate, plate
    assert 'id="plate-check"' in page.text


async def test_the_check_does_not_change_what_the_submit_refuses(station):
    """The server's own check on submit stays: another client's plate is refused."""
    client = await signed_in(station, "manager")
    response = await client.post(
        "/service/intake",
        {"client_name": "Олег Орлов", "phone": "", "plate": "a123bc77"},
    )
    assert response.status_code == 422
    assert 'id="known-car"' in response.text
    with station.crm.acting_as(station.manager) as work:
        assert carservice(work).cars.registered("А123ВС77").party_id == station.client.id
