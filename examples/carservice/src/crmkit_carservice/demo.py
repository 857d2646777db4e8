"""``crmkit demo carservice``: a year of a car service with two branches.

Staff of every role (password ``demo-password``), a catalogue of services and goods, stock,
workers paid a percent of their revenue, a cashback program, individual and corporate
clients with cars, and ``size`` orders over the last twelve months, each taken, worked on,
completed, paid and closed through the services as the people who would do it, day by day
with the clock set to that day (:func:`crmkit.clock.frozen_at`), so the books, the stage
history, salaries and cashback are exactly what a year of real work would leave.  Clients
and cars are bulk-inserted; orders are grouped into one unit of work per person and day,
and ``crmkit demo`` runs them all in one transaction (:meth:`crmkit.demo.Demo.run`): a
year that stops part-way leaves the database empty.

The result, printed by the command, also counts what was generated (revenue per month as
the generator added it up), which the tests compare with the director's dashboard.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import ROUND_CEILING, Decimal
from typing import Any

import attrs
from crmkit_booking import booking
from crmkit_finance import finance
from sqlalchemy import insert, select

from crmkit.automation import paused
from crmkit.clock import frozen_at, utcnow
from crmkit.errors import ConfigError
from crmkit_carservice.model import CarserviceCar
from crmkit_carservice.services import carservice

PASSWORD = "demo-password"
BRANCHES = ("Автосервис на Ленинском", "Автосервис в Химках")
#: How a bay names its branch in the journal's columns ("Пост 1, Ленинский").
BRANCH_SHORT = {"Автосервис на Ленинском": "Ленинский", "Автосервис в Химках": "Химки"}

SERVICES = (
    # category, name, price, minutes
    ("Диагностика", "Компьютерная диагностика", "1500.00", 30),
    ("Диагностика", "Диагностика ходовой", "1200.00", 30),
    ("Двигатель", "Замена масла", "1000.00", 30),
    ("Двигатель", "Замена ремня ГРМ", "6500.00", 180),
    ("Двигатель", "Замена свечей", "1200.00", 30),
    ("Ходовая", "Замена тормозных колодок", "1800.00", 60),
    ("Ходовая", "Замена амортизаторов", "4200.00", 120),
    ("Ходовая", "Развал-схождение", "2500.00", 60),
    ("Шиномонтаж", "Шиномонтаж, 4 колеса", "2800.00", 60),
    ("Шиномонтаж", "Балансировка", "1200.00", 30),
    ("Электрика", "Замена аккумулятора", "800.00", 30),
    ("Кондиционер", "Заправка кондиционера", "3500.00", 60),
)
GOODS = (
    # category, name, price, unit, cost, usual quantity on an order
    ("Масла", "Масло моторное 5W-30", "950.00", "л", "520.00", "4.5"),
    ("Фильтры", "Фильтр масляный", "650.00", "шт.", "310.00", "1"),
    ("Фильтры", "Фильтр воздушный", "900.00", "шт.", "430.00", "1"),
    ("Запчасти", "Колодки тормозные", "3200.00", "шт.", "1750.00", "1"),
    ("Запчасти", "Свеча зажигания", "450.00", "шт.", "210.00", "4"),
    ("Запчасти", "Аккумулятор 60 А·ч", "7800.00", "шт.", "5200.00", "1"),
)
#: How often an order takes each of the goods (the generator draws each one so).
GOODS_SHARE = 0.2
#: The least a branch keeps of each of the goods, and how many months of its expected use.
LEAST_STOCK = Decimal(60)
STOCK_MONTHS = 2
FIRST = ("Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Анна", "Сергей", "Елена", "Павел")
LAST = ("Петров", "Смирнов", "Кузнецов", "Попов", "Волков", "Соколов", "Лебедев", "Новиков")
#: The first names above that are women's: their surnames take the feminine ending.
WOMEN = frozenset(("Мария", "Ольга", "Анна", "Елена"))


def full_name(first: str, last: str) -> str:
    """ "Мария Смирнова", "Иван Смирнов": a woman's surname agrees with her (every surname
    in :data:`LAST` ends in -ов or -ев, whose feminine is -ова, -ева)."""
    return f"{first} {last}{'а' if first in WOMEN else ''}"


#: Where a client came from, as the station's managers write it on the card.
SOURCES = ("сайт", "звонок", "рекомендация", "пришёл сам")
COMPANIES = ("Логистик", "ТрансАвто", "Городское такси", "СтройМаш", "Курьер Экспресс", "Агро")
CARS = (
    ("Lada", "Vesta"),
    ("Kia", "Rio"),
    ("Hyundai", "Solaris"),
    ("Volkswagen", "Polo"),
    ("Toyota", "Camry"),
    ("Skoda", "Octavia"),
    ("Renault", "Logan"),
    ("Ford", "Transit"),
)
PLATE_LETTERS = "АВЕКМНОРСТУХ"


@attrs.define
class DemoResult:
    """What the generator made, and the figures it added up itself while making it."""

    orders: int = 0
    completed: int = 0
    cancelled: int = 0
    open: int = 0
    clients: int = 0
    bookings: int = 0
    revenue_by_month: dict[str, Decimal] = attrs.field(factory=lambda: defaultdict(Decimal))
    orders_by_month: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))
    corporate_paid: Decimal = Decimal(0)

    def __str__(self) -> str:
        revenue = sum(self.revenue_by_month.values(), Decimal(0))
        return (
            f"{self.clients} clients, {self.orders} orders ({self.completed} completed, "
            f"{self.cancelled} cancelled, {self.open} open), revenue {revenue} RUB, "
            f"{self.bookings} bookings; sign in as director, manager1, worker1, cashier1, "
            f"accountant, warehouse or admin with the password {PASSWORD!r}"
        )


@attrs.define
class Branch:
    location: Any
    desk: Any
    manager: Any
    cashier: Any
    workers: list[Any]


#: The share of a day's orders still open today, by the day's age (days before today):
#: today's and yesterday's mostly, last week's some, last month's a car waiting for parts.
OPEN_SHARE = ((1, 0.8), (2, 0.6), (4, 0.4), (8, 0.2), (30, 0.04))
#: The last days before today take at least this many orders (both branches): however
#: small the demo, the desk and each worker's *My orders* have cars in progress.
LAST_BUSY_DAYS = 4
LEAST_RECENT_ORDERS = 6


def _day_counts(rng: random.Random, first_day: dt.date, size: int) -> list[int]:
    """How many orders each of the 365 days takes: ``size`` in all, weekdays busier than
    weekends, and the last :data:`LAST_BUSY_DAYS` at least :data:`LEAST_RECENT_ORDERS`
    each (taken from the busiest earlier days, a quarter of the orders at most), so the
    year ends with work in progress."""
    per_day = size / 365
    counts, carry = [], 0.0
    for offset in range(365):
        day = first_day + dt.timedelta(days=offset)
        carry += per_day * (1.25 if day.weekday() < 5 else 0.4) * (0.85 + 0.3 * rng.random())
        counts.append(int(carry))
        carry -= counts[-1]
    counts[-1] += size - sum(counts)  # what the rounding left (the weights average about 1)
    while counts[-1] < 0:  # more than the size: give back from the busiest day
        busiest = max(range(364), key=counts.__getitem__)
        counts[busiest] -= 1
        counts[-1] += 1
    earlier = 365 - LAST_BUSY_DAYS
    movable = size // 4  # a tiny demo keeps most of its orders over the year
    for offset in range(earlier, 365):
        while counts[offset] < LEAST_RECENT_ORDERS and movable > 0:
            most = max(counts[:earlier])
            if most == 0:
                return counts
            # one of the busiest days, anywhere in the year (not all from its start)
            busiest = rng.choice([i for i in range(earlier) if counts[i] == most])
            counts[busiest] -= 1
            counts[offset] += 1
            movable -= 1
    return counts


def _users(crm: Any) -> dict[str, Any]:
    people = [
        ("admin", "admin", "Администратор"),
        ("director", "director", "Директор Андрей Орлов"),
        ("accountant", "accountant", "Бухгалтер Нина Белова"),
        ("warehouse", "warehouse_head", "Завсклад Олег Зуев"),
    ]
    for number in (1, 2):
        people += [
            (f"manager{number}", "manager", f"Менеджер {number}"),
            (f"cashier{number}", "cashier", f"Кассир {number}"),
        ]
    for number in range(1, 7):
        people.append(
            (f"worker{number}", "worker", f"Мастер {full_name(FIRST[number], LAST[number])}")
        )
    users = {}
    with crm.system() as work:
        hashed = None
        for username, role, name in people:
            # the password is hashed once (argon2 is slow on purpose) and shared
            user = work.users.create(
                username=username,
                roles=[role],
                display_name=name,
                **({} if hashed else {"password": PASSWORD}),
            )
            if hashed:
                user.password_hash = hashed
            hashed = user.password_hash
            users[username] = user
    return {name: crm.load_actor(user.id) for name, user in users.items()} | {
        f"{name}:user": user for name, user in users.items()
    }


def stock_level(size: int, qty: str | Decimal) -> Decimal:
    """What a branch keeps of one of the goods (``qty`` of it on an order that takes it)
    when the year has ``size`` orders: :data:`STOCK_MONTHS` months of its expected use (the
    orders of a month, half of them at each branch, :data:`GOODS_SHARE` of those taking
    it), never less than :data:`LEAST_STOCK`.  The opening stock is this much and each
    month-end tops it up to it again, so a bigger demo does not run out of oil."""
    monthly = Decimal(size) / 12 / 2 * Decimal(str(GOODS_SHARE)) * Decimal(qty)
    return max(LEAST_STOCK, (monthly * STOCK_MONTHS).to_integral_value(rounding=ROUND_CEILING))


def _refuse_a_filled_database(crm: Any) -> None:
    """The demo fills an empty database: one with clients, goods, orders or the demo's
    users already is refused before anything is written."""
    from crmkit_finance.model import FinanceItem, FinanceOrder
    from sqlalchemy import func

    from crmkit.model import Party, User

    with crm.system() as work:

        def count(model: Any, *where: Any) -> int:
            statement = select(func.count()).select_from(model).where(*where)
            return int(work.session.scalar(statement) or 0)

        found = {
            "clients": count(Party),
            "catalogue items": count(FinanceItem),
            "orders": count(FinanceOrder),
            "cars": count(CarserviceCar),
            "demo users": count(User, User.username.in_(("director", "manager1", "worker1"))),
        }
    held = ", ".join(f"{n} {what}" for what, n in found.items() if n)
    if held:
        raise ConfigError(
            f"the database is not empty ({held}): the car service demo fills an empty one. "
            "Make a new database (crmkit init DIR ..., then crmkit db upgrade) and run the "
            "demo there, or drop and recreate this one"
        )


def _business_day(fin: Any, day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), fin.timezone).astimezone(dt.UTC)


def _plate(rng: random.Random, used: set[str]) -> str:
    while True:
        letters = [rng.choice(PLATE_LETTERS) for _ in range(3)]
        region = rng.choice((77, 97, 99, 177, 197, 750, 50))
        plate = f"{letters[0]}{rng.randint(1, 999):03d}{letters[1]}{letters[2]}{region}"
        if plate not in used:
            used.add(plate)
            return plate


def generate(crm: Any, size: int, seed: int) -> DemoResult:
    """Fill an empty car service with a year of work (``size`` orders).

    The past year is written with the assistant's rules paused (it is history: nobody is
    asked for a review of last spring's visit); the coming bookings are made live, so the
    assistant confirms them.
    """
    _refuse_a_filled_database(crm)
    # ``crmkit demo`` (Demo.run) makes the whole year one transaction: its thousands of
    # units of work each commit a savepoint, and a year that stops part-way leaves nothing
    with paused():
        result, context = _year(crm, size, seed)
    result.bookings = _bookings(crm, *context)
    return result


def _year(crm: Any, size: int, seed: int) -> tuple[DemoResult, tuple[Any, ...]]:
    rng = random.Random(seed)
    result = DemoResult()
    actors = _users(crm)
    users = {k.split(":")[0]: v for k, v in actors.items() if k.endswith(":user")}
    with crm.system() as work:
        fin = finance(work)
        today = fin.business_date(utcnow())
    first_day = today - dt.timedelta(days=365)
    start = _business_day(fin, first_day - dt.timedelta(days=1), 8)

    # -- the station: branches, desks, catalogue, stock, pay, cashback, resources ---------
    with frozen_at(start), crm.acting_as(actors["warehouse"]) as work:
        fin = finance(work)
        records = work.records
        locations = [records("finance_location").create(name=n, kind="branch") for n in BRANCHES]
        categories: dict[str, Any] = {}
        services = []
        for category, name, price, minutes in SERVICES:
            if category not in categories:
                categories[category] = records("finance_item_category").create(
                    name=category, kind="service"
                )
            item = records("finance_item").create(
                name=name, kind="service", category_id=categories[category].id, price=price
            )
            services.append((item, minutes))
        goods = []
        for category, name, price, unit, cost, qty in GOODS:
            if category not in categories:
                categories[category] = records("finance_item_category").create(
                    name=category, kind="goods"
                )
            item = records("finance_item").create(
                name=name,
                kind="goods",
                category_id=categories[category].id,
                price=price,
                unit=unit,
                track_stock=True,
            )
            goods.append((item, Decimal(cost), qty))
            for location in locations:
                fin.stock.receive(item.id, location.id, str(stock_level(size, qty)), cost)
        goods_by_id = {item.id: (item, cost, qty) for item, cost, qty in goods}
    with frozen_at(start), crm.acting_as(actors["accountant"]) as work:
        fin = finance(work)
        desks = [
            work.records("finance_cash_desk").create(name=f"Касса {i + 1}", location_id=loc.id)
            for i, loc in enumerate(locations)
        ]
        fin.cashback.set_program("3", 180, valid_from=first_day - dt.timedelta(days=1))
        for number in range(1, 7):
            fin.payroll.set_scheme(
                users[f"worker{number}"].id,
                fixed_amount="15000.00",
                percent=str(rng.choice((30, 35, 40))),
                basis="lines",
                valid_from=first_day.replace(day=1),
            )
        for name in ("manager1", "manager2", "cashier1", "cashier2"):
            fin.payroll.set_scheme(
                users[name].id, fixed_amount="55000.00", valid_from=first_day.replace(day=1)
            )
        fin.expenses.income("income:other", "3000000.00", note="уставной капитал")
    branches = [
        Branch(
            location=locations[i],
            desk=desks[i],
            manager=actors[f"manager{i + 1}"],
            cashier=actors[f"cashier{i + 1}"],
            workers=[actors[f"worker{n}"] for n in ((1, 2, 3) if i == 0 else (4, 5, 6))],
        )
        for i in range(2)
    ]
    with frozen_at(start), crm.acting_as(actors["manager1"]) as work:
        journal = booking(work)
        for index, location in enumerate(locations):
            for bay in (1, 2):
                journal.add_resource(f"Пост {bay}, {BRANCH_SHORT[location.name]}", kind="bay")
            for worker in branches[index].workers:
                user = users[f"worker{(index * 3) + branches[index].workers.index(worker) + 1}"]
                journal.add_resource(user.display_name, kind="specialist", user_id=user.id)

    # -- clients and their cars, in bulk ------------------------------------------------
    individuals = max(40, size // 3)
    rows = []
    for index in range(individuals):
        rows.append(
            {
                "kind": "person",
                "name": full_name(rng.choice(FIRST), rng.choice(LAST)),
                "customer_type": "individual",
                "owner_id": users[rng.choice(("manager1", "manager2"))].id,
                "source": rng.choice(SOURCES),
                "contact_points": [
                    {"kind": "phone", "value": f"+7 9{rng.randint(10, 99)} {index:07d}"}
                ],
            }
        )
    for index, company in enumerate(COMPANIES):
        rows.append(
            {
                "kind": "organisation",
                "name": f"ООО «{company}»",
                "customer_type": "corporate",
                "owner_id": users["manager1"].id,
                "contact_points": [{"kind": "email", "value": f"fleet{index}@example.ru"}],
            }
        )
    with frozen_at(start), crm.system() as work:
        party_ids = list(work.parties.bulk_create(rows).ids)
        corporate_ids = party_ids[individuals:]
        used: set[str] = set()
        from crmkit.identity import plate_key

        cars = []
        for party_id in party_ids:
            for _ in range(1 if party_id not in corporate_ids else 4):
                make, model = rng.choice(CARS)
                plate = _plate(rng, used)
                cars.append(
                    {
                        "party_id": party_id,
                        "plate": plate,
                        "plate_key": plate_key(plate),
                        "make": make,
                        "model": model,
                        "year": rng.randint(2008, 2025),
                        "note": "",
                        "created_at": start,
                        "updated_at": start,
                    }
                )
        work.session.execute(insert(CarserviceCar), cars)
        cars_of: dict[int, list[int]] = defaultdict(list)
        for car_id, party_id in work.session.execute(
            select(CarserviceCar.id, CarserviceCar.party_id)
        ):
            cars_of[party_id].append(car_id)
    with frozen_at(start), crm.acting_as(actors["manager1"]) as work:
        for number, party_id in enumerate(corporate_ids, 1):
            work.records("finance_contract").create(
                party_id=party_id,
                number=f"Д-{number:03d}",
                signed_on=first_day.isoformat(),
                payment_days=10,
            )
    result.clients = len(party_ids)
    corporate = set(corporate_ids)

    # -- a year of days ------------------------------------------------------------------
    counts = _day_counts(rng, first_day, size)
    # the orders each worker still has in the workshop at the end of the year
    open_of: dict[int, int] = {w.user_id: 0 for b in branches for w in b.workers}
    for offset in range(365):
        day = first_day + dt.timedelta(days=offset)
        _expire_cashback(crm, _business_day(fin, day, 0, 10))
        count = counts[offset]
        remaining_days = 365 - offset
        _work_day(
            crm,
            rng,
            fin,
            day,
            count,
            branches,
            services,
            goods_by_id,
            party_ids,
            corporate,
            cars_of,
            result,
            age=remaining_days - 1,
            open_of=open_of,
            admin=actors["admin"],
            size=size,
        )
        if (day + dt.timedelta(days=1)).day == 1:
            _month_end(crm, rng, actors, users, day, branches, goods, corporate, result, size)
    _expire_cashback(crm, utcnow())  # and today's run: no lot is left past its date
    return result, (rng, actors, today, party_ids, individuals)


def _work_day(
    crm: Any,
    rng: random.Random,
    fin: Any,
    day: dt.date,
    count: int,
    branches: list[Branch],
    services: list[tuple[Any, int]],
    goods: dict[int, tuple[Any, Decimal, str]],
    party_ids: list[int],
    corporate: set[int],
    cars_of: dict[int, list[int]],
    result: DemoResult,
    age: int,
    open_of: dict[int, int],
    admin: Any,
    size: int,
) -> None:
    """One business day at both branches, ``age`` days before today: intake, work,
    payment, handing over.  The last days' orders are partly still open (in work, or
    waiting for parts, the older the likelier), each given to the worker with the fewest
    open orders so far, so every worker ends the year with some on *My orders*."""
    if count == 0:
        return
    plans: dict[int, list[dict[str, Any]]] = defaultdict(list)
    share = next((s for days, s in OPEN_SHARE if age < days), 0.0)
    for _ in range(count):
        still_open = rng.random() < share
        branch_index = rng.randrange(2)
        worker = rng.choice(branches[branch_index].workers)
        if still_open:  # the least busy worker of the station takes it
            fewest = min(open_of.values())
            worker = rng.choice(
                [w for b in branches for w in b.workers if open_of[w.user_id] == fewest]
            )
            branch_index = next(i for i, b in enumerate(branches) if worker in b.workers)
            open_of[worker.user_id] += 1
        party_id = rng.choice(sorted(corporate)) if rng.random() < 0.15 else rng.choice(party_ids)
        chosen = rng.sample(services, rng.choice((1, 1, 2, 2, 3)))
        extra = [g for g in goods.values() if rng.random() < GOODS_SHARE]
        plans[branch_index].append(
            {
                "party_id": party_id,
                "car_id": rng.choice(cars_of[party_id]),
                "services": [s.id for s, _ in chosen],
                "goods": extra,
                "worker": worker,
                "hour": rng.randint(9, 16),
                "minute": rng.choice((0, 15, 30, 45)),
                "fate": "open" if still_open else ("cancelled" if rng.random() < 0.03 else "done"),
            }
        )
    for branch_index, plan in plans.items():
        branch = branches[branch_index]
        _deliver_what_is_short(crm, admin, fin, day, branch, plan, size)
        # the manager takes the orders
        with crm.acting_as(branch.manager) as work:
            desk = carservice(work)
            orders_fin = finance(work).orders
            for item in sorted(plan, key=lambda p: (p["hour"], p["minute"])):
                taken = _business_day(fin, day, item["hour"], item["minute"])
                with frozen_at(taken):
                    order = desk.intake(
                        party_id=item["party_id"],
                        car_id=item["car_id"],
                        services=item["services"],
                        assignee_id=item["worker"].user_id,
                        location_id=branch.location.id,
                        mileage=rng.randint(5, 250) * 1000,
                    )
                    orders_fin.add_lines(
                        order, [{"item_id": g.id, "qty": qty} for g, _cost, qty in item["goods"]]
                    )
                item["order_id"], item["taken"] = order.id, taken
                result.orders += 1
                if item["fate"] == "cancelled":
                    with frozen_at(taken + dt.timedelta(minutes=20)):
                        work.moves.move(order, "cancelled", comment="клиент передумал")
                    result.cancelled += 1
        # the workers do the work
        for worker in branch.workers:
            mine = [p for p in plan if p["worker"] is worker and p["fate"] != "cancelled"]
            if not mine:
                continue
            with crm.acting_as(worker) as work:
                for item in mine:
                    at = item["taken"] + dt.timedelta(minutes=30)
                    steps = ["diagnostics", "in_work"] if rng.random() < 0.3 else ["in_work"]
                    if item["fate"] == "done":
                        steps.append("done")
                    elif rng.random() < (0.3 if age < 2 else 0.7):
                        # a car still in the workshop after days mostly waits for parts
                        steps.append("waiting_parts")
                    for stage in steps:
                        with frozen_at(at):
                            work.moves.move(item["order_id"], stage, entity="finance_order")
                        at += dt.timedelta(minutes=rng.randint(20, 120))
                    item["done_at"] = at
        done = [p for p in plan if p["fate"] == "done"]
        result.open += sum(1 for p in plan if p["fate"] == "open")
        if not done:
            continue
        # the cashier takes payment from individuals; corporate clients pay by invoice
        with crm.acting_as(branch.cashier) as work:
            cash = finance(work)
            with frozen_at(_business_day(fin, day, 8, 45)):
                drawer = cash.cashdesk.drawer_balance(cash.cashdesk.desk(branch.desk.id))
                shift = cash.cashdesk.open_shift(branch.desk.id, counted=str(drawer))
            for item in sorted(done, key=lambda p: p["done_at"]):
                order = cash.orders.get(item["order_id"])
                month = f"{day.year:04d}-{day.month:02d}"
                result.completed += 1
                result.orders_by_month[month] += 1
                result.revenue_by_month[month] += order.total
                if item["party_id"] in corporate:
                    item["corporate"] = True
                    continue
                at = item["done_at"] + dt.timedelta(minutes=10)
                with frozen_at(at):
                    due = cash.orders.totals(order).due
                    balance = cash.cashback.balance(item["party_id"])
                    if balance > 0 and rng.random() < 0.3:
                        part = min(balance, due)
                        cash.payments.take(order_id=order.id, amount=str(part), method="cashback")
                        due -= part
                    if due > 0:
                        cash.payments.take(
                            order_id=order.id,
                            amount=str(due),
                            method=rng.choice(("cash", "card", "card")),
                            desk_id=branch.desk.id,
                        )
                    work.moves.move(order, "paid", entity="finance_order")
            with frozen_at(_business_day(fin, day, 20, 30)):
                drawer = cash.cashdesk.drawer_balance(cash.cashdesk.desk(branch.desk.id))
                cash.cashdesk.close_shift(shift.id, counted=str(drawer))
        # corporate orders go straight to "paid" on contract; the manager closes the day
        with crm.acting_as(branch.manager) as work, frozen_at(_business_day(fin, day, 20, 45)):
            for item in done:
                if item.get("corporate"):
                    work.moves.move(item["order_id"], "paid", entity="finance_order")
                work.moves.move(item["order_id"], "closed", entity="finance_order")


def _deliver_what_is_short(
    crm: Any,
    admin: Any,
    fin: Any,
    day: dt.date,
    branch: Branch,
    plan: list[dict[str, Any]],
    size: int,
) -> None:
    """An urgent delivery in the morning of a day whose orders need more of some goods
    than the branch has (a run of busy days before the month-end restock): each short item
    topped up to its :func:`stock_level` plus the day's need.  Draws nothing from the
    random generator, so the rest of the year stays as the seed makes it."""
    need: dict[int, Decimal] = defaultdict(Decimal)
    kinds: dict[int, tuple[Any, Decimal, str]] = {}
    for item in plan:
        for good in item["goods"]:
            need[good[0].id] += Decimal(good[2])
            kinds[good[0].id] = good
    if not need:
        return
    with crm.acting_as(admin) as work, frozen_at(_business_day(fin, day, 8, 30)):
        stock = finance(work).stock
        levels = {lv["item_id"]: lv["qty"] for lv in stock.levels(location_id=branch.location.id)}
        for item_id, wanted in sorted(need.items()):
            on_hand = levels.get(item_id, Decimal(0))
            if on_hand >= wanted:
                continue
            item, cost, qty = kinds[item_id]
            stock.receive(
                item.id,
                branch.location.id,
                str(stock_level(size, qty) + wanted - on_hand),
                str(cost),
                paid_from="bank:main",
            )


def _expire_cashback(crm: Any, at: dt.datetime) -> None:
    """The daily job's run at ``at``: the lots past their date expire in the books."""
    with frozen_at(at), crm.system() as work:
        finance(work).cashback.expire()


