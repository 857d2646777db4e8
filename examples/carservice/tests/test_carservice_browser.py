"""The car service's day, end to end in headless Chromium, as each role.

The admin blocks a worker, who loses the open session and cannot sign in again; the
manager finds a client by a plate typed in Latin, takes an order for their car and adds a
service, and adds parts to an order taken without a branch; the worker sees only their own
order, moves it through the workshop and reaches no money screen; the cashier takes the
payment and hands the car over, and cannot reach salary settings; the director's dashboard
shows the figures the tables hold.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from crmkit_carservice import carservice
from service_fixtures import PLUGINS, build_station
from sqlalchemy import text

from crmkit.testing import DEMO_PASSWORD, make_crm
from crmkit.testing.web import chromium, served
from crmkit.testing.web import sign_in as signed_in

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.fixture(scope="module")
def station_server(tmp_path_factory):
    from crmkit.web.app import create_app

    crm = make_crm(plugins=PLUGINS, directory=tmp_path_factory.mktemp("carservice-e2e"))
    station = build_station(crm)
    with served(create_app(crm)) as base:
        yield station, base
    crm.close()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as launched:
        yield launched


def sign_in(browser, base, username, *, phone=False):
    options = (
        {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
        if phone
        else {"viewport": {"width": 1366, "height": 900}}
    )
    return signed_in(browser.new_context(**options), base, username)


def menu_links(page):
    return page.eval_on_selector_all("nav a[href]", "links => links.map(a => a.pathname)")


def test_a_day_at_the_car_service(station_server, browser):
    station, base = station_server
    crm = station.crm

    # -- the admin blocks petr, who is signed in: his session ends, he cannot come back
    petr = sign_in(browser, base, "petr")
    assert petr.url.endswith("/service/my")
    admin = sign_in(browser, base, "admin")
    admin.goto(f"{base}/admin/users/{station.petr.id}")
    admin.fill('input[name="reason"]', "уволен")
    admin.click('button[value="block"]')
    admin.wait_for_selector("h1 .chip.error")
    petr.goto(f"{base}/service/my")
    assert "/login" in petr.url
    petr.fill('input[name="username"]', "petr")
    petr.fill('input[name="password"]', DEMO_PASSWORD)
    petr.click('button[type="submit"]')
    petr.wait_for_load_state()
    assert "/login" in petr.url and petr.locator(".error, [role=alert]").count() >= 1

    # an order of another worker, which ivan must never see
    with crm.system() as work:
        work.users.unblock(station.petr.id)
    others = station.order("petr")

    # -- the manager: plate typed in Latin, one form, an extra service -------------------
    manager = sign_in(browser, base, "manager")
    assert manager.url.endswith("/service")
    manager.fill('.plate-search input[name="q"]', "a 123 bc 77")
    manager.press('.plate-search input[name="q"]', "Enter")
    manager.wait_for_selector("#plate-results .plate-match")
    assert "Сергей Волков" in manager.inner_text("#plate-results")
    manager.click("#plate-results a.new-for-car")
    manager.check(f'input[name="services"][value="{station.diagnostics.id}"]')
    manager.select_option('select[name="assignee_id"]', str(station.ivan.id))
    manager.fill('input[name="mileage"]', "87000")
    manager.click('#intake button[type="submit"]')
    manager.wait_for_selector("#order-car .plate")
    assert "А123ВС77" in manager.inner_text("#order-car")
    order_id = int(manager.url.rstrip("/").rsplit("/", 1)[1])
    manager.click("#add-line summary")
    manager.select_option('#add-line select[name="item_id"]', str(station.oil_change.id))
    manager.click('#add-line button[type="submit"]')
    manager.wait_for_selector("#order-lines:has-text('Замена масла')")
    manager.screenshot(path=str(ARTIFACTS / "carservice-order.png"), full_page=True)
    # parts for an order taken without a branch (over the API): the line form offers the
    # station's only branch, and the parts leave its warehouse
    with crm.acting_as(station.manager) as work:
        branchless = carservice(work).intake(
            party_id=station.client.id, car_id=station.car.id, services=[station.diagnostics.id]
        )
    manager.goto(f"{base}/records/finance_order/{branchless.id}")
    manager.click("#add-line summary")
    assert manager.input_value('#add-line select[name="location_id"]') == str(station.branch.id)
    manager.select_option('#add-line select[name="item_id"]', str(station.oil.id))
    manager.click('#add-line button[type="submit"]')
    manager.wait_for_selector("#order-lines:has-text('Масло 5W-30')")
    assert "Филиал 1" in manager.inner_text(".flash.ok")
    assert manager.locator('#add-line select[name="location_id"]').count() == 0

    # -- the worker, on a phone: only their order, moved through the workshop -----------
    ivan = sign_in(browser, base, "ivan", phone=True)
    assert ivan.url.endswith("/service/my")
    assert ivan.locator(f'[data-order="{order_id}"]').count() == 1
    assert ivan.locator(f'[data-order="{others.id}"]').count() == 0
    for stage in ("in_work", "done"):
        ivan.click(f'[data-order="{order_id}"] button[data-stage="{stage}"]')
        ivan.wait_for_load_state()
    assert ivan.locator(f'[data-order="{order_id}"]').count() == 0  # finished
    links = menu_links(ivan)
    assert "/service/my" in links
    assert not [p for p in links if p.startswith(("/finance", "/lists/party"))]
    for path in (
        f"/records/finance_order/{others.id}",
        "/finance/cashdesk",
        "/service/director",
        "/reports/finance.revenue",
        "/reports/finance.salaries",
    ):
        assert ivan.goto(f"{base}{path}").status == 404, path
    ivan.goto(f"{base}/service/my")
    # against the screen's 390 pixels, not innerWidth: a phone's layout viewport widens
    overflow = ivan.evaluate("document.documentElement.scrollWidth - 390")
    assert overflow <= 1, f"the worker's page scrolls sideways by {overflow}px on a phone"

    # -- the cashier: opens the shift, takes the payment, hands the car over ---------------
    cashier = sign_in(browser, base, "cashier")
    assert "/finance/cashdesk" in cashier.url
    cashier.fill('#open-shift input[name="counted"]', "0")
    cashier.click('#open-shift button[type="submit"]')
    cashier.wait_for_selector("#close-shift")
    cashier.goto(f"{base}/records/finance_order/{order_id}")
    cashier.select_option('#order-pay select[name="method"]', "card")
    cashier.click('#order-pay button[type="submit"]')
    cashier.wait_for_load_state()
    cashier.goto(f"{base}/records/finance_order/{order_id}")
    cashier.click('form:has(input[name="to"][value="paid"]) button')
    cashier.wait_for_selector(".stage-line li.current:has-text('Оплачен')")
    for path in ("/lists/finance_pay_scheme", "/lists/finance_payroll", "/admin/permissions"):
        assert cashier.goto(f"{base}{path}").status in (403, 404), path
    with crm.acting_as(station.manager) as work:
        order = work.records("finance_order").get(order_id)
        assert order.stage == "paid" and order.total == Decimal("3500.00")

    # -- the director: the dashboard shows what the tables hold ------------------------
    director = sign_in(browser, base, "director")
    assert director.url.endswith("/service/director")
    director.wait_for_selector("#revenue-chart")
    shown = Decimal(director.get_attribute("#kpi-revenue", "data-value"))
    orders = int(director.get_attribute("#kpi-orders", "data-value"))
    with crm.engine.connect() as connection:
        revenue = connection.execute(
            text("SELECT SUM(base_amount) FROM finance_order_line WHERE recognized_on IS NOT NULL")
        ).scalar()
        completed = connection.execute(
            text("SELECT COUNT(*) FROM finance_order WHERE completed_on IS NOT NULL")
        ).scalar()
    assert shown == Decimal(revenue) / 100 == Decimal("3500.00")
    assert orders == completed == 1
    assert director.inner_text("#kpi-revenue").replace("\xa0", " ") == "3 500,00 ₽"  # Russian
    director.screenshot(path=str(ARTIFACTS / "carservice-director.png"), full_page=True)


def test_a_refused_intake_shows_its_error_as_an_error(station_server, browser):
    """The intake's refusal stands out from the form (the red box every other form of the
    UI uses), not a line of plain text above it."""
    _, base = station_server
    manager = sign_in(browser, base, "manager")
    manager.goto(f"{base}/service/intake")
    manager.fill('input[name="plate"]', "Х001ХХ77")
    manager.click('#intake button[type="submit"]')
    manager.wait_for_selector("#form-error")
    style = manager.eval_on_selector(
        "#form-error",
        "e => { const s = getComputedStyle(e); return [s.backgroundColor, s.color]; }",
    )
    plain = manager.eval_on_selector("#intake label", "e => getComputedStyle(e).color")
    assert style[0] not in ("rgba(0, 0, 0, 0)", "transparent"), style
    assert style[1] != plain, (style, plain)
    assert manager.is_visible("#form-error")


def test_the_client_cards_timeline_chips_stay_in_their_column_on_a_laptop(station_server, browser):
    """On a 1366-pixel screen the timeline's kind chips wrap inside the card's main column
    instead of running over the side column (the client's cars, money, contacts)."""
    station, base = station_server
    manager = sign_in(browser, base, "manager")
    manager.set_viewport_size({"width": 1366, "height": 768})
    manager.goto(f"{base}/clients/{station.client.id}")
    manager.wait_for_selector(".timeline .kinds .chip")
    main_right = manager.eval_on_selector(".card-main", "e => e.getBoundingClientRect().right")
    side_left = manager.eval_on_selector(".card-side", "e => e.getBoundingClientRect().left")
    chips_right = manager.eval_on_selector_all(
        ".timeline .kinds .chip", "cs => Math.max(...cs.map(c => c.getBoundingClientRect().right))"
    )
    assert chips_right <= main_right + 1 and chips_right <= side_left, (
        chips_right,
        main_right,
        side_left,
    )
    # a car's actions start a line of their own under the plate, not a stray "·" line
    car = f'#client-cars li[data-car="{station.car.id}"]'
    box = "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.bottom]; }"
    plate = manager.eval_on_selector(f"{car} .plate", box)
    link = manager.eval_on_selector(f"{car} a.new-for-car", box)
    assert abs(link[0] - plate[0]) <= 1 and link[1] >= plate[2] - 1, (plate, link)
    book = manager.eval_on_selector(f"{car} a.book", box)
    assert abs(book[1] - link[1]) <= 1, (link, book)  # one line: "new order · book a visit"
    manager.screenshot(path=str(ARTIFACTS / "carservice-client-card.png"), full_page=True)


def test_the_dashboards_chart_writes_numbers_the_russian_way(station_server, browser):
    """The chart's axis says "1 600", as the table beside it does, in a browser set to
    English too (Chart.js formats with the browser's language unless told the page's)."""
    station, base = station_server
    order = station.order("ivan")
    with station.crm.acting_as(station.ivan) as work:
        for stage in ("in_work", "done"):
            work.moves.move(order.id, stage, entity="finance_order")
    director = browser.new_context(
        viewport={"width": 1366, "height": 768}, locale="en-US"
    ).new_page()
    director.goto(f"{base}/login")
    director.fill('input[name="username"]', "director")
    director.fill('input[name="password"]', DEMO_PASSWORD)
    director.click('button[type="submit"]')
    director.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('#revenue-chart'))"
    )
    ticks = director.evaluate(
        "() => { const c = Chart.getChart(document.querySelector('#revenue-chart'));"
        " return Object.values(c.scales).flatMap(s => s.ticks.map(t => String(t.label))); }"
    )
    big = [t for t in ticks if len(t.replace("\u00a0", "").replace(" ", "")) > 3]
    assert big and not [t for t in big if "," in t], ticks
    # the month table's sums line up on the right, under their heading
    aligned = director.eval_on_selector_all(
        "#by-month tr > :nth-child(3)", "cs => cs.map(c => getComputedStyle(c).textAlign)"
    )
    assert aligned and set(aligned) == {"right"}, aligned


