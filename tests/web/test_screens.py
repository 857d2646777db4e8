"""Screens through the ASGI app, on SQLite and PostgreSQL, as users of different roles."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from crmkit.access.rules import Scope
from crmkit.clock import frozen_at
from crmkit.model import Attachment, ImportRun, Resource, StageMove, User
from crmkit.testing import add_user, factories
from crmkit.testing.web import multipart
from tests.web.conftest import Browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _own_client(crm, user, **values):
    with crm.acting_as(user) as work:
        return factories.organisation(work, **values)


async def test_records_outside_the_scope_are_404(web, crm):
    owner = await web("agent")
    stranger = await web("agent")
    party = _own_client(crm, owner.user)
    with crm.acting_as(owner.user) as work:
        deal = factories.deal(work, party_id=party.id)
        file = work.attachments.add("contract.pdf", b"%PDF", party_id=party.id)
    assert (await owner.get(f"/clients/{party.id}")).status_code == 200
    for url in (
        f"/clients/{party.id}",
        f"/records/deal/{deal.id}",
        f"/files/{file.id}",
        f"/clients/{party.id}/timeline",
        "/clients/999999",
    ):
        response = await stranger.get(url)
        assert response.status_code == 404, url
        assert party.name not in response.text
    refused = await stranger.post(f"/clients/{party.id}/notes", {"body": "hello"})
    assert refused.status_code == 404


async def test_a_record_page_names_no_client_its_reader_may_not_open(web, crm):
    """A deal given to a colleague whose client they may not see opens without the
    client's name or a button to its card; a role that may read no clients at all opens
    it too (it was refused whole: "not allowed to read party")."""
    owner = await web("agent")
    reader = await web("agent")
    party = _own_client(crm, owner.user, name="ООО «Чужой клиент»")
    with crm.acting_as(owner.user) as work:
        deal = factories.deal(work, party_id=party.id, title="Поставка")
    mine = await owner.get(f"/records/deal/{deal.id}")
    assert "ООО «Чужой клиент»" in mine.text and f'href="/clients/{party.id}"' in mine.text
    with crm.system() as work:
        work.records("deal").update(deal.id, owner_id=reader.user.id)
    page = await reader.get(f"/records/deal/{deal.id}")
    assert page.status_code == 200 and "Поставка" in page.text
    assert "Чужой клиент" not in page.text and f"/clients/{party.id}" not in page.text
    with crm.system() as work:
        work.permissions.set("agent", "party", "read", "none")
    with crm.acting_as(reader.user) as work:
        assert work.parties.find_many([party.id]) == {}
    page = await reader.get(f"/records/deal/{deal.id}")
    assert page.status_code == 200 and "Поставка" in page.text
    assert "Чужой клиент" not in page.text and f"/clients/{party.id}" not in page.text


async def test_admin_screens_are_404_for_other_roles(web):
    agent = await web("agent")
    assert (await agent.get("/admin/users")).status_code == 404
    page = await agent.get("/home")
    assert "/admin" not in re.findall(r'href="(/admin[^"]*)"', page.text)


async def test_menu_hides_lists_of_entities_the_user_may_not_read(web, crm):
    agent = await web("agent")
    assert 'href="/lists/deal"' in (await agent.get("/home")).text
    with crm.system() as work:
        work.permissions.set("agent", "deal", "read", "none")
    assert 'href="/lists/deal"' not in (await agent.get("/home")).text


async def test_list_search_filters_custom_fields_and_keyset_pages(web, crm):
    manager = await web("manager")
    with crm.system() as work:
        work.custom_fields.define(entity="party", key="region", label="Регион", kind="text")
    with crm.acting_as(manager.user) as work:
        for n in range(55):
            factories.organisation(
                work, name=f"Альфа {n:02d}", custom={"region": "Москва" if n % 5 == 0 else "Тверь"}
            )
        factories.organisation(work, name="Бета")
    found = await manager.get("/lists/party?q=бета")
    assert "Бета" in found.text and "Альфа" not in found.text
    moscow = await manager.get(
        "/lists/party?f.custom.region__contains=Москва&cols=name,custom.region"
    )
    assert moscow.text.count("Москва") >= 11 and "Тверь" not in moscow.text
    first = await manager.get("/lists/party?order=name")
    names = re.findall(r"Альфа \d\d", first.text)
    assert names[:2] == ["Альфа 00", "Альфа 01"] and len(set(names)) == 50
    next_url = re.search(r'href="(\?[^"]*after=[^"]+)" rel="next"', first.text).group(1)
    second = await manager.get("/lists/party" + next_url.replace("&amp;", "&"))
    rest = re.findall(r"Альфа \d\d", second.text)
    assert rest[:5] == ["Альфа 50", "Альфа 51", "Альфа 52", "Альфа 53", "Альфа 54"]


async def test_bulk_assign_and_tag(web, crm):
    manager = await web("manager")
    agent = add_user(crm, "vasya", ["agent"])
    parties = [_own_client(crm, manager.user) for _ in range(3)]
    ids = [str(p.id) for p in parties]
    response = await manager.post(
        "/lists/party/bulk", {"ids": ids[:2], "action": "assign", "owner_id": str(agent.id)}
    )
    assert response.status_code == 303
    response = await manager.post("/lists/party/bulk", {"ids": ids, "action": "tag", "tag": "vip"})
    with crm.acting_as(agent) as work:
        assert {p.id for p in work.parties.list()} == {parties[0].id, parties[1].id}
    vip = await manager.get("/lists/party?f.tag=vip&cols=name,tags")
    assert all(p.name in vip.text for p in parties)


async def test_bulk_stage_change_takes_a_comment_and_names_each_refusal(web, crm):
    """Moving deals to "Lost" needs a comment: the list's bulk form has one; without it each
    deal is named with the reason, in the user's language."""
    manager = await web("manager")
    with crm.acting_as(manager.user) as work:
        deals = [factories.deal(work, title=f"Сделка Кедр {n}") for n in range(3)]
    ids = [str(d.id) for d in deals]
    listing = await manager.get("/lists/deal")
    assert 'name="comment" data-for="stage"' in listing.text
    response = await manager.post(
        "/lists/deal/bulk", {"ids": ids[:2], "action": "stage", "stage": "lost"}
    )
    assert response.status_code == 303
    page = await manager.get(response.headers["location"])
    assert "Переведено: 0" in page.text
    for deal in deals[:2]:
        assert f"{deal.title}: для этого перевода нужен комментарий" in page.text
    response = await manager.post(
        "/lists/deal/bulk",
        {"ids": ids, "action": "stage", "stage": "lost", "comment": "бюджет закрыт"},
    )
    page = await manager.get(response.headers["location"])
    assert "Переведено: 3" in page.text
    with crm.acting_as(manager.user) as work:
        assert {work.deals.get(d.id).stage for d in deals} == {"lost"}


async def test_a_contact_person_is_added_from_the_organisation_card(web, crm):
    agent = await web("agent")
    firm = _own_client(crm, agent.user, name="ООО «Кедр»")
    card = await agent.get(f"/clients/{firm.id}")
    assert "Контактных лиц пока нет." in card.text
    form = await agent.get(f"/clients/new?kind=person&organisation_id={firm.id}")
    assert f'name="organisation_id" value="{firm.id}"' in form.text
    response = await agent.post(
        "/clients/new",
        {
            "kind": "person",
            "organisation_id": str(firm.id),
            "first_name": "Ольга",
            "last_name": "Кедрова",
            "position": "директор",
        },
    )
    assert response.status_code == 303
    card = await agent.get(f"/clients/{firm.id}")
    people = card.text.split('id="people"', 1)[1].split("</section>", 1)[0]
    assert "Ольга Кедрова" in people and "директор" in people


async def test_saved_views(web, crm):
    agent = await web("agent")
    response = await agent.post(
        "/lists/party/views", {"name": "Мои москвичи", "query": "q=моск&order=name"}
    )
    assert response.status_code == 303
    page = await agent.get("/lists/party")
    assert "Мои москвичи" in page.text and "q=%D0%BC%D0%BE%D1%81%D0%BA" in page.text


