"""Hook implementations of the car service deployment (entry point ``crmkit: carservice``).

Everything else comes from the core, the finance plugin (orders, lines, money, stock,
salaries, cashback, reports) and the booking plugin (the appointment journal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import false, select

from crmkit import EntityType, MigrationBranch, Pipeline, hookimpl
from crmkit.demo import Demo
from crmkit.errors import ValidationFailed
from crmkit.filters import FilterField
from crmkit.i18n import message
from crmkit.identity import plate_key
from crmkit.web.contributions import CardPanel, ListColumn, MenuItem, Screen
from crmkit_carservice import access
from crmkit_carservice.model import CarserviceCar, CarserviceOrderCar
from crmkit_carservice.pipeline import SERVICE_ORDER
from crmkit_carservice.services import CarSchema, CarService

crmkit_plugin_name = "carservice"
#: A deployment: it takes over the order pipeline, roles and start screens, so it loads only
#: where ``plugins.allow`` names it (``crmkit init DIR --plugin carservice ...``).
crmkit_deployment = True

MIGRATIONS = Path(__file__).parent / "migrations"
#: The office's screens take the powers they use, not role names (the manager's and the
#: admin's today; a deployment may hand them to a supervisor): taking orders, giving them
#: to workers; the director's dashboard is the finance reports it shows (``report``).
TAKE_ORDERS = ("finance_order", "create")
ASSIGN_ORDERS = ("finance_order", "assign")
DASHBOARD = ("finance_order", "report")


@hookimpl
def crmkit_register_entities() -> list[EntityType]:
    return [
        EntityType(
            "carservice_car",
            CarserviceCar,
            label="Car",
            label_plural="Cars",
            schema=CarSchema,
            service=CarService,
            party_attr="party_id",
            scope_through_party=True,
            title_attr="plate",
            search_attrs=("plate_key", "make", "model", "vin"),
            filter_attrs=("party_id", "make", "year"),
            sort_attrs=("plate_key", "created_at"),
            default_sort=("plate_key",),
        )
    ]


def _order_plate(entity: EntityType, op: str, value: Any) -> Any:
    """Orders whose car's plate is (``eq``), starts with or contains the text, folded as
    :func:`crmkit.identity.plate_key` folds it (alphabet, spacing, ``RUS``, separators)."""
    key = plate_key(str(value or ""))
    plate = CarserviceCar.plate_key
    compared = {
        "eq": lambda: plate == key,
        "startswith": lambda: plate.startswith(key, autoescape=True),
        "contains": lambda: plate.contains(key, autoescape=True),
    }.get(op)
    if compared is None:
        raise ValidationFailed(
            {
                "plate": [
                    message("a plate is compared by eq, startswith or contains, not {op}", op=op)
                ]
            }
        )
    if not key:
        return false()
    cars = (
        select(CarserviceOrderCar.order_id)
        .join(CarserviceCar, CarserviceCar.id == CarserviceOrderCar.car_id)
        .where(compared())
    )
    return entity.model.id.in_(cars)


@hookimpl
def crmkit_register_filter_fields() -> list[FilterField]:
    # the plate is the car's: searching orders by it takes reading cars (a worker does not)
    return [
        FilterField(
            "plate",
            "finance_order",
            _order_plate,
            label="Car plate",
            permission=("carservice_car", "read"),
            searched=True,
        )
    ]


@hookimpl
def crmkit_register_pipelines() -> list[Pipeline]:
    return [SERVICE_ORDER]


@hookimpl(tryfirst=True)
def crmkit_register_roles() -> list[Any]:
    # tryfirst: where this deployment's start screens differ from a plugin's, ours win
    return list(access.ROLES)


@hookimpl
def crmkit_register_permissions() -> list[Any]:
    return access.permissions()


@hookimpl
def crmkit_register_migrations() -> list[MigrationBranch]:
    return [MigrationBranch("carservice", MIGRATIONS)]


@hookimpl
def crmkit_register_screens() -> list[Screen]:
    from crmkit_carservice import screens

    return [
        Screen("carservice-desk", "/service", "Service desk", screens.desk, permission=TAKE_ORDERS),
        Screen(
            "carservice-intake",
            "/service/intake",
            "New order",
            screens.intake,
            permission=TAKE_ORDERS,
            methods=("GET", "POST"),
        ),
        # the intake's plate, checked as it is typed (an htmx fragment)
        Screen(
            "carservice-plate-check",
            "/service/intake/plate",
            "Plate check",
            screens.plate_check,
            permission=TAKE_ORDERS,
        ),
        Screen(
            "carservice-assign",
            "/service/orders/{order_id:id}/assign",
            "Assign the order to a worker",
            screens.assign,
            permission=ASSIGN_ORDERS,
            methods=("POST",),
        ),
        # the printable work order: whoever may read the order (its scope decides which)
        Screen(
            "carservice-work-order",
            "/service/orders/{order_id:id}/print",
            "Work order",
            screens.work_order,
            permission=("finance_order", "read"),
        ),
        # the worker's start screen: by role
        Screen("carservice-my", "/service/my", "My orders", screens.my_orders, roles=("worker",)),
        Screen(
            "carservice-director",
            "/service/director",
            "Dashboard",
            screens.director,
            permission=DASHBOARD,
        ),
    ]


@hookimpl
def crmkit_register_card_panels() -> list[CardPanel]:
    from crmkit_carservice import screens

    return [
        CardPanel(
            "carservice_order",
            "carservice/order_panel.html",
            screens.order_panel,
            entity="finance_order",
            order=5,
            # the block names the client and the worker: the order's fields don't repeat them
            shows_attrs=("party_id", "assignee_id"),
        ),
        CardPanel(
            "carservice_cars",
            "carservice/client_panel.html",
            screens.client_panel,
            permission=("carservice_car", "read"),
            order=5,
        ),
    ]


@hookimpl
def crmkit_register_list_columns() -> list[ListColumn]:
    """The list of orders names each one's car (plate, make, model), as the order's page
    does: a worker, who may not read clients, tells their orders apart by the car."""
    return [ListColumn("finance_order", "car", "Car", _order_cars)]


@hookimpl
def crmkit_register_menu_items() -> list[MenuItem]:
    return [
        MenuItem("Service desk", "carservice-desk", order=5, icon="🔧"),
        MenuItem("My orders", "carservice-my", roles=("worker",), order=5, icon="🔧"),
        MenuItem("Dashboard", "carservice-director", order=5, icon="📊"),
        # the office's list of cars: for those who enter them (others read cars on the cards)
        MenuItem(
            "Cars",
            "/lists/carservice_car",
            order=25,
            icon="🚗",
            permission=("carservice_car", "create"),
        ),
    ]


def _generate(crm: Any, size: int, seed: int) -> str:
    from crmkit_carservice.demo import generate

    return generate(crm, size=size, seed=seed)


@hookimpl
def crmkit_register_demos() -> list[Demo]:
    return [
        Demo(
            "carservice",
            "A car service: two branches, staff of every role, a year of orders.",
            _generate,
            default_size=800,
        )
    ]


@hookimpl
def crmkit_register_automations() -> list[Any]:
    from crmkit_carservice.automations import rules

    return rules()


@hookimpl(optionalhook=True)
def crmkit_finance_describe_found(work: Any, entity: str, records: list[Any]) -> dict[int, str]:
    """What the finance plugin's screens found (its optional hook), for a reader who reads
    cars: the cash desk's orders, each one's car, plate first (the plate is what finds
    them); the cashback screen's clients, each one's car plates (namesakes are told apart
    by their cars)."""
    if not records or not work.access.can("carservice_car", "read"):
        return {}
    if entity == "finance_order":
        return _order_cars(work, records)
    if entity == "party":
        return _client_plates(work, records)
    return {}


def _order_cars(work: Any, orders: list[Any]) -> dict[int, str]:
    from crmkit_carservice.services import carservice

    notes = {}
    for view in carservice(work).views(orders):
        if view.car is not None:
            car = view.car
            notes[view.order.id] = " ".join(p for p in (car.plate, car.make, car.model) if p)
    return notes


def _client_plates(work: Any, parties: list[Any]) -> dict[int, str]:
    from crmkit_carservice.model import CarserviceCar

    plates: dict[int, list[str]] = {}
    cars = work.records("carservice_car")
    query = cars.query().where(CarserviceCar.party_id.in_([p.id for p in parties]))
    for car in work.session.scalars(query.order_by(CarserviceCar.id)):
        plates.setdefault(car.party_id, []).append(car.plate)
    return {party_id: ", ".join(found) for party_id, found in plates.items()}
