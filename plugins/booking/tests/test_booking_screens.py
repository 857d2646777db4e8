"""The journal's screens: a booking made through the form shows in the grid; a clash is
refused on the form with its reason."""

from __future__ import annotations

import datetime as dt
import html
import re

import httpx
import pytest
from crmkit_booking import booking
from sqlalchemy import func, select

from crmkit.model import CalendarEvent
from crmkit.testing import add_user, factories
from crmkit.testing.web import WebClient

pytestmark = pytest.mark.anyio
DAY = dt.date(2030, 3, 4)


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_book_through_the_form_and_see_it_in_the_journal(booking_crm):
    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        bay = booking(work).add_resource("Пост 1", kind="bay")
        client = factories.person(work, name="Ольга Соколова")
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    form = {
        "party_id": client.id,
        "resource_id": bay.id,
        "starts_at": f"{DAY}T10:00",
        "minutes": "90",
    }
    booked = await web.post("/booking/new", form)
    assert booked.status_code == 303, booked.text
    page = await web.get("/booking", params={"day": DAY.isoformat()})
    assert page.status_code == 200
    busy = page.text.count('class="busy"')
    assert busy == 3 and "Ольга Соколова" in page.text  # 10:00, 10:30, 11:00
    clash = await web.post("/booking/new", {**form, "starts_at": f"{DAY}T11:00"})
    assert clash.status_code == 422 and 'id="form-error"' in clash.text
    windows = await web.get(
        "/booking", params={"day": DAY.isoformat(), "minutes": "60", "kind": "bay"}
    )
    assert f"starts_at={DAY}T09:00" in windows.text.split('id="free-windows"', 1)[1]


async def test_the_journal_speaks_the_stations_time_to_a_user_elsewhere(booking_crm):
    """The station is in Moscow (the deployment's zone), its manager in Vladivostok: the
    day grid, the week grid, the free windows, the cells' links, the form and a clash all
    say 10:00 for a 10:00 Moscow booking, and the page says whose time it is."""
    add_user(booking_crm, "manager", ["manager"], timezone="Asia/Vladivostok")
    with booking_crm.acting_as("manager") as work:
        journal = booking(work)
        bay = journal.add_resource("Пост 1", kind="bay")
        client = factories.person(work, name="Ольга Соколова")
        opening = journal.day_bounds(DAY)[0]  # 09:00 in Moscow
        journal.book(
            party_id=client.id,
            resource_id=bay.id,
            starts_at=opening + dt.timedelta(hours=1),
            duration=dt.timedelta(hours=1),
        )
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303

    day = (await web.get("/booking", params={"day": DAY.isoformat()})).text
    rows = dict(re.findall(r"<tr><th>([^<]*)</th>\s*(<td[^>]*>)", day))
    hours = list(rows)
    assert (hours[0], hours[-1]) == ("09:00", "19:30")  # the opening hours in Moscow
    assert rows["10:00"].startswith('<td class="busy"')
    assert f"starts_at={DAY}T09:00" in day and "Europe/Moscow" in day

    week = (await web.get("/booking", params={"day": DAY.isoformat(), "days": "7"})).text
    first_row = week.split("<tbody>", 1)[1].split("</th>", 1)[0]
    assert "09:00" in first_row and "16:00" not in first_row

    windows = await web.get(
        "/booking", params={"day": DAY.isoformat(), "minutes": "60", "kind": "bay"}
    )
    (first,) = re.findall(r'class="window">([^<]*)<', windows.text)[:1]
    assert "09:00" in first and f"starts_at={DAY}T09:00" in windows.text

    form = {"party_id": client.id, "resource_id": bay.id, "minutes": "60"}
    clash = await web.post("/booking/new", {**form, "starts_at": f"{DAY}T10:30"})
    assert clash.status_code == 422
    assert "2030-03-04 10:00" in clash.text  # the station's time, as on the form


