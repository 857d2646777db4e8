"""What a reviewer using denaq in Russian found: figures, exports, the handover of a blocked
agent's firms, odd ids, notes to colleagues, one notice per handover, paging, words in
English on Russian pages."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from crmkit_denaq.distribution import distribution
from denaq_fixtures import add_person, attach, new_lead
from denaq_web import Client
from sqlalchemy import select

from crmkit.clock import frozen_at, utcnow
from crmkit.errors import ValidationFailed
from crmkit.web.app import create_app


@pytest.fixture
def signed_in(denaq, staff):
    app = create_app(denaq)
    return lambda username: Client(app, username)


def _cells(page: str) -> list[str]:
    table = page.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    return [c.strip() for c in re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", table)]


def test_report_pages_show_percents_and_durations_as_a_reader_reads_them(denaq, staff, signed_in):
    """A conversion of one in three is "33,3 %" (not "0,333 %"), and two days and three
    hours in a stage read as 2,1 days, not as 183600 seconds."""
    start = utcnow() - dt.timedelta(days=5)
    with frozen_at(start):
        ids = [new_lead(denaq, staff.finder, name=f"ООО «Фирма {n}»") for n in range(3)]
        with denaq.acting_as(staff.admin) as work:
            distribution(work).assign(ids, staff.anna.id)
    for party in ids:
        add_person(denaq, staff.anna, party)
    with frozen_at(start + dt.timedelta(days=2, hours=3)), denaq.acting_as(staff.anna) as work:
        for party in ids:
            work.moves.move(party, "firm", entity="party")
    attach(denaq, staff.anna, ids[0], "contract", "requisites")
    with denaq.acting_as(staff.anna) as work:
        work.moves.move(ids[0], "account", entity="party")
        work.moves.move(ids[0], "client", entity="party")
    admin = signed_in("boss")
    cells = _cells(admin.get("/reports/denaq_funnel_by_agent").text)
    assert "33,3\xa0%" in cells and not any("0,333" in c for c in cells)
    cells = _cells(admin.get("/reports/denaq_time_in_stage").text)
    assert "2,1" in cells  # in days, as the header says (dealers take weeks, not hours)
    assert not any(re.fullmatch(r"[\d\s,]+", c) and len(c) > 5 for c in cells)


@pytest.mark.parametrize("name", ["denaq_leads_by_source", "denaq_leads_by_creator"])
def test_the_totals_row_of_leads_by_source_and_creator_says_total(denaq, staff, signed_in, name):
    new_lead(denaq, staff.finder, name="ООО «Велоград»", source="2ГИС")
    new_lead(denaq, staff.finder, name="ООО «Автомир»", source="сайт")
    admin = signed_in("boss")
    text = admin.get(f"/reports/{name}/export.csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[-1] == ["Итого", "2"]
    assert "Project-Id-Version" not in text
    xlsx = admin.get(f"/reports/{name}/export.xlsx")
    assert xlsx.status_code == 200 and b"Project-Id-Version" not in xlsx.content
    assert "Project-Id-Version" not in admin.get(f"/reports/{name}").text


def _said(page: str) -> str:
    """What an error page says (its article, without the markup)."""
    article = page.split('class="error-page"', 1)[1].split("</article>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", article))


def _select(page: str, name: str) -> str:
    return page.split(f'name="{name}"', 1)[1].split("</select>", 1)[0]


def test_a_blocked_agents_firms_can_still_be_handed_over_from_the_screen(denaq, staff, signed_in):
    """An agent who left keeps their firms until the admin hands them over: they are listed
    (marked blocked) in the agents' table and under "From", never as a receiver."""
    firm = new_lead(denaq, staff.finder, name="ООО «Автомир»")
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign([firm], staff.igor.id)
    with denaq.system() as work:
        work.users.block(staff.igor.id)
        gone = work.users.create(username="olga", roles=["agent"], display_name="Ольга")
        work.users.block(gone.id)  # holds nothing: not listed
    admin = signed_in("boss")
    page = admin.get("/denaq/distribution").text
    agents = page.split('id="agents"', 1)[1].split("</section>", 1)[0]
    assert "Игорь" in agents and "заблокирован" in agents and "Ольга" not in agents
    assert f'href="/denaq/distribution?from={staff.igor.id}#handover"' in agents
    assert f'value="{staff.igor.id}"' in _select(page, "from")
    assert "Ольга" not in _select(page, "from")
    handover = admin.get(f"/denaq/distribution?from={staff.igor.id}").text
    assert "ООО «Автомир»" in handover
    receivers = _select(handover, "to_agent")
    assert f'value="{staff.anna.id}"' in receivers and f'value="{staff.igor.id}"' not in receivers
    done = admin.post(
        "/denaq/distribution",
        {"action": "reassign", "from_agent": str(staff.igor.id), "to_agent": str(staff.anna.id)},
    )
    assert done.status_code == 303
    with denaq.system() as work:
        assert work.parties.get(firm).owner_id == staff.anna.id
    # holding nothing now, the blocked agent is no longer listed
    assert "Игорь" not in admin.get("/denaq/distribution").text.split('id="agents"', 1)[1]


