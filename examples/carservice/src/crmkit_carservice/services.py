"""The car service's use cases on top of crmkit and the finance plugin.

``carservice(work)`` is the facade a screen uses::

    from crmkit_carservice.services import carservice

    with crm.acting_as(manager) as work:
        found = carservice(work).find_by_plate("а 123 вс 77")   # = A123BC77
        order = carservice(work).intake(
            client={"name": "Иван Петров", "phone": "+7 916 123-45-67"},
            car={"plate": "А123ВС77", "make": "Lada", "model": "Vesta"},
            services=[diagnostics.id], assignee_id=worker.id, location_id=branch.id,
        )

Every read goes through the entity services, so the actor's scope applies: a worker finds
only the orders assigned to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from crmkit_finance import finance
from crmkit_finance.services import forms
from marshmallow import fields, validate
from sqlalchemy import case, func, or_, select

from crmkit.access.policy import load_scopes, scope_in
from crmkit.access.rules import Scope
from crmkit.errors import ValidationFailed
from crmkit.i18n import Number, message
from crmkit.identity import plate_key
from crmkit.model import Party, User
from crmkit.schemas import MAX_ID, StrictSchema
from crmkit.services.records import EntityService
from crmkit_carservice.model import CarserviceCar, CarserviceOrderCar
from crmkit_carservice.pipeline import REPAIR


class CarSchema(StrictSchema):
    """A client's car as entered on a form or through the API."""

    party_id = fields.Integer(required=True)
    plate = fields.String(required=True, validate=validate.Length(min=1, max=20))
    make = fields.String(validate=validate.Length(max=100))
    model = fields.String(validate=validate.Length(max=100))
    vin = fields.String(validate=validate.Length(max=17), allow_none=True)
    year = fields.Integer(validate=validate.Range(min=1900, max=2100), allow_none=True)
    note = fields.String(validate=validate.Length(max=5000))


#: A Russian plate's letters (the twelve with Latin look-alikes), folded to Latin as
#: ``plate_key`` folds them: ``А123ВС77``, ``А123ВС777``.
RUSSIAN_PLATE = re.compile(r"[ABEKMHOPCTYX]\d{3}[ABEKMHOPCTYX]{2}\d{2,3}")
_TO_CYRILLIC = str.maketrans("ABEKMHOPCTYX", "АВЕКМНОРСТУХ")


def russian_plate(typed: str) -> str:
    """A Russian plate typed with Latin look-alikes (``y701xb99``, a Latin keyboard) in its
    Cyrillic letters (``У701ХВ99``), as it reads on the car and on the documents; spacing,
    and a ``RUS`` after the region, as typed.  Any other plate is returned as it is."""
    if not RUSSIAN_PLATE.fullmatch(plate_key(typed)):
        return typed
    number, suffix = re.match(r"(.*?\d)(\D*)$", typed, re.S).groups()
    return number.translate(_TO_CYRILLIC) + suffix


def _plate(values: dict[str, Any]) -> None:
    if "plate" in values:
        values["plate"] = russian_plate(" ".join(values["plate"].split()).upper())
        values["plate_key"] = plate_key(values["plate"])
        # a plate is letters and digits: "!!!" or "%%%" is no plate (and would match no search)
        if not any(ch.isalnum() for ch in values["plate_key"]):
            raise ValidationFailed(
                {"plate": [message("a plate is required")]}, entity="carservice_car"
            )


def service_ids(services: Iterable[Any]) -> list[int]:
    """The intake's services as item ids; one that is not a number, or a number no id
    column holds (0, 25 digits), is refused naming the ``services`` field and its row
    (counted from 1, as the form lists them)."""
    ids = []
    for row, value in enumerate(services, start=1):
        text = str(value).strip() if isinstance(value, (int, str)) else ""
        # ASCII digits only: "١" is a decimal to Python but no id anyone typed here
        if isinstance(value, bool) or not (text.isascii() and text.isdecimal()):
            raise ValidationFailed(
                {
                    "services": [
                        message("row {row}: not a number: {value}", row=row, value=repr(value))
                    ]
                }
            )
        if len(text) > len(str(MAX_ID)) or not 1 <= int(text) <= MAX_ID:
            raise ValidationFailed(
                {
                    "services": [
                        message(
                            "row {row}: not an id (1 to 2^63-1): {value}",
                            row=row,
                            value=repr(value),
                        )
                    ]
                }
            )
        ids.append(int(text))
    return ids