async def test_a_blocked_specialist_is_not_offered_on_the_screens(booking_crm):
    """Anna has left: the form lists only the bay, her column is shown (she still holds
    a booking that day) marked closed, with no "+" to book her."""
    add_user(booking_crm, "manager", ["manager"])
    anna = add_user(booking_crm, "anna", ["agent"])
    with booking_crm.acting_as("manager") as work:
        journal = booking(work)
        bay = journal.add_resource("Пост 1", kind="bay").id
        hers = journal.add_resource("Мастер Анна", user_id=anna.id).id
        client = factories.person(work, name="Ольга Соколова").id
        journal.book(
            party_id=client,
            resource_id=hers,
            starts_at=journal.day_bounds(DAY)[0],
            duration=dt.timedelta(hours=1),
        )
    with booking_crm.system() as work:
        work.users.block(anna.id)
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    form = (await web.get("/booking/new", params={"party_id": client})).text
    assert f'<option value="{bay}"' in form and f'<option value="{hers}"' not in form
    page = (await web.get("/booking", params={"day": DAY.isoformat()})).text
    assert re.search(rf'<th data-resource="{hers}" class="closed">', page)
    assert f"resource_id={hers}&" not in page and f"resource_id={bay}&" in page
    windows = await web.get("/booking", params={"day": DAY.isoformat(), "minutes": "60"})
    assert "Мастер Анна" not in windows.text.split('id="free-windows"', 1)[1].split("</section>")[0]


async def test_cancelling_a_cancelled_booking_is_told_on_the_journal(booking_crm):
    """The second cancel (a second tab, a double click) is refused by name on the journal
    page, not with an error page, and the client is told once."""
    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        journal = booking(work)
        bay = journal.add_resource("Пост 1", kind="bay").id
        client = factories.person(work, name="Ольга Соколова").id
        event = journal.book(
            party_id=client,
            resource_id=bay,
            starts_at=journal.day_bounds(DAY)[0] + dt.timedelta(hours=1),
            duration=dt.timedelta(hours=1),
        ).id
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    form = {"reason": "клиент заболел", "day": DAY.isoformat()}
    first = await web.post(f"/booking/{event}/cancel", form)
    assert first.status_code == 303
    again = await web.post(f"/booking/{event}/cancel", form)
    assert again.status_code == 303 and again.headers["location"] == f"/booking?day={DAY}"
    page = await web.get(again.headers["location"])
    assert re.search(r'class="flash error"[^>]*>[^<]*2030-03-04 10:00', page.text)
    with booking_crm.acting_as("manager") as work:
        kinds = [a.kind for a in work.timeline.list(client)]
    assert kinds == ["booking_cancelled", "booking"]


async def test_a_booking_length_out_of_range_is_refused_naming_the_minutes(booking_crm):
    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        bay = booking(work).add_resource("Пост 1", kind="bay")
        client = factories.person(work, name="Ольга Соколова")
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    form = {"party_id": client.id, "resource_id": bay.id, "starts_at": f"{DAY}T10:00"}
    for typed, reason in (
        ("99999999999", "от 1 до 10080 минут"),
        ("10081", "от 1 до 10080 минут"),
        ("0", "от 1 до 10080 минут"),
        ("-30", "-30 — не целое число минут"),
        ("1e3", "1e3 — не целое число минут"),
    ):
        refused = await web.post("/booking/new", {**form, "minutes": typed})
        assert refused.status_code == 422, typed
        error = re.search(r'id="form-error"[^>]*>(.*?)</', refused.text, re.S).group(1)
        assert f"длительность, мин: {reason}" in html.unescape(error), (typed, error)
        windows = await web.get("/booking", params={"day": DAY.isoformat(), "minutes": typed})
        assert windows.status_code == 422, typed
        assert f"длительность, мин: {reason}" in html.unescape(windows.text), typed
    with booking_crm.acting_as("manager") as work:
        assert work.session.scalar(select(func.count()).select_from(CalendarEvent)) == 0
    booked = await web.post("/booking/new", {**form, "minutes": "10080"})  # a week at most
    assert booked.status_code == 303, booked.text