async def test_note_with_a_mention_notifies_the_colleague(web, crm):
    author = await web("agent", username="ivan")
    colleague = await web("manager", username="maria")
    party = _own_client(crm, author.user)
    response = await author.post(f"/clients/{party.id}/notes", {"body": "позвони им @maria"})
    assert response.status_code == 303
    card = await author.get(f"/clients/{party.id}")
    assert "позвони им @maria" in card.text
    page = await colleague.get("/notifications")
    assert "ivan" in page.text or "Ivan" in page.text
    assert re.search(r'id="unread" class="count">1<', page.text)


async def test_a_nul_character_in_a_form_is_refused_naming_the_field(web, crm):
    """On PostgreSQL it cannot be stored (a 500 before), on SQLite it was kept: both refuse."""
    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        party = work.parties.create(name="ООО «Чистая»", source="сайт").id
    edit = await agent.post(
        f"/clients/{party}/edit", {"kind": "organisation", "name": "Чистая", "source": "x\x00y"}
    )
    assert edit.status_code == 422
    assert "source: contains a NUL character" in edit.text
    note = await agent.post(f"/clients/{party}/notes", {"body": "заметка\x00"})
    assert note.status_code == 422 and "body: contains a NUL character" in note.text
    with crm.acting_as(agent.user) as work:
        assert work.parties.get(party).source == "сайт"
        assert [a.kind for a in work.timeline.list(party)] == []


async def test_a_call_recorded_on_the_card_is_capped_at_20000_characters(web, crm):
    """What was said on a call is a hand-written text like a note's: 20000 characters at
    most, the longer one refused naming the field and nothing written (it was kept)."""
    agent = await web("agent", locale="en")
    reader = await web("agent", locale="ru")
    with crm.acting_as(agent.user) as work:
        party = work.parties.create(name="ООО «Болтливая»", source="сайт").id
    too_long = await agent.post(
        f"/clients/{party}/calls", {"outcome": "reached", "body": "д" * 20001}
    )
    assert too_long.status_code == 422
    assert "body: longer than 20000 characters" in html.unescape(too_long.text)
    with crm.acting_as(agent.user) as work:
        assert [a.kind for a in work.timeline.list(party)] == []
    in_russian = await reader.post(
        f"/clients/{party}/calls", {"outcome": "reached", "body": "д" * 20001}
    )
    assert in_russian.status_code == 422
    assert "длиннее 20000 символов" in html.unescape(in_russian.text)
    saved = await agent.post(f"/clients/{party}/calls", {"outcome": "reached", "body": "д" * 20000})
    assert saved.status_code == 303
    with crm.acting_as(agent.user) as work:
        [call] = work.timeline.list(party)
        assert (call.kind, len(call.body)) == ("call", 20000)


async def test_a_call_without_its_outcome_is_refused_naming_the_field_in_russian(web, crm):
    """The refusal names the field by the label the form shows, in the reader's language."""
    reader = await web("agent", locale="ru")
    with crm.acting_as(reader.user) as work:
        party = work.parties.create(name="ООО «Молчаливая»", source="сайт").id
    refused = await reader.post(f"/clients/{party}/calls", {"outcome": "", "body": "алло"})
    assert refused.status_code == 422
    assert "Чем закончился: выберите, чем закончился звонок" in html.unescape(refused.text)
    with crm.acting_as(reader.user) as work:
        assert list(work.timeline.list(party)) == []


async def test_a_note_written_on_the_card_is_capped_at_20000_characters(web, crm):
    """The card's note box reached the service without the API's schema and kept any
    length: the longer text is refused naming the field, nothing is written."""
    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        party = work.parties.create(name="ООО «Многословная»", source="сайт").id
    too_long = await agent.post(f"/clients/{party}/notes", {"body": "д" * 20001})
    assert too_long.status_code == 422
    assert "body: longer than 20000 characters" in html.unescape(too_long.text)
    with crm.acting_as(agent.user) as work:
        assert [a.kind for a in work.timeline.list(party)] == []
    saved = await agent.post(f"/clients/{party}/notes", {"body": "д" * 20000})
    assert saved.status_code == 303
    with crm.acting_as(agent.user) as work:
        [note] = work.timeline.list(party)
        assert (note.kind, len(note.body)) == ("note", 20000)


async def test_note_tells_the_writer_who_was_not_told(web, crm):
    """Igor cannot see Ivan's client: he gets nothing, and Ivan is told so on the card
    (a flash after a plain post, a toast after the htmx one)."""
    author = await web("agent", username="ivan")
    stranger = await web("agent", username="igor")
    party = _own_client(crm, author.user)
    response = await author.post(f"/clients/{party.id}/notes", {"body": "@igor глянь"})
    card = await author.get(response.headers["location"])
    assert re.search(r'class="flash error"[^>]*>[^<]*@igor', card.text)
    response = await author.post(
        f"/clients/{party.id}/notes", {"body": "@igor ещё раз"}, headers={"HX-Request": "true"}
    )
    toast = json.loads(response.headers["HX-Trigger"])["crmkit:toast"]
    assert "@igor" in toast["text"] and toast["kind"] == "error"
    page = await stranger.get("/notifications")
    assert "глянь" not in page.text and not re.search(r'id="unread" class="count">[1-9]', page.text)


async def test_timeline_kinds_and_pages(web, crm):
    agent = await web("agent")
    party = _own_client(crm, agent.user)
    with crm.acting_as(agent.user) as work:
        for n in range(35):
            work.timeline.add("call", party_id=party.id, subject=f"разговор {n}")
        work.timeline.add_note(party_id=party.id, body="единственная заметка")
    notes = await agent.get(f"/clients/{party.id}/timeline?kind=note")
    assert "единственная заметка" in notes.text and "разговор" not in notes.text
    page = await agent.get(f"/clients/{party.id}")
    assert "разговор 34" in page.text and "разговор 0<" not in page.text
    cursor = re.search(r'timeline\?after=([^"&]+)', page.text).group(1)
    more = await agent.get(f"/clients/{party.id}/timeline?after={cursor}")
    assert "разговор 0<" in more.text


async def test_board_move_refused_then_completed_with_the_missing_field(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work)
        work.moves.move(deal, "qualified")
        version = work.deals.get(deal.id).version
    board = await agent.get("/boards/sales")
    assert deal.title in board.text
    refused = await agent.post_json(
        "/boards/sales/move", {"id": deal.id, "to": "proposal", "version": version}
    )
    assert refused.status_code == 409
    body = refused.json()
    assert body["missing_fields"] == ["amount"] and body["form"] is True
    assert body["reasons"] == ["заполните: amount"]  # the engine's message, in Russian
    moved = await agent.post_json(
        "/boards/sales/move",
        {"id": deal.id, "to": "proposal", "version": version, "field.amount": "15000"},
    )
    assert moved.status_code == 200 and moved.json()["moved"]
    with crm.acting_as(agent.user) as work:
        assert work.deals.get(deal.id).stage == "proposal"
    skip = await agent.post_json("/boards/sales/move", {"id": deal.id, "to": "new", "version": 1})
    assert skip.status_code == 409  # stale version: someone (we) moved it meanwhile
    with crm.acting_as(agent.user) as work:
        version = work.deals.get(deal.id).version
    jump = await agent.post_json(
        "/boards/sales/move", {"id": deal.id, "to": "new", "version": version}
    )
    assert jump.status_code == 200
    leap = await agent.post_json(
        "/boards/sales/move", {"id": deal.id, "to": "won", "version": jump.json()["version"]}
    )
    [reason] = leap.json()["reasons"]
    assert reason.startswith("в воронке «") and "нельзя перейти с этапа «" in reason


