"""Built-in plugin: a ready sales pipeline for deals, and the ``basic`` demo data set.

A new deployment is usable at once: deals move New → Qualified → Proposal → Won, with Lost
as a dead end reachable from any open stage and a way back from Lost to New.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from crmkit.clock import utcnow
from crmkit.demo import Demo
from crmkit.pipeline.definition import Pipeline, Stage, StageKind, Transition
from crmkit.plugins import hookimpl

SALES = Pipeline(
    name="sales",
    entity="deal",
    label="Sales",
    default=True,
    stages=[
        Stage("new", "New"),
        Stage("qualified", "Qualified"),
        Stage("proposal", "Proposal", requires_fields=("amount",)),
        Stage("won", "Won", kind=StageKind.SUCCESS),
        Stage("lost", "Lost", kind=StageKind.DEAD_END),
    ],
    transitions=[
        Transition("new", "qualified"),
        Transition("qualified", "proposal"),
        Transition("proposal", "won"),
        Transition(("qualified", "proposal"), "new", backward=True, label="back"),
        Transition("proposal", "qualified", backward=True, label="back"),
        Transition(("new", "qualified", "proposal"), "lost", requires_comment=True),
        Transition("lost", "new", backward=True, label="reopen"),
    ],
)


@hookimpl
def crmkit_register_pipelines() -> list[Pipeline]:
    return [SALES]


@hookimpl
def crmkit_register_demos() -> list[Demo]:
    return [
        Demo(
            "basic",
            "A sales team: an admin, a manager, agents, clients and deals.",
            generate_basic,
            default_size=200,
        )
    ]


_COMPANIES = (
    "Ромашка",
    "Вектор",
    "Северный ветер",
    "Техносфера",
    "Альфа-Строй",
    "Лазурь",
    "Гранит",
    "Меридиан",
    "Восход",
    "Orbit Systems",
    "Blue Harbor",
    "Кедр",
    "Сфера",
    "Прогресс",
    "Янтарь",
    "Атлант",
    "Полюс",
    "Магистраль",
    "Зенит",
    "Квант",
)
_FORMS = ("ООО", "АО", "ИП", "ПАО", "LLC", "")
_FIRST = ("Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Анна", "Сергей", "Елена")
_LAST = ("Петров", "Смирнова", "Кузнецов", "Попова", "Волков", "Соколова", "Лебедев", "Новикова")


def generate_basic(crm: Any, size: int, seed: int) -> str:
    """Users admin/manager/agent1..3 (password ``demo-password``), ``size`` clients, deals."""
    rng = random.Random(seed)
    with crm.system() as work:
        agents = []
        for username, roles in (
            ("admin", ["admin"]),
            ("manager", ["manager"]),
            ("agent1", ["agent"]),
            ("agent2", ["agent"]),
            ("agent3", ["agent"]),
        ):
            existing = [u for u in work.users.list() if u.username == username]
            found = (
                existing[0]
                if existing
                else work.users.create(
                    username=username,
                    password="demo-password",
                    roles=roles,
                    display_name=username.capitalize(),
                )
            )
            if "agent" in roles:
                agents.append(found)
    rows = []
    for index in range(size):
        company = f"{rng.choice(_FORMS)} «{rng.choice(_COMPANIES)} {index + 1}»".strip()
        rows.append(
            {
                "kind": "organisation",
                "name": company,
                "owner_id": rng.choice(agents).id,
                "customer_type": "corporate",
                "source": rng.choice(["site", "call", "referral"]),
                "contact_points": [
                    {
                        "kind": "phone",
                        "value": f"+7 9{rng.randint(10, 99)} {rng.randint(100, 999)}"
                        f"-{rng.randint(10, 99)}-{rng.randint(10, 99)}",
                    },
                    {"kind": "email", "value": f"info{index + 1}@example.ru"},
                ],
            }
        )
    with crm.system() as work:
        created = work.parties.bulk_create(rows)
    moved = 0
    for party_id in created.ids[: max(1, size // 2)]:
        with crm.system() as work:
            party = work.parties.get(party_id)
            deal = work.deals.create(
                title=f"Поставка для {party.name}",
                party_id=party.id,
                owner_id=party.owner_id,
                amount=str(Decimal(rng.randint(10, 500)) * 1000),
            )
            for stage in ("qualified", "proposal", "won")[: rng.randint(0, 3)]:
                work.moves.move(deal, stage)
                moved += 1
            work.timeline.add_note(
                party_id=party.id,
                body=f"Звонок: {rng.choice(_FIRST)} {rng.choice(_LAST)} "
                "просит прислать предложение.",
            )
            work.tasks.create(
                title="Перезвонить",
                party_id=party.id,
                assignee_id=party.owner_id,
                deadline=(utcnow() + dt.timedelta(days=rng.randint(-3, 10))).isoformat(),
            )
    return f"{size} clients, {len(created.ids[: max(1, size // 2)])} deals, {moved} moves"
