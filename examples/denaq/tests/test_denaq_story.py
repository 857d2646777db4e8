"""The whole denaq story in headless Chromium, each step as the role that does it.

A lead creator enters a lead and is warned of a duplicate; the admin gives the new lead to
an agent; the agent adds a contact person and makes it a Firm, is refused the Account
without the papers (the reason is shown), attaches them and succeeds; the account gives up
and returns to the refused firms; another firm becomes a Client; the admin hands that firm
to another agent, who sees it while the first no longer does; the statistics show the moves.
"""

from __future__ import annotations

import pytest
from denaq_fixtures import ARTIFACTS, add_person, attach, new_lead

from crmkit.testing import add_user
from crmkit.testing.web import sign_in as signed_in

pytestmark = pytest.mark.slow


def sign_in(browser, base, username):
    return signed_in(browser.new_context(viewport={"width": 1280, "height": 900}), base, username)


def move(page, stage):
    """Press the card's move button to ``stage`` (its Russian title; one that asks for a
    reason first ends in an ellipsis)."""
    page.click(f".moves button:text-is('→ {stage}'), .moves button:text-is('→ {stage}…')")
    page.wait_for_load_state()


def cells(page, who):
    """The cells of ``who``'s row in the report table."""
    row = page.locator("#report-table tbody tr", has_text=who)
    return [c.strip() for c in row.locator("td").all_inner_texts()]


def test_the_dealer_story_as_each_role(server, browser):
    crm, base = server
    boss = add_user(crm, "boss", ["admin"], display_name="Босс")
    add_user(crm, "finder", ["lead_creator"], display_name="Ксения")
    anna = add_user(crm, "anna", ["agent"], display_name="Анна")
    igor = add_user(crm, "igor", ["agent"], display_name="Игорь")
    new_lead(crm, igor, name="ЗАО «Альфа-Строй»")
    kedr = new_lead(crm, anna, name="ООО «Кедр»")  # Анна's account, about to resell
    add_person(crm, anna, kedr)
    attach(crm, anna, kedr, "contract", "requisites")
    with crm.acting_as(anna) as work:
        work.moves.move(kedr, "firm", entity="party")
        work.moves.move(kedr, "account", entity="party")

    # the lead creator: a duplicate is caught, a new company goes in
    finder = sign_in(browser, base, "finder")
    assert finder.url.endswith("/denaq/leads")
    finder.click("a[role=button]:has-text('Новый лид')")
    finder.fill('input[name="name"]', "Альфастрой")
    finder.click('form.record-form button[type="submit"]:not([name])')  # Save, not "add another"
    warning = finder.wait_for_selector("table.candidates")
    assert "ЗАО «Альфа-Строй»" in warning.inner_text()
    finder.goto(f"{base}/denaq/leads/new")
    finder.fill('input[name="name"]', "ООО «Велоград»")
    finder.fill('input[name="phone"]', "8 912 345-67-89")
    finder.fill('input[name="source"]', "выставка")
    finder.click('form.record-form button[type="submit"]:not([name])')
    finder.wait_for_selector("h1:has-text('Велоград')")
    lead = int(finder.url.rstrip("/").split("/")[-1])

    # the admin gives it to Анна
    admin = sign_in(browser, base, "boss")
    admin.goto(f"{base}/denaq/distribution")
    admin.check(f'#pool input[name="ids"][value="{lead}"]')
    admin.select_option('#pool select[name="agent_id"]', str(anna.id))
    admin.click('#pool button[value="assign"]')
    admin.wait_for_selector(".flash:has-text('1'):has-text('Анна')")

    # Анна: a contact person, Firm; Account refused without the papers, then done
    agent = sign_in(browser, base, "anna")
    agent.goto(f"{base}/boards/dealer")
    agent.click(f'.kcard[data-id="{lead}"] a')
    agent.wait_for_selector("h1:has-text('Велоград')")
    agent.click("#people a.add-person")
    agent.fill('input[name="first_name"]', "Пётр")
    agent.fill('input[name="last_name"]', "Велосипедов")
    agent.click('form.record-form button[type="submit"]')
    agent.wait_for_selector("h1:has-text('Пётр Велосипедов')")
    agent.goto(f"{base}/clients/{lead}")
    move(agent, "Фирма")
    assert agent.inner_text(".stage-line li.current") == "Фирма"
    move(agent, "Аккаунт")
    reason = agent.inner_text(".move-form .flash.error")
    assert "Подписанный дилерский договор" in reason and "Карточка предприятия" in reason
    agent.goto(f"{base}/clients/{lead}")
    for document in ("contract", "requisites"):
        agent.set_input_files(
            '#files input[type="file"]',
            {"name": f"{document}.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4"},
        )
        agent.select_option('#files select[name="document_type"]', document)
        agent.click('#files button[type="submit"]')
        agent.wait_for_load_state()
    move(agent, "Аккаунт")
    assert agent.inner_text(".stage-line li.current") == "Аккаунт"

    # the account gives up: back among the refused firms, with the reason
    move(agent, "Фирма: отказ")
    agent.select_option('select[name="field.custom.refusal_reason"]', "нет потребности")
    agent.fill('textarea[name="comment"]', "не нашли спроса в регионе")
    agent.click('.move-form button[type="submit"]')
    agent.wait_for_selector(".stage-line li.current:text-is('Фирма: отказ')")
    # another firm resells: a Client
    agent.goto(f"{base}/clients/{kedr}")
    move(agent, "Клиент")
    assert agent.inner_text(".stage-line li.current") == "Клиент"
    agent.screenshot(path=str(ARTIFACTS / "denaq-client.png"), full_page=True)

    # the admin hands Кедр to Игорь: he sees it, Анна no longer does
    admin.goto(f"{base}/denaq/distribution?from={anna.id}")
    admin.check(f'#handover input[name="ids"][value="{kedr}"]')
    admin.select_option('#handover select[name="to_agent"]', str(igor.id))
    admin.click('#handover button[value="reassign"]')
    admin.wait_for_selector(".flash:has-text('1'):has-text('Игорь')")
    other = sign_in(browser, base, "igor")
    other.goto(f"{base}/boards/dealer")
    assert other.locator(f'.kcard[data-id="{kedr}"]').count() == 1
    agent.goto(f"{base}/boards/dealer")
    assert agent.locator(f'.kcard[data-id="{kedr}"]').count() == 0
    assert agent.goto(f"{base}/clients/{kedr}").status == 404

    # the statistics show the moves, each counted for whoever made it: Кедр, handed over
    # since, still counts for Анна; the account that gave up is a move back, not an entry
    admin.goto(f"{base}/reports/denaq_funnel_by_agent")
    header = [c.strip() for c in admin.locator("#report-table thead th").all_inner_texts()]
    anna_row = dict(zip(header, cells(admin, "Анна"), strict=True))
    assert [anna_row[s] for s in ("Фирма", "Аккаунт", "Клиент", "Фирма: отказ")] == [
        "2",
        "2",
        "1",
        "0",
    ]
    assert anna_row[header[-2]] == "1"  # moved back (the column before the conversion)
    igor_row = dict(zip(header, cells(admin, "Игорь"), strict=True))
    assert [igor_row[s] for s in ("Лид", "Аккаунт", "Клиент")] == ["1", "0", "0"]  # his own lead
    admin.goto(f"{base}/denaq/stats")
    admin.wait_for_function("Object.keys(window.Chart.instances).length >= 5")
    admin.screenshot(path=str(ARTIFACTS / "denaq-stats.png"), full_page=True)
    assert boss.id  # every step above was made through the pages, as its role