def test_the_intake_shows_a_known_plates_car_as_it_is_typed(station_server, browser):
    """The plate typed in Latin, before anything else: the car, its owner and its open
    order appear under it after a short pause, with the form for that car a click away;
    a new plate clears them; leaving the field checks a plate that was pasted in."""
    station, base = station_server
    order = station.order("ivan")
    manager = sign_in(browser, base, "manager")
    manager.goto(f"{base}/service/intake")
    plate = '#intake input[name="plate"]'
    manager.locator(plate).press_sequentially("a123bc77", delay=30)
    found = manager.wait_for_selector("#plate-check .known-plate")
    assert "Сергей Волков" in found.inner_text() and "А123ВС77" in found.inner_text()
    assert manager.locator(f'#plate-check a[href="/records/finance_order/{order.id}"]').count()
    manager.screenshot(path=str(ARTIFACTS / "carservice-intake-plate.png"), full_page=True)
    # a new plate: nothing to say
    manager.fill(plate, "О777ОО77")
    manager.wait_for_selector("#plate-check .known-plate", state="detached")
    # a plate put in without typing (autofill, a script): checked when the field is left
    manager.eval_on_selector(plate, "e => { e.value = 'А 123 ВС 77'; }")
    manager.focus(plate)
    manager.press(plate, "Tab")
    manager.wait_for_selector("#plate-check .known-plate")
    # the form for that car: its owner chosen, the car picked
    manager.click("#plate-check a.new-for-car")
    manager.wait_for_selector('#intake input[name="party_id"]', state="attached")
    assert manager.input_value('#intake select[name="car_id"]') == str(station.car.id)
    assert "Сергей Волков" in manager.inner_text("#intake")

    # on a phone the check fits the screen
    phone = sign_in(browser, base, "manager", phone=True)
    phone.goto(f"{base}/service/intake")
    phone.fill(plate, "a123bc77")
    phone.wait_for_selector("#plate-check .known-plate")
    # against the screen's 390 pixels, not innerWidth: a phone's layout viewport widens
    overflow = phone.evaluate("document.documentElement.scrollWidth - 390")
    assert overflow <= 1, f"the intake scrolls sideways by {overflow}px on a phone"


