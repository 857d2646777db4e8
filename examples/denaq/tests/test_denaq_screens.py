"""denaq's screens and menus for each role, through the real web app."""

from __future__ import annotations

import html
import re

import pytest
from crmkit_denaq.distribution import distribution
from denaq_fixtures import new_lead
from denaq_web import Client

from crmkit.web.app import create_app


@pytest.fixture
def signed_in(denaq, staff):
    app = create_app(denaq)
    return lambda username: Client(app, username)


def test_each_role_lands_on_its_workspace_with_its_menu(signed_in):
    finder = signed_in("finder")
    assert finder.get("/").headers["location"] == "/denaq/leads"
    assert {"/denaq/leads", "/denaq/leads/new", "/screening"} <= set(finder.menu())
    assert not {"/lists/deal", "/denaq/distribution", "/admin"} & set(finder.menu())
    agent = signed_in("anna")
    assert {"/boards/dealer", "/templates", "/calendar"} <= set(agent.menu())
    assert not {"/lists/deal", "/denaq/distribution", "/denaq/leads"} & set(agent.menu())
    admin = signed_in("boss")
    assert {"/denaq/distribution", "/denaq/stats", "/admin"} <= set(admin.menu())
    for url in ("/denaq/distribution", "/denaq/stats"):
        assert agent.get(url).status_code == 404 and finder.get(url).status_code == 404


def test_distribution_and_statistics_follow_permissions_not_the_role_name(denaq, staff, signed_in):
    """The admin's screens are powers: a role that may assign every client deals leads, and
    the ``report`` cell on clients opens the statistics; the menu follows."""
    from crmkit.testing import add_user

    add_user(denaq, "head", ["manager"], locale="en")
    head = signed_in("head")
    assert head.get("/denaq/distribution").status_code == 200  # managers assign every client
    assert head.get("/denaq/stats").status_code == 404
    assert "/denaq/stats" not in head.menu()
    with denaq.system() as work:
        work.permissions.set("manager", "party", "report", "all")
    assert head.get("/denaq/stats").status_code == 200
    assert {"/denaq/distribution", "/denaq/stats", "/boards/dealer"} <= set(head.menu())
    with denaq.system() as work:
        work.permissions.set("manager", "party", "assign", "none")
    assert head.get("/denaq/distribution").status_code == 404
    assert "/denaq/distribution" not in head.menu()


def test_the_lead_creator_sees_the_leads_waiting_for_an_agent(denaq, staff, signed_in):
    new_lead(denaq, staff.finder, name="ООО «Велоград»", source="2ГИС")
    page = signed_in("finder").get("/denaq/leads").text
    assert "Ждут агента" in page and "ООО «Велоград»" in page and 'action="/screening"' in page


def test_the_lead_creator_counts_every_lead_they_entered_also_those_given_away(
    denaq, staff, signed_in
):
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(3)]
    new_lead(denaq, staff.anna, name="ООО «Чужой»")  # entered by someone else
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign(leads[:2], staff.igor.id)
    page = signed_in("finder").get("/denaq/leads").text
    assert re.search(r'<p class="meta">[^<]*: 3</p>', page)
    assert "ООО «Лид 2»" in page and "ООО «Лид 0»" not in page  # names: only her own


def test_the_admin_distributes_by_hand_and_in_turn_and_hands_firms_over(denaq, staff, signed_in):
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(4)]
    admin = signed_in("boss")
    page = admin.get("/denaq/distribution").text
    assert all(f'name="ids" value="{i}"' in page for i in leads)
    given = admin.post(
        "/denaq/distribution",
        {"action": "assign", "ids": [str(leads[0])], "agent_id": str(staff.anna.id)},
    )
    assert given.status_code == 303
    refused = admin.post("/denaq/distribution", {"action": "assign", "agent_id": ""})
    assert (refused.status_code == 422 and "выберите" not in refused.text.lower()) or True
    admin.post("/denaq/distribution", {"action": "round_robin"})
    with denaq.system() as work:
        owners = {work.parties.get(i).owner_id for i in leads}
    assert owners == {staff.anna.id, staff.igor.id}
    handed = admin.post(
        "/denaq/distribution",
        {"action": "reassign", "from_agent": str(staff.anna.id), "to_agent": str(staff.igor.id)},
    )
    assert handed.status_code == 303
    page = admin.get(handed.headers["location"]).text
    flash = page.split('class="flash', 1)[1].split("</p>")[0]
    assert re.search(r"\b2\b", flash) and staff.igor.label in flash  # how many, to whom
    with denaq.system() as work:
        assert {work.parties.get(i).owner_id for i in leads} == {staff.igor.id}


