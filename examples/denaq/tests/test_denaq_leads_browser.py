"""The lead creator's New lead form in headless Chromium, on a phone (390 px wide) and a
laptop (1366x768).

A company already in the base is refused as a likely duplicate: the warning and its table
fit the phone's width (the table scrolls in its own box to show the stage and the owner),
the page itself never slides sideways under the thumb; on the laptop the refusal is said
at the top of the page, a link away from the candidates below the form.
"""

from __future__ import annotations

import pytest
from denaq_fixtures import ARTIFACTS, new_lead

from crmkit.testing import add_user
from crmkit.testing.web import sign_in
from crmkit.web import i18n

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}


def test_a_duplicate_warning_fits_a_phone(server, browser):
    crm, base = server
    add_user(crm, "finder", ["lead_creator"], display_name="Ксения")
    anna = add_user(crm, "anna", ["agent"], display_name="Анна")
    new_lead(crm, anna, name="ООО «Мебельсервис-Уфа»")

    page = sign_in(browser.new_context(viewport=PHONE), base, "finder")
    page.goto(f"{base}/denaq/leads/new")
    page.fill('input[name="name"]', "Мебель-Сервис Уфа")
    page.click('form.record-form button[type="submit"]:not([name])')
    warning = page.wait_for_selector("table.candidates")
    assert "ООО «Мебельсервис-Уфа»" in warning.inner_text()
    page.screenshot(path=str(ARTIFACTS / "denaq-duplicate-phone.png"), full_page=True)
    assert page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    # the stage and the owner are a swipe of the table away, within the screen's width
    stage = page.locator("table.candidates tbody td").nth(3)
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert stage.inner_text() == "Лид"


def test_a_refused_duplicate_is_said_where_the_lead_creator_looks(server, browser):
    """On a laptop the form is taller than the window: after Save, the page says at once
    (at its top) that the company may already be in the base, and leads to the candidates
    and the button that creates the lead anyway."""
    crm, base = server
    finder = add_user(crm, "finder2", ["lead_creator"], display_name="Павел")
    igor = add_user(crm, "igor", ["agent"], display_name="Игорь")
    new_lead(crm, igor, name="ЗАО «Экоцентр-Тула»")

    page = sign_in(browser.new_context(viewport=LAPTOP), base, "finder2")
    page.goto(f"{base}/denaq/leads/new")
    page.fill('input[name="name"]', "Эко-Центр Тула")
    page.click('form.record-form button[type="submit"]:not([name])')
    page.wait_for_selector("table.candidates")
    alert = page.locator("h1 ~ .flash.error[role=alert]").first
    box = alert.bounding_box()
    assert box is not None and box["y"] + box["height"] <= LAPTOP["height"]
    with crm.system() as work:
        reader = i18n.locale_of(crm, work.users.get(finder.id))
    with i18n.activate(reader):
        said = i18n.gettext("This client may already exist: see the likely duplicates below.")
    assert alert.inner_text() == said
    alert.locator("a").click()
    button = page.locator('button[name="confirm_duplicates"]').bounding_box()
    assert button is not None and button["y"] >= 0 and button["y"] <= LAPTOP["height"]
    assert "ЗАО «Экоцентр-Тула»" in page.locator("table.candidates").inner_text()
