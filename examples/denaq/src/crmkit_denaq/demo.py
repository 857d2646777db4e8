"""``crmkit demo denaq``: a dealer-acquisition company four months into its work.

An admin, two lead creators and five agents (password ``demo-password``); ``size``
companies found over the last 120 days and moved along the pipeline at realistic pace
(history with real times, so the funnel and time-in-stage reports have something to say),
contact people, calls, mails and notes, the papers of every account, follow-up meetings
and tasks, notes to the head with mentions, and a few percent of planted duplicates
(the same company under another legal form, the same phone written differently, the same
mail) for the screening screen to catch.

Companies and people go in through the bulk service (``bulk_create``: COPY on PostgreSQL);
their history and timeline are written as plain rows with the core's ``insert_rows``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, update

from crmkit.clock import utcnow
from crmkit.model import Activity, Attachment, Party, StageMove
from crmkit.services.bulk import chunked, insert_rows
from crmkit_denaq.pipeline import DEALERS, DOCUMENTS, NAME, REASON_FIELD, REFUSAL_REASONS

PASSWORD = "demo-password"
USERS = (
    ("admin", "Администратор", ("admin",)),
    ("lead1", "Ксения Лидова", ("lead_creator",)),
    ("lead2", "Павел Искателев", ("lead_creator",)),
    ("agent1", "Анна Смирнова", ("agent",)),
    ("agent2", "Игорь Волков", ("agent",)),
    ("agent3", "Мария Соколова", ("agent",)),
    ("agent4", "Дмитрий Лебедев", ("agent",)),
    ("agent5", "Ольга Новикова", ("agent",)),
)

_FIRST = ("Авто", "Мото", "Техно", "Строй", "Агро", "Электро", "Сантех", "Мебель", "Дом", "Сад")
_FIRST += ("Спорт", "Вело", "Инструмент", "Торг", "Снаб", "Опт", "Эко", "Тепло", "Свет", "Хоз")
_SECOND = ("мир", "центр", "маркет", "сервис", "плюс", "профи", "лайн", "град", "трейд", "холл")
_SECOND += ("склад", "дилер", "партнёр", "снаб", "мастер", "база", "ком", "стиль")
_CITIES = (
    "Москва",
    "Петербург",
    "Казань",
    "Екатеринбург",
    "Новосибирск",
    "Самара",
    "Ростов",
    "Краснодар",
    "Воронеж",
    "Пермь",
    "Уфа",
    "Тверь",
    "Тула",
    "Ярославль",
    "Омск",
    "Челябинск",
    "Тюмень",
    "Саратов",
)
_FORMS = ("ООО", "ООО", "ООО", "ИП", "АО")
_SOURCES = ("2ГИС", "выставка", "сайт", "холодный поиск", "рекомендация", "Авито", "маркетплейс")
_NAMES = ("Алексей", "Елена", "Сергей", "Наталья", "Андрей", "Татьяна", "Николай", "Юлия")
_SURNAMES = ("Кузнецов", "Попов", "Васильев", "Петров", "Морозов", "Фёдоров", "Зайцев")
_POSITIONS = ("директор", "коммерческий директор", "менеджер по закупкам", "владелец")
_CALLS = (
    "Звонок: рассказал о продукте, просят прислать прайс.",
    "Звонок: директора нет на месте, перезвонить завтра.",
    "Звонок: обсудили условия, думают.",
    "Звонок: уточнили объёмы закупки на квартал.",
    "Звонок: напомнил о документах.",
)
_MAILS = (
    ("Предложение о сотрудничестве", "Отправлено коммерческое предложение."),
    ("Документы для оформления дилерства", "Отправлен список документов."),
    ("Доступ к API", "Отправлены ключ и документация по интеграции."),
    ("Прайс-лист", "Отправлен прайс-лист на текущий месяц."),
)
_NOTES = (
    "Работают с конкурентом, недовольны сроками поставки.",
    "Нужна отсрочка платежа 30 дней.",
    "Интересует выгрузка каталога на сайт.",
    "Решение принимает владелец, он в отпуске до конца месяца.",
)
_LATIN = "a b v g d e e zh z i y k l m n o p r s t u f h ts ch sh sch - y - e yu ya"
_TRANSLIT = {
    cyrillic: latin.strip("-")
    for cyrillic, latin in zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя", _LATIN.split(), strict=True)
}
#: Shares of the final stage of a company (the rest stays a lead).
_OUTCOMES = (("refused", 0.17), ("client", 0.08), ("account", 0.10), ("firm", 0.25))
DUPLICATE_SHARE = 0.04
REFUSAL = "отказались: работают с конкурентом"
#: How often each refusal reason is drawn: the first of the list most, the last ("другое",
#: whose comment is ``REFUSAL``) least, whatever the deployment's list.
_REASON_WEIGHTS = tuple(range(len(REFUSAL_REASONS), 0, -1))


def _latin(text: str) -> str:
    return "".join(_TRANSLIT.get(c, c) for c in text.lower() if c.isalnum() or c == "-")


def _ensure_users(crm: Any) -> dict[str, Any]:
    users: dict[str, Any] = {}
    with crm.system() as work:
        existing = {u.username: u for u in work.users.list()}
        for username, name, roles in USERS:
            users[username] = existing.get(username) or work.users.create(
                username=username,
                roles=list(roles),
                display_name=name,
                email=f"{username}@denaq.example",
            )
        # one argon2 hash for all (hashing is slow on purpose; the password is the same)
        password_hash = crm.password_hasher.hash(PASSWORD)
        for user in users.values():
            if user.username not in existing:
                user.password_hash = password_hash
    return users


def _company(rng: random.Random, taken: set[str]) -> tuple[str, str]:
    while True:
        core = f"{rng.choice(_FIRST)}{rng.choice(_SECOND)}"
        city = rng.choice(_CITIES)
        brand = f"{core}-{city}" if rng.random() < 0.6 else core
        if brand not in taken:
            taken.add(brand)
            return brand, f"{rng.choice(_FORMS)} «{brand}»"


def _phone(rng: random.Random) -> str:
    pairs = f"{rng.randint(10, 99)}-{rng.randint(10, 99)}"
    return f"+7 9{rng.randint(10, 99)} {rng.randint(100, 999)}-{pairs}"


def _duplicate_of(rng: random.Random, original: dict[str, Any], brand: str) -> dict[str, Any]:
    """The same company entered again, the way people really do it."""
    points = {p["kind"]: p["value"] for p in original["contact_points"]}
    trick = rng.randrange(3)
    if trick == 0:  # another legal form, no quotes
        name = f"{brand} {rng.choice(('ООО', 'ИП'))}"
        contacts = [{"kind": "website", "value": points["website"]}]
    elif trick == 1:  # a new name, the same phone written the Russian way
        digits = "".join(c for c in points["phone"] if c.isdigit())[1:]
        name = f"ООО «{brand.split('-')[0]} Групп»"
        contacts = [
            {"kind": "phone", "value": f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"}
        ]
    else:  # the same mail, the name in capitals
        name = brand.upper()
        contacts = [{"kind": "email", "value": points["email"].upper()}]
    return {**original, "name": name, "contact_points": contacts, "stage": "lead"}


def _timeline(
    rng: random.Random, created: dt.datetime, outcome: str, now: dt.datetime
) -> list[tuple[str | None, str, dt.datetime]]:
    """(from, to, at) moves of one company from its creation to ``outcome``."""
    if outcome == "refused":
        ways = (["lead"], ["lead", "firm"], ["lead", "firm", "account"])
        path = [*rng.choices(ways, (40, 45, 15))[0], "refused"]
    else:
        path = DEALERS.stage_names()[: DEALERS.stage_names().index(outcome) + 1]
    span = (now - created).total_seconds()
    weights = [rng.uniform(0.5, 3.0) for _ in path[1:]]
    total = sum(weights) * rng.uniform(1.05, 1.6)  # the last move leaves some time until now
    moves: list[tuple[str | None, str, dt.datetime]] = [(None, "lead", created)]
    at = created
    for (source, target), weight in zip(itertools.pairwise(path), weights, strict=True):
        at = at + dt.timedelta(seconds=span * weight / total)
        moves.append((source, target, at))
    return moves


def generate(crm: Any, size: int, seed: int) -> str:
    """Users, ``size`` companies with their history, people, timeline, papers and plans."""
    rng = random.Random(seed)
    users = _ensure_users(crm)
    agents = [users[f"agent{n}"] for n in range(1, 6)]
    creators = [users["lead1"], users["lead2"]]
    now = utcnow()
    taken: set[str] = set()
    rows: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    originals: list[tuple[dict[str, Any], str]] = []
    duplicates = 0
    for _ in range(size):
        if originals and rng.random() < DUPLICATE_SHARE:
            row = _duplicate_of(rng, *rng.choice(originals))
            outcome = "lead"
            duplicates += 1
        else:
            brand, name = _company(rng, taken)
            domain = f"{_latin(brand)}.ru"
            row = {
                "kind": "organisation",
                "name": name,
                "source": rng.choice(_SOURCES),
                "contact_points": [
                    {"kind": "phone", "value": _phone(rng), "is_primary": True},
                    {"kind": "email", "value": f"info@{domain}"},
                    {"kind": "website", "value": f"https://{domain}"},
                ],
            }
            originals.append((row, brand))
            draw, outcome = rng.random(), "lead"
            for stage, share in _OUTCOMES:
                if draw < share:
                    outcome = stage
                    break
                draw -= share
        creator = rng.choice(creators)
        unassigned = outcome == "lead" and rng.random() < 0.35
        owner = creator if unassigned else rng.choice(agents)
        created = now - dt.timedelta(days=rng.uniform(0.5, 120))
        row = {**row, "owner_id": owner.id, "stage": "lead", "pipeline": NAME}
        if outcome == "refused":  # why, as the agent chose it moving the firm there
            reason = rng.choices(REFUSAL_REASONS, _REASON_WEIGHTS)[0]
            row["custom"] = {REASON_FIELD: reason}
        rows.append(row)
        plans.append(
            {
                "creator": creator.id,
                "owner": owner.id,
                "agent": not unassigned,
                "moves": _timeline(rng, created, outcome, now),
            }
        )

    with crm.system() as work:
        ids = work.parties.bulk_create(rows).ids
        connection = work.session.connection()
        _write_history(connection, ids, plans)
        people = _people(work, rng, ids, plans)
        _write_activities(connection, rng, ids, plans, people, now)
    _papers_and_plans(crm, rng, ids, plans, users["admin"], now)
    final = [p["moves"][-1][1] for p in plans]
    counts = ", ".join(f"{stage} {final.count(stage)}" for stage in ("lead", *dict(_OUTCOMES)))
    return (
        f"{len(ids)} companies ({counts}), {duplicates} planted duplicates, {len(people)} "
        f"contact people; sign in as admin, lead1, agent1..agent5 with {PASSWORD!r}"
    )


def _write_history(connection: Any, ids: Sequence[int], plans: Sequence[dict[str, Any]]) -> None:
    connection.execute(
        delete(StageMove).where(StageMove.entity == "party", StageMove.record_id.in_(list(ids)))
    )
    history, parties = [], []
    backward = set(DEALERS.backward_moves())
    for party_id, plan in zip(ids, plans, strict=True):
        moves = plan["moves"]
        for index, (source, target, at) in enumerate(moves):
            actor = plan["creator"] if source is None else plan["owner"]
            previous = moves[index - 1][2] if index else None
            history.append(
                {
                    "entity": "party",
                    "record_id": party_id,
                    "pipeline": NAME,
                    "from_stage": source,
                    "to_stage": target,
                    "actor_id": actor,
                    "at": at,
                    "comment": REFUSAL if target == "refused" else None,
                    "seconds_in_source": int((at - previous).total_seconds()) if previous else None,
                    "owner_id": plan["creator"] if source is None else plan["owner"],
                    "backward": (source, target) in backward,
                }
            )
        parties.append(
            {
                "_id": party_id,
                "stage": moves[-1][1],
                "stage_entered_at": moves[-1][2],
                "created_at": moves[0][2],
                "updated_at": moves[-1][2],
                "last_activity_at": moves[-1][2],
                "created_by_id": plan["creator"],
            }
        )
    for chunk in chunked(history, 5000):
        insert_rows(connection, StageMove.__table__, chunk)
    statement = (
        update(Party.__table__)
        .where(Party.__table__.c.id == bindparam("_id"))
        .values({k: bindparam(k) for k in parties[0] if k != "_id"})
    )
    for chunk in chunked(parties, 5000):
        connection.execute(statement, chunk)


def _people(
    work: Any, rng: random.Random, ids: Sequence[int], plans: Sequence[dict[str, Any]]
) -> dict[int, int]:
    """Contact people of every company past the lead stage: organisation id -> a person."""
    rows, organisations = [], []
    for party_id, plan in zip(ids, plans, strict=True):
        if len(plan["moves"]) < 2 or plan["moves"][1][1] != "firm":
            continue
        for _ in range(rng.choice((1, 1, 2))):
            first, last = rng.choice(_NAMES), rng.choice(_SURNAMES)
            if first.endswith("а") or first.endswith("я"):
                last = last if last.endswith("а") else last + "а"
            rows.append(
                {
                    "kind": "person",
                    "first_name": first,
                    "last_name": last,
                    "organisation_id": party_id,
                    "position": rng.choice(_POSITIONS),
                    "owner_id": plan["owner"],
                    "contact_points": [{"kind": "phone", "value": _phone(rng)}],
                }
            )
            organisations.append(party_id)
    created = work.parties.bulk_create(rows).ids if rows else []
    return dict(zip(organisations, created, strict=True))


def _write_activities(
    connection: Any,
    rng: random.Random,
    ids: Sequence[int],
    plans: Sequence[dict[str, Any]],
    people: dict[int, int],
    now: dt.datetime,
) -> None:
    blank = {c.key: None for c in Activity.__table__.columns if c.key != "id"}
    blank.update(by_assistant=False, body="", data={}, pinned=False)
    rows = []
    backward = set(DEALERS.backward_moves())
    for party_id, plan in zip(ids, plans, strict=True):
        moves = plan["moves"]
        for source, target, at in moves[1:]:
            rows.append(
                {
                    **blank,
                    "party_id": party_id,
                    "kind": "stage_move",
                    "occurred_at": at,
                    "actor_id": plan["owner"],
                    "subject": f"{DEALERS.stage(source).title} → {DEALERS.stage(target).title}",
                    "data": {
                        "pipeline": NAME,
                        "from": source,
                        "to": target,
                        "backward": (source, target) in backward,
                    },
                    "record_entity": "party",
                    "record_id": party_id,
                }
            )
        if not plan["agent"]:
            continue
        # calls and mails go on for a while after the last move, never past now
        start = moves[0][2]
        end = min(moves[-1][2] + dt.timedelta(days=rng.uniform(0, 10)), now)
        count = rng.randint(0, 3) if len(moves) == 1 else rng.randint(3, 12)
        for _ in range(count):
            at = start + (end - start) * rng.random()
            kind = rng.choices(("call", "mail", "note"), (5, 3, 2))[0]
            row = {**blank, "party_id": party_id, "kind": kind, "occurred_at": at}
            row["actor_id"] = plan["owner"]
            if kind == "call":
                row.update(direction="out", channel="phone", body=rng.choice(_CALLS))
                row["data"] = {"duration": rng.randint(20, 900)}
            elif kind == "mail":
                subject, body = rng.choice(_MAILS)
                row.update(direction="out", channel="mail", subject=subject, body=body)
            else:
                row["body"] = rng.choice(_NOTES)
            rows.append(row)
    for chunk in chunked(rows, 5000):
        insert_rows(connection, Activity.__table__, chunk)


def _papers_and_plans(
    crm: Any,
    rng: random.Random,
    ids: Sequence[int],
    plans: Sequence[dict[str, Any]],
    head: Any,
    now: dt.datetime,
) -> None:
    """The papers of accounts and clients, follow-ups of firms, notes to the head (with
    mentions)."""
    with crm.system() as work:
        papers = []
        for party_id, plan in zip(ids, plans, strict=True):
            if plan["moves"][-1][1] not in ("account", "client"):
                continue
            for document, label in DOCUMENTS.items():
                stored = crm.storage.save([f"%PDF-1.4 {label}".encode()])
                # a demo that fails later takes its files with it (see Demo.run)
                work.on_rollback(lambda key=stored.key: crm.storage.delete(key))
                papers.append(
                    {
                        "storage_key": stored.key,
                        "filename": f"{label}.pdf",
                        "content_type": "application/pdf",
                        "size": stored.size,
                        "sha256": stored.sha256,
                        "document_type": document,
                        "party_id": party_id,
                        "uploaded_by_id": plan["owner"],
                        "created_at": plan["moves"][-2][2],
                        "record_entity": None,
                        "record_id": None,
                    }
                )
        for chunk in chunked(papers, 5000):
            insert_rows(work.session.connection(), Attachment.__table__, chunk)
        for party_id, plan in zip(ids, plans, strict=True):
            if plan["moves"][-1][1] != "firm" or rng.random() > 0.12:
                continue
            when = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(
                days=rng.randint(0, 13), hours=rng.randint(-4, 6)
            )
            work.calendar.create(
                title="Созвон: условия дилерства",
                starts_at=when.isoformat(),
                ends_at=(when + dt.timedelta(minutes=30)).isoformat(),
                owner_id=plan["owner"],
                party_id=party_id,
            )
            work.tasks.create(
                title="Отправить документы на подпись",
                party_id=party_id,
                assignee_id=plan["owner"],
                deadline=(when + dt.timedelta(days=2)).isoformat(),
            )
    mentions = 0
    for party_id, plan in zip(ids, plans, strict=True):
        if mentions >= 25 or not plan["agent"] or plan["moves"][-1][1] != "firm":
            continue
        # through the note service, so the mention is recorded and the head is notified;
        # addressed to the head: another agent cannot see this firm and would not be told
        with crm.acting_as(plan["owner"]) as work:
            work.timeline.add_note(
                party_id=party_id,
                body=f"@{head.username} просят отсрочку по первому заказу — согласуете?",
                pinned=rng.random() < 0.3,
            )
        mentions += 1