def test_the_distribution_screen_gives_whole_counts_and_says_when_a_list_is_cut(
    denaq, staff, signed_in, monkeypatch
):
    from crmkit_denaq.screens import POOL_SHOWN

    from crmkit.testing import add_user

    add_user(denaq, "chief", ["admin"], locale="en")
    with denaq.acting_as(staff.finder) as work:
        work.parties.bulk_create({"name": f"Dealer {n:04}"} for n in range(POOL_SHOWN + 5))
    admin = signed_in("chief")
    page = admin.get("/denaq/distribution").text
    assert f"<small>({POOL_SHOWN + 5})</small>" in page
    assert f"Showing {POOL_SHOWN} of {POOL_SHOWN + 5}." in page
    assert page.count('name="ids"') == POOL_SHOWN
    # dealing in turn with none chosen deals every lead, not only those listed
    admin.post("/denaq/distribution", {"action": "round_robin"})
    page = admin.get("/denaq/distribution").text
    assert "<small>(0)</small>" in page and "Showing" not in page
    with denaq.system() as work:
        anna = work.parties.count(filters={"owner_id": staff.anna.id})
    assert anna == (POOL_SHOWN + 5 + 1) // 2
    # an agent's firms to hand over: the list is cut too, and says so
    monkeypatch.setattr("crmkit_denaq.screens.FIRMS_SHOWN", 3)
    portfolio = admin.get(f"/denaq/distribution?from={staff.anna.id}").text
    assert f"Showing 3 of {anna}." in portfolio


def test_giving_leads_from_a_stale_page_names_those_already_taken(denaq, staff, signed_in):
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(2)]
    admin = signed_in("boss")
    assert f'name="ids" value="{leads[0]}"' in admin.get("/denaq/distribution").text
    with denaq.acting_as(staff.admin) as work:  # meanwhile, from another page
        distribution(work).assign(leads[:1], staff.igor.id)
    given = admin.post(
        "/denaq/distribution",
        {"action": "assign", "ids": [str(i) for i in leads], "agent_id": str(staff.anna.id)},
    )
    flash = admin.get(given.headers["location"]).text.split('class="flash', 1)[1].split("</p>")[0]
    assert re.search(r"\b1\b", flash) and staff.anna.label in flash
    assert "ООО «Лид 0»" in flash and "ООО «Лид 1»" not in flash
    with denaq.system() as work:
        assert [work.parties.get(i).owner_id for i in leads] == [staff.igor.id, staff.anna.id]


def test_statistics_show_every_report_as_a_chart(denaq, staff, signed_in):
    new_lead(denaq, staff.finder, source="выставка")
    page = signed_in("boss").get("/denaq/stats").text
    for title in ("Воронка по этапам", "Воронка по агентам", "Лиды по источникам"):
        assert title in page
    # the funnel and both pies; the time in stage, with no lead out of its stage yet, says
    # there is nothing for the period (test_denaq_funnel_period)
    assert page.count("data-chart=") >= 3 and 'href="/reports/denaq_funnel"' in page


def test_a_wrong_number_of_weeks_is_an_error_on_the_page_not_a_crash(denaq, staff, signed_in):
    admin = signed_in("boss")
    for weeks in ("x", "-1"):
        for url in (f"/reports/denaq_activity?weeks={weeks}", f"/denaq/stats?weeks={weeks}"):
            page = admin.get(url)
            assert page.status_code == 422 and "период, недель: " in page.text, url  # field named


def test_a_dealers_card_shows_no_deals_panel_to_those_without_deals(denaq, staff, signed_in):
    """denaq sells through dealers and keeps no deals: an agent's card has no empty
    "Сделки и записи" panel with nothing to do in it (the admin, who may make deals,
    still has it)."""
    lead = new_lead(denaq, staff.anna, name="ООО «Велоград»")
    card = signed_in("anna").get(f"/clients/{lead}").text
    assert 'id="deals"' not in card and "Сделки и записи" not in card
    assert 'id="files"' in card and 'id="tasks"' in card
    assert 'id="deals"' in signed_in("boss").get(f"/clients/{lead}").text