def test_the_dashboard_fits_a_phone_and_its_chart_keeps_its_height(station_server, browser):
    """At 390 pixels the month table scrolls in its own box (the page does not widen past
    the screen: a phone's layout viewport grows with it, so the page is measured against the
    screen, not ``innerWidth``), and the chart keeps room for its bars under the legend."""
    station, base = station_server
    order = station.order("ivan")
    with station.crm.acting_as(station.ivan) as work:
        for stage in ("in_work", "done"):
            work.moves.move(order.id, stage, entity="finance_order")
    director = sign_in(browser, base, "director", phone=True)
    director.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('#revenue-chart'))"
    )
    width = director.evaluate("document.documentElement.scrollWidth")
    assert width <= 391, f"the dashboard is {width}px wide on a 390px phone"
    area = director.evaluate(
        "() => { const c = Chart.getChart(document.querySelector('#revenue-chart'));"
        " return c.chartArea.bottom - c.chartArea.top; }"
    )
    assert area >= 150, f"the chart's bars have {area}px on a phone"
    director.screenshot(path=str(ARTIFACTS / "carservice-director-phone.png"), full_page=True)


def test_the_desk_fits_a_phone(station_server, browser):
    """The desk's tables (a plate's orders, the orders in progress) scroll in their own box
    at 390 pixels; the page stays the screen's width."""
    station, base = station_server
    station.order("ivan")
    manager = sign_in(browser, base, "manager", phone=True)
    for path in ("/service", "/service?q=a123"):
        manager.goto(f"{base}{path}")
        manager.wait_for_selector("#recent-orders")
        width = manager.evaluate("document.documentElement.scrollWidth")
        assert width <= 391, f"{path} is {width}px wide on a 390px phone"
    assert manager.locator("#plate-results .plate-match table").count()
    manager.screenshot(path=str(ARTIFACTS / "carservice-desk-phone.png"), full_page=True)


