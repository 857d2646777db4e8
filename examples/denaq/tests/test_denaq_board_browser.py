"""The dealers' board in headless Chromium: a firm dropped on «Фирма: отказ» asks for the
reason in a list (and takes a comment), then moves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from crmkit_denaq import plugin as denaq_plugin
from crmkit_denaq.pipeline import REFUSAL_REASONS
from denaq_fixtures import add_person, new_lead

from crmkit.testing import add_user, make_crm
from crmkit.testing.web import chromium, served
from crmkit.testing.web import sign_in as signed_in

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from crmkit.web.app import create_app

    crm = make_crm([denaq_plugin], directory=tmp_path_factory.mktemp("denaq-board"))
    with served(create_app(crm)) as base:
        yield crm, base
    crm.close()


def _drag(page, source, target):
    start, end = source.bounding_box(), target.bounding_box()
    x0, y0 = start["x"] + start["width"] / 2, start["y"] + start["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 16):
        page.mouse.move(
            x0 + (end["x"] + 40 - x0) * step / 15, y0 + (end["y"] + 20 - y0) * step / 15
        )
        time.sleep(0.03)
    page.mouse.up()


def test_a_card_dropped_on_the_refused_firms_asks_for_the_reason_in_a_list(server):
    crm, base = server
    anna = add_user(crm, "anna", ["agent"], display_name="Анна")
    firm = new_lead(crm, anna, name="ООО «Велоград»")
    add_person(crm, anna, firm)
    with crm.acting_as(anna) as work:
        work.moves.move(firm, "firm", entity="party")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = signed_in(browser.new_context(viewport={"width": 1400, "height": 900}), base, "anna")
        page.goto(f"{base}/boards/dealer")
        card = page.locator(f'.kcard[data-id="{firm}"]')
        _drag(page, card, page.locator('ul.cards[data-stage="refused"]'))
        page.wait_for_selector("#move-form[open]")
        reason = page.locator('#move-form select[name="custom.refusal_reason"]')
        offered = reason.locator("option").all_inner_texts()
        assert offered == ["—", *REFUSAL_REASONS]
        assert "Причина отказа" in page.inner_text("#move-form .inputs")
        reason.select_option("другое")
        page.fill('#move-form textarea[name="comment"]', "ждут нового директора")
        page.screenshot(path=str(ARTIFACTS / "denaq-board-refusal.png"))
        page.click('#move-form button[value="move"]')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with crm.acting_as(anna) as work:
                record = work.parties.get(firm)
            if record.stage == "refused":
                break
            time.sleep(0.2)
    assert (record.stage, record.custom.get("refusal_reason")) == ("refused", "другое")
    with crm.acting_as(anna) as work:
        assert work.moves.history(record)[-1].comment == "ждут нового директора"
