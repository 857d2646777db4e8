"""End-to-end stories in headless Chromium (Debian's package, driven by Playwright).

The server is uvicorn on a free port of 127.0.0.1, serving a fresh SQLite deployment in a
thread of the test process.  Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from crmkit import InboundMessage, hookimpl
from crmkit.testing import add_user, factories, make_crm
from crmkit.testing.web import chromium, served, sign_in
from tests.web.conftest import ChatChannel

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from crmkit.web.app import create_app

    crm = make_crm(directory=tmp_path_factory.mktemp("e2e"), plugins=[ChatChannel()])
    with served(create_app(crm)) as base:
        yield crm, base
    crm.close()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as launched:
        yield launched


def test_client_note_mention_reaches_the_colleagues_bell(server, browser):
    crm, base = server
    add_user(crm, "ivan", ["agent"], display_name="Иван")
    add_user(crm, "maria", ["manager"], display_name="Мария")
    ivan = sign_in(browser.new_context(), base, "ivan")
    maria = sign_in(browser.new_context(), base, "maria")
    assert maria.locator("#unread").is_hidden()

    ivan.goto(f"{base}/clients/new")
    ivan.fill('input[name="name"]', "ООО «Северный ветер»")
    ivan.fill('input[name="phone"]', "8 916 123-45-67")
    # a second submit while the first post is on its way (a double click) is dropped
    sent = ivan.evaluate(
        """() => {
            const form = document.querySelector("form.record-form");
            const submit = () => form.dispatchEvent(
                new SubmitEvent("submit", {bubbles: true, cancelable: true}));
            const answers = [submit(), submit()];
            delete form.dataset.sent;  // (no post left: synthetic events send nothing)
            return answers;
        }"""
    )
    assert sent == [True, False]
    ivan.click('form.record-form button[type="submit"]')
    ivan.wait_for_selector("h1:has-text('Северный ветер')")
    assert "+79161234567" in ivan.inner_html("#contacts")
    with crm.system() as work:
        assert work.parties.count(search="Северный ветер") == 1

    ivan.fill('textarea[name="body"]', "Перезвонить директору, @mar")
    ivan.click(".mention-menu li:has-text('@maria')")  # the suggestion completes the name
    ivan.click("button:has-text('Добавить заметку')")
    ivan.wait_for_selector("#timeline .entry.note:has-text('@maria')")

    maria.wait_for_selector("#unread:not([hidden])", timeout=10000)  # pushed over SSE
    assert maria.inner_text("#unread") == "1"
    ivan.screenshot(path=str(ARTIFACTS / "client-card.png"), full_page=True)
    maria.screenshot(path=str(ARTIFACTS / "bell.png"))


def test_a_new_conversation_appears_in_the_open_contact_center(server, browser):
    crm, base = server
    add_user(crm, "svetlana", ["agent"], display_name="Светлана")
    page = sign_in(browser.new_context(), base, "svetlana")
    page.goto(f"{base}/inbox")
    page.evaluate("window.stillTheSamePage = true")
    page.wait_for_selector("body[data-live-ready]")  # the server now listens for this tab
    assert "Лидия Петрова" not in page.inner_text("[data-conversations]")
    unassigned = int(page.inner_text("[data-count=unassigned]"))

    with crm.system() as work:  # a message arrives while the screen is open
        work.channels.ingest(
            InboundMessage(
                channel="chat", external_id="live-1", sender="lidia@example.ru",
                body="Когда будет готов заказ?", sender_name="Лидия Петрова", subject="Заказ",
            )
        )  # fmt: skip
    # pushed over server-sent events: the list refreshes without a reload of the page
    page.wait_for_selector("[data-conversations] li:has-text('Лидия Петрова')", timeout=10000)
    assert page.evaluate("window.stillTheSamePage") is True
    # the tab counts follow the list: one more unassigned conversation
    assert int(page.inner_text("[data-count=unassigned]")) == unassigned + 1
    page.screenshot(path=str(ARTIFACTS / "inbox-live.png"))


def test_a_laptop_agent_acts_and_fills_a_template_without_scrolling_or_losing_text(server, browser):
    """On a 1366x768 laptop the assign, snooze and close buttons were under the thread and
    the reply (off the screen once the client wrote twice); a template chosen for the reply
    showed nothing.  Now the actions sit under the conversation's header, and the template
    is filled in where the cursor is, keeping what was typed, without reloading the page."""
    crm, base = server
    add_user(crm, "nina", ["agent"], display_name="Нина")
    with crm.system() as work:
        for n, text in enumerate(["Добрый день!\nНужны шины R16 на 4 машины.", "Счёт можно?"]):
            work.channels.ingest(
                InboundMessage(
                    channel="chat", external_id=f"laptop-{n}", sender="oleg@tyres.ru",
                    body=text + "\n" * 6, sender_name="Олег Шинин", subject="Шины",
                )
            )  # fmt: skip
        work.message_templates.create(
            {"name": "Цены", "channel": "chat", "subject": "Цены",
             "body": "{{ party.name }}, цены во вложении."}
        )  # fmt: skip
    page = sign_in(browser.new_context(viewport={"width": 1366, "height": 768}), base, "nina")
    page.goto(f"{base}/inbox")
    page.click("[data-conversations] >> text=Олег Шинин")
    page.wait_for_load_state()
    for action in ("assign", "snooze", "close"):
        box = page.locator(f'[data-action="{action}"]').bounding_box()
        assert box is not None and box["y"] + box["height"] <= 768, action

    page.click('[data-action="lead"]')  # the template fills in the client's name
    page.wait_for_load_state()
    page.evaluate("window.stillTheSamePage = true")
    page.fill('textarea[name="body"]', "Олег, ")
    page.select_option('select[name="template"]', label="Цены")
    page.wait_for_function(
        "document.querySelector('textarea[name=body]').value.includes('цены во вложении')"
    )
    assert page.input_value('textarea[name="body"]') == "Олег, Олег Шинин, цены во вложении."
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=str(ARTIFACTS / "inbox-laptop.png"))


def test_a_phone_opens_a_conversation_at_its_top_and_goes_back_to_the_list(server, browser):
    """On a phone the chosen conversation came under the whole list (fifty conversations
    to scroll past) and a long subject widened the page past the screen.  Now the chosen
    conversation stands alone, nothing is wider than the screen, and a link leads back."""
    crm, base = server
    add_user(crm, "vera", ["agent"], display_name="Вера")
    with crm.system() as work:
        for n in range(8):
            work.channels.ingest(
                InboundMessage(
                    channel="chat", external_id=f"phone-{n}", sender=f"client{n}@sklad.ru",
                    body="Когда отгрузка?", sender_name=f"Клиент {n}",
                    subject="Отгрузка_по_договору_поставки_№2026/11/24-ОПТ-000017_без_пробелов",
                )
            )  # fmt: skip
    page = sign_in(browser.new_context(viewport={"width": 390, "height": 844}), base, "vera")
    page.goto(f"{base}/inbox")
    page.click("[data-conversations] >> text=Клиент 7")
    page.wait_for_load_state()
    heading = page.locator(".conversation-view h2").bounding_box()
    assert heading is not None and heading["y"] < 300
    assert page.locator("[data-conversations]").is_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "inbox-phone.png"))
    page.click("[data-back]")
    page.wait_for_load_state()
    assert page.locator("[data-conversations]").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_laptop_shows_a_screenful_of_conversations(server, browser):
    """Each conversation took four or five lines (name, unread count, channel and time,
    subject, client): a 1366x768 laptop showed five.  Name, count and time now share a
    line, so at least eight show without scrolling."""
    crm, base = server
    add_user(crm, "zoya", ["agent"], display_name="Зоя")
    with crm.system() as work:
        for n in range(12):
            work.channels.ingest(
                InboundMessage(
                    channel="chat", external_id=f"many-{n}", sender=f"buyer{n}@opt.ru",
                    body="Цена?", sender_name=f"Покупатель {n}", subject="Цена на шины",
                )
            )  # fmt: skip
    page = sign_in(browser.new_context(viewport={"width": 1366, "height": 768}), base, "zoya")
    page.goto(f"{base}/inbox")
    shown = [
        box
        for row in page.locator("[data-conversations] li.conversation").all()
        if (box := row.bounding_box()) and box["y"] + box["height"] <= 768
    ]
    assert len(shown) >= 8, len(shown)
    page.screenshot(path=str(ARTIFACTS / "inbox-list-laptop.png"))


def test_a_refused_move_snaps_back_with_its_reason(server, browser):
    """A card is dropped only on the stages the user may move it to (none from Qualified
    to Won: the column does not take it); a move that is offered but refused (a plugin's
    veto) snaps back with its reason."""
    crm, base = server
    add_user(crm, "petr", ["agent"])
    with crm.acting_as("petr") as work:
        deal = factories.deal(work, title="Поставка станков", amount="100000")
        work.moves.move(deal, "qualified")

    class Budget:
        @hookimpl
        def crmkit_before_stage_move(self, move):
            if move.target.name == "proposal":
                return "the budget is not approved yet"
            return None

    veto = Budget()
    crm.pm.register(veto)
    try:
        page = sign_in(browser.new_context(viewport={"width": 1400, "height": 900}), base, "petr")
        page.goto(f"{base}/boards/sales")
        card = page.locator(f'.kcard[data-id="{deal.id}"]')
        assert card.get_attribute("data-targets") == "proposal new lost"
        back = f'ul.cards[data-stage="qualified"] .kcard[data-id="{deal.id}"]'
        _drag(page, card, page.locator('ul.cards[data-stage="won"]'))
        page.wait_for_selector(back)
        assert page.locator('ul.cards[data-stage="won"] .kcard').count() == 0
        assert page.locator(".toast.error").count() == 0, page.inner_text(".toast.error")
        _drag(page, card, page.locator('ul.cards[data-stage="proposal"]'))
        toast = page.wait_for_selector(".toast.error", timeout=10000)
        assert "the budget is not approved yet" in toast.inner_text()
        page.wait_for_selector(back)
        page.screenshot(path=str(ARTIFACTS / "board-refused.png"))
    finally:
        crm.pm.unregister(veto)
    with crm.acting_as("petr") as work:
        assert work.deals.get(deal.id).stage == "qualified"


def test_reschedule_an_event_by_dragging_it(server, browser):
    """olga works in Moscow time in a browser set to UTC: a meeting dragged from 13:00 to
    15:00 is stored at 15:00 Moscow time.  Dragged again after a colleague changed it, it
    jumps back with the reason and the colleague's change stays."""
    crm, base = server
    add_user(crm, "olga", ["agent"])
    start = dt.datetime.now(dt.UTC).replace(hour=10, minute=0, second=0, microsecond=0)  # this week
    with crm.acting_as("olga") as work:
        event = work.calendar.create(
            title="Встреча в офисе",
            starts_at=start.isoformat(),
            ends_at=(start + dt.timedelta(hours=1)).isoformat(),
        )
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    page = sign_in(context, base, "olga")
    page.goto(f"{base}/calendar")
    event_box = page.wait_for_selector(".fc-event:has-text('Встреча в офисе')")
    # drawn at olga's hours (Moscow, the default zone), not the browser's (UTC)
    assert event_box.inner_text().startswith("13:00")
    _drag_event_to(page, event_box, "13:00:00", "15:00:00")
    moved = _until_moved(crm, event.id, start)
    assert moved.starts_at == start + dt.timedelta(hours=2)  # 15:00 in Moscow, 12:00 UTC
    assert moved.ends_at - moved.starts_at == dt.timedelta(hours=1)
    page.wait_for_selector(".fc-event:has-text('15:00')")  # drawn again as stored
    page.screenshot(path=str(ARTIFACTS / "calendar.png"))

    with crm.acting_as("olga") as work:  # a colleague's change the page has not seen
        work.calendar.update(event.id, title="Встреча у клиента")
    event_box = page.wait_for_selector(".fc-event:has-text('Встреча в офисе')")
    _drag_event_to(page, event_box, "15:00:00", "17:00:00")
    toast = page.wait_for_selector(".toast.error", timeout=10000)
    assert "Кто-то изменил это событие" in toast.inner_text()  # the user reads Russian
    page.wait_for_selector(".fc-event:has-text('Встреча у клиента')")  # as it is now
    assert page.inner_text(".fc-event:has-text('Встреча у клиента')").startswith("15:00")
    with crm.acting_as("olga") as work:
        kept = work.calendar.get(event.id)
    assert (kept.starts_at, kept.title) == (moved.starts_at, "Встреча у клиента")


