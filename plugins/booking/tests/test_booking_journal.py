"""The booking journal: who is busy, free windows, bookings that never clash."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from crmkit_booking import BOOKING_CANCELLED, BOOKING_MADE, booking
from crmkit_booking import plugin as booking_plugin

from crmkit import hookimpl
from crmkit.errors import ValidationFailed
from crmkit.testing import add_user, factories

MSK = dt.timezone(dt.timedelta(hours=3))  # the deployment's default zone, Europe/Moscow
DAY = dt.date(2030, 3, 4)
HOUR = dt.timedelta(hours=1)


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), MSK).astimezone(dt.UTC)


@pytest.fixture
def shop(booking_crm):
    add_user(booking_crm, "manager", ["manager"])
    with booking_crm.acting_as("manager") as work:
        journal = booking(work)
        bay = journal.add_resource("Пост 1", kind="bay")
        master = journal.add_resource("Мастер Иван", kind="specialist")
        client = factories.person(work)
        other = factories.person(work)
    return booking_crm, bay.id, master.id, client.id, other.id


def test_booking_shows_in_the_journal_and_raises_its_event(shop):
    crm, bay, master, client, _ = shop
    seen = []

    class Listener:
        @hookimpl
        def crmkit_handle_event(self, event, work):
            if event.name == BOOKING_MADE:
                seen.append((event.party_id, event.data["resource_id"], event.data["starts_at"]))

    crm.pm.register(Listener())
    with crm.acting_as("manager") as work:
        event = booking(work).book(
            party_id=client, resource_id=bay, starts_at=at(10), duration=dt.timedelta(hours=1)
        )
    assert seen == [(client, bay, at(10).isoformat())]
    with crm.acting_as("manager") as work:
        grid = booking(work).journal(DAY)
    assert [r.id for r in grid.resources] == [bay, master]  # bays before specialists
    assert grid.slots[0] == at(9) and grid.slots[-1] == at(19, 30)
    assert grid.at(bay, at(10, 30), 30).id == event.id
    assert grid.at(bay, at(11), 30) is None and grid.at(master, at(10), 30) is None


def test_a_resource_is_never_booked_twice(shop):
    crm, bay, master, client, other = shop
    with crm.acting_as("manager") as work:
        booking(work).book(
            party_id=client, resource_id=bay, starts_at=at(10), duration=dt.timedelta(hours=2)
        )
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed, match="already booked"):
        booking(work).book(
            party_id=other, resource_id=bay, starts_at=at(11), duration=dt.timedelta(hours=1)
        )
    with crm.acting_as("manager") as work:  # back to back, and another resource, are fine
        booking(work).book(
            party_id=other, resource_id=bay, starts_at=at(12), duration=dt.timedelta(hours=1)
        )
        booking(work).book(
            party_id=other, resource_id=master, starts_at=at(11), duration=dt.timedelta(hours=1)
        )


def test_two_people_booking_one_slot_at_once_cannot_both_win(shop):
    crm, bay, _, client, other = shop
    barrier = threading.Barrier(2)
    outcomes = []

    def attempt(party_id):
        try:
            with crm.acting_as("manager") as work:
                barrier.wait(5)
                booking(work).book(
                    party_id=party_id,
                    resource_id=bay,
                    starts_at=at(15),
                    duration=dt.timedelta(hours=1),
                )
            outcomes.append("booked")
        except ValidationFailed:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(p,)) for p in (client, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["booked", "refused"]


def test_free_windows_skip_busy_times_and_closed_hours(shop):
    crm, bay, master, client, _ = shop
    with crm.acting_as("manager") as work:
        journal = booking(work)
        journal.book(
            party_id=client, resource_id=bay, starts_at=at(9), duration=dt.timedelta(hours=3)
        )
        windows = journal.find_free(dt.timedelta(hours=2), since=at(8), kind="bay")
        assert [(w.resource.id, w.starts_at) for w in windows[:2]] == [
            (bay, at(12)),
            (bay, at(9, day=DAY + dt.timedelta(days=1))),
        ]
        # from mid-morning, the window starts on the next slot of the grid
        windows = journal.find_free(dt.timedelta(minutes=30), since=at(12, 10), kind="specialist")
        assert windows[0].resource.id == master and windows[0].starts_at == at(12, 30)
        # too long for any day
        assert journal.find_free(dt.timedelta(hours=12), since=at(8), days=2) == []


def test_a_cancelled_booking_frees_its_slot(shop):
    crm, bay, _, client, other = shop
    with crm.acting_as("manager") as work:
        first = booking(work).book(
            party_id=client, resource_id=bay, starts_at=at(10), duration=dt.timedelta(hours=1)
        )
    with crm.acting_as("manager") as work:
        booking(work).cancel(first.id, reason="client called")
        booking(work).book(
            party_id=other, resource_id=bay, starts_at=at(10), duration=dt.timedelta(hours=1)
        )


def test_booking_a_hidden_client_or_a_missing_resource_is_refused(shop):
    crm, bay, _, client, _ = shop
    add_user(crm, "agent", ["agent"])
    with crm.system() as work:  # the agent keeps the journal, but not the manager's client
        work.permissions.set("agent", "resource", "book", "all")
    with crm.acting_as("agent") as work:
        from crmkit.errors import NotFound

        with pytest.raises((NotFound, ValidationFailed)):
            booking(work).book(
                party_id=client, resource_id=bay, starts_at=at(10), duration=dt.timedelta(hours=1)
            )
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed, match="no resource"):
        booking(work).book(
            party_id=client, resource_id=999, starts_at=at(10), duration=dt.timedelta(hours=1)
        )


def test_a_specialist_must_be_a_user_and_a_blocked_one_is_not_booked(shop):
    """A resource linked to no user is refused on user_id (not a database error); a
    specialist who was blocked cannot be booked, and the refusal names them."""
    crm, _, _, client, _ = shop
    anna = add_user(crm, "anna", ["agent"], display_name="Анна Смирнова")
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed) as refused:
        booking(work).add_resource("Мастер Пётр", user_id=999)
    assert [str(m) for m in refused.value.errors["user_id"]] == ["no user 999"]
    with crm.acting_as("manager") as work:
        master = booking(work).add_resource("Мастер Анна", user_id=anna.id)
    with crm.system() as work:
        work.users.block(anna.id)
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed) as refused:
        booking(work).book(
            party_id=client, resource_id=master.id, starts_at=at(10), duration=dt.timedelta(hours=1)
        )
    (reason,) = refused.value.errors["resource_id"]
    assert str(reason) == "Мастер Анна: Анна Смирнова is blocked and cannot be booked"
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed, match="is blocked"):
        booking(work).add_resource("Мастер Анна 2", user_id=anna.id)


def test_the_journal_shows_a_booking_one_may_not_read_as_busy_only(make_crm):
    """The front desk books for its own clients: a manager's booking of a client the desk
    may not read still takes its hours in the journal (and in the free windows), but shows
    neither its title nor its client; invited to that booking, the desk reads its title,
    still not the client it may not read."""
    crm = make_crm(plugins=[booking_plugin, FrontDesk()])
    boss = add_user(crm, "boss", ["manager"])
    desk = add_user(crm, "desk", ["desk"])
    with crm.acting_as(boss) as work:
        bay = booking(work).add_resource("Пост 1", kind="bay").id
        vip = factories.organisation(work, name="Секретный клиент", owner_id=boss.id).id
        secret = booking(work).book(
            party_id=vip, resource_id=bay, starts_at=at(9), duration=dt.timedelta(hours=2),
            title="ТО секретного клиента",
        ).id  # fmt: skip
    with crm.acting_as(desk) as work:
        own = factories.organisation(work, name="Клиент стойки").id
        mine = booking(work).book(party_id=own, resource_id=bay, starts_at=at(11), duration=HOUR).id
        grid = booking(work).journal(DAY)
        held = grid.at(bay, at(10), 30)
        assert held is not None and held.hidden
        assert (held.id, held.title, held.party_id) == (None, "", None)
        assert grid.at(bay, at(11), 30).id == mine and grid.clients == {own: "Клиент стойки"}
        assert booking(work).find_free(HOUR, since=at(9))[0].starts_at == at(12)
    with crm.acting_as(boss) as work:
        work.calendar.update(secret, {"attendees": [{"user_id": desk.id}]})
    with crm.acting_as(desk) as work:
        grid = booking(work).journal(DAY)
        held = grid.at(bay, at(9), 30)
        assert (held.id, held.title) == (secret, "ТО секретного клиента")
        assert vip not in grid.clients and "Секретный клиент" not in grid.clients.values()


class FrontDesk:
    """A role that reads and books for its own clients, and reads the resources."""

    @hookimpl
    def crmkit_register_roles(self):
        from crmkit.access.rules import Role

        return [Role("desk", "Front desk")]

    @hookimpl
    def crmkit_register_permissions(self):
        from crmkit.access.rules import grant

        return [
            *grant("desk", ("party", "calendar_event"), ("read", "create", "update"), "own"),
            # reads the bays and specialists, keeps the journal (``book``, any scope)
            *grant("desk", "resource", ("read", "book"), "all"),
        ]


def test_a_blocked_specialist_has_no_free_window_and_no_bookable_column(shop):
    """Anna has left: the free windows never offer her (book() would refuse them), the
    form no longer lists her, and the journal shows her column only on days she still
    holds bookings, marked closed (those bookings are to be moved or cancelled)."""
    crm, bay, master, client, _ = shop
    anna = add_user(crm, "anna", ["agent"], display_name="Анна Смирнова")
    with crm.acting_as("manager") as work:
        journal = booking(work)
        hers = journal.add_resource("Анна", user_id=anna.id).id
        journal.book(party_id=client, resource_id=hers, starts_at=at(12), duration=HOUR)
        # her name comes first: before she left, she was offered first
        assert journal.find_free(HOUR, since=at(9))[0].resource.id == hers
    with crm.system() as work:
        work.users.block(anna.id)
    with crm.acting_as("manager") as work:
        journal = booking(work)
        windows = journal.find_free(HOUR, since=at(9), days=3)
        assert windows and hers not in {w.resource.id for w in windows}
        assert [w.resource.id for w in windows[:2]] == [master, bay]  # by name at one time
        assert hers not in {
            w.resource.id for w in journal.find_free(HOUR, since=at(9), kind="specialist")
        }
        assert [r.id for r in journal.bookable()] == [bay, master]
        today = journal.journal(DAY)
        assert [r.id for r in today.resources] == [bay, hers, master]
        assert today.closed == {hers} and today.at(hers, at(12), 30) is not None
        tomorrow = journal.journal(DAY + dt.timedelta(days=1))
        assert [r.id for r in tomorrow.resources] == [bay, master] and not tomorrow.closed


def test_a_cancellation_keeps_its_reason_and_happens_once(shop):
    """The reason is in the audit entry and on the client's timeline, where the booking
    made and cancelled both show; cancelling again is refused on status, naming the
    booking's time, and booking.cancelled is raised once."""
    from sqlalchemy import select

    from crmkit.model import AuditEntry

    crm, bay, _, client, _ = shop
    raised = []

    class Listener:
        @hookimpl
        def crmkit_handle_event(self, event, work):
            if event.name == BOOKING_CANCELLED:
                raised.append(event.data["reason"])

    crm.pm.register(Listener())
    with crm.acting_as("manager") as work:
        event = booking(work).book(
            party_id=client, resource_id=bay, starts_at=at(10), duration=HOUR
        )
    with crm.acting_as("manager") as work:
        booking(work).cancel(event.id, reason="  клиент заболел ")
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed) as refused:
        booking(work).cancel(event.id, reason="ещё раз")
    assert {k: [str(m) for m in v] for k, v in refused.value.errors.items()} == {
        "status": ["the booking at 2030-03-04 10:00 is cancelled already"]
    }
    assert raised == ["клиент заболел"]
    with crm.acting_as("manager") as work:
        entries = list(work.timeline.list(client))
        assert [(a.kind, a.subject, a.body) for a in entries] == [
            ("booking_cancelled", "Пост 1, 2030-03-04 10:00", "клиент заболел"),
            ("booking", "Пост 1, 2030-03-04 10:00", ""),
        ]
        assert {(a.record_entity, a.record_id) for a in entries} == {("calendar_event", event.id)}
        audit = work.session.scalars(
            select(AuditEntry.changes).where(
                AuditEntry.entity == "calendar_event",
                AuditEntry.record_id == event.id,
                AuditEntry.action == "update",
            )
        ).all()
        assert audit == [{"status": ["confirmed", "cancelled"], "reason": [None, "клиент заболел"]}]
        assert work.calendar.get(event.id).status == "cancelled"