def test_junk_ids_never_deal_every_waiting_lead(denaq, staff, signed_in):
    """ "Deal in turn" without a choice deals every waiting lead; ids that are given but are
    not ids are refused (422 naming the field) and nothing is dealt."""
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(3)]
    admin = signed_in("boss")
    for junk in ("abc", "²", "99999999999999999999999", "-1"):
        refused = admin.post("/denaq/distribution", {"action": "round_robin", "ids": [junk]})
        assert refused.status_code == 422 and "лиды: " in _said(refused.text), junk
    refused = admin.post(
        "/denaq/distribution", {"action": "round_robin", "ids": [str(leads[0]), "abc"]}
    )
    assert refused.status_code == 422
    with denaq.system() as work:
        assert {work.parties.get(i).owner_id for i in leads} == {staff.finder.id}


@pytest.mark.parametrize(
    "form",
    [
        {"action": "assign", "ids": "²", "agent_id": "1"},
        {"action": "assign", "ids": "1", "agent_id": "²"},
        {"action": "assign", "ids": "99999999999999999999999", "agent_id": "1"},
        {"action": "assign", "ids": "1", "agent_id": "99999999999999999999999"},
        {"action": "reassign", "from_agent": "²", "to_agent": "1"},
        {"action": "reassign", "from_agent": "1", "to_agent": "99999999999999999999999"},
        {"action": "reassign", "from_agent": "1", "to_agent": "2", "ids": "١"},
    ],
)
def test_odd_ids_on_the_distribution_screen_are_refused_not_a_500(denaq, staff, signed_in, form):
    admin = signed_in("boss")
    refused = admin.post("/denaq/distribution", form)
    assert refused.status_code == 422 and "2^63-1" in _said(refused.text)


@pytest.mark.parametrize("value", ["²", "99999999999999999999999", "x"])
def test_an_odd_agent_in_the_address_bar_is_refused_not_a_500(denaq, staff, signed_in, value):
    page = signed_in("boss").get(f"/denaq/distribution?from={value}")
    assert page.status_code == 422 and "2^63-1" in _said(page.text)


def _data_mentions(page: str) -> list[str]:
    import json

    found = re.search(r"data-mentions='([^']*)'", page).group(1)
    return json.loads(found.replace("&#34;", '"').replace("&quot;", '"'))


def _mention_help(page: str) -> str:
    return page.split('class="meta mention-help">', 1)[1].split("</small>", 1)[0]


