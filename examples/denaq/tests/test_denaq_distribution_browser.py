"""The admin's distribution screen in headless Chromium, on a laptop's screen (1366x768).

With a few hundred leads waiting, or an agent holding hundreds of firms, the admin chooses
whom to give them to and presses the button without scrolling past every row first; the
firms of an agent can all be ticked at once; a forgotten agent is asked for on the page,
the ticks kept, instead of a page that only says what was missing.
"""

from __future__ import annotations

import pytest
from denaq_fixtures import ARTIFACTS

from crmkit.testing import add_user
from crmkit.testing.web import sign_in as signed_in

pytestmark = pytest.mark.slow
LAPTOP = {"width": 1366, "height": 768}


def sign_in(browser, base, username):
    return signed_in(browser.new_context(viewport=LAPTOP), base, username)


def on_screen(page, selector):
    """Whether the element is within the window as the page stands (no scrolling)."""
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP["height"]


def leads(crm, who, count, prefix):
    with crm.acting_as(who) as work:
        return [
            work.parties.create(name=f"{prefix} {n:03d}", confirm_duplicates=True).id
            for n in range(count)
        ]


def test_the_admin_deals_and_hands_over_without_scrolling_past_every_row(server, browser):
    crm, base = server
    add_user(crm, "boss", ["admin"], display_name="Босс")
    finder = add_user(crm, "finder", ["lead_creator"], display_name="Ксения")
    anna = add_user(crm, "anna", ["agent"], display_name="Анна")
    igor = add_user(crm, "igor", ["agent"], display_name="Игорь")
    waiting = leads(crm, finder, 60, "Ждёт")
    held = leads(crm, anna, 60, "Фирма Анны")

    admin = sign_in(browser, base, "boss")
    admin.goto(f"{base}/denaq/distribution")
    assert on_screen(admin, '#pool select[name="agent_id"]')
    assert on_screen(admin, '#pool button[value="assign"]')
    admin.screenshot(path=str(ARTIFACTS / "denaq-distribution.png"))

    # ticked, but no agent chosen: the page asks for one and keeps the ticks
    for lead in waiting[:3]:
        admin.check(f'#pool input[name="ids"][value="{lead}"]')
    admin.click('#pool button[value="assign"]')
    assert admin.url.endswith("/denaq/distribution")
    assert admin.locator("h1").inner_text() == "Распределение"
    assert admin.evaluate(
        "document.querySelector('#pool select[name=agent_id]').validity.valueMissing"
    )
    assert admin.locator('#pool input[name="ids"]:checked').count() == 3
    admin.select_option('#pool select[name="agent_id"]', str(anna.id))
    admin.click('#pool button[value="assign"]')
    admin.wait_for_selector(".flash:has-text('3'):has-text('Анна')")

    # dealing in turn needs no agent
    admin.check(f'#pool input[name="ids"][value="{waiting[3]}"]')
    admin.click('#pool button[value="round_robin"]')
    admin.wait_for_selector(".flash:has-text('1'):has-text('Игорь')")

    # Анна's firms: the receiver and the button on screen, every firm ticked at once
    admin.goto(f"{base}/denaq/distribution?from={anna.id}#handover")
    assert on_screen(admin, '#handover select[name="to_agent"]')
    assert on_screen(admin, '#handover button[value="reassign"]')
    admin.check('#handover thead input[type="checkbox"]')
    ticked = admin.locator('#handover input[name="ids"]:checked')
    assert ticked.count() == admin.locator('#handover input[name="ids"]').count() >= len(held)
    admin.select_option('#handover select[name="to_agent"]', str(igor.id))
    admin.screenshot(path=str(ARTIFACTS / "denaq-handover.png"))
    admin.click('#handover button[value="reassign"]')
    admin.wait_for_selector(".flash:has-text('Игорь')")
    with crm.acting_as(igor) as work:
        assert {p.id for p in work.parties.list(filters={"owner_id": igor.id}, limit=500)} >= set(
            held
        )


def test_on_a_phone_the_agents_table_does_not_widen_the_page(server, browser):
    """At 390 px the agents' table (a column per stage) scrolls in its own box, the page
    itself never scrolls sideways, and each row's «Hand over firms» link is on the screen
    as the page opens, not past its right edge behind a sideways scroll."""
    crm, base = server
    add_user(crm, "chief", ["admin"], display_name="Начальник")
    add_user(crm, "vasilisa", ["agent"], display_name="Василиса Премудрая-Заболоцкая")
    phone = {"width": 390, "height": 844}
    admin = signed_in(browser.new_context(viewport=phone), base, "chief")
    admin.goto(f"{base}/denaq/distribution")
    admin.screenshot(path=str(ARTIFACTS / "denaq-distribution-phone.png"), full_page=True)
    assert admin.evaluate("document.documentElement.scrollWidth") <= phone["width"]
    wrap = admin.locator("#agents .table-wrap")
    box = wrap.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= phone["width"]
    link = admin.locator("#agents a", has_text="Передать фирмы").last
    seen = link.bounding_box()
    assert seen["x"] >= 0 and seen["x"] + seen["width"] <= phone["width"]
    link.click()
    admin.wait_for_url("**from=*")