async def test_a_deal_in_a_removed_stage_is_shown_and_moved_out(web, crm):
    from crmkit.model import Deal

    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work)
    with crm.system() as work:  # as if a release renamed the stage the deal was in
        work.session.execute(sa.update(Deal).where(Deal.id == deal.id).values(stage="talks"))
    card = await agent.get(f"/clients/{deal.party_id}")
    assert card.status_code == 200 and "talks" in card.text
    page = await agent.get(f"/records/deal/{deal.id}")
    assert page.status_code == 200
    assert 'class="current removed"' in page.text
    assert 'name="to" value="qualified"' in page.text and 'name="to" value="won"' in page.text
    board = await agent.get("/boards/sales")
    removed = board.text.split("data-removed>", 1)[1].split("</section>", 1)[0]
    assert deal.title in removed and "talks" in removed
    with crm.acting_as(agent.user) as work:
        version = work.deals.get(deal.id).version
    moved = await agent.post_json(
        "/boards/sales/move", {"id": deal.id, "to": "qualified", "version": version}
    )
    assert moved.status_code == 200 and moved.json()["moved"]
    with crm.acting_as(agent.user) as work:
        assert work.deals.get(deal.id).stage == "qualified"
    board = await agent.get("/boards/sales")
    assert "data-removed" not in board.text


async def test_move_form_for_a_comment(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work)
    form = await agent.post(f"/records/deal/{deal.id}/move", {"to": "lost"})
    assert form.status_code == 409 and 'name="comment"' in form.text
    done = await agent.post(f"/records/deal/{deal.id}/move", {"to": "lost", "comment": "дорого"})
    assert done.status_code == 303


@pytest.mark.parametrize(
    ("language", "said"),
    [("en", "has no stage “bogus”"), ("ru", "нет этапа «bogus»")],
)
async def test_the_move_form_to_a_stage_that_does_not_exist_is_refused_at_once(
    web, crm, language, said
):
    """``move?to=bogus`` showed a form to move the deal to nowhere, refused only when sent:
    it is a 404 page naming the stage, with no form; a real stage still shows its form."""
    agent = await web("agent", locale=language)
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work)
    for target in ("bogus", "", "100%25"):
        page = await agent.get(f"/records/deal/{deal.id}/move?to={target}")
        assert page.status_code == 404
        assert 'name="to"' not in page.text and "<form" not in page.text.split("<main", 1)[-1]
    page = await agent.get(f"/records/deal/{deal.id}/move?to=bogus")
    assert said in html.unescape(page.text)
    odd = await agent.get(f"/records/deal/{deal.id}/move?to=100%25")
    shown = html.unescape(odd.text)
    assert ("“100%”" in shown or "«100%»" in shown) and "100%%" not in shown
    real = await agent.get(f"/records/deal/{deal.id}/move?to=lost")
    assert real.status_code == 200 and 'name="comment"' in real.text


async def test_a_move_comment_on_the_form_is_capped_at_5000_characters(web, crm):
    """The move form, the board and bulk moves reached the move service without the API's
    schema: a longer comment is refused naming the field, the deal stays where it was."""
    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work)
        stage = deal.stage
    too_long = await agent.post(
        f"/records/deal/{deal.id}/move", {"to": "lost", "comment": "д" * 5001}
    )
    assert too_long.status_code == 422
    assert "comment: longer than 5000 characters" in html.unescape(too_long.text)
    with crm.acting_as(agent.user) as work:
        assert work.deals.get(deal.id).stage == stage
        assert (
            work.session.scalar(
                sa.select(sa.func.count())
                .select_from(StageMove)
                .where(StageMove.record_id == deal.id, StageMove.to_stage == "lost")
            )
            == 0
        )
    done = await agent.post(f"/records/deal/{deal.id}/move", {"to": "lost", "comment": "д" * 5000})
    assert done.status_code == 303
    with crm.acting_as(agent.user) as work:
        assert work.deals.get(deal.id).stage == "lost"
        [move] = work.session.scalars(
            sa.select(StageMove).where(StageMove.record_id == deal.id, StageMove.to_stage == "lost")
        )
        assert len(move.comment) == 5000


async def test_calendar_reschedule_and_resource_clash(web, crm):
    agent = await web("agent")
    start = dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
    with crm.system() as work:
        bay = Resource(name="Пост 1", kind="bay")
        work.session.add(bay)
        work.flush()
        bay_id = bay.id
    with crm.acting_as(agent.user) as work:
        first = work.calendar.create(
            title="ТО",
            starts_at=start.isoformat(),
            ends_at=(start + dt.timedelta(hours=1)).isoformat(),
            resource_id=bay_id,
        )
        second = work.calendar.create(
            title="Ремонт",
            starts_at=(start + dt.timedelta(hours=2)).isoformat(),
            ends_at=(start + dt.timedelta(hours=3)).isoformat(),
            resource_id=bay_id,
        )
    moved = await agent.post_json(
        f"/calendar/events/{first.id}/reschedule",
        {"start": "2026-12-01T11:00:00Z", "end": "2026-12-01T12:00:00Z", "version": 1},
    )
    assert moved.status_code == 200
    clash = await agent.post_json(
        f"/calendar/events/{first.id}/reschedule",
        {
            "start": "2026-12-01T12:30:00Z",
            "end": "2026-12-01T13:30:00Z",
            "version": moved.json()["version"],
        },
    )
    assert clash.status_code == 409 and clash.json()["reason"]
    events = (
        await agent.get("/calendar/events?start=2026-11-30T00:00:00Z&end=2026-12-07T00:00:00Z")
    ).json()
    starts = {e["title"]: e["start"] for e in events if "title" in e}
    assert starts["ТО"] == "2026-12-01T14:00:00+03:00" and "Ремонт" in starts  # Moscow time
    free = (
        await agent.get(
            f"/calendar/events?who=resource:{bay_id}&start=2026-11-30T00:00:00Z&end=2026-12-02T00:00:00Z"
        )
    ).json()
    assert any(e.get("display") == "background" for e in free)
    assert second.id