async def test_the_journal_and_the_form_speak_russian(booking_crm):
    """The tab title is the screen's translated title; the form's refusals (an unknown
    resource, a length that is no length, a time that is no time) are Russian."""
    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        bay = booking(work).add_resource("Пост 1", kind="bay")
        client = factories.person(work, name="Ольга Соколова")
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    journal = await web.get("/booking", params={"day": DAY.isoformat()})
    assert "<title>Журнал записи · crmkit</title>" in journal.text
    assert "Booking journal" not in journal.text
    form = {"party_id": client.id, "resource_id": bay.id, "starts_at": f"{DAY}T10:00"}
    unknown = await web.post("/booking/new", {**form, "resource_id": "9999", "minutes": "60"})
    assert unknown.status_code == 422
    assert "ресурс: нет ресурса 9999" in unknown.text and "no resource" not in unknown.text
    backwards = await web.post("/booking/new", {**form, "minutes": "-30"})
    assert backwards.status_code == 422
    assert "длительность, мин: -30 — не целое число минут" in backwards.text
    assert "whole number" not in backwards.text
    assert "<title>Новая запись · crmkit</title>" in backwards.text
    no_time = await web.post("/booking/new", {**form, "starts_at": "завтра", "minutes": "60"})
    assert no_time.status_code == 422
    assert "Укажите дату и время записи." in no_time.text
    assert "Enter the date and time" not in no_time.text


@pytest.mark.parametrize("odd", ["abc", "1.5", "²", "-1", "9" * 25])
async def test_an_odd_client_or_resource_id_is_named_on_the_form(booking_crm, odd):
    """The client and the resource are ids: one that is none is named on the form (422),
    never a 500, and nothing is booked; the form's link with an odd client says so too."""
    add_user(booking_crm, "manager", ["manager"], locale="en")
    with booking_crm.acting_as("manager") as work:
        bay = booking(work).add_resource("Пост 1", kind="bay")
        client = factories.person(work, name="Ольга Соколова")
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    form = {"party_id": client.id, "resource_id": bay.id, "starts_at": f"{DAY}T10:00"}
    for field in ("party_id", "resource_id"):
        refused = await web.post("/booking/new", {**form, field: odd})
        assert refused.status_code == 422, field
        error = re.search(r'id="form-error"[^>]*>(.*?)</', refused.text, re.S).group(1)
        assert "not an id (1 to 2^63-1)" in html.unescape(error), (field, error)
        assert html.unescape(error).startswith(f"{field}: "), error
    linked = await web.get("/booking/new", params={"party_id": odd})
    assert linked.status_code == 422
    assert "not an id (1 to 2^63-1)" in html.unescape(linked.text)
    with booking_crm.acting_as("manager") as work:
        assert work.session.scalar(select(func.count()).select_from(CalendarEvent)) == 0


async def test_a_path_id_past_an_id_column_is_a_404_on_the_booking_pages(booking_crm):
    from crmkit.testing.web import id_paths, int_paths

    add_user(booking_crm, "manager", ["manager"])
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    assert not int_paths(web.app)
    paths = [(method, path) for method, path in id_paths(web.app) if path.startswith("/booking/")]
    assert paths == [("POST", f"/booking/{'9' * 25}/cancel")]
    assert (await web.post(paths[0][1], {"reason": "x"})).status_code == 404


