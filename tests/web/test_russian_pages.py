"""A Russian reader sees Russian: stage history and timeline entries written from their
data, refusals of forms and permissions, the duplicate check only for who may use it."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from crmkit import hookimpl
from crmkit.access.rules import Role, grant
from crmkit.automation import Action, Rule, Trigger
from crmkit.jobs.delivery import deliver_due
from crmkit.model import Activity
from crmkit.testing import add_user, factories
from crmkit.web.app import create_app
from tests.web.conftest import Browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


#: Russian for the messages these changes add, until the catalogs have them (the
#: catalogs are written apart from code changes); the tests check that the pages ask for
#: these texts, with their values, in the reader's language.
RUSSIAN = {
    "added a note": "добавлена заметка",
    "task {id}: {title}": "задача {id}: {title}",
    "moved to “{stage}”": "переведено на этап «{stage}»",
    "not a number: {value}": "не число: {value}",
    "Length must be between {min} and {max}.": "Длина должна быть от {min} до {max}.",
    "not allowed to {action}: {entity}": "нет права: {action} — {entity}",
}


def russian(app):
    app.state.catalogs["ru"]._catalog.update(RUSSIAN)
    return app


def text_of(page):
    body = re.sub(r"(?s)<script.*?</script>", "", page.text)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


class Rules:
    """A rule the assistant runs when a deal is qualified: a task, a note, a move on."""

    crmkit_plugin_name = "test_russian_rules"

    @hookimpl
    def crmkit_register_automations(self):
        return [
            Rule(
                "qualified-next",
                Trigger("stage.entered", entity="deal", stage="qualified"),
                (
                    Action("create_task", {"title": "Позвонить {{ party.name }}"}),
                    Action("add_note", {"body": "Клиент квалифицирован"}),
                    Action("move", {"to": "proposal"}),
                ),
                label="Квалифицированные — в предложение",
            )
        ]


class Clerk:
    """A role that reads tasks and may not create clients."""

    crmkit_plugin_name = "test_russian_clerk"

    @hookimpl
    def crmkit_register_roles(self):
        return [Role("clerk", "Clerk")]

    @hookimpl
    def crmkit_register_permissions(self):
        return grant("clerk", "task", ("read",), "own")


async def signed_in(app, crm, username):
    browser = Browser(app, crm)
    assert (await browser.login(username)).status_code == 303
    return browser


async def test_stage_history_and_timeline_speak_the_readers_language(make_crm):
    crm = make_crm(plugins=[Rules()])
    olga = add_user(crm, "olga", ["agent"])
    with crm.acting_as(olga) as work:
        party = factories.organisation(work, name="ООО «Ромашка»")
        deal = factories.deal(work, party_id=party.id, title="Поставка", amount="250000")
        work.moves.move(deal, "qualified")
    deliver_due(crm)
    app = russian(create_app(crm))
    agent = await signed_in(app, crm, "olga")
    page = await agent.get(f"/records/deal/{deal.id}")
    assert page.status_code == 200
    history = text_of(page).split("История стадий")[1].split("Лента")[0]
    # stage titles in Russian, as on the board; the assistant's move signed by it
    assert "Новая → Квалифицирована" in history
    assert "Квалифицирована → Предложение · 🤖 ассистент — Квалифицированные — в предложение" in (
        history
    )
    assert "new →" not in history and "→ qualified" not in history
    # the deal's creation enters its first stage, no stray "·" for the stage before it
    assert re.search(r"\d → Новая", history) and "· →" not in history
    assert "assistant" not in history
    timeline = text_of(page).split("Лента")[1]
    assert "Новая → Квалифицирована" in timeline and "Квалифицирована → Предложение" in timeline
    assert "добавлена заметка" in timeline and "задача " in timeline
    assert "переведено на этап «Предложение»" in timeline
    for english in ("New → Qualified", "added a note", "task ", "moved to"):
        assert english not in timeline
    # the client card's timeline too
    card = text_of(await agent.get(f"/clients/{party.id}"))
    assert "Квалифицирована → Предложение" in card and "добавлена заметка" in card
    assert "Qualified → Proposal" not in card and "added a note" not in card
    # stored: the English text (exports, the API) beside the message it is written from
    with crm.system() as work:
        moves = work.session.scalars(
            select(Activity).where(Activity.kind == "stage_move").order_by(Activity.id)
        ).all()
        assert [m.subject for m in moves][-2:] == ["New → Qualified", "Qualified → Proposal"]
        assert moves[-1].data["subject_message"]["template"] == "{source} → {target}"
        [done] = work.session.scalars(select(Activity).where(Activity.kind == "automation"))
        assert done.body.splitlines()[1] == "added a note"


async def test_an_old_stage_move_entry_is_told_from_its_data(make_crm):
    """Entries written before the messages were kept: a stage move is told from the
    pipeline and stages its data names; any other entry shows its stored text."""
    crm = make_crm()
    olga = add_user(crm, "olga", ["agent"])
    with crm.acting_as(olga) as work:
        deal = factories.deal(work, title="Поставка")
        work.moves.move(deal, "qualified")
        for entry in work.session.scalars(select(Activity).where(Activity.kind == "stage_move")):
            entry.data = {k: v for k, v in entry.data.items() if k != "subject_message"}
    agent = await signed_in(russian(create_app(crm)), crm, "olga")
    page = text_of(await agent.get(f"/records/deal/{deal.id}"))
    assert "Новая → Квалифицирована" in page.split("Лента")[1]
    assert "New → Qualified" not in page


async def test_form_refusals_are_russian(make_crm):
    crm = make_crm()
    olga = add_user(crm, "olga", ["agent"])
    with crm.acting_as(olga) as work:
        party = factories.organisation(work)
    agent = await signed_in(russian(create_app(crm)), crm, "olga")
    empty = await agent.post(f"/clients/{party.id}/tasks", {"title": "", "deadline": ""})
    assert empty.status_code == 422
    assert "Длина должна быть от 1 до 300." in text_of(empty)
    assert "Length must be" not in empty.text
    letters = await agent.post("/tasks/new", {"title": "Звонок", "priority": "abc"})
    assert letters.status_code == 422
    assert "приоритет: должно быть целым числом" in text_of(letters)
    assert "whole number" not in letters.text
    odd_id = await agent.post(
        f"/clients/{party.id}/tasks", {"title": "Звонок", "assignee_id": "abc"}
    )
    assert odd_id.status_code == 422
    assert "исполнитель: не номер записи (целое число от 1 до 2^63-1)" in text_of(odd_id)


async def test_role_limited_move_names_role_titles(make_crm):
    from tests.pipeline.test_engine import DealerPlugin

    crm = make_crm(plugins=[DealerPlugin()])
    olga = add_user(crm, "olga", ["agent"])
    with crm.acting_as(olga) as work:
        org = factories.organisation(work)
        work.moves.move(org, "refused", comment="нет")
        version = org.version
    agent = await signed_in(create_app(crm), crm, "olga")
    refused = await agent.post(
        f"/records/party/{org.id}/move", {"to": "lead", "version": str(version)}
    )
    shown = text_of(refused)
    assert "могут только: Администратор" in shown  # the catalog's own translation
    assert "admin" not in shown.split("могут только:")[1][:40]


async def test_duplicate_check_only_for_who_may_create_clients(make_crm):
    crm = make_crm(plugins=[Clerk()])
    add_user(crm, "clerk", ["clerk"])
    add_user(crm, "olga", ["agent"])
    app = russian(create_app(crm))
    clerk = await signed_in(app, crm, "clerk")
    agent = await signed_in(app, crm, "olga")
    clerk_page = await clerk.get("/tasks")
    assert 'href="/screening"' not in clerk_page.text and "Проверка на дубли" not in clerk_page.text
    assert (await clerk.get("/screening")).status_code == 404
    assert (await clerk.get("/screening/candidates", params={"q": "Ромашка"})).status_code == 404
    assert 'href="/screening"' in (await agent.get("/tasks")).text
    assert (await agent.get("/screening")).status_code == 200
    # a plain refusal names the action and the entity in the reader's language
    forbidden = await clerk.get("/clients/new")
    assert forbidden.status_code == 403
    assert "нет права: создавать — Клиент" in text_of(forbidden)
    assert "not allowed to create party" not in forbidden.text


async def test_a_persons_card_says_individual_once(make_crm):
    """A person who is a private client reads "физлицо · ответственный: …", not
    "физлицо · физлицо": the kind and the client type say the same in Russian."""
    crm = make_crm()
    add_user(crm, "olga", ["agent"])
    with crm.acting_as("olga") as work:
        person = work.parties.create(
            kind="person", name="Анна Смирнова", customer_type="individual"
        )
        firm = work.parties.create(
            kind="organisation", name="ООО «Ромашка»", customer_type="corporate"
        )
    agent = await signed_in(create_app(crm), crm, "olga")
    page = await agent.get(f"/clients/{person.id}")

    def meta(page):
        head = r'class="pagehead card-head">.*?<p class="meta">(.*?)</p>'
        found = re.search(head, page.text, re.S)
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1)))

    assert meta(page).count("физлицо") == 1, meta(page)
    # an organisation's type is told beside its kind
    firm_meta = meta(await agent.get(f"/clients/{firm.id}"))
    assert firm_meta.count(" · ") >= 2, firm_meta


async def test_the_users_list_names_roles_by_their_titles(make_crm):
    """The admin's list of users says "Администратор", "Агент", as the form beside it does,
    not the role codes ``admin``, ``agent``."""
    crm = make_crm()
    add_user(crm, "boss", ["admin"])
    add_user(crm, "olga", ["agent"])
    admin = await signed_in(create_app(crm), crm, "boss")
    page = await admin.get("/admin/users")
    assert page.status_code == 200
    table = page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    cells = [
        re.findall(r"<td>([^<]*)</td>", row)
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    ]
    shown = " ".join(c for row in cells for c in row)
    assert "Администратор" in shown and "Агент" in shown, cells
    assert not [row for row in cells if "admin" in row or "agent" in row], cells


async def test_an_error_page_of_the_framework_speaks_russian(make_crm):
    """A form sent to an address that only shows a page answers with a Russian title and
    text, not the English reason phrase "Method Not Allowed"."""
    crm = make_crm()
    add_user(crm, "olga", ["agent"])
    app = create_app(crm)
    app.state.catalogs["ru"]._catalog.update(
        {
            "Request not accepted": "Запрос не принят",
            "This address does not take this kind of request; use the page's links and"
            " buttons.": "Этот адрес не принимает такой запрос; пользуйтесь ссылками и"
            " кнопками страницы.",
        }
    )
    agent = await signed_in(app, crm, "olga")
    refused = await agent.post("/tasks", {})
    assert refused.status_code == 405
    shown = text_of(refused)
    assert "Запрос не принят" in shown
    assert "Этот адрес не принимает такой запрос" in shown
    assert "Method Not Allowed" not in shown and "Error" not in shown


async def test_form_labels_named_after_fields_start_with_a_capital(make_crm):
    """The admin's user page says «Отображаемое имя», «Эл. почта» like its other labels
    («Пароль», «Роли»); the catalog's lowercase words stay for use inside sentences."""
    crm = make_crm()
    add_user(crm, "boss", ["admin"])
    olga = add_user(crm, "olga", ["agent"])
    admin = await signed_in(create_app(crm), crm, "boss")
    page = await admin.get(f"/admin/users/{olga.id}")
    assert page.status_code == 200
    labels = re.findall(r"<label>([^<]+)<input", page.text)
    assert "Отображаемое имя" in labels and "Эл. почта" in labels, labels
    users = await admin.get("/admin/users")
    headers = re.findall(r"<th>([^<]+)</th>", users.text)
    assert "Логин" in headers and "Последний вход" in headers, headers
    form = await admin.get("/clients/new")
    labels = [text.strip() for text in re.findall(r"<label>([^<]+)<", form.text)]
    assert "Телефон" in labels and "телефон" not in labels, labels