def _alert(page) -> str:
    found = re.search(r'<p class="flash error" role="alert">(.*?)</p>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


async def test_tasks_and_calendar_refuse_whose_they_do_not_know(web, crm):
    """``?who=`` naming nobody the page knows is refused on the page itself (422, its tabs
    or picker kept to choose again), naming ``who`` in the reader's language, rather than
    showing the reader's own tasks or calendar as if they had been asked for."""
    english = await web("agent", locale="en")
    with crm.acting_as(english.user) as work:
        work.tasks.create(title="Позвонить в Альфу", assignee_id=english.user.id)
    assert "Позвонить в Альфу" in (await english.get("/tasks?who=mine")).text
    week = "start=2026-11-23T00:00:00&end=2026-11-30T00:00:00"
    for query in ("who=teem", "who=team:1", "who=me&view=board"):
        page = await english.get(f"/tasks?{query}")
        assert page.status_code == 422, query
        assert _alert(page) == "Whose tasks: one of mine, team", query
        assert "Позвонить в Альфу" not in page.text and "?who=team&view=" in page.text
    for who in ("mine", "bogus", "user:", "team", "owner:1"):
        page = await english.get(f"/calendar?who={who}")
        assert page.status_code == 422, who
        assert _alert(page) == ("Whose calendar: one of me, user:<id>, team:<id>, resource:<id>"), (
            who
        )
        assert 'name="who"' in page.text and 'id="calendar"' not in page.text, who
        events = await english.get(f"/calendar/events?{week}&who={who}")
        assert events.status_code == 422, who
    for who in ("me", f"user:{english.user.id}"):
        assert (await english.get(f"/calendar?who={who}")).status_code == 200
        assert (await english.get(f"/calendar/events?{week}&who={who}")).status_code == 200
    russian = await web("agent", locale="ru")
    page = await russian.get("/calendar?who=bogus")
    assert _alert(page) == (
        "Чей календарь: одно из значений: me, user:<id>, team:<id>, resource:<id>"
    )
    page = await russian.get("/tasks?who=bogus")
    assert page.status_code == 422 and "одно из значений: mine, team" in _alert(page)


async def test_tasks_refuse_a_view_they_do_not_know(web, crm):
    """``?view=`` other than list or board is refused on the page (422, its tabs kept and
    leading to the list), naming the task view in the reader's language, rather than
    showing the list as if it had been asked for."""
    english = await web("agent", locale="en")
    with crm.acting_as(english.user) as work:
        work.tasks.create(title="Позвонить в Альфу", assignee_id=english.user.id)
    for query in ("view=bord", "who=mine&view=kanban", "view=LIST"):
        page = await english.get(f"/tasks?{query}")
        assert page.status_code == 422, query
        assert _alert(page) == "Task view: one of list, board", query
        assert "Позвонить в Альфу" not in page.text, query
        assert "?who=mine&view=list" in page.text and "?who=mine&view=board" in page.text
    both = await english.get("/tasks?who=teem&view=bord")
    assert _alert(both) == "Whose tasks: one of mine, team; Task view: one of list, board"
    for query in ("view=list", "view=board", "view=", "who=team&view=board"):
        page = await english.get(f"/tasks?{query}")
        assert page.status_code == 200 and not _alert(page), query
    russian = await web("agent", locale="ru")
    page = await russian.get("/tasks?view=bord")
    assert page.status_code == 422 and "одно из значений: list, board" in _alert(page)


async def test_the_calendar_refuses_ids_that_name_no_record_instead_of_failing(web, crm):
    """``who=user:<id>`` past what an id column holds, a "²" or a huge event id are refused
    (422 naming the field, or 404), never a 500."""
    agent = await web("agent")
    week = "start=2026-11-23T00:00:00&end=2026-11-30T00:00:00"
    for who in ("user:99999999999999999999999", "team:²", "resource:-1", "user:1_0"):
        refused = await agent.get(f"/calendar/events?{week}&who={who}")
        assert refused.status_code == 422 and "2^63-1" in refused.text, who
    assert (await agent.get(f"/calendar/events?{week}&who=user:{agent.user.id}")).status_code == 200
    huge = await agent.post_json(
        "/calendar/events/99999999999999999999999/reschedule",
        {"start": "2026-12-01T11:00:00", "version": 1},
    )
    assert huge.status_code == 404
    made = await agent.post(
        "/calendar/new",
        {
            "title": "T",
            "starts_at": "2026-12-01T10:00",
            "ends_at": "2026-12-01T11:00",
            "party_id": "²",
        },
    )
    assert made.status_code == 422 and "клиент: " in made.text
    with crm.system() as work:
        assert not work.calendar.between(
            dt.datetime(2026, 11, 30, tzinfo=dt.UTC), dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
        )


async def test_a_drag_is_read_at_the_users_hours_and_never_overwrites_a_change(web, crm):
    """The calendar posts a dropped event's wall time without an offset: a Vladivostok
    user's drop at 15:00 is 15:00 in Vladivostok.  It sends the version the event was
    drawn at; after someone else's edit the drag is refused and the edit stays."""
    agent = await web("agent")
    _in_vladivostok(crm, agent.user)
    vladivostok = ZoneInfo("Asia/Vladivostok")
    _meetings(crm, agent.user, ("планёрка", dt.datetime(2026, 12, 1, 13, tzinfo=vladivostok)))
    feed = await agent.get("/calendar/events?start=2026-12-01T00:00:00&end=2026-12-02T00:00:00")
    (shown,) = feed.json()
    assert shown["extendedProps"]["version"] == 1
    url = f"/calendar/events/{shown['id']}/reschedule"
    moved = await agent.post_json(
        url, {"start": "2026-12-01T15:00:00", "end": "2026-12-01T15:30:00", "version": 1}
    )
    assert moved.status_code == 200, moved.text
    with crm.acting_as(agent.user) as work:
        event = work.calendar.get(int(shown["id"]))
        assert event.starts_at == dt.datetime(2026, 12, 1, 15, tzinfo=vladivostok)
        assert event.ends_at == dt.datetime(2026, 12, 1, 15, 30, tzinfo=vladivostok)
        work.calendar.update(event, title="планёрка (перенесена клиентом)")
    drawn = moved.json()["version"]  # what the calendar drew after the first drag
    stale = await agent.post_json(
        url, {"start": "2026-12-01T17:00:00", "end": "2026-12-01T17:30:00", "version": drawn}
    )
    assert stale.status_code == 409
    assert stale.json()["reason"] == (  # in the agent's language
        "Кто-то изменил это событие, пока вы его переносили; оно показано как есть сейчас."
    )
    unversioned = await agent.post_json(url, {"start": "2026-12-01T17:00:00"})
    assert unversioned.status_code == 409 and "version" in unversioned.json()["reason"]
    with crm.acting_as(agent.user) as work:
        event = work.calendar.get(int(shown["id"]))
        assert event.starts_at == dt.datetime(2026, 12, 1, 15, tzinfo=vladivostok)
        assert event.title == "планёрка (перенесена клиентом)"


def _in_vladivostok(crm, user):
    with crm.system() as work:
        work.session.execute(
            sa.update(User).where(User.id == user.id).values(timezone="Asia/Vladivostok")
        )


def _meetings(crm, user, *starts):
    with crm.acting_as(user) as work:
        for title, moment in starts:
            work.calendar.create(
                title=title,
                starts_at=moment.isoformat(),
                ends_at=(moment + dt.timedelta(minutes=30)).isoformat(),
            )


async def test_calendar_runs_in_the_users_time_zone(web, crm):
    """FullCalendar is given the user's zone, asks for a day in that zone's wall time and
    gets the times with its offset: a 09:00 meeting in Vladivostok is at 09:00 there."""
    agent = await web("agent")
    _in_vladivostok(crm, agent.user)
    vladivostok = ZoneInfo("Asia/Vladivostok")
    _meetings(
        crm,
        agent.user,
        ("утро", dt.datetime(2026, 12, 1, 9, tzinfo=vladivostok)),
        ("назавтра", dt.datetime(2026, 12, 2, 5, tzinfo=vladivostok)),  # 1 Dec 19:00 UTC
    )
    page = await agent.get("/calendar")
    assert 'data-timezone="Asia/Vladivostok"' in page.text
    day = await agent.get(
        "/calendar/events?start=2026-12-01T00:00:00&end=2026-12-02T00:00:00"
        "&timeZone=Asia%2FVladivostok"
    )
    assert {e["title"]: e["start"] for e in day.json()} == {"утро": "2026-12-01T09:00:00+10:00"}


async def test_a_clash_is_told_at_the_users_hours_in_their_language(web, crm):
    """A Vladivostok user adding an event over a booked hour of a bay reads when the bay
    is taken at Vladivostok hours (20:00, not 10:00 UTC), translated like any message."""
    agent = await web("agent")
    _in_vladivostok(crm, agent.user)
    agent.app.state.catalogs["ru"]._catalog["already booked at {time}"] = "уже занят: {time}"
    with crm.system() as work:
        bay = Resource(name="Пост 1", kind="bay")
        work.session.add(bay)
        work.flush()
        bay_id = bay.id
    with crm.acting_as(agent.user) as work:
        work.calendar.create(
            title="ТО",
            resource_id=bay_id,
            starts_at="2026-12-01T10:00:00+00:00",
            ends_at="2026-12-01T11:00:00+00:00",
        )
    refused = await agent.post(
        "/calendar/new",
        {
            "title": "Мойка",
            "resource_id": str(bay_id),
            "starts_at": "2026-12-01T20:30",  # Vladivostok, 10:30 UTC
            "ends_at": "2026-12-01T21:30",
        },
    )
    assert refused.status_code == 422
    assert "ресурс: уже занят: 2026-12-01 20:00" in refused.text


async def test_the_calendar_form_puts_no_event_on_a_retired_resource(web, crm):
    """Bay 1 is taken out of service (``active`` false): the form no longer lists it, and
    an old tab or a bookmark posting its id is refused on the resource field, naming the
    bay in the user's language; no event is made."""
    agent = await web("agent")
    msgid = "{resource} is out of service and cannot be booked"
    agent.app.state.catalogs["ru"]._catalog[msgid] = "{resource}: выведен из работы"
    with crm.system() as work:
        bay = Resource(name="Пост 1", kind="bay", active=False)
        work.session.add(bay)
        work.flush()
        bay_id = bay.id
    page = await agent.get("/calendar")
    assert f'<option value="{bay_id}"' not in page.text
    refused = await agent.post(
        "/calendar/new",
        {
            "title": "Мойка",
            "resource_id": str(bay_id),
            "starts_at": "2026-12-01T10:00",
            "ends_at": "2026-12-01T11:00",
        },
    )
    assert refused.status_code == 422
    assert "ресурс: Пост 1: выведен из работы" in html.unescape(refused.text)
    with crm.system() as work:
        assert (
            work.calendar.between(
                dt.datetime(2026, 11, 30, tzinfo=dt.UTC),
                dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
                resource_id=bay_id,
            )
            == []
        )


async def test_workspace_today_and_tomorrow_are_the_users_days(web, crm):
    """At 01:00 on 2 March in Vladivostok (15:00 UTC on 1 March), "today and tomorrow" are
    2 and 3 March there: the evening of 1 March is gone, the evening of 3 March is in."""
    agent = await web("agent")
    _in_vladivostok(crm, agent.user)
    vladivostok = ZoneInfo("Asia/Vladivostok")
    _meetings(
        crm,
        agent.user,
        ("вчерашняя встреча", dt.datetime(2026, 3, 1, 20, tzinfo=vladivostok)),
        ("сегодняшняя встреча", dt.datetime(2026, 3, 2, 10, tzinfo=vladivostok)),
        ("завтрашняя встреча", dt.datetime(2026, 3, 3, 22, tzinfo=vladivostok)),
    )
    with frozen_at(dt.datetime(2026, 3, 1, 15, tzinfo=dt.UTC)):
        page = await agent.get("/home")
    assert "сегодняшняя встреча" in page.text and "завтрашняя встреча" in page.text
    assert "вчерашняя встреча" not in page.text


async def test_ical_feed(web, crm):
    agent = await web("agent")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with crm.acting_as(agent.user) as work:
        work.calendar.create(
            title="Встреча с клиентом",
            starts_at=start.isoformat(),
            ends_at=(start + dt.timedelta(hours=1)).isoformat(),
        )
    made = await agent.post("/profile/feed", {})
    feed_url = re.search(r"feed=([^&\s]+)", made.headers["location"]).group(1)
    from urllib.parse import unquote

    path = unquote(feed_url).split("testserver", 1)[1]
    feed = await Browser(agent.app, crm).get(path)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    assert "BEGIN:VCALENDAR" in feed.text and "Встреча с клиентом" in feed.text
    assert (await Browser(agent.app, crm).get("/ical/wrong-token.ics")).status_code == 404


async def _feed(browser):
    """The text of ``browser``'s user's iCalendar feed, from a new secret address."""
    from urllib.parse import unquote

    made = await browser.post("/profile/feed", {})
    feed_url = re.search(r"feed=([^&\s]+)", made.headers["location"]).group(1)
    path = unquote(feed_url).split("testserver", 1)[1]
    feed = await Browser(browser.app, browser.crm).get(path)
    assert feed.status_code == 200
    return feed.text


async def test_an_invited_colleague_is_not_led_to_a_client_they_may_not_read(web, crm):
    """Boris is invited to Anna's meeting with her client: his calendar, his feed and his
    workspace show the meeting, with no link to the client's card (whose address would
    tell the client's id); Anna's link to it stays."""
    anna = await web("agent")
    boris = await web("agent")
    party = _own_client(crm, anna.user, name="ООО «Тайна»")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with crm.acting_as(anna.user) as work:
        work.calendar.create(
            title="Встреча у клиента",
            party_id=party.id,
            starts_at=start.isoformat(),
            ends_at=(start + dt.timedelta(hours=1)).isoformat(),
            attendees=[{"user_id": boris.user.id}],
        )
    card = f"/clients/{party.id}"
    day = start.date()
    week = (
        f"/calendar/events?start={day - dt.timedelta(days=2)}T00:00:00"
        f"&end={day + dt.timedelta(days=3)}T00:00:00"
    )
    for browser, link in ((anna, card), (boris, None)):
        shown = await browser.get(week)
        assert [(e["title"], e["url"]) for e in shown.json()] == [("Встреча у клиента", link)]
        feed = await _feed(browser)
        assert "Встреча у клиента" in feed
        assert (card in feed) is (link is not None)
        home = await browser.get("/home")
        assert "Встреча у клиента" in home.text
        assert (f'href="{card}">ООО «Тайна»<' in home.text) is (link is not None)
    assert "Тайна" not in (await boris.get("/home")).text


async def test_a_reminder_leads_its_recipient_to_no_client_they_may_not_read(web, crm):
    """Anna's reminder about a note on her client is for her and for Boris, who may not
    read that client: his notification leads to the reminder's note alone, not to the
    client's card (whose address would tell the client's id); hers leads to the card."""
    from crmkit.jobs.reminders import fire_due_reminders

    anna = await web("agent")
    boris = await web("agent")
    party = _own_client(crm, anna.user, name="ООО «Тайна»")
    with crm.acting_as(anna.user) as work:
        note = work.timeline.add_note(party_id=party.id, body="договор у юриста")
        work.reminders.create(
            text="Спросить про договор",
            party_id=party.id,
            record_entity="activity",
            record_id=note.id,
            remind_at=(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat(),
            recipients=[{"user_id": anna.user.id}, {"user_id": boris.user.id}],
        )
    assert fire_due_reminders(crm) == 1
    card = f"/clients/{party.id}"
    mine = await anna.get("/notifications")
    assert "Спросить про договор" in mine.text and f"{card}#activity-{note.id}" in mine.text
    page = await boris.get("/notifications")
    assert "Спросить про договор" in page.text
    assert card not in page.text and f"/records/activity/{note.id}" in page.text


async def test_template_preview_shows_the_line_of_a_mistake(web, crm):
    manager = await web("manager")
    party = _own_client(crm, manager.user, name="ООО «Вектор»")
    good = await manager.post(
        "/templates/preview",
        {
            "party_id": str(party.id),
            "subject": "Для {{ party.name }}",
            "body": "Здравствуйте!\n{{ sender.name }}",
        },
    )
    assert "Для ООО «Вектор»" in good.text.replace("&#34;", '"').replace("&laquo;", "«")
    bad = await manager.post(
        "/templates/preview", {"party_id": str(party.id), "subject": "", "body": "ok\n{% if %}"}
    )
    assert bad.status_code == 200 and "строка 2" in bad.text
    unsafe = await manager.post(
        "/templates/preview",
        {"party_id": str(party.id), "subject": "", "body": "{{ ''.__class__.__mro__ }}"},
    )
    assert unsafe.status_code == 200 and "template-error" in unsafe.text
    saved = await manager.post(
        "/templates/new",
        {
            "name": "Привет",
            "channel": "mail",
            "language": "ru",
            "subject": "Тема",
            "body": "Текст {{ party.name }}",
        },
    )
    assert saved.status_code == 303
    with crm.acting_as(manager.user) as work:
        [template] = work.message_templates.list()
        assert (
            work.message_templates.render(template.id, party_id=party.id).body
            == "Текст ООО «Вектор»"
        )


async def test_template_preview_names_a_template_past_its_limits(web, crm):
    manager = await web("manager")
    party = _own_client(crm, manager.user, name="ООО «Вектор»")
    huge = await manager.post(
        "/templates/preview",
        {
            "party_id": str(party.id),
            "name": "Акция",
            "subject": "",
            "body": "{{ 'x' * 300000000 }}",
        },
    )
    assert huge.status_code == 200 and "template-error" in huge.text
    assert "Акция" in huge.text and "200000" in huge.text


async def test_language_switch(web, crm):
    agent = await web("agent")
    russian = await agent.get("/tasks")
    assert "Задачи" in russian.text and 'lang="ru"' in russian.text
    await agent.post("/language", {"language": "en", "next": "/tasks"})
    english = await agent.get("/tasks")
    assert 'lang="en"' in english.text and ">Tasks<" in english.text


async def test_money_and_dates_follow_the_language(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work, amount="1234.50")
    page = await agent.get(f"/records/deal/{deal.id}")
    assert "1\xa0234,50\xa0₽" in page.text
    await agent.post("/language", {"language": "en", "next": "/"})
    assert "RUB1,234.50" in (await agent.get(f"/records/deal/{deal.id}")).text.replace("\xa0", "")


async def test_a_plugin_screen_with_its_menu_role_and_template(make_crm):
    from tests.web.screen_plugin import plugin

    crm = make_crm(plugins=[plugin])
    add_user(crm, "kassa", ["cashier"])
    add_user(crm, "ivan", ["agent"])
    from crmkit.web.app import create_app

    app = create_app(crm)
    cashier = Browser(app, crm)
    await cashier.login("kassa")
    assert (await cashier.get("/")).headers["location"] == "/cashbox"
    page = await cashier.get("/cashbox")
    assert page.status_code == 200 and 'id="count">0 clients' in page.text
    assert 'href="/cashbox"' in page.text
    agent = Browser(app, crm)
    await agent.login("ivan")
    assert (await agent.get("/cashbox")).status_code == 404
    assert 'href="/cashbox"' not in (await agent.get("/home")).text


async def test_screens_menu_items_and_card_panels_follow_a_permission(make_crm):
    from tests.web.screen_plugin import plugin

    crm = make_crm(plugins=[plugin])
    boss = add_user(crm, "boss", ["manager"])
    ivan = add_user(crm, "ivan", ["agent"])
    with crm.acting_as(boss) as work:
        firm = factories.organisation(work, name="Ромашка")
        factories.person(work, organisation_id=firm.id)
        person = factories.person(work)
        mine = factories.organisation(work, name="Агентская", owner_id=ivan.id)
        deal = factories.deal(work, party_id=firm.id, title="Поставка")
    from crmkit.web.app import create_app

    app = create_app(crm)
    manager = Browser(app, crm)
    await manager.login("boss")
    assert (await manager.get("/purge")).status_code == 200
    assert 'href="/purge"' in (await manager.get("/home")).text
    card = await manager.get(f"/clients/{firm.id}")
    assert 'id="people-count">1 people at Ромашка' in card.text
    # the panel's context decides there is nothing to show for a person
    assert "people-count" not in (await manager.get(f"/clients/{person.id}")).text
    # a panel on the page of another entity's records
    record = await manager.get(f"/records/deal/{deal.id}")
    assert 'id="deal-client">Поставка for Ромашка' in record.text
    agent = Browser(app, crm)
    await agent.login("ivan")
    assert (await agent.get("/purge")).status_code == 404
    assert 'href="/purge"' not in (await agent.get("/home")).text
    page = await agent.get(f"/clients/{mine.id}")
    assert page.status_code == 200 and "people-count" not in page.text


async def test_a_registered_report_as_table_chart_and_csv_for_its_roles_only(make_crm):
    from tests.web.screen_plugin import plugin

    crm = make_crm(plugins=[plugin])
    boss = add_user(crm, "boss", ["manager"])
    add_user(crm, "ivan", ["agent"])
    with crm.acting_as(boss) as work:
        factories.organisation(work)
        factories.organisation(work)
        factories.person(work)
    from crmkit.web.app import create_app

    app = create_app(crm)
    manager = Browser(app, crm)
    await manager.login("boss")
    assert 'href="/reports/demo.kinds"' in (await manager.get("/reports")).text
    page = await manager.get("/reports/demo.kinds?kind=organisation")
    assert page.status_code == 200 and 'id="report-chart"' in page.text
    table = page.text.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"<td[^>]*>2</td>", table) and "person" not in table
    assert re.search(r"<td[^>]*>организация</td>", table)  # a text cell, translated
    # the plugin's full Chart.js configuration speaks the reader's language too
    chart = json.loads(html.unescape(re.search(r'data-chart="([^"]*)"', page.text).group(1)))
    assert chart["data"]["labels"] == ["организация"]
    assert [d["label"] for d in chart["data"]["datasets"]] == ["Клиенты"]
    assert 'href="/reports/demo.kinds/export.csv?kind=organisation"' in page.text
    csv = await manager.get("/reports/demo.kinds/export.csv?kind=organisation")
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.content.decode("utf-8-sig").splitlines()
    # the file says what the page says: headers, text cells and the totals row
    assert lines == ["Тип,Клиенты", "организация,2", "Итого,2"]
    agent = Browser(app, crm)
    await agent.login("ivan")
    # the core's own reports are for everyone; this one is for managers
    assert "demo.kinds" not in (await agent.get("/reports")).text
    for url in ("/reports/demo.kinds", "/reports/demo.kinds/export.csv"):
        assert (await agent.get(url)).status_code == 404, url
    assert (await manager.get("/reports/no.such")).status_code == 404


async def test_reports_of_other_roles_follow_the_report_permission_not_a_role_named_admin(
    make_crm,
):
    from crmkit.web.app import create_app
    from tests.web.screen_plugin import plugin

    crm = make_crm(plugins=[plugin])  # demo.kinds: on party, for managers
    add_user(crm, "root", ["admin"])  # the deployment's admin: its role has "* / *"
    add_user(crm, "fake", ["admin"])
    add_user(crm, "ivan", ["agent"])
    app = create_app(crm)
    browsers = {}
    for name in ("root", "fake", "ivan"):
        browsers[name] = Browser(app, crm)
        await browsers[name].login(name)

    async def runs(name):
        listed = 'href="/reports/demo.kinds"' in (await browsers[name].get("/reports")).text
        status = (await browsers[name].get("/reports/demo.kinds")).status_code
        assert listed == (status == 200), (name, listed, status)
        return status == 200

    assert await runs("root")
    assert not await runs("ivan")
    # a role that is called "admin" but holds no power runs no report of other roles
    with crm.system() as work:
        work.permissions.set("admin", "*", "*", "none")
        work.permissions.set("admin", "party", "read", "all")
    assert not await runs("fake") and not await runs("root")
    # the power is the "report" cell: on the report's entity, or on every entity
    with crm.system() as work:
        work.permissions.set("agent", "party", "report", "own")
    assert await runs("ivan")
    with crm.system() as work:
        work.permissions.set("agent", "party", "report", "none")
        work.permissions.set("agent", "*", "report", "all")
    assert await runs("ivan")
    # it adds no reading: without read on the report's entity, still nothing
    with crm.system() as work:
        work.permissions.set("agent", "party", "read", "none")
    assert not await runs("ivan")


async def test_pipeline_reports_count_the_users_records_and_chart_them(web, crm):
    import html
    import json

    agent = await web("agent")
    other = await web("agent")
    with crm.acting_as(agent.user) as work:
        for _ in range(2):
            work.moves.move(factories.deal(work), "qualified")
    with crm.acting_as(other.user) as work:
        factories.deal(work)
    page = await agent.get("/reports/pipeline_funnel?pipeline=sales")
    table = page.text.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table)
    assert cells[cells.index("Новая") + 1] == "2"  # the other agent's deal is not counted
    assert cells[cells.index("Квалифицирована") + 1] == "2"
    chart = json.loads(html.unescape(page.text.split('data-chart="', 1)[1].split('"', 1)[0]))
    assert chart["type"] == "bar" and chart["data"]["labels"][:2] == ["Новая", "Квалифицирована"]
    assert chart["data"]["datasets"][0]["data"][:2] == [2, 2]