def test_the_note_box_offers_only_colleagues_who_can_see_the_client_and_says_so(
    denaq, staff, signed_in
):
    """Agents see their own firms only: a note on Анна's firm can tell the head, not Игорь
    nor the lead creator, so only the head is offered, the box says who hears of it, and
    a note naming all three tells the head alone."""
    from sqlalchemy import select

    from crmkit.model import Mention, Notification

    firm = new_lead(denaq, staff.finder, name="ООО «Автомир»")
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign([firm], staff.anna.id)
    anna = signed_in("anna")
    card = anna.get(f"/clients/{firm}").text
    assert _data_mentions(card) == ["boss"]
    assert "@boss" in _mention_help(card) and "igor" not in _mention_help(card)
    note = anna.post(f"/clients/{firm}/notes", {"body": "@boss @igor @finder согласуете?"})
    assert note.status_code == 303
    with denaq.system() as work:
        mentioned = set(work.session.scalars(select(Mention.user_id)))
        notified = set(
            work.session.scalars(select(Notification.user_id).where(Notification.kind == "mention"))
        )
    assert mentioned == notified == {staff.admin.id}
    # the head sees every client: every colleague who can is offered
    head = _data_mentions(signed_in("boss").get(f"/clients/{firm}").text)
    assert head == ["anna"]


def test_the_demo_seeds_notes_that_reach_the_colleague_they_name(denaq):
    """The demo's notes with an @mention are written through the note service to someone
    who can read the firm (the head): each has its mention and its notification."""
    from crmkit_denaq.demo import generate
    from sqlalchemy import func, select

    from crmkit.model import Activity, Mention, Notification

    generate(denaq, 150, 7)
    with denaq.system() as work:
        notes = list(
            work.session.scalars(
                select(Activity.id).where(Activity.kind == "note", Activity.body.like("@%"))
            )
        )
        mentions = set(work.session.scalars(select(Mention.activity_id)))
        told = work.session.scalar(
            select(func.count()).select_from(Notification).where(Notification.kind == "mention")
        )
    assert notes and set(notes) <= mentions and told == len(notes)


def test_the_demo_writes_no_call_mail_or_note_in_the_future(denaq):
    from crmkit_denaq.demo import generate
    from sqlalchemy import func, select

    from crmkit.model import Activity

    generate(denaq, 150, 7)
    with denaq.system() as work:
        future = work.session.scalar(
            select(func.count()).select_from(Activity).where(Activity.occurred_at > utcnow())
        )
    assert future == 0


def _notices(crm, user_id):
    from crmkit.model import Notification

    with crm.system() as work:
        return list(
            work.session.scalars(
                select(Notification)
                .where(Notification.user_id == user_id, Notification.kind == "reassignment")
                .order_by(Notification.id)
            )
        )


def test_a_handover_tells_the_new_agent_once_with_a_link_to_their_list(denaq, staff, signed_in):
    """Firms handed over with their contact people are one notification, not one per
    record; it says how many, in the reader's language, and leads to the agent's list."""
    firms = [new_lead(denaq, staff.finder, name=f"ООО «Фирма {n}»") for n in range(3)]
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign(firms, staff.igor.id)
    for firm in firms:
        add_person(denaq, staff.igor, firm)
    before = len(_notices(denaq, staff.anna.id))
    admin = signed_in("boss")
    done = admin.post(
        "/denaq/distribution",
        {"action": "reassign", "from_agent": str(staff.igor.id), "to_agent": str(staff.anna.id)},
    )
    assert done.status_code == 303
    notices = _notices(denaq, staff.anna.id)[before:]
    assert len(notices) == 1
    anna = signed_in("anna")
    page = anna.get("/notifications").text
    assert "Клиенты: 6" in page and "Clients" not in page
    link = f"/lists/party?owner_id={staff.anna.id}"
    assert link in page
    listed = anna.get(link).text
    assert all(f"ООО «Фирма {n}»" in listed for n in range(3))


def test_one_record_given_is_named_with_its_label_in_the_readers_language(denaq, staff, signed_in):
    firm = new_lead(denaq, staff.finder, name="ООО «Автомир»")
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign([firm], staff.anna.id)
    (notice,) = _notices(denaq, staff.anna.id)
    page = signed_in("anna").get("/notifications").text
    assert "→ Клиент: ООО «Автомир»" in page and "Client:" not in page
    assert f'value="/clients/{firm}"' in page
    assert notice.record_id == firm


