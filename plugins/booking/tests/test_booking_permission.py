"""Keeping the journal is the permission ``book`` on ``resource``, not the role names
``manager`` and ``admin``: seeded for those two, and handed to any role by the admin."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from crmkit_booking import booking

from crmkit.errors import PermissionDenied
from crmkit.testing import add_user, factories
from crmkit.testing.web import WebClient

DAY = dt.date(2030, 3, 4)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def shop(booking_crm):
    """A bay, a booking the manager made, and an agent with a client of their own."""
    add_user(booking_crm, "manager", ["manager"])
    add_user(booking_crm, "root", ["admin"])
    agent = add_user(booking_crm, "agent", ["agent"])
    with booking_crm.acting_as("manager") as work:
        journal = booking(work)
        bay = journal.add_resource("Пост 1", kind="bay").id
        opening = journal.day_bounds(DAY)[0]
        made = journal.book(
            party_id=factories.person(work).id, resource_id=bay, starts_at=opening, duration=HOUR
        ).id
    with booking_crm.acting_as(agent) as work:
        client = factories.person(work, name="Клиент агента").id
    return booking_crm, bay, opening, made, client


def test_the_manager_and_the_admin_have_the_cell_the_agent_not(booking_crm):
    add_user(booking_crm, "root", ["admin"])
    with booking_crm.acting_as("root") as work:
        cells = {role: work.permissions.effective(role) for role in ("manager", "admin", "agent")}
    assert [cells[role][("resource", "book")][0].label for role in cells] == ["all", "all", "none"]
    assert "book" in booking_crm.actions_of("resource")


def test_a_role_without_the_cell_is_refused_by_the_service(shop):
    crm, bay, opening, made, client = shop
    with crm.acting_as("agent") as work:
        journal = booking(work)
        calls = {  # each one refused
            "journal": lambda: journal.journal(DAY),
            "find_free": lambda: journal.find_free(HOUR, since=opening),
            "book": lambda: journal.book(
                party_id=client, resource_id=bay, starts_at=opening + HOUR, duration=HOUR
            ),
            "cancel": lambda: journal.cancel(made),
        }
        for call in calls.values():
            with pytest.raises(PermissionDenied, match="not allowed to book resource"):
                call()


def test_a_role_given_the_cell_keeps_the_journal(shop):
    crm, bay, opening, _, client = shop
    with crm.acting_as("root") as work:
        work.permissions.set("agent", "resource", "book", "all")
    with crm.acting_as("agent") as work:
        journal = booking(work)
        assert journal.find_free(HOUR, since=opening)[0].starts_at == opening + HOUR
        event = journal.book(
            party_id=client, resource_id=bay, starts_at=opening + HOUR, duration=HOUR
        )
        grid = journal.journal(DAY)
        assert grid.at(bay, opening + HOUR, 30).id == event.id
        assert grid.clients == {client: "Клиент агента"}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_screens_and_the_menu_follow_the_cell(shop, anyio_backend):
    crm, bay, _, _, client = shop
    web = WebClient.for_crm(crm)
    assert (await web.login("agent")).status_code == 303
    home = await web.get("/")
    home = await web.get(home.headers["location"]) if home.status_code in (302, 303) else home
    menu = re.search(r"<nav.*?</nav>", home.text, re.S).group(0)
    assert "/booking" not in menu
    form = {"party_id": client, "resource_id": bay, "starts_at": f"{DAY}T11:00", "minutes": "60"}
    assert (await web.get("/booking")).status_code == 404  # like a missing page
    assert (await web.get("/booking/new")).status_code == 404
    assert (await web.post("/booking/new", form)).status_code == 404
    with crm.acting_as("root") as work:
        work.permissions.set("agent", "resource", "book", "all")
    web = WebClient.for_crm(crm)
    assert (await web.login("agent")).status_code == 303
    page = await web.get("/booking", params={"day": DAY.isoformat()})
    assert page.status_code == 200
    assert "/booking" in re.search(r"<nav.*?</nav>", page.text, re.S).group(0)
    booked = await web.post("/booking/new", form)
    assert booked.status_code == 303, booked.text
    page = await web.get("/booking", params={"day": DAY.isoformat()})
    assert "Клиент агента" in page.text


def test_the_calendar_puts_no_event_on_a_resource_without_the_cell(shop):
    """The calendar (its form, a drag, the API) is another way to book: an event made on a
    resource, or moved onto one, takes the cell too, and the refusal names the resource."""
    crm, bay, opening, _, client = shop
    later = opening + 3 * HOUR
    hour = {"starts_at": later.isoformat(), "ends_at": (later + HOUR).isoformat()}
    with crm.acting_as("agent") as work:
        meeting = work.calendar.create(title="Встреча", party_id=client, **hour).id
    attempts = [
        lambda w: w.calendar.create(title="Мимо журнала", resource_id=bay, **hour),
        lambda w: w.calendar.create(
            title="Отменённая", resource_id=bay, status="cancelled", **hour
        ),
        lambda w: w.calendar.update(meeting, {"resource_id": bay}),
    ]
    for attempt in attempts:
        with crm.acting_as("agent") as work, pytest.raises(PermissionDenied) as refused:
            attempt(work)
        assert str(refused.value) == "booking “Пост 1” takes the permission “book” on resources"
        assert (refused.value.entity, refused.value.action) == ("resource", "book")
    with crm.acting_as("manager") as work:  # nothing of it was kept
        assert [e.id for e in work.calendar.between(later, later + HOUR, resource_id=bay)] == []
        assert work.calendar.get(meeting).resource_id is None
    with crm.acting_as("agent") as work:  # the rest of the event is still theirs to change
        work.calendar.update(meeting, {"title": "Встреча у клиента"})
    with crm.acting_as("root") as work:
        work.permissions.set("agent", "resource", "book", "own")
    with crm.acting_as("agent") as work:
        work.calendar.update(meeting, {"resource_id": bay})
        assert [e.id for e in work.calendar.between(later, later + HOUR, resource_id=bay)] == [
            meeting
        ]