async def test_the_funnel_page_counts_moves_back_apart(web, crm):
    """A deal taken back to New and moved on again entered each stage once; the move back
    is in its own column (after "entered") and its own chart bars."""
    import html
    import json

    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work)
        for stage in ("qualified", "new", "qualified"):
            work.moves.move(deal, stage)
        work.moves.move(factories.deal(work), "qualified")
    page = await agent.get("/reports/pipeline_funnel?pipeline=sales")
    table = page.text.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table)
    new, qualified = cells.index("Новая"), cells.index("Квалифицирована")
    assert cells[new + 1 : new + 3] == ["2", "1"]  # entered, moved back
    assert cells[qualified + 1 : qualified + 3] == ["2", "0"]
    chart = json.loads(html.unescape(page.text.split('data-chart="', 1)[1].split('"', 1)[0]))
    assert [d["data"][:2] for d in chart["data"]["datasets"]] == [[2, 2], [1, 0]]


async def test_the_funnels_conversion_is_one_percent_on_the_page_and_in_the_workbook(web, crm):
    """One deal of three qualified: the page reads "33,3 %" and the XLSX cell holds the
    same fraction with a percent format, so the spreadsheet shows 33.3% too."""
    import io

    from openpyxl import load_workbook

    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        deals = [factories.deal(work) for _ in range(3)]
        work.moves.move(deals[0], "qualified")
    url = "/reports/pipeline_funnel?pipeline=sales"
    page = await agent.get(url)
    table = page.text.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", table)]
    qualified = cells.index("Квалифицирована")
    assert cells[qualified + 1 : qualified + 5] == ["1", "0", "33,3\xa0%", "33,3\xa0%"]
    workbook = await agent.get(url.replace("?", "/export.xlsx?"))
    sheet = load_workbook(io.BytesIO(workbook.content)).active
    row = next(r for r in sheet.iter_rows(min_row=2) if r[0].value == "Квалифицирована")
    assert [c.value for c in row[3:5]] == [round(1 / 3, 4)] * 2
    assert {c.number_format for c in row[3:5]} == {"0.0%"}