def test_bookings_made_and_cancelled_are_timeline_kinds_the_api_filters_on(shop):
    """The plugin declares the kinds it writes, so the API's ``kind`` filter takes them."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from crmkit.web.app import create_app

    crm, bay, _, client, _ = shop
    with crm.acting_as("manager") as work:
        first = booking(work).book(
            party_id=client, resource_id=bay, starts_at=at(10), duration=HOUR
        )
        booking(work).book(party_id=client, resource_id=bay, starts_at=at(12), duration=HOUR)
    with crm.acting_as("manager") as work:
        booking(work).cancel(first.id, reason="перенос")
        secret = work.api_tokens.create("probe").secret
    api = TestClient(create_app(crm), headers={"Authorization": f"Bearer {secret}"})

    def subjects(kind: str) -> list[str]:
        answer = api.get(f"/api/v1/party/{client}/timeline", params={"kind": kind})
        assert answer.status_code == 200, answer.text
        return [entry["subject"] for entry in answer.json()["items"]]

    assert subjects("booking_cancelled") == ["Пост 1, 2030-03-04 10:00"]
    assert subjects("booking") == ["Пост 1, 2030-03-04 12:00", "Пост 1, 2030-03-04 10:00"]
    assert {"booking", "booking_cancelled"} <= set(crm.timeline_kinds)


def test_a_booking_given_its_end_is_as_long_as_one_given_its_length(shop):
    """``book(ends_at=)`` takes at most the week ``duration=`` does: a mistyped year on the
    end (2031 for 2030) would hold the bay for a year, hiding every free window.  An end
    before the start is refused on ``ends_at``; a naive ``since`` is refused naming it
    (the journal cannot guess whose wall clock it is)."""
    crm, bay, _, client, _ = shop
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed) as refused:
        booking(work).book(
            party_id=client,
            resource_id=bay,
            starts_at=at(10),
            ends_at=at(10, day=DAY.replace(year=2031)),
        )
    assert {k: [str(m) for m in v] for k, v in refused.value.errors.items()} == {
        "ends_at": ["at most 10080 minutes after the start"]
    }
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed) as refused:
        booking(work).book(party_id=client, resource_id=bay, starts_at=at(10), ends_at=at(9))
    assert refused.value.errors == {"ends_at": ["must be after the start"]}
    with crm.acting_as("manager") as work:  # a week to the minute is a booking
        week = booking(work).book(
            party_id=client, resource_id=bay, starts_at=at(10), ends_at=at(10) + 7 * 24 * HOUR
        )
        assert week.ends_at - week.starts_at == dt.timedelta(days=7)
    with crm.acting_as("manager") as work:
        assert [e.id for e in booking(work).of_party(client, upcoming_only=False)] == [week.id]
        with pytest.raises(ValidationFailed) as refused:
            booking(work).find_free(HOUR, since=dt.datetime(2030, 3, 4, 10))
        assert list(refused.value.errors) == ["since"]
        # the last days a date holds have their windows, and no day after them
        last = booking(work).find_free(HOUR, since=dt.datetime(9999, 12, 30, tzinfo=dt.UTC))
        assert last and {w.starts_at.year for w in last} == {9999}


def test_two_people_cancelling_one_booking_at_once_are_told_it_is_cancelled(shop):
    """A double click, or the desk and the master at once: one cancels, the other is
    told "cancelled already" (what the journal shows), not a conflict to reload; the
    client is told once."""
    crm, bay, _, client, _ = shop
    raised = []

    class Listener:
        @hookimpl
        def crmkit_handle_event(self, event, work):
            if event.name == BOOKING_CANCELLED:
                raised.append(event.data["reason"])

    crm.pm.register(Listener())
    with crm.acting_as("manager") as work:
        event = (
            booking(work).book(party_id=client, resource_id=bay, starts_at=at(10), duration=HOUR).id
        )
    barrier = threading.Barrier(2)
    outcomes = []

    def attempt(reason):
        try:
            with crm.acting_as("manager") as work:
                barrier.wait(5)
                booking(work).cancel(event, reason=reason)
            outcomes.append("cancelled")
        except ValidationFailed as exc:
            outcomes.append({k: [str(m) for m in v] for k, v in exc.errors.items()})
        except Exception as exc:  # what the other learns must be the refusal above
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=attempt, args=(r,)) for r in ("первый", "второй")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes, key=str) == [
        "cancelled",
        {"status": ["the booking at 2030-03-04 10:00 is cancelled already"]},
    ]
    assert len(raised) == 1
    with crm.acting_as("manager") as work:
        kinds = [a.kind for a in work.timeline.list(client)]
    assert kinds == ["booking_cancelled", "booking"]


def test_a_retired_resource_keeps_its_bookings_in_the_journal(shop):
    """Bay 1 is taken out of service (``active`` false) with a client still booked on it:
    the journal shows its column, closed, on the day of that booking (the desk must move
    or cancel it, and sees whom to call), not on other days; no window nor booking is
    offered on it."""
    crm, bay, master, client, _ = shop
    with crm.acting_as("manager") as work:
        held = booking(work).book(party_id=client, resource_id=bay, starts_at=at(10), duration=HOUR)
    with crm.system() as work:  # resources have no form: retired in code or the database
        from crmkit.model import Resource

        work.session.get(Resource, bay).active = False
    with crm.acting_as("manager") as work:
        journal = booking(work)
        today = journal.journal(DAY)
        assert [r.id for r in today.resources] == [bay, master]
        assert today.closed == {bay} and today.at(bay, at(10), 30).id == held.id
        tomorrow = journal.journal(DAY + dt.timedelta(days=1))
        assert [r.id for r in tomorrow.resources] == [master] and not tomorrow.closed
        assert bay not in {w.resource.id for w in journal.find_free(HOUR, since=at(9))}
        assert [r.id for r in journal.bookable()] == [master]
        with pytest.raises(ValidationFailed) as refused:
            journal.book(party_id=client, resource_id=bay, starts_at=at(12), duration=HOUR)
    # the core calendar's refusal, the same the calendar's form and the API give
    assert {k: [str(m) for m in v] for k, v in refused.value.errors.items()} == {
        "resource_id": ["Пост 1 is out of service and cannot be booked"]
    }


def test_cancelling_an_event_that_is_no_booking_is_refused_naming_it(shop):
    """The journal cancels bookings only: a meeting's id sent to it (an old link, a
    script) is refused on event_id, naming the meeting, in the reader's language."""
    crm = shop[0]
    with crm.acting_as("manager") as work:
        meeting = work.calendar.create(
            title="Планёрка", starts_at=at(10).isoformat(), ends_at=at(11).isoformat()
        )
    with crm.acting_as("manager") as work, pytest.raises(ValidationFailed) as refused:
        booking(work).cancel(meeting.id, reason="ошибка")
    (reason,) = refused.value.errors["event_id"]
    russian = {"“{event}” is not a booking": "«{event}» — не запись"}
    assert reason.translate(russian.get) == "«Планёрка» — не запись"
    with crm.acting_as("manager") as work:
        assert work.calendar.get(meeting.id).status != "cancelled"