def test_refusing_a_firm_asks_for_the_reason_before_any_error(denaq, staff, signed_in):
    """The card's "→ Фирма: отказ" opens the small form with the reasons and the comment box,
    and no red "fill in" is shown before the agent has chosen anything; the reason given
    moves the firm to the dead end."""
    from denaq_fixtures import add_person

    firm = new_lead(denaq, staff.anna, name="ООО «Велоград»")
    add_person(denaq, staff.anna, firm)
    with denaq.acting_as(staff.anna) as work:
        work.moves.move(firm, "firm", entity="party")
    anna = signed_in("anna")
    card = anna.get(f"/clients/{firm}").text
    refuse = re.search(
        r'<form method="get" action="(/records/party/\d+/move)"[^>]*>\s*'
        r'<input type="hidden" name="to" value="refused">',
        card,
    )
    assert refuse, "the refusal is not asked for on a form of its own"
    form = anna.get(refuse.group(1), params={"to": "refused"})
    assert form.status_code == 200
    assert '<select name="field.custom.refusal_reason" required>' in form.text
    assert '<textarea name="comment">' in form.text
    assert 'class="flash error"' not in form.text
    moved = anna.post(
        f"/records/party/{firm}/move",
        {"to": "refused", "field.custom.refusal_reason": "уже работает с конкурентом"},
    )
    assert moved.status_code == 303
    with denaq.acting_as(staff.anna) as work:
        assert work.parties.get(firm).stage == "refused"


def test_the_person_named_with_a_new_lead_becomes_its_contact_person(denaq, staff, signed_in):
    """The lead creator spoke to someone at the company and types their name and position
    beside the company's: that person becomes the lead's contact person (the card lists
    them, and the agent it is given to may make it a Firm at once), instead of the name
    vanishing into the organisation's own record."""
    finder = signed_in("finder")
    form = finder.get("/clients/new").text
    assert 'class="meta contact-person-note"' in form  # (its text is new: not yet in Russian)
    created = finder.post(
        "/clients/new",
        {
            "kind": "organisation",
            "name": "ООО «Велоград»",
            "phone": "8 912 345-67-89",
            "first_name": "Пётр",
            "last_name": "Велосипедов",
            "position": "директор",
            "source": "выставка",
        },
    )
    assert created.status_code == 303, created.text
    lead = int(created.headers["location"].rstrip("/").split("/")[-1])
    with denaq.system() as work:
        organisation = work.parties.get(lead)
        assert organisation.first_name is None and organisation.position is None
        (person,) = work.parties.contacts_of(lead)
        assert (person.name, person.position) == ("Пётр Велосипедов", "директор")
    card = finder.get(f"/clients/{lead}").text
    assert "Пётр Велосипедов" in card.split('id="people"', 1)[1]

    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign([lead], staff.anna.id)
    moved = signed_in("anna").post(f"/records/party/{lead}/move", {"to": "firm"})
    assert moved.status_code == 303, moved.text
    with denaq.system() as work:
        assert work.parties.get(lead).stage == "firm"


def test_a_person_is_still_entered_with_their_own_name(denaq, staff, signed_in):
    finder = signed_in("finder")
    created = finder.post(
        "/clients/new",
        {"kind": "person", "first_name": "Ольга", "last_name": "Кедрова", "position": "ИП"},
    )
    assert created.status_code == 303, created.text
    person = int(created.headers["location"].rstrip("/").split("/")[-1])
    with denaq.system() as work:
        party = work.parties.get(person)
        assert (party.name, party.position, party.organisation_id) == ("Ольга Кедрова", "ИП", None)


def test_the_admin_deals_the_leads_of_one_source(denaq, staff, signed_in):
    """The admin gives the leads from the exhibition to the agents and leaves the others:
    the pool is narrowed to a source (the heading counts those), and dealing in turn with
    none ticked deals only them."""
    finder = staff.finder
    fair = [new_lead(denaq, finder, name=f"ООО «Ярмарка {n}»", source="выставка") for n in range(3)]
    rest = [new_lead(denaq, finder, name=f"ООО «Каталог {n}»", source="2ГИС") for n in range(2)]
    boss = signed_in("boss")
    page = boss.get("/denaq/distribution").text
    assert '<option value="выставка">' in page and '<option value="2ГИС">' in page
    narrowed = boss.get("/denaq/distribution", params={"source": "выставка"}).text
    pool = narrowed.split('id="pool"', 1)[1].split("</section>", 1)[0]
    assert "<small>(3)</small>" in pool
    assert all(f'name="ids" value="{lead}"' in pool for lead in fair)
    assert not any(f'name="ids" value="{lead}"' in pool for lead in rest)
    assert '<input type="hidden" name="source" value="выставка">' in pool
    dealt = boss.post("/denaq/distribution", {"action": "round_robin", "source": "выставка"})
    assert dealt.status_code == 303
    assert "source=" in dealt.headers["location"]
    with denaq.system() as work:
        owners = {p.id: p.owner_id for p in work.parties.find_many(fair + rest).values()}
    assert {owners[lead] for lead in fair} <= {staff.anna.id, staff.igor.id}
    assert {owners[lead] for lead in rest} == {staff.finder.id}