async def test_a_meeting_is_planned_from_the_card(web, crm):
    agent = await web("agent")
    firm = _own_client(crm, agent.user, name="ООО «Ольха»")
    card = await agent.get(f"/clients/{firm.id}")
    assert 'class="plan-meeting"' in card.text
    response = await agent.post(
        "/calendar/new",
        {
            "party_id": str(firm.id),
            "title": "Созвон по договору",
            "starts_at": "2030-03-04T10:00",
            "ends_at": "2030-03-04T10:30",
        },
    )
    assert response.status_code == 303
    meetings = (await agent.get(f"/clients/{firm.id}")).text.split("Созвон по договору")
    assert len(meetings) == 2


async def test_static_links_carry_a_content_digest_and_serve_the_file(web):
    """Assets are linked as /static/<file>?v=<digest of the content>: a new build, a new URL."""
    import hashlib
    import importlib.resources

    agent = await web("agent")
    page = await agent.get("/tasks")
    assert page.status_code == 200
    links = dict(re.findall(r'/static/(app\.(?:js|css))\?v=([0-9a-f]+)"', page.text))
    assert links, "the page links no core asset"
    for name, digest in links.items():
        content = (importlib.resources.files("crmkit.web") / "static" / name).read_bytes()
        assert digest == hashlib.blake2b(content, digest_size=6).hexdigest()
        served = await agent.get(f"/static/{name}?v={digest}")
        assert served.status_code == 200 and served.content == content


