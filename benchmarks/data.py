"""Generated data sets and throwaway databases for benchmarks."""

from __future__ import annotations

import contextlib
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crmkit.testing import make_crm, new_postgres_schema, postgres_engine_for, postgres_reachable

WORDS = (
    "Ромашка",
    "Вектор",
    "Север",
    "Техно",
    "Альфа",
    "Лазурь",
    "Гранит",
    "Меридиан",
    "Восход",
    "Орбита",
    "Кедр",
    "Сфера",
    "Прогресс",
    "Янтарь",
    "Атлант",
    "Полюс",
    "Магистраль",
    "Зенит",
    "Квант",
    "Строй",
    "Торг",
    "Снаб",
    "Авто",
    "Агро",
    "Мед",
    "Blue",
    "Harbor",
    "Nordic",
    "Prime",
    "Delta",
)
FORMS = ("ООО", "АО", "ИП", "ПАО", "ЗАО", "LLC", "")


def organisation_rows(count: int, owner_ids: list[int], seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` organisations with a phone and an email each, owners round-robin."""
    rng = random.Random(seed)
    for index in range(count):
        name = f"{rng.choice(FORMS)} «{rng.choice(WORDS)} {rng.choice(WORDS)} {index}»".strip()
        yield {
            "kind": "organisation",
            "name": name,
            "owner_id": owner_ids[index % len(owner_ids)],
            "contact_points": [
                {
                    "kind": "phone",
                    "value": f"+7 9{index % 100:02d} {index // 100 % 1000:03d}-"
                    f"{index % 97:02d}-{index % 89:02d}",
                },
                {"kind": "email", "value": f"office{index}@firm{index % 5000}.ru"},
            ],
        }


@contextlib.contextmanager
def fresh_crm(database: str, plugins: Any = (), **settings: Any) -> Iterator[Any]:
    """An application on a new, empty database of the given kind, removed afterwards."""
    if database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as directory:
            crm = make_crm(plugins, db="sqlite", directory=Path(directory), settings=settings)
            try:
                yield crm
            finally:
                crm.close()
        return
    if not postgres_reachable():
        raise RuntimeError("PostgreSQL is not reachable")
    schema, drop = new_postgres_schema("crmkit_bench")
    engine = postgres_engine_for(schema)
    from crmkit import CRM, Config
    from crmkit.model import metadata

    config = Config.from_mapping(
        {"database.url": str(engine.url), "security.argon2_profile": "CHEAPEST", **settings},
        root=tempfile.mkdtemp(prefix="crmkit-bench-"),
        environ={},
    )
    crm = CRM(config, plugins=plugins, load_entry_points=False, engine=engine)
    metadata.create_all(engine)
    crm.sync_access()
    try:
        yield crm
    finally:
        crm.close()
        drop()