def _drag_event_to(page, event_box, time_from, time_to):
    """Drag an event by its top from the slot row ``time_from`` to the row ``time_to``."""
    lane = page.locator(f'td.fc-timegrid-slot-lane[data-time="{time_from}"]').bounding_box()
    target = page.locator(f'td.fc-timegrid-slot-lane[data-time="{time_to}"]').bounding_box()
    box = event_box.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + 6
    goal = target["y"] + (y - lane["y"])
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x, y + (goal - y) * step / 10)
        time.sleep(0.03)
    page.mouse.up()


def _until_moved(crm, event_id, start):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with crm.acting_as("olga") as work:
            moved = work.calendar.get(event_id)
        if moved.starts_at != start:
            break
        time.sleep(0.2)
    return moved


def test_switch_the_language(server, browser):
    crm, base = server
    add_user(crm, "anna", ["agent"])
    page = sign_in(browser.new_context(), base, "anna")
    page.goto(f"{base}/tasks")
    assert page.inner_text("h1") == "Задачи"
    page.click("details.usermenu summary")
    page.click('button[data-language="en"]')
    page.wait_for_selector("h1:has-text('Tasks')")
    assert page.get_attribute("html", "lang") == "en"
    page.goto(f"{base}/home")
    assert "My tasks" in page.inner_text("main")