def test_my_leads_says_how_many_wait_and_pages_through_all_of_them(
    denaq, staff, signed_in, monkeypatch
):
    from crmkit_denaq import screens

    monkeypatch.setattr(screens, "LEADS_SHOWN", 3)
    names = [f"ООО «Лид {n}»" for n in range(5)]
    for name in names:
        new_lead(denaq, staff.finder, name=name)
    finder = signed_in("finder")
    first = finder.get("/denaq/leads").text
    assert "Показаны 3 из 5." in first
    shown = [n for n in names if n in first]
    assert len(shown) == 3
    after = re.search(r'href="/denaq/leads\?after=([^"]+)" rel="next"', first).group(1)
    second = finder.get(f"/denaq/leads?after={after}").text
    rest = [n for n in names if n in second]
    assert sorted(shown + rest) == sorted(names) and 'rel="next"' not in second
    assert "Первая страница" in second


def test_the_client_list_names_kinds_and_stages_in_the_readers_language(denaq, staff, signed_in):
    firm = new_lead(denaq, staff.finder, name="ООО «Автомир»")
    add_person(denaq, staff.finder, firm)
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign([firm], staff.anna.id)
    add_person(denaq, staff.anna, firm, name="Пётр Сидоров")
    with denaq.acting_as(staff.anna) as work:
        work.moves.move(firm, "firm", entity="party")
    page = signed_in("boss").get("/lists/party?cols=name,kind,stage").text
    table = page.split("<tbody", 1)[1].split("</tbody>", 1)[0]
    cells = [c.strip() for c in re.findall(r"<td[^>]*>([^<]*)<", table)]
    assert {"организация", "физлицо", "Фирма"} <= set(cells)
    assert not {"organisation", "person", "Firm"} & set(cells)


def test_a_receiver_who_is_not_an_agent_is_refused_in_words_a_catalog_can_translate(denaq, staff):
    """The refusal is one message with the user as a parameter (not an f-string, which
    no catalog can hold)."""
    from crmkit.errors import ValidationFailed
    from crmkit.i18n import translate

    russian = {"user {user} is not an active agent": "пользователь {user} — не активный агент"}
    lead = new_lead(denaq, staff.finder)
    with denaq.acting_as(staff.admin) as work, pytest.raises(ValidationFailed) as refused:
        distribution(work).assign([lead], staff.finder.id)
    (text,) = refused.value.errors["agent_id"]
    assert translate(text, lambda t: russian.get(t, t)) == (
        f"пользователь {staff.finder.id} — не активный агент"
    )


def test_an_agent_records_a_call_on_the_card_and_the_weekly_statistics_count_it(
    denaq, staff, signed_in
):
    from crmkit_denaq import stats

    from crmkit.model import Activity

    firm = new_lead(denaq, staff.finder, name="ООО «Автомир»")
    other = new_lead(denaq, staff.finder, name="ООО «Велоград»")
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign([firm], staff.anna.id)
        distribution(work).assign([other], staff.igor.id)
    anna = signed_in("anna")
    card = anna.get(f"/clients/{firm}").text
    assert f'action="/clients/{firm}/calls"' in card
    saved = anna.post(
        f"/clients/{firm}/calls", {"outcome": "call back", "body": "Просили перезвонить в пятницу"}
    )
    assert saved.status_code == 303
    timeline = anna.get(f"/clients/{firm}").text
    assert "Просили перезвонить в пятницу" in timeline and "call-outcome" in timeline
    with denaq.acting_as(staff.admin) as work:
        rows = stats.activity_by_week(work, {}).rows
    assert [(r["who"], r["kind"], r["total"]) for r in rows] == [("Анна", "call", 1)]
    # refused (the reason shown) and nothing written: no outcome; someone else's firm
    refused = anna.post(f"/clients/{firm}/calls", {"outcome": "", "body": "?"})
    assert refused.status_code == 422
    assert anna.post(f"/clients/{other}/calls", {"outcome": "reached"}).status_code == 404
    with denaq.system() as work:
        calls = work.session.scalars(select(Activity).where(Activity.kind == "call")).all()
    assert [(c.party_id, c.actor_id, c.data["outcome"]) for c in calls] == [
        (firm, staff.anna.id, "call back")
    ]