async def test_permissions_screen_shows_what_a_role_reaches(web, crm):
    """Cells given by a ``*`` row show that scope (marked), cannot be narrowed to no
    effect, and actions an entity adds (a user's ``block``) are listed."""
    admin = await web("admin")
    page = await admin.get("/admin/permissions?role=admin")
    assert page.status_code == 200
    # the admin role has one row for everything: every cell shows "all", marked as given
    assert 'aria-label="user block" class="scope-all"' in page.text
    assert 'aria-label="party delete" class="scope-all"' in page.text
    refused = await admin.post(
        "/admin/permissions",
        {"role": "admin", "entity": "party", "action": "delete", "scope": "none"},
    )
    assert refused.status_code == 422
    assert "ничего не изменит" in refused.text  # the admin reads Russian
    with crm.system() as work:
        assert work.permissions.effective("admin")[("party", "delete")] == (Scope.ALL, True)
    # a role's own cells are shown as they are, not marked
    with crm.system() as work:
        work.permissions.set("agent", "party", "export", "own")
    agent = (await admin.get("/admin/permissions?role=agent")).text
    assert 'aria-label="party export" class="scope-own"' in agent
    with crm.system() as work:
        assert work.permissions.effective("agent")[("party", "export")] == (Scope.OWN, False)


async def test_a_file_on_the_card_takes_editing_the_client(web, crm):
    """A role reading every client but editing only its own may open a colleague's client,
    not attach files to it there: refused naming the client, nothing stored."""
    with crm.system() as work:
        for entity, action, scope in (
            ("party", "read", Scope.ALL),
            ("attachment", "read", Scope.ALL),
            ("attachment", "create", Scope.ALL),
        ):
            work.permissions.set("agent", entity, action, scope)
    owner = await web("manager")
    agent = await web("agent", locale="en")
    party = _own_client(crm, owner.user, name="ООО «Чужая»")
    assert (await agent.get(f"/clients/{party.id}")).status_code == 200
    refused = await agent.post(
        f"/clients/{party.id}/files", files={"file": ("договор.pdf", b"%PDF", "application/pdf")}
    )
    assert refused.status_code == 403
    assert (
        f"Client {party.id}: attaching a file takes the permission to edit the record"
        in html.unescape(refused.text)
    )
    mine = _own_client(crm, agent.user)
    done = await agent.post(
        f"/clients/{mine.id}/files", files={"file": ("договор.pdf", b"%PDF", "application/pdf")}
    )
    assert done.status_code == 303
    with crm.system() as work:
        assert [a.party_id for a in work.session.scalars(sa.select(Attachment))] == [mine.id]


async def test_the_card_offers_the_upload_only_where_the_file_would_be_kept(web, crm):
    """The upload form shows on the clients the reader may edit, not on one they only
    read, where sending it would be refused."""
    with crm.system() as work:
        for entity, action, scope in (
            ("party", "read", Scope.ALL),
            ("attachment", "read", Scope.ALL),
            ("attachment", "create", Scope.ALL),
        ):
            work.permissions.set("agent", entity, action, scope)
    owner = await web("manager")
    agent = await web("agent", locale="en")
    theirs = _own_client(crm, owner.user, name="ООО «Чужая»")
    mine = _own_client(crm, agent.user)
    upload = 'action="/clients/{}/files"'
    page = (await agent.get(f"/clients/{theirs.id}")).text
    assert "Files" in page and upload.format(theirs.id) not in page
    assert upload.format(mine.id) in (await agent.get(f"/clients/{mine.id}")).text
    assert upload.format(theirs.id) in (await owner.get(f"/clients/{theirs.id}")).text


async def test_a_nul_character_in_an_upload_is_refused_naming_the_field(web, crm):
    """The file and import forms read their own fields: a NUL in a file's name or its
    document type reached PostgreSQL (a 500) and was kept by SQLite; both refuse, naming
    the field, and keep nothing."""
    agent = await web("agent", locale="en")
    manager = await web("manager", locale="en")
    party = _own_client(crm, agent.user)
    url = f"/clients/{party.id}/files"
    typed = await agent.post(
        url, {"document_type": "contract\x00"}, files={"file": ("a.pdf", b"%PDF")}
    )
    assert typed.status_code == 422
    assert "document_type: contains a NUL character" in typed.text
    for browser, target, field in ((agent, url, "file"), (manager, "/import", "file")):
        content, headers = multipart(
            {"csrf_token": browser.csrf}, [(field, "дого\x00вор.csv", b"name\nIvan\n")]
        )
        named = await browser.client.post(target, content=content, headers=headers)
        assert named.status_code == 422, target
        assert "file: the file name contains a NUL character" in html.unescape(named.text)
    source = await manager.post(
        "/import", {"source": "выставка\x00"}, files={"file": ("clients.csv", b"name\nIvan\n")}
    )
    assert source.status_code == 422
    assert "source: contains a NUL character" in source.text
    with crm.system() as work:
        assert work.session.scalars(sa.select(Attachment)).all() == []
        assert work.session.scalars(sa.select(ImportRun)).all() == []


ADMIN_SCREENS = (
    "/admin",
    "/admin/users",
    "/admin/permissions",
    "/admin/teams",
    "/admin/fields",
    "/admin/pipelines",
    "/admin/audit",
    "/admin/duplicates",
    "/admin/automation",
    "/admin/dead-letters",
)


def _menu(page):
    return set(re.findall(r'<a href="(/[^"]*)"', page.text.split("<nav>", 1)[1].split("</nav>")[0]))