def test_agent_workspace_on_a_phone(server, browser):
    crm, base = server
    add_user(crm, "agent7", ["agent"])
    with crm.acting_as("agent7") as work:
        party = factories.organisation(work, name="ООО «Кедр»")
        factories.task(
            work,
            title="Позвонить в «Кедр»",
            party_id=party.id,
            deadline=(dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).isoformat(),
        )
    phone = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = sign_in(phone, base, "agent7")
    assert page.url.endswith("/home")
    assert page.locator("li.task.overdue:has-text('Кедр')").count() == 1
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px on a phone"
    page.click("#main-menu summary")
    page.click("#main-menu a:has-text('Клиенты')")
    page.wait_for_selector("h1:has-text('Клиенты')")
    page.click("a:has-text('ООО «Кедр»')")
    page.wait_for_selector("h1:has-text('Кедр')")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
    page.screenshot(path=str(ARTIFACTS / "phone-card.png"), full_page=True)


def _drag(page, source, target):
    start = source.bounding_box()
    end = target.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    steps = 15
    for step in range(1, steps + 1):
        x = (
            start["x"]
            + start["width"] / 2
            + (end["x"] + 40 - start["x"] - start["width"] / 2) * step / steps
        )
        y = (
            start["y"]
            + start["height"] / 2
            + (end["y"] + 20 - start["y"] - start["height"] / 2) * step / steps
        )
        page.mouse.move(x, y)
        time.sleep(0.03)
    page.mouse.up()