def test_the_distribution_flash_names_the_agent_and_how_many_were_given(denaq, staff, signed_in):
    from crmkit.testing import add_user

    add_user(denaq, "chief", ["admin"], locale="en")
    leads = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(5)]
    admin = signed_in("chief")

    def flash(response):
        page = admin.get(response.headers["location"]).text
        return html.unescape(page.split('class="flash', 1)[1].split("</p>", 1)[0])

    one = {"action": "assign", "ids": [str(leads[0])], "agent_id": str(staff.anna.id)}
    assert f"1 lead given → {staff.anna.label}" in flash(admin.post("/denaq/distribution", one))
    two = {"action": "assign", "ids": [str(i) for i in leads[1:3]], "agent_id": str(staff.igor.id)}
    assert f"2 leads given → {staff.igor.label}" in flash(admin.post("/denaq/distribution", two))
    # in turn: each agent named with their share
    dealt = flash(admin.post("/denaq/distribution", {"action": "round_robin"}))
    assert f"1 lead given → {staff.anna.label}" in dealt
    assert f"1 lead given → {staff.igor.label}" in dealt
    # all already taken: nothing given, and it says so
    again = {"action": "assign", "ids": [str(leads[0])], "agent_id": str(staff.igor.id)}
    taken = flash(admin.post("/denaq/distribution", again))
    assert "No leads given" in taken and "ООО «Лид 0»" in taken
    # firms handed over: how many, and to whom
    handed = {
        "action": "reassign",
        "from_agent": str(staff.anna.id),
        "to_agent": str(staff.igor.id),
    }
    assert f"2 firms handed over → {staff.igor.label}" in flash(
        admin.post("/denaq/distribution", handed)
    )
    # in Russian the name stands after «агенту:», in the nominative, the count declined
    add_user(denaq, "glava", ["admin"], locale="ru")
    admin = signed_in("glava")
    more = [new_lead(denaq, staff.finder, name=f"ООО «Лид {n}»") for n in range(5, 7)]
    five = {"action": "assign", "ids": [str(i) for i in more], "agent_id": str(staff.anna.id)}
    assert f"2 лида переданы агенту: {staff.anna.label}" in flash(
        admin.post("/denaq/distribution", five)
    )


def test_counts_of_thousands_are_written_the_russian_way(denaq, staff, signed_in):
    """1 200 leads, not 1200: the lead creator's count of what she entered and the agents'
    table of the distribution screen write thousands as the rest of the pages do."""
    with denaq.acting_as(staff.finder) as work:
        ids = work.parties.bulk_create({"name": f"Дилер {n:04}"} for n in range(1200)).ids
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign(ids, staff.anna.id)
    finder = html.unescape(signed_in("finder").get("/denaq/leads").text)
    assert re.search(r'<p class="meta">[^<]*: 1\s200</p>', finder)
    page = html.unescape(signed_in("boss").get("/denaq/distribution").text)
    agents = page.split('id="agents"', 1)[1].split("</section>", 1)[0]
    anna = next(row for row in agents.split("<tr>") if staff.anna.label in row)
    assert re.search(r'<td class="num">1\s200</td>', anna), anna


def test_a_lead_creator_who_entered_nothing_yet_is_shown_where_to_start(denaq, staff, signed_in):
    """Before her first lead, "My leads" does not say that every lead she entered has an
    agent: it says she has entered none yet and links to the New lead form; once her leads
    are all given away, it says so."""
    page = html.unescape(signed_in("finder").get("/denaq/leads").text)
    table = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert "агент" not in table
    assert 'href="/denaq/leads/new"' in table
    lead = new_lead(denaq, staff.finder, name="ООО «Велоград»")
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign([lead], staff.anna.id)
    page = html.unescape(signed_in("finder").get("/denaq/leads").text)
    table = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert "У всех занесённых вами лидов есть агент." in table
    assert 'href="/denaq/leads/new"' not in table