def test_the_desks_dates_and_plate_placeholder_fit_a_phone(station_server, browser):
    """At 390 pixels each date of the desk's tables reads on one line, and the plate
    search's placeholder shows whole, not cut off ("Госномер, наприме")."""
    station, base = station_server
    station.order("ivan")
    manager = sign_in(browser, base, "manager", phone=True)
    manager.goto(f"{base}/service?q=a123")
    manager.wait_for_selector("#recent-orders")
    lines = manager.evaluate(
        """() => [...document.querySelectorAll('#recent-orders td, #plate-results td')]
            .filter(td => /^\\d{1,2}\\s\\S+\\s20\\d\\d/.test(td.textContent.trim()))
            .map(td => { const r = document.createRange(); r.selectNodeContents(td);
                         return [td.textContent.trim(), r.getClientRects().length]; })"""
    )
    assert lines and len(lines) >= 2, lines  # the orders in progress and the plate's orders
    assert all(count == 1 for _, count in lines), f"dates wrap on a phone: {lines}"
    room, needed, placeholder = manager.evaluate(
        """() => { const input = document.querySelector('form.plate-search input[name=q]');
            const style = getComputedStyle(input);
            const context = document.createElement('canvas').getContext('2d');
            context.font = style.font;
            const room = input.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight);
            return [room, context.measureText(input.placeholder).width, input.placeholder]; }"""
    )
    assert placeholder and needed <= room, f"«{placeholder}» needs {needed}px, has {room}px"