def test_the_timeline_filters_stay_in_their_column_on_a_laptop(server, browser):
    # the card's timeline filters ran on in one line over the side column at 1366 px,
    # covering the client's e-mail address in the contacts
    crm, base = server
    add_user(crm, "agent8", ["agent"])
    with crm.acting_as("agent8") as work:
        party = factories.organisation(work, name="ООО «Мотолайн»")
        work.parties.add_contact(party, "email", "info@motolayn.ru")
        # the card offers the kinds found on the timeline: a client with many of them
        for kind in ("call", "mail", "message", "payment", "file", "meeting", "task"):
            work.timeline.add(kind, party_id=party.id, subject=kind)
    laptop = browser.new_context(viewport={"width": 1366, "height": 768})
    page = sign_in(laptop, base, "agent8")
    page.goto(f"{base}/clients/{party.id}")
    column = page.locator(".card-main").bounding_box()
    chips = page.locator("#timeline .kinds .chip")
    assert chips.count() > 5
    for index in range(chips.count()):
        box = chips.nth(index).bounding_box()
        assert box["x"] + box["width"] <= column["x"] + column["width"] + 1, chips.nth(
            index
        ).inner_text()
    mail = page.locator("#contacts a:has-text('info@motolayn.ru')")
    mail.click(trial=True)  # nothing lies over the address: it can be clicked
    page.screenshot(path=str(ARTIFACTS / "card-laptop.png"))