async def test_no_client_or_resource_and_dates_past_the_calendar_are_named_never_a_500(
    booking_crm,
):
    """What a slip of the keyboard or an old bookmark sends: no client or no resource
    chosen, a year the clock cannot hold, a day at the end of the calendar.  The form says
    which field is wrong (in Russian) and books nothing; the journal opens on today."""
    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        bay = booking(work).add_resource("Пост 1", kind="bay")
        client = factories.person(work, name="Ольга Соколова")
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    form = {"party_id": client.id, "resource_id": bay.id, "starts_at": f"{DAY}T10:00"}
    form["minutes"] = "60"
    for typed, reason in (
        ({"resource_id": ""}, "ресурс: Обязательное поле."),
        ({"party_id": ""}, "клиент: выберите клиента"),
        ({"party_id": "", "resource_id": ""}, "клиент: выберите клиента; ресурс: Обязательное"),
        ({"starts_at": "0001-01-01T00:00"}, "Укажите дату и время записи."),
        # a week from the last evening a date holds ends past it
        ({"starts_at": "9999-12-31T20:00", "minutes": "10080"}, "начало: Неверные дата и время."),
    ):
        refused = await web.post("/booking/new", {**form, **typed})
        assert refused.status_code == 422, (typed, refused.status_code)
        error = re.search(r'id="form-error"[^>]*>(.*?)</', refused.text, re.S)
        assert error and reason in html.unescape(error.group(1)), (typed, error)
    with booking_crm.acting_as("manager") as work:
        assert work.session.scalar(select(func.count()).select_from(CalendarEvent)) == 0
    for day in ("9999-12-31", "0001-01-01"):
        for days in ("1", "7"):
            page = await web.get("/booking", params={"day": day, "days": days, "minutes": "60"})
            assert page.status_code == 200, (day, days)
            assert 'id="journal"' in page.text


async def test_a_retired_bay_shows_its_bookings_closed_on_the_journal(booking_crm):
    """Bay 1 is taken out of service with Olga still booked on it: the journal shows her
    booking in its closed column (no "+" to book it), and the form no longer offers it."""
    from crmkit.model import Resource

    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        journal = booking(work)
        bay = journal.add_resource("Пост 1", kind="bay").id
        client = factories.person(work, name="Ольга Соколова").id
        journal.book(
            party_id=client,
            resource_id=bay,
            starts_at=journal.day_bounds(DAY)[0],
            duration=dt.timedelta(hours=1),
        )
    with booking_crm.system() as work:
        work.session.get(Resource, bay).active = False
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    page = (await web.get("/booking", params={"day": DAY.isoformat()})).text
    assert re.search(rf'<th data-resource="{bay}" class="closed">', page)
    assert "Ольга Соколова" in page and f"resource_id={bay}&" not in page
    form = (await web.get("/booking/new", params={"party_id": client})).text
    assert f'<option value="{bay}"' not in form


async def test_a_night_station_books_the_hour_it_shows_when_the_clocks_change(make_crm):
    """A tyre station in Berlin open day and night.  On 27 October 2030 the clocks go
    back: 02:00-02:59 comes twice, and so do its rows.  The "+" of the second 02:30 books
    the second 02:30 (CET, 01:30 UTC), not the first, which is free too.  On 31 March
    the clocks go forward: 02:30 does not exist, and typing it is refused naming the
    start, where it was booked an hour later."""
    from crmkit_booking import plugin as booking_plugin

    crm = make_crm(
        plugins=[booking_plugin],
        settings={
            "locale.timezone": "Europe/Berlin",
            "booking.day_start": "00:00",
            "booking.day_end": "23:30",
        },
    )
    add_user(crm, "manager", ["manager"], timezone="Europe/Berlin")
    with crm.acting_as("manager") as work:
        bay = booking(work).add_resource("Reifen 1", kind="bay").id
        client = factories.person(work, name="Olga Sokolova").id
    web = WebClient.for_crm(crm)
    assert (await web.login("manager")).status_code == 303
    page = (await web.get("/booking", params={"day": "2030-10-27"})).text
    links = re.findall(
        r'href="(/booking/new\?resource_id=[^"]*starts_at=2030-10-27T02:30[^"]*)"', page
    )
    assert len(links) == 2  # the first 02:30 (summer time) and the second (winter time)
    query = dict(httpx.URL(html.unescape(links[1])).params)
    form = (await web.get("/booking/new", params={**query, "party_id": client})).text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    booked = await web.post(
        "/booking/new",
        {**fields, "resource_id": bay, "starts_at": query["starts_at"], "minutes": "30"},
    )
    assert booked.status_code == 303, booked.text
    with crm.acting_as("manager") as work:
        (event,) = work.session.scalars(select(CalendarEvent)).all()
        assert event.starts_at == dt.datetime(2030, 10, 27, 1, 30, tzinfo=dt.UTC)
    gap = await web.post(
        "/booking/new",
        {"party_id": client, "resource_id": bay, "starts_at": "2030-03-31T02:30", "minutes": "30"},
    )
    assert gap.status_code == 422
    error = html.unescape(re.search(r'id="form-error"[^>]*>(.*?)</', gap.text, re.S).group(1))
    assert error.startswith("начало: ") and "Europe/Berlin" in error
    with crm.acting_as("manager") as work:
        assert work.session.scalar(select(func.count()).select_from(CalendarEvent)) == 1