def test_a_lead_creators_leads_are_not_handed_over_by_address(denaq, staff, signed_in):
    """``?from=`` names only an agent the screen offers (an active one, or a blocked one
    still holding firms): a lead creator's leads, or a blocked agent holding nothing, are
    refused naming ``from``, by the page and by the hand-over itself; nothing moves."""
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(2)]
    with denaq.system() as work:
        gone = work.users.create(username="olga", roles=["agent"], display_name="Ольга")
        work.users.block(gone.id)  # holds nothing
    admin = signed_in("boss")
    for user in (staff.finder, gone, staff.admin):
        page = admin.get(f"/denaq/distribution?from={user.id}")
        assert page.status_code == 422, user.username
        said = _said(page.text)
        assert f"откуда: пользователь {user.id} — не агент, чьи фирмы можно передать" in said
        assert "ООО «Лид 0»" not in page.text.split('id="handover"', 1)[-1]
    refused = admin.post(
        "/denaq/distribution",
        {"action": "reassign", "from_agent": str(staff.finder.id), "to_agent": str(staff.anna.id)},
    )
    assert refused.status_code == 422 and "от кого:" in _said(refused.text)
    with denaq.system() as work:
        assert {work.parties.get(i).owner_id for i in leads} == {staff.finder.id}
    with denaq.acting_as(staff.admin) as work, pytest.raises(ValidationFailed) as caught:
        distribution(work).reassign(staff.finder.id, staff.anna.id)
    assert str(caught.value.errors["from_agent"][0]) == (
        f"user {staff.finder.id} is not an agent whose firms can be handed over"
    )
    # an agent holding nothing yet is still offered, and so shown
    assert admin.get(f"/denaq/distribution?from={staff.anna.id}").status_code == 200


def test_activity_weeks_are_labelled_as_their_reader_writes_days(denaq, staff, signed_in):
    """The weekly activity's columns say which days they count, Monday to Sunday, as the
    reader writes them (``23.11–29.11`` in Russian, ``Nov 23 – 29`` in English) on the
    report's page and the statistics' chart; a download keeps the Monday's ISO date, which
    a spreadsheet reads as a date."""
    import json
    from zoneinfo import ZoneInfo

    from crmkit_denaq import stats

    assert stats.week_label(dt.date(2026, 11, 23), "ru") == "23.11–29.11"
    assert stats.week_label(dt.date(2026, 11, 23), "en") == "Nov 23\u2009–\u200929"
    assert stats.week_label(dt.date(2026, 11, 30), "en") == "Nov 30\u2009–\u2009Dec 6"
    lead = new_lead(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work:
        work.timeline.add("call", party_id=lead, subject="первый звонок")
    today = utcnow().astimezone(ZoneInfo("Europe/Moscow")).date()
    monday = today - dt.timedelta(days=today.weekday())
    russian = f"{monday:%d.%m}–{monday + dt.timedelta(days=6):%d.%m}"
    admin = signed_in("boss")
    page = admin.get("/reports/denaq_activity?weeks=2")
    assert page.status_code == 200
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", page.text.split('id="report-table"', 1)[1])
    assert russian in headers and monday.isoformat() not in page.text
    chart = json.dumps(russian)[1:-1]  # as the chart's JSON writes it
    assert chart in admin.get("/denaq/stats").text
    text = admin.get("/reports/denaq_activity/export.csv?weeks=2").content.decode("utf-8-sig")
    header = next(csv.reader(io.StringIO(text)))
    assert header[-2] == monday.isoformat() and russian not in text
    with denaq.system() as work:
        work.users.update(staff.admin.id, locale="en")
    english = signed_in("boss").get("/reports/denaq_activity?weeks=2").text
    assert stats.week_label(monday, "en") in english and monday.isoformat() not in english