def _plate_taken(plate: str) -> ValidationFailed:
    return ValidationFailed(
        {"plate": [message("a car with the plate {plate} is already registered", plate=plate)]},
        entity="carservice_car",
    )


#: The action the intake form's one-time token is claimed for.
INTAKE = "carservice_intake"

#: The most a mileage may read, in kilometres (an odometer has six or seven digits).
MOST_MILEAGE = 9_999_999


def mileage_value(value: Any) -> int | None:
    """The intake's mileage as a whole number of kilometres from 0 to :data:`MOST_MILEAGE`
    (``None`` when not given); anything else is refused naming the ``mileage`` field."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().replace(" ", "").replace("\u00a0", "")
    if isinstance(value, bool) or not text.isdecimal() or int(text) > MOST_MILEAGE:
        raise ValidationFailed(
            {
                "mileage": [
                    message(
                        "a whole number of kilometres from 0 to {most}, not {value}",
                        most=Number(MOST_MILEAGE),
                        value=str(value),
                    )
                ]
            }
        )
    return int(text)


class CarService(EntityService):
    """Cars (entity ``carservice_car``): the plate is kept as typed and folded for search.

    A plate is one car: a second car with the same folded plate is refused naming the plate
    (and the table's unique index on ``plate_key`` holds it against a race).
    """

    def build(self, values: dict[str, Any]) -> Any:
        _plate(values)
        if self.holder(values["plate_key"]) is not None:
            raise _plate_taken(values["plate"])
        return super().build(values)

    def apply_changes(self, record: Any, values: Mapping[str, Any]) -> dict[str, Any]:
        staged = dict(values)
        _plate(staged)
        if "plate_key" in staged and self.holder(staged["plate_key"], other_than=record.id):
            raise _plate_taken(staged["plate"])
        return super().apply_changes(record, staged)

    def delete(self, record: Any) -> None:
        """Delete a car entered by mistake; a car with orders stays (its orders say which
        car was serviced: the link would go with it), refused naming the plate."""
        car = self.get(record, action="delete")
        orders = self.session.scalar(
            select(func.count()).where(CarserviceOrderCar.car_id == car.id)
        )
        if orders:
            refused = message(
                "the car {plate} is on {count} orders and stays with them",
                plate=car.plate,
                count=orders,
            )
            raise ValidationFailed({"_schema": [refused]}, entity="carservice_car")
        super().delete(car)

    def holder(self, key: str, *, other_than: int | None = None) -> CarserviceCar | None:
        """The car registered under the folded plate ``key``, whoever's it is: a plate is
        unique across the station, not only among the cars the actor sees.  System code
        only: a screen offers a car through :meth:`registered`."""
        statement = select(CarserviceCar).where(CarserviceCar.plate_key == key)
        if other_than is not None:
            statement = statement.where(CarserviceCar.id != other_than)
        return self.session.scalars(statement.limit(1)).first()

    def registered(self, text: str) -> CarserviceCar | None:
        """The visible car whose plate is ``text`` (folded), if any."""
        key = plate_key(text)
        if not key:
            return None
        return self.session.scalars(
            self.query().where(CarserviceCar.plate_key == key).limit(1)
        ).first()

    def search_clause(self, text: str) -> Any:
        """The generic search (make, model, VIN...) or the plate folded as ``plate_key`` folds
        it: the car list and the API find ``а 123 вс`` typed in Cyrillic, spaced or not."""
        clause = super().search_clause(text)
        key = plate_key(text)
        if not key:
            return clause
        return or_(clause, CarserviceCar.plate_key.contains(key, autoescape=True))

    def by_plate(self, text: str, *, limit: int = 20) -> list[CarserviceCar]:
        """Visible cars whose plate is, starts with or contains ``text`` (any alphabet,
        spacing, case): the plate itself first, then those starting with it, then the rest
        (a client often remembers the digits, not the letters before them)."""
        key = plate_key(text)
        if not key:
            return []
        plate = CarserviceCar.plate_key
        statement = (
            self.query()
            .where(plate.contains(key, autoescape=True))
            .order_by(
                case((plate == key, 0), (plate.startswith(key, autoescape=True), 1), else_=2),
                plate,
            )
            .limit(limit)
        )
        return list(self.session.scalars(statement))

    def of_party(self, party_id: int) -> list[CarserviceCar]:
        """The visible cars of a client."""
        statement = self.query().where(CarserviceCar.party_id == party_id)
        return list(self.session.scalars(statement.order_by(CarserviceCar.id)))


@attrs.frozen
class PlateMatch:
    """A car found by its plate, its owner and the car's orders (those the actor may see)."""

    car: CarserviceCar
    party: Party
    orders: Sequence[Any]


#: The stages of an order that is over: the car has left and nothing is left to do.
OFF_DESK = ("closed", "cancelled")


@attrs.frozen
class KnownPlate:
    """A plate typed on the intake that is already a car's (the intake's live check).

    ``plate`` is the plate as the server writes it (Cyrillic letters).  ``car`` and
    ``party`` are ``None`` when the car is registered to a client the actor may not read:
    the order would be refused all the same, so the plate is said to be taken, no more.
    ``open_orders``: the car's orders not yet closed or cancelled, the newest first."""

    plate: str
    car: CarserviceCar | None = None
    party: Party | None = None
    open_orders: Sequence[Any] = ()


@attrs.frozen
class OrderView:
    """What the order screens show: the order, its car, client name and worker."""

    order: Any
    car: CarserviceCar | None
    mileage: int | None
    client_name: str
    worker: User | None


def carservice(work: Any) -> Desk:
    """The car service's use cases for this unit of work."""
    return work.service("carservice", Desk)


class Desk:
    """Plate search, intake of a new order, assignment, the car of an order."""

    def __init__(self, work: Any) -> None:
        self.work = work

    @property
    def cars(self) -> CarService:
        """The entity service of cars."""
        return self.work.records("carservice_car")

    def find_by_plate(self, text: str) -> list[PlateMatch]:
        """Cars matching a plate as typed, with their client and the car's latest orders
        (those the actor may see): a fleet's other cars' orders are not this car's."""
        matches = []
        orders = self.work.records("finance_order")
        for car in self.cars.by_plate(text):
            party = self.work.parties.find(car.party_id)
            if party is None:
                continue
            ids = list(
                self.work.session.scalars(
                    select(CarserviceOrderCar.order_id)
                    .where(CarserviceOrderCar.car_id == car.id)
                    .order_by(CarserviceOrderCar.order_id.desc())
                    .limit(20)
                )
            )
            visible = orders.find_many(ids)
            found = [visible[i] for i in ids if i in visible]
            matches.append(PlateMatch(car=car, party=party, orders=found))
        return matches

    def known_plate(self, text: str, *, open_orders: int = 10) -> KnownPlate | None:
        """The car already registered under the plate ``text`` (folded: any alphabet,
        spacing, case), its owner and its open orders (those the actor may see, at most
        ``open_orders``); ``None`` for a plate no car has.  The intake form asks as the
        plate is typed; :meth:`intake` refuses the same plate on its own when sent."""
        key = plate_key(text)
        if not key or not any(ch.isalnum() for ch in key):
            return None
        holder = self.cars.holder(key)
        if holder is None:
            return None
        readable = self.work.access.can("carservice_car", "read")
        car = self.cars.registered(text) if readable else None
        party = self.work.parties.find(car.party_id) if car is not None else None
        if car is None or party is None:
            return KnownPlate(plate=russian_plate(" ".join(text.split()).upper()))
        orders = self.work.records("finance_order")
        model = orders.model
        found = []
        if self.work.access.can("finance_order", "read"):
            of_car = select(CarserviceOrderCar.order_id).where(CarserviceOrderCar.car_id == car.id)
            found = list(
                self.work.session.scalars(
                    orders.query()
                    .where(model.id.in_(of_car), model.stage.not_in(OFF_DESK))
                    .order_by(model.id.desc())
                    .limit(open_orders)
                )
            )
        return KnownPlate(plate=car.plate, car=car, party=party, open_orders=found)

    def intake(
        self,
        *,
        client: Mapping[str, Any] | None = None,
        party_id: int | None = None,
        car: Mapping[str, Any] | None = None,
        car_id: int | None = None,
        services: Iterable[int | str] = (),
        assignee_id: int | None = None,
        location_id: int | None = None,
        mileage: int | str | None = None,
        note: str = "",
        confirm_duplicates: bool = False,
        form_token: str | None = None,
    ) -> Any:
        """Take an order: an existing or new client, an existing or new car, the services.

        A plate already registered is that car: the chosen client's own car is taken for
        the order; another's is refused naming the plate (the form offers that car and its
        owner, ``car_id`` alone).  ``car_id`` without ``party_id`` is the car's owner.

        Runs in the caller's unit of work: anything refused (a bad plate, a hidden client,
        an unknown service, a service that is not a number) raises and nothing of the order,
        client or car is kept.  ``services`` are item ids, as numbers or as a form sends them.

        A new client who looks like an existing one (the core's duplicate screening: the
        same phone, a similar name) raises :class:`~crmkit.errors.DuplicatesFound` unless
        ``confirm_duplicates``: the manager picks the existing client (``party_id``) or
        confirms that this is somebody else.

        ``form_token``: the intake form's one-time token (the finance plugin's, see
        :mod:`crmkit_finance.services.forms`): the same form sent again (a double click, a
        reload) returns the order it took instead of taking a second one.
        """
        item_ids = service_ids(services)
        mileage = mileage_value(mileage)
        fin = finance(self.work)
        with self.work.savepoint():
            # claimed inside the savepoint: a refused intake leaves the form usable again
            earlier = forms.claim(fin, form_token, INTAKE)
            if earlier:
                return fin.orders.get(earlier[0])
            self._check_services(item_ids)
            if assignee_id is not None:
                self._check_worker(assignee_id)
            if car_id is not None and party_id is None:
                # a car chosen by itself (the intake offers a known plate's car): its owner
                party_id = self.cars.get(car_id).party_id
            typed = (car or {}).get("plate") or ""
            if car_id is None and typed.strip():
                known = self.cars.holder(plate_key(typed))
                if known is not None and party_id is not None and known.party_id == party_id:
                    car_id = known.id  # the client's own car, its plate typed again
                elif known is not None:
                    raise _plate_taken(" ".join(typed.split()).upper())
            if party_id is None:
                if not client:
                    raise ValidationFailed(
                        {"client": [message("choose a client or enter a new one")]}
                    )
                party_id = self.work.parties.create(
                    self.client_values(client), confirm_duplicates=confirm_duplicates
                ).id
            elif self.work.parties.find(party_id) is None:
                raise ValidationFailed(
                    {"party_id": [message("no client {client}", client=party_id)]}
                )
            if car_id is None and car and (car.get("plate") or "").strip():
                car_id = self.cars.create({**car, "party_id": party_id}).id
            elif car_id is not None:
                found = self.cars.get(car_id)
                if found.party_id != party_id:
                    raise ValidationFailed(
                        {"car_id": [message("the car belongs to another client")]}
                    )
            order = fin.orders.create(
                {
                    "party_id": party_id,
                    "assignee_id": assignee_id,
                    "location_id": location_id,
                    "note": note,
                }
            )
            if car_id is not None:
                self.work.session.add(
                    CarserviceOrderCar(order_id=order.id, car_id=car_id, mileage=mileage)
                )
            fin.orders.add_lines(
                order,
                [{"item_id": i, "main": n == 0} for n, i in enumerate(item_ids)],
            )
            self.work.flush()
            forms.remember(fin, form_token, [order.id])
            return order

    def client_values(self, client: Mapping[str, Any]) -> dict[str, Any]:
        """A new client as the intake form describes it, as ``parties.create`` takes it."""
        data = {k: v for k, v in client.items() if v not in (None, "") and k != "phone"}
        data.setdefault("kind", "person")
        if data.get("kind") == "organisation":
            data.setdefault("customer_type", "corporate")
        else:
            data.setdefault("customer_type", "individual")
        phone = (client.get("phone") or "").strip()
        if phone:
            data["contact_points"] = [{"kind": "phone", "value": phone}]
        return data

    def _check_services(self, item_ids: Sequence[int]) -> None:
        """Each item of the intake's ``services`` is a service, not goods (goods go on the
        order from its page, with a quantity, out of stock); the row is named."""
        items = self.work.records("finance_item")
        for row, item_id in enumerate(item_ids, start=1):
            item = items.find(item_id)
            if item is not None and item.kind != "service":
                refused = message("row {row}: “{item}” is not a service", row=row, item=item.name)
                raise ValidationFailed({"services": [refused]})

    def _check_worker(self, worker_id: int) -> None:
        """An order is given to an active user who works on orders: one whose roles hold the
        order action ``repair`` (the pipeline's workshop moves: a worker, or the office), not
        a cashier or an accountant, whose move is the handing over."""
        user = self.work.session.get(User, worker_id)
        if user is None or user.blocked:
            raise ValidationFailed(
                {"assignee_id": [message("no active user {user}", user=worker_id)]}
            )
        scopes = load_scopes(self.work.session, user.role_names)
        if scope_in(scopes, "finance_order", REPAIR) == Scope.NONE:
            refused = message("{user} does not work on orders", user=user.label)
            raise ValidationFailed({"assignee_id": [refused]})

    def assign(self, order: Any, worker_id: int | None) -> Any:
        """Give an order to a worker (or take it back with ``None``): the ``assign`` cell on
        the order (its scope must reach it), not ``update``; written as an update is (the
        audit entry, ``record.updated``)."""
        orders = self.work.records("finance_order")
        record = orders.get(order, action="assign")
        if worker_id is not None:
            self._check_worker(worker_id)
        with self.work.savepoint():
            orders.record_update(record, orders.stage_changes(record, {"assignee_id": worker_id}))
        return record

    def car_of(self, order_id: int) -> tuple[CarserviceCar | None, int | None]:
        """The car of an order the actor may see, and the mileage on intake."""
        self.work.records("finance_order").get(order_id)
        row = self.work.session.execute(
            select(CarserviceCar, CarserviceOrderCar.mileage)
            .join(CarserviceOrderCar, CarserviceOrderCar.car_id == CarserviceCar.id)
            .where(CarserviceOrderCar.order_id == order_id)
        ).first()
        return (row[0], row[1]) if row else (None, None)

    def views(self, orders: Sequence[Any]) -> list[OrderView]:
        """Orders the actor already sees, with their car, client name and worker.

        The client's *name* and the car belong to the order here: a worker who may see an
        order sees whose car it is, without being able to open the client card.
        """
        ids = [o.id for o in orders]
        cars: dict[int, tuple[CarserviceCar, int | None]] = {}
        if ids:
            for car, order_id, mileage in self.work.session.execute(
                select(CarserviceCar, CarserviceOrderCar.order_id, CarserviceOrderCar.mileage)
                .join(CarserviceOrderCar, CarserviceOrderCar.car_id == CarserviceCar.id)
                .where(CarserviceOrderCar.order_id.in_(ids))
            ):
                cars[order_id] = (car, mileage)
        party_ids = {o.party_id for o in orders}
        names = dict(
            self.work.session.execute(
                select(Party.id, Party.name).where(Party.id.in_(party_ids))
            ).all()
        )
        user_ids = {o.assignee_id for o in orders if o.assignee_id}
        users = {
            u.id: u for u in self.work.session.scalars(select(User).where(User.id.in_(user_ids)))
        }
        return [
            OrderView(
                order=o,
                car=cars.get(o.id, (None, None))[0],
                mileage=cars.get(o.id, (None, None))[1],
                client_name=names.get(o.party_id, ""),
                worker=users.get(o.assignee_id) if o.assignee_id else None,
            )
            for o in orders
        ]

    def workers(self) -> list[User]:
        """Active users holding the worker role (for the assignment picker)."""
        return [u for u in self.work.users.list(role="worker", include_blocked=False)]