async def test_a_cancellations_reason_is_capped_at_20000_characters(booking_crm):
    """The journal's cancel form reached the booking service without a schema and kept a
    reason of any length (in the audit and on the client's timeline): a longer one is
    refused naming the field, on the journal, and the booking stays."""
    add_user(booking_crm, "manager", ["manager"], locale="en")
    with booking_crm.acting_as("manager") as work:
        journal = booking(work)
        bay = journal.add_resource("Пост 1", kind="bay").id
        client = factories.person(work, name="Ольга Соколова").id
        event = journal.book(
            party_id=client,
            resource_id=bay,
            starts_at=journal.day_bounds(DAY)[0] + dt.timedelta(hours=1),
            duration=dt.timedelta(hours=1),
        ).id
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303

    refused = await web.post(
        f"/booking/{event}/cancel", {"reason": "д" * 20001, "day": DAY.isoformat()}
    )
    assert refused.status_code == 303
    page = await web.get(refused.headers["location"])
    flash = re.search(r'class="flash error"[^>]*>([^<]*)<', page.text).group(1)
    assert "reason: longer than 20000 characters" in html.unescape(flash)
    with booking_crm.acting_as("manager") as work:
        assert work.session.get(CalendarEvent, event).status != "cancelled"
        assert [a.kind for a in work.timeline.list(client)] == ["booking"]

    cancelled = await web.post(
        f"/booking/{event}/cancel", {"reason": "д" * 20000, "day": DAY.isoformat()}
    )
    assert cancelled.status_code == 303
    with booking_crm.acting_as("manager") as work:
        assert work.session.get(CalendarEvent, event).status == "cancelled"
        told = next(iter(work.timeline.list(client)))
        assert (told.kind, len(told.body)) == ("booking_cancelled", 20000)


async def test_the_journal_opened_for_a_client_names_them_and_keeps_them_day_to_day(booking_crm):
    """ "Book a visit" on a client card opens the journal for that client: the page says who
    is being booked (with the way back to their card), and the day and week links, like
    the grid's cells, keep the client, so turning to tomorrow does not lose them."""
    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        booking(work).add_resource("Пост 1", kind="bay")
        client = factories.person(work, name="Ольга Соколова")
    web = WebClient.for_crm(booking_crm)
    assert (await web.login("manager")).status_code == 303
    page = await web.get("/booking", params={"day": DAY.isoformat(), "party_id": client.id})
    assert page.status_code == 200
    who = page.text.split('id="booking-for"', 1)[1].split("</p>", 1)[0]
    assert "Ольга Соколова" in who and f'href="/clients/{client.id}"' in who, who
    nav = page.text.split('class="journal-nav"', 1)[1].split("</p>", 1)[0]
    links = re.findall(r'href="([^"]+)"', nav)
    assert len(links) == 4 and all(f"party_id={client.id}" in html.unescape(a) for a in links), (
        links
    )
    # without a client, no such line
    plain = await web.get("/booking", params={"day": DAY.isoformat()})
    assert 'id="booking-for"' not in plain.text