def _month_end(
    crm: Any,
    rng: random.Random,
    actors: dict[str, Any],
    users: dict[str, Any],
    day: dt.date,
    branches: list[Branch],
    goods: list[tuple[Any, Decimal, str]],
    corporate: set[int],
    result: DemoResult,
    size: int,
) -> None:
    """The last day of a month: invoices paid, salaries accrued and paid, goods restocked
    (each up to its :func:`stock_level` once a third of it is gone)."""
    month = day.replace(day=1)
    with crm.acting_as(actors["accountant"]) as work:
        fin = finance(work)
        at = _business_day(fin, day, 21)
        with frozen_at(at):
            for party_id in sorted(corporate):
                orders = [
                    o
                    for o in fin.orders.of_party(party_id, limit=500)
                    if o.completed_on and o.completed_on >= month and o.invoice_id is None
                ]
                if not orders:
                    continue
                invoice = fin.invoices.issue([o.id for o in orders], issued_on=day)
                fin.payments.pay_invoice(invoice.id, str(invoice.amount), reference="п/п")
                result.corporate_paid += invoice.amount
            fin.expenses.expense("expense:rent", "180000.00", paid_from="bank:main")
        # a month is accrued once it is over: at midnight, the next one's first moment
        with frozen_at(fin.start_of_day(day + dt.timedelta(days=1))):
            for slip in fin.payroll.accrue(month):
                fin.payroll.pay(slip.user_id, str(slip.total))
    # restocking is paid at once from the bank: by the admin, since the warehouse head
    # receives goods but does not make payments
    with crm.acting_as(actors["admin"]) as work, frozen_at(_business_day(fin, day, 21, 30)):
        fin = finance(work)
        levels = {(lv["item_id"], lv["location_id"]): lv["qty"] for lv in fin.stock.levels()}
        for item, cost, qty in goods:
            level = stock_level(size, qty)
            for branch in branches:
                on_hand = levels.get((item.id, branch.location.id), Decimal(0))
                if on_hand < level * 2 / 3:
                    price = (cost * Decimal(rng.choice(("0.95", "1.00", "1.05", "1.10")))).quantize(
                        Decimal("0.01")
                    )
                    fin.stock.receive(
                        item.id,
                        branch.location.id,
                        str(level - on_hand),
                        str(price),
                        paid_from="bank:main",
                    )


def _bookings(
    crm: Any,
    rng: random.Random,
    actors: dict[str, Any],
    today: dt.date,
    party_ids: list[int],
    individuals: int,
) -> int:
    """Bookings for the coming days, in free windows of the journal."""
    made = 0
    with crm.acting_as(actors["manager1"]) as work:
        journal = booking(work)
        for offset in range(1, 6):
            day = today + dt.timedelta(days=offset)
            opens = journal.day_bounds(day)[0]
            for _ in range(rng.randint(4, 10)):
                windows = journal.find_free(
                    dt.timedelta(minutes=rng.choice((30, 60, 90))),
                    since=opens + dt.timedelta(minutes=30 * rng.randint(0, 16)),
                    days=1,
                )
                if not windows:
                    break
                window = rng.choice(windows)
                journal.book(
                    party_id=party_ids[rng.randrange(individuals)],
                    resource_id=window.resource.id,
                    starts_at=window.starts_at,
                    ends_at=window.ends_at,
                )
                made += 1
    return made


__all__ = ["DemoResult", "generate"]