def test_a_client_with_a_long_name_can_be_booked(shop):
    """A state institution's full name fills most of the 300 characters a name holds: the
    booking's title (client — resource, which the form does not ask for) is shortened to
    what a title holds, keeping the resource, instead of refusing a field nobody typed."""
    crm, bay, _, _, _ = shop
    name = ("Федеральное государственное бюджетное учреждение " * 7)[:299] + "»"
    with crm.acting_as("manager") as work:
        client = factories.organisation(work, name=name).id
        event = booking(work).book(
            party_id=client, resource_id=bay, starts_at=at(10), duration=HOUR
        )
        assert len(event.title) <= 300 and event.title.endswith("… — Пост 1")
        assert event.title.startswith("Федеральное государственное")


def test_the_journals_refusals_to_a_developer_are_listed_for_translation(shop):
    """The refusals of a resource without a name or user and of a booking without an end
    are message templates (their parameters kept apart), so the catalog tool lists them
    and a Russian page shows them in Russian, as the journal's other refusals."""
    from pathlib import Path

    import crmkit_booking

    from crmkit.i18n import Message
    from crmkit.testing.catalogs import package_messages

    crm, _, _, client, _ = shop
    anna = add_user(crm, "anna", ["agent"])
    with crm.system() as work:
        work.users.block(anna.id)
    refusals = []
    for attempt in (
        lambda journal: journal.add_resource("  "),
        lambda journal: journal.add_resource("Мастер Пётр", user_id=999),
        lambda journal: journal.add_resource("Мастер Анна", user_id=anna.id),
        lambda journal: journal.book(party_id=client, resource_id=1, starts_at=at(10)),
        lambda journal: journal.find_free(dt.timedelta(0), since=at(9)),
    ):
        with crm.acting_as("manager") as work, pytest.raises(ValidationFailed) as refused:
            attempt(booking(work))
        (reasons,) = refused.value.errors.values()
        refusals.extend(reasons)
    assert all(isinstance(reason, Message) for reason in refusals)
    assert [reason.template for reason in refusals] == [
        "a name is required",
        "no user {user}",
        "user {user} is blocked",
        "give an end or a duration",
        "a duration is positive",
    ]
    listed = package_messages(Path(crmkit_booking.__file__).parent)
    assert {
        "user {user} is blocked",
        "give an end or a duration",
        "a duration is positive",
    } <= listed