async def test_admin_and_import_screens_follow_the_permission_table(web, crm):
    """They were given by role name ("admin", "admin" or "manager"): a deployment could
    not hand one of them to another role. Each now takes its cell; the built-in roles
    open what they opened before (and managers, who may merge any client, the duplicate
    report)."""
    admin, manager, agent = await web("admin"), await web("manager"), await web("agent")
    for url in (*ADMIN_SCREENS, "/import"):
        assert (await admin.get(url)).status_code == 200, url
    for url in ("/import", "/admin/duplicates"):  # merging takes deleting, which they may
        assert (await manager.get(url)).status_code == 200, url
    for url in ADMIN_SCREENS[:-3]:
        assert (await manager.get(url)).status_code == 404, url
    for url in (*ADMIN_SCREENS, "/import"):
        assert (await agent.get(url)).status_code == 404, url
    assert "/import" in _menu(await manager.get("/home"))
    assert not {"/import", "/admin"} & _menu(await agent.get("/home"))

    with crm.system() as work:  # the deployment lets agents import and read the audit log
        work.permissions.set("agent", "party", "import", "own")
        work.permissions.set("agent", "permission", "read", "all")
        work.permissions.set("agent", "audit_log", "read", "all")
    assert (await agent.get("/import")).status_code == 200
    for url in ("/admin", "/admin/permissions", "/admin/pipelines", "/admin/audit"):
        assert (await agent.get(url)).status_code == 200, url
    for url in ("/admin/users", "/admin/teams", "/admin/fields", "/admin/duplicates"):
        assert (await agent.get(url)).status_code == 404, url
    assert {"/import", "/admin"} <= _menu(await agent.get("/home"))
    tiles = re.findall(r'class="tile" href="([^"]+)"', (await agent.get("/admin")).text)
    assert tiles == ["/admin/permissions", "/admin/pipelines", "/admin/audit"]


async def test_a_meeting_planned_on_the_card_keeps_the_agent_on_the_card(web, crm):
    """The card's "plan a meeting" returns to the card (its meetings), not to the calendar;
    an end left empty makes a meeting of an hour; a refusal (the end before the start) is
    told on the card, naming the field, instead of a page with only a way to the start."""
    agent = await web("agent")
    firm = _own_client(crm, agent.user, name="ООО «Ольха»")
    card = (await agent.get(f"/clients/{firm.id}")).text
    form = card.split('class="plan-meeting"', 1)[1].split("</form>", 1)[0]
    assert 'name="back" value="card"' in form
    assert 'name="ends_at" required' not in form

    planned = await agent.post(
        "/calendar/new",
        {
            "party_id": str(firm.id),
            "back": "card",
            "title": "Созвон по договору",
            "starts_at": "2030-03-04T10:00",
            "ends_at": "",
        },
    )
    assert planned.status_code == 303
    assert planned.headers["location"] == f"/clients/{firm.id}#meetings"
    with crm.acting_as(agent.user) as work:
        (event,) = work.calendar.between(
            dt.datetime(2030, 3, 1, tzinfo=dt.UTC), dt.datetime(2030, 3, 9, tzinfo=dt.UTC)
        )
        assert event.ends_at - event.starts_at == dt.timedelta(hours=1)
    shown = await agent.get(f"/clients/{firm.id}")
    assert "Созвон по договору" in shown.text

    refused = await agent.post(
        "/calendar/new",
        {
            "party_id": str(firm.id),
            "back": "card",
            "title": "Встреча наоборот",
            "starts_at": "2030-03-05T10:00",
            "ends_at": "2030-03-05T09:00",
        },
    )
    assert refused.status_code == 303
    assert refused.headers["location"] == f"/clients/{firm.id}"  # the top, with the refusal
    again = (await agent.get(f"/clients/{firm.id}")).text
    assert 'class="flash error"' in again and "конец: должно быть позже начала" in again
    with crm.acting_as(agent.user) as work:
        later = event.starts_at + dt.timedelta(days=2)
        assert len(work.calendar.between(event.starts_at, later)) == 1

    # the calendar's own form still answers on its own page
    plain = await agent.post(
        "/calendar/new",
        {"title": "x", "starts_at": "2030-03-05T10:00", "ends_at": "2030-03-05T09:00"},
    )
    assert plain.status_code == 422


async def test_a_refused_form_leads_back_to_the_form(web, crm):
    """A form refused on a page of its own ("Не сохранено: срок: ...") offers the way back
    to the form it came from (the browser's back, which keeps what was typed), not only the
    start screen; a page of another site in the Referer is no way back."""
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        party = factories.organisation(work, name="ООО «Ясень»")
    card = f"/clients/{party.id}"
    refused = await agent.post(
        f"{card}/tasks",
        {"title": "Позвонить", "deadline": "завтра"},
        headers={"Referer": f"http://testserver{card}?tab=1"},
    )
    assert refused.status_code == 422
    assert "срок" in refused.text
    back = re.search(r'<a href="([^"]*)" onclick="[^"]*history\.back\(\)', refused.text)
    assert back and html.unescape(back.group(1)) == f"{card}?tab=1"
    assert "На главный экран" in refused.text

    foreign = await agent.post(
        f"{card}/tasks",
        {"title": "Позвонить", "deadline": "завтра"},
        headers={"Referer": "http://evil.example/phish"},
    )
    assert foreign.status_code == 422 and "history.back()" not in foreign.text
    bare = await agent.post(f"{card}/tasks", {"title": "Позвонить", "deadline": "завтра"})
    assert bare.status_code == 422 and "history.back()" not in bare.text


async def test_the_workspace_names_each_meetings_client_and_day(web, crm):
    """ "Today and tomorrow" told two "Созвон: условия" at 06:00 and 22:00 with an arrow
    each: the agent could not tell which dealer, nor that one of them is tomorrow. Each
    meeting now names its client (a link to the card) and tomorrow's show their date."""
    agent = await web("agent")
    moscow = ZoneInfo("Europe/Moscow")
    with crm.acting_as(agent.user) as work:
        olha = factories.organisation(work, name="ООО «Ольха»")
        kedr = factories.organisation(work, name="ООО «Кедр»")
        for party, moment in (
            (olha, dt.datetime(2026, 3, 2, 22, tzinfo=moscow)),
            (kedr, dt.datetime(2026, 3, 3, 6, tzinfo=moscow)),
        ):
            work.calendar.create(
                title="Созвон: условия",
                party_id=party.id,
                starts_at=moment.isoformat(),
                ends_at=(moment + dt.timedelta(minutes=30)).isoformat(),
            )
    with frozen_at(dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)):
        page = (await agent.get("/home")).text
    events = html.unescape(page.split('<ul class="events">', 1)[1].split("</ul>", 1)[0])
    items = re.findall(r"<li>(.*?)</li>", events, re.S)
    assert len(items) == 2
    today, tomorrow = (re.sub(r"<[^>]+>", "", item) for item in items)
    assert "22:00" in today and "ООО «Ольха»" in today and "02.03" not in today
    assert "03.03" in tomorrow and "06:00" in tomorrow and "ООО «Кедр»" in tomorrow
    assert f'href="/clients/{kedr.id}"' in items[1]


async def test_a_full_board_column_gives_its_count_and_a_way_to_the_rest(web, crm):
    """A column shows its first 50 cards: it said "50+" and nothing more, so an agent with
    53 deals in a stage never saw three of them from the board. It now gives the whole count
    and links to the list of that stage, where every one is."""
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        party = factories.organisation(work)
        deals = [factories.deal(work, party_id=party.id) for _ in range(53)]
    stage = deals[0].stage
    board = (await agent.get("/boards/sales")).text
    column = board.split('<section class="column', 1)[1].split("</section>", 1)[0]
    assert f'data-stage="{stage}"' in column
    assert "<small>53</small>" in column.split("</h2>", 1)[0]
    link = re.search(r'<a class="column-more" href="([^"]+)"', column)
    assert link, "no way to the rest of the column"
    rest = await agent.get(html.unescape(link.group(1)))
    assert rest.status_code == 200
    listed = set(re.findall(r'href="/records/deal/(\d+)"', rest.text))
    assert str(deals[0].id) in listed or str(deals[-1].id) in listed
    assert "f.stage" in link.group(1) and "f.pipeline=sales" in link.group(1)

    # a column holding all its cards has no such link
    with crm.acting_as(agent.user) as work:
        work.moves.move(deals[0], "qualified")
    board = (await agent.get("/boards/sales")).text
    qualified = board.split('data-stage="qualified"', 1)[1].split("</section>", 1)[0]
    assert 'class="column-more"' not in qualified
