"""A small car service for the tests: staff of every role, a branch, services, a client."""

from __future__ import annotations

from typing import Any

import attrs
from crmkit_booking import plugin as booking_plugin
from crmkit_carservice import carservice
from crmkit_carservice import plugin as carservice_plugin
from crmkit_finance import finance
from crmkit_finance import plugin as finance_plugin

from crmkit.testing import add_user
from crmkit.testing.web import WebClient

#: What the car service is assembled from.
PLUGINS = [finance_plugin, booking_plugin, carservice_plugin]

STAFF = (
    ("admin", "admin"),
    ("director", "director"),
    ("manager", "manager"),
    ("cashier", "cashier"),
    ("accountant", "accountant"),
    ("warehouse", "warehouse_head"),
    ("ivan", "worker"),
    ("petr", "worker"),
)


@attrs.define(slots=False)
class Station:
    """The station's staff by username, its branch and desk, services, goods and a client."""

    crm: Any
    users: dict[str, Any]
    branch: Any
    desk: Any
    diagnostics: Any
    oil_change: Any
    oil: Any
    client: Any
    car: Any

    def __getattr__(self, name: str) -> Any:
        users = self.__dict__.get("users") or {}
        if name in users:
            return users[name]
        raise AttributeError(name)

    def order(self, worker: str = "ivan", **values: Any) -> Any:
        """A new order for the client's car, taken by the manager for ``worker``."""
        with self.crm.acting_as(self.users["manager"]) as work:
            return carservice(work).intake(
                party_id=self.client.id,
                car_id=self.car.id,
                services=[self.diagnostics.id],
                assignee_id=self.users[worker].id,
                location_id=self.branch.id,
                **values,
            )


def build_station(crm: Any) -> Station:
    """Create the staff, a branch with a desk, services and goods, a client with a car."""
    users = {name: add_user(crm, name, [role], display_name=name.title()) for name, role in STAFF}
    with crm.acting_as(users["warehouse"]) as work:
        fin = finance(work)
        branch = work.records("finance_location").create(name="Филиал 1")
        engine = work.records("finance_item_category").create(name="Двигатель", kind="service")
        oils = work.records("finance_item_category").create(name="Масла", kind="goods")
        diagnostics = work.records("finance_item").create(
            name="Диагностика", kind="service", category_id=engine.id, price="1500.00"
        )
        oil_change = work.records("finance_item").create(
            name="Замена масла", kind="service", category_id=engine.id, price="2000.00"
        )
        oil = work.records("finance_item").create(
            name="Масло 5W-30",
            kind="goods",
            category_id=oils.id,
            price="900.00",
            unit="l",
            track_stock=True,
        )
        fin.stock.receive(oil.id, branch.id, "20", "400.00")
    with crm.acting_as(users["accountant"]) as work:
        desk = work.records("finance_cash_desk").create(name="Касса 1", location_id=branch.id)
    with crm.acting_as(users["manager"]) as work:
        client = work.parties.create(
            kind="person",
            name="Сергей Волков",
            customer_type="individual",
            contact_points=[{"kind": "phone", "value": "+7 916 100-20-30"}],
        )
        car = carservice(work).cars.create(
            party_id=client.id, plate="А123ВС77", make="Lada", model="Vesta"
        )
    return Station(
        crm=crm,
        users=users,
        branch=branch,
        desk=desk,
        diagnostics=diagnostics,
        oil_change=oil_change,
        oil=oil,
        client=client,
        car=car,
    )


async def signed_in(station: Station, username: str) -> WebClient:
    """A web client on the station's application, signed in as ``username``."""
    client = WebClient.for_crm(station.crm)
    response = await client.login(username)
    assert response.status_code == 303, response.text
    return client
