"""The lead creator's New lead form in headless Chromium, on a phone (390 px wide).

A company already in the base is refused as a likely duplicate: the warning and its table
fit the phone's width (the table scrolls in its own box to show the stage and the owner),
the page itself never slides sideways under the thumb.
"""

from __future__ import annotations

import pytest
from denaq_fixtures import ARTIFACTS, new_lead

from crmkit.testing import add_user
from crmkit.testing.web import sign_in

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}


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