def test_a_workers_calendar_fits_a_phone(station_server, browser):
    """The calendar's toolbar (arrows, «Сегодня», the title, the views) wraps within the
    390 px screen: no view button hangs off its right edge."""
    _station, base = station_server
    ivan = sign_in(browser, base, "ivan", phone=True)
    ivan.goto(f"{base}/calendar")
    ivan.wait_for_selector(".fc-toolbar .fc-dayGridMonth-button")
    overflow = ivan.evaluate("document.documentElement.scrollWidth - 390")
    assert overflow <= 1, f"the calendar scrolls sideways by {overflow}px on a phone"
    rights = ivan.eval_on_selector_all(
        ".fc-toolbar button", "buttons => buttons.map(b => b.getBoundingClientRect().right)"
    )
    assert rights and max(rights) <= 390, rights


def test_an_orders_page_on_a_phone_shows_its_stages_and_scrolls_its_lines(station_server, browser):
    """On a phone every stage of the order's line is on the screen (the line wraps), and
    the lines table, wider than the screen, scrolls in its own box whose edge fades where
    more columns wait, until it is scrolled there."""
    station, base = station_server
    order = station.order("ivan")
    ivan = sign_in(browser, base, "ivan", phone=True)
    ivan.goto(f"{base}/records/finance_order/{order.id}")
    ivan.wait_for_load_state("load")
    overflow = ivan.evaluate("document.documentElement.scrollWidth - 390")
    assert overflow <= 1, f"the order's page scrolls sideways by {overflow}px on a phone"
    stages = ivan.eval_on_selector_all(
        ".stage-line li",
        "items => items.map(li => [li.innerText, li.getBoundingClientRect().right])",
    )
    assert len(stages) >= 5 and all(right <= 390 for _, right in stages), stages
    box = ivan.locator(".table-wrap:has(#order-lines)")
    widths = box.evaluate("b => [b.scrollWidth, b.clientWidth, b.getBoundingClientRect().right]")
    assert widths[0] > widths[1] and widths[2] <= 390, widths
    faded = "b => [b.classList.contains('more-right'), getComputedStyle(b).maskImage !== 'none']"
    assert box.evaluate(faded) == [True, True]
    box.evaluate("b => { b.scrollLeft = b.scrollWidth; }")
    ivan.wait_for_function(
        "() => !document.querySelector('.table-wrap:has(#order-lines)')"
        ".classList.contains('more-right')"
    )
    assert box.evaluate("b => b.classList.contains('more-left')")
