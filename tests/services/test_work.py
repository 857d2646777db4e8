"""Tasks, reminders and the calendar."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.testing import add_user, factories

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(delta_hours: float) -> str:
    return (NOW + dt.timedelta(hours=delta_hours)).isoformat()


def test_task_assignment_notifies_and_done_is_dated(crm):
    boss = add_user(crm, "boss", ["manager"])
    ivan = add_user(crm, "ivan", ["agent"])
    with crm.acting_as(boss) as work:
        client = factories.organisation(work)
        task = work.tasks.create(
            title="Позвонить",
            assignee_id=ivan.id,
            party_id=client.id,
            deadline=iso(-1),
            tags=["срочно"],
        )
        sub = work.tasks.create(title="Подготовить КП", parent_id=task.id, assignee_id=ivan.id)
    with crm.acting_as(ivan) as work:
        assert [t.id for t in work.tasks.mine()] == [task.id, sub.id]
        assert [t.id for t in work.tasks.overdue()] == [task.id]
        assert [t.id for t in work.tasks.subtasks(task.id)] == [sub.id]
        assert {n.kind for n in work.notifications.latest()} == {"assignment"}
        done = work.tasks.complete(task.id)
        assert done.done_at is not None
        assert [t.id for t in work.tasks.mine()] == [sub.id]


def test_agent_may_not_assign_tasks_to_others(crm):
    ivan = add_user(crm, "ivan", ["agent"])
    maria = add_user(crm, "maria", ["agent"])
    with crm.acting_as(ivan) as work, pytest.raises(PermissionDenied):
        work.tasks.create(title="for maria", assignee_id=maria.id)


def test_reminder_for_people_and_a_team(crm):
    ivan = add_user(crm, "ivan", ["agent"])
    maria = add_user(crm, "maria", ["agent"])
    oleg = add_user(crm, "oleg", ["agent"])
    with crm.system() as work:
        team = work.users.create_team("sales", members=[maria.id, oleg.id])
    with crm.acting_as(ivan) as work:
        reminder = work.reminders.create(
            text="Продлить договор",
            remind_at=iso(1),
            recipients=[{"user_id": ivan.id}, {"team_id": team.id}],
        )
        assert work.reminders.recipients_of(reminder) == sorted([ivan.id, maria.id, oleg.id])
    with crm.acting_as(maria) as work:
        assert [r.id for r in work.reminders.for_user(maria.id)] == [reminder.id]
        work.reminders.get(reminder.id)  # a recipient sees it although ivan made it
        work.reminders.done(reminder.id)
    with crm.system() as work:
        assert work.reminders.recipients_of(work.reminders.get(reminder.id)) == sorted(
            [ivan.id, oleg.id]
        )
        assert work.reminders.due(now=NOW + dt.timedelta(hours=2))[0].id == reminder.id
        later = NOW + dt.timedelta(days=1)
        work.reminders.snooze(reminder.id, later)
        assert work.reminders.due(now=NOW + dt.timedelta(hours=2)) == []


def test_resource_is_never_double_booked(crm):
    from crmkit.model import Resource

    with crm.system() as work:
        bay = Resource(name="Пост 1", kind="bay")
        work.session.add(bay)
        work.flush()
        first = work.calendar.create(
            title="ТО", resource_id=bay.id, starts_at=iso(1), ends_at=iso(2)
        )
        with pytest.raises(ValidationFailed, match="already booked"):
            work.calendar.create(
                title="Шиномонтаж", resource_id=bay.id, starts_at=iso(1.5), ends_at=iso(3)
            )
        second = work.calendar.create(
            title="Шиномонтаж", resource_id=bay.id, starts_at=iso(2), ends_at=iso(3)
        )
        with pytest.raises(ValidationFailed, match="already booked"):
            work.calendar.reschedule(
                second, NOW + dt.timedelta(hours=1.5), NOW + dt.timedelta(hours=2.5)
            )
        slots = work.calendar.free_slots(
            bay.id, NOW, NOW + dt.timedelta(hours=6), dt.timedelta(hours=1)
        )
        assert slots == [
            (NOW, NOW + dt.timedelta(hours=1)),
            (NOW + dt.timedelta(hours=3), NOW + dt.timedelta(hours=6)),
        ]
        work.calendar.reschedule(first, NOW + dt.timedelta(hours=4), NOW + dt.timedelta(hours=5))


def test_event_end_before_start_is_refused(crm):
    with crm.system() as work, pytest.raises(ValidationFailed, match="ends_at"):
        work.calendar.create(title="x", starts_at=iso(2), ends_at=iso(1))


def test_invited_colleague_sees_the_event(crm):
    ivan = add_user(crm, "ivan", ["agent"])
    maria = add_user(crm, "maria", ["agent"])
    with crm.acting_as(ivan) as work:
        event = work.calendar.create(
            title="Встреча", starts_at=iso(1), ends_at=iso(2), attendees=[{"user_id": maria.id}]
        )
    with crm.acting_as(maria) as work:
        window = work.calendar.between(NOW, NOW + dt.timedelta(days=1), owner_id=maria.id)
        assert [e.id for e in window] == [event.id]


def test_a_dismissed_team_reminder_leaves_that_members_list_only(crm):
    """A member who dealt with a team reminder no longer sees it in their workspace; the
    rest of the team still does."""
    ivan = add_user(crm, "ivan", ["agent"])
    maria = add_user(crm, "maria", ["agent"])
    oleg = add_user(crm, "oleg", ["agent"])
    with crm.system() as work:
        team = work.users.create_team("sales", members=[maria.id, oleg.id])
    with crm.acting_as(ivan) as work:
        reminder = work.reminders.create(
            text="Позвонить поставщику", remind_at=iso(1), recipients=[{"team_id": team.id}]
        )
    with crm.acting_as(maria) as work:
        work.reminders.done(reminder.id)
    with crm.acting_as(maria) as work:
        assert work.reminders.for_user(maria.id) == []
    with crm.acting_as(oleg) as work:
        assert [r.id for r in work.reminders.for_user(oleg.id)] == [reminder.id]


def _bay(work, name="Пост 1"):
    from crmkit.model import Resource

    bay = Resource(name=name, kind="bay")
    work.session.add(bay)
    work.flush()
    return bay


def test_an_event_taken_back_from_cancelled_needs_its_slot_free(crm):
    """Booked, cancelled, the slot given to someone else: confirming the first again
    would put two bookings in one slot, so it is refused and nothing changes."""
    with crm.system() as work:
        bay = _bay(work)
        first = work.calendar.create(
            title="Клиент 1", resource_id=bay.id, starts_at=iso(1), ends_at=iso(2)
        )
        work.calendar.update(first, status="cancelled")
        work.calendar.create(title="Клиент 2", resource_id=bay.id, starts_at=iso(1), ends_at=iso(2))
    with crm.system() as work, pytest.raises(ValidationFailed, match="already booked"):
        work.calendar.update(first.id, status="confirmed")
    with crm.system() as work:
        assert work.calendar.get(first.id).status == "cancelled"
        # a cancelled event takes no slot, so it may be made (or moved) over a busy one
        ghost = work.calendar.create(
            title="Отменён", resource_id=bay.id, starts_at=iso(1), ends_at=iso(2),
            status="cancelled",
        )  # fmt: skip
        work.calendar.reschedule(ghost, NOW + dt.timedelta(hours=1.5), NOW + dt.timedelta(hours=3))
        work.calendar.update(ghost, status="tentative", starts_at=iso(4), ends_at=iso(5))


def test_the_clash_names_the_time_in_the_business_zone(crm):
    """Moscow is the deployment's zone: a 10:00 booking is "already booked at 10:00",
    not at 07:00 UTC; the message is a translatable template."""
    from zoneinfo import ZoneInfo

    from crmkit.i18n import Message

    moscow = dt.datetime(2030, 3, 4, 10, tzinfo=ZoneInfo("Europe/Moscow"))
    with crm.system() as work:
        bay = _bay(work)
        work.calendar.create(
            title="ТО",
            resource_id=bay.id,
            starts_at=moscow.isoformat(),
            ends_at=(moscow + dt.timedelta(hours=1)).isoformat(),
        )
    with crm.system() as work, pytest.raises(ValidationFailed) as refused:
        work.calendar.create(
            title="Шиномонтаж",
            resource_id=bay.id,
            starts_at=(moscow + dt.timedelta(minutes=30)).isoformat(),
            ends_at=(moscow + dt.timedelta(hours=2)).isoformat(),
        )
    (reason,) = refused.value.errors["resource_id"]
    assert isinstance(reason, Message)
    assert str(reason) == "already booked at 2030-03-04 10:00"
    assert reason.translate({"already booked at {time}": "уже занят: {time}"}.get) == (
        "уже занят: 2030-03-04 10:00"
    )


def test_two_events_for_one_resource_at_once_cannot_both_be_made(crm):
    """The calendar's own create (its form, the API) serializes on the resource like a
    booking does: the second of two simultaneous events for one hour waits for the first
    and is refused.  The first holds its transaction open until the second has tried (or
    for a second, when the second waits on the resource as it should)."""
    import threading

    with crm.system() as work:
        bay_id = _bay(work).id
    first_made, second_tried = threading.Event(), threading.Event()
    outcomes = {}

    def first():
        with crm.system() as work:
            work.calendar.create(
                title="Первый", resource_id=bay_id, starts_at=iso(1), ends_at=iso(2)
            )
            first_made.set()
            second_tried.wait(1)
        outcomes["first"] = "made"

    def second():
        first_made.wait(10)
        try:
            with crm.system() as work:
                work.calendar.create(
                    title="Второй", resource_id=bay_id, starts_at=iso(1.5), ends_at=iso(2.5)
                )
            outcomes["second"] = "made"
        except ValidationFailed:
            outcomes["second"] = "refused"
        finally:
            second_tried.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == {"first": "made", "second": "refused"}
    with crm.system() as work:
        booked = work.calendar.between(NOW, NOW + dt.timedelta(hours=3), resource_id=bay_id)
        assert [e.title for e in booked] == ["Первый"]


def test_an_invited_colleague_reads_the_event_but_may_not_change_or_delete_it(crm):
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    with crm.system() as work:  # agents may delete their own events here
        work.permissions.set("agent", "calendar_event", "delete", "own")
    with crm.acting_as(anna) as work:
        event = work.calendar.create(
            title="Встреча", starts_at=iso(1), ends_at=iso(2), attendees=[{"user_id": boris.id}]
        )
        own = work.calendar.create(title="Своя", starts_at=iso(3), ends_at=iso(4))
    with crm.acting_as(boris) as work:
        assert work.calendar.get(event.id).title == "Встреча"
        with pytest.raises(PermissionDenied):
            work.records("calendar_event").update(event.id, {"title": "Отменена"})
        with pytest.raises(PermissionDenied):
            work.calendar.get(event.id, action="update")
        with pytest.raises(PermissionDenied):
            work.calendar.delete(event.id)
        with pytest.raises(PermissionDenied):
            work.calendar.add_tags([event.id], ["чужое"])
    with crm.acting_as(anna) as work:
        kept = work.calendar.get(event.id)
        assert kept.title == "Встреча" and work.calendar.tags_of(kept) == []
        work.calendar.update(event.id, {"title": "Встреча в 11"})  # the owner still may
        work.calendar.delete(own.id)


def test_a_recipient_dismisses_a_reminder_but_may_not_change_it(crm):
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    with crm.acting_as(anna) as work:
        reminder = work.reminders.create(
            text="Продлить договор",
            remind_at=iso(1),
            recipients=[{"user_id": anna.id}, {"user_id": boris.id}],
        )
    with crm.acting_as(boris) as work:
        assert work.reminders.get(reminder.id).text == "Продлить договор"
        with pytest.raises(PermissionDenied):
            work.reminders.update(reminder.id, {"text": "Забыть"})
        with pytest.raises(PermissionDenied):  # it would move it for anna too
            work.reminders.snooze(reminder.id, NOW + dt.timedelta(days=30))
        work.reminders.done(reminder.id)  # for himself
    with crm.acting_as(anna) as work:
        row = work.reminders.get(reminder.id)
        assert (row.text, row.status) == ("Продлить договор", "pending")
        assert row.remind_at == NOW + dt.timedelta(hours=1)
        assert work.reminders.recipients_of(row) == [anna.id]
        work.reminders.snooze(reminder.id, NOW + dt.timedelta(days=1))  # hers to move


def test_a_task_links_only_to_a_team_the_actor_may_read(crm):
    from crmkit.model import Task

    ivan = add_user(crm, "ivan", ["agent"])
    with crm.system() as work:
        team = work.users.create_team("Продажи", [])
        work.permissions.set("agent", "team", "read", "none")  # this deployment hides teams
    with crm.acting_as(ivan) as work:
        mine = work.tasks.create(title="Моя задача")
    missing_id = team.id + 1000
    for team_id in (team.id, missing_id):  # hidden and missing: the same refusal
        with crm.acting_as(ivan) as work:
            with pytest.raises(ValidationFailed) as refused:
                work.tasks.create(title="Задача команды", team_id=team_id)
            assert refused.value.errors == {"team_id": [f"no team {team_id}"]}
            with pytest.raises(ValidationFailed) as refused:
                work.tasks.update(mine.id, {"team_id": team_id, "title": "Переименована"})
            assert refused.value.errors == {"team_id": [f"no team {team_id}"]}
    with crm.system() as work:  # nothing written
        assert work.session.scalars(sa.select(Task.title).order_by(Task.id)).all() == ["Моя задача"]
        assert work.tasks.get(mine.id).team_id is None
        work.tasks.update(mine.id, {"team_id": team.id})  # the system links anything
        work.permissions.set("agent", "team", "read", "all")
    with crm.acting_as(ivan) as work:  # a team ivan may read is fine
        assert work.tasks.create(title="Задача команды", team_id=team.id).team_id == team.id
        work.tasks.update(mine.id, {"team_id": None})


def test_an_event_books_only_a_resource_the_actor_may_read(crm):
    from crmkit.model import CalendarEvent, Resource

    ivan = add_user(crm, "ivan", ["agent"])
    with crm.system() as work:
        bay = Resource(name="Пост 1", kind="bay")
        work.session.add(bay)
        work.flush()
        work.calendar.create(title="ТО", resource_id=bay.id, starts_at=iso(1), ends_at=iso(2))
        work.permissions.set("agent", "resource", "read", "none")
    with crm.acting_as(ivan) as work:
        meeting = work.calendar.create(title="Встреча", starts_at=iso(5), ends_at=iso(6))
    missing_id = bay.id + 1000
    for resource_id in (bay.id, missing_id):
        with crm.acting_as(ivan) as work:
            # not "already booked at ...": that would tell the hidden bay exists, and when
            with pytest.raises(ValidationFailed) as refused:
                work.calendar.create(
                    title="Шиномонтаж", resource_id=resource_id, starts_at=iso(1), ends_at=iso(2)
                )
            assert refused.value.errors == {"resource_id": [f"no resource {resource_id}"]}
            with pytest.raises(ValidationFailed) as refused:
                work.calendar.update(meeting.id, {"resource_id": resource_id})
            assert refused.value.errors == {"resource_id": [f"no resource {resource_id}"]}
    with crm.system() as work:
        assert work.session.scalars(
            sa.select(CalendarEvent.title).order_by(CalendarEvent.id)
        ).all() == [
            "ТО",
            "Встреча",
        ]
        assert work.calendar.get(meeting.id).resource_id is None
        work.calendar.update(meeting.id, {"resource_id": bay.id})  # the system books anything
        work.permissions.set("agent", "resource", "read", "all")
    with crm.acting_as(ivan) as work, pytest.raises(ValidationFailed, match="already booked"):
        work.calendar.create(
            title="Шиномонтаж", resource_id=bay.id, starts_at=iso(1), ends_at=iso(2)
        )


def test_a_task_cannot_be_put_under_a_task_one_cannot_see(crm):
    ivan = add_user(crm, "ivan", ["agent"])
    maria = add_user(crm, "maria", ["agent"])
    with crm.acting_as(maria) as work:
        hidden = work.tasks.create(title="Задача Марии")
    with crm.acting_as(ivan) as work:
        mine = work.tasks.create(title="Моя задача")
        parent = work.tasks.create(title="Моя большая задача")
    missing_id = hidden.id + 1000
    for parent_id in (hidden.id, missing_id):
        with crm.acting_as(ivan) as work:
            with pytest.raises(ValidationFailed) as refused:
                work.tasks.update(mine.id, {"parent_id": parent_id, "title": "Переименована"})
            assert refused.value.errors == {"parent_id": [f"no task {parent_id}"]}
            with pytest.raises(ValidationFailed) as refused:
                work.tasks.create(title="Подзадача", parent_id=parent_id)
            assert refused.value.errors == {"parent_id": [f"no task {parent_id}"]}
    with crm.acting_as(ivan) as work:
        kept = work.tasks.get(mine.id)
        assert (kept.title, kept.parent_id) == ("Моя задача", None)  # nothing written
        work.tasks.update(mine.id, {"parent_id": parent.id})  # a visible parent is fine
        assert [t.id for t in work.tasks.subtasks(parent.id)] == [mine.id]


def test_a_blocked_specialists_resource_takes_no_new_event(crm):
    """A specialist who left (blocked) holds no new hour, whatever puts it there (the
    calendar's form, a drag, the API): making an event on their resource, moving one onto
    it or in time on it, or taking one back from cancelled is refused on resource_id,
    naming the resource and the person; cancelling and editing other fields still work."""
    from crmkit.model import Resource

    anna = add_user(crm, "anna", ["agent"], display_name="Анна Смирнова")
    with crm.system() as work:
        mine = Resource(name="Мастер Анна", kind="specialist", user_id=anna.id)
        work.session.add(mine)
        bay = _bay(work)
        kept = work.calendar.create(
            title="Клиент 1", resource_id=mine.id, starts_at=iso(1), ends_at=iso(2)
        )
        elsewhere = work.calendar.create(
            title="Клиент 2", resource_id=bay.id, starts_at=iso(3), ends_at=iso(4)
        )
        gone = work.calendar.create(
            title="Клиент 3", resource_id=mine.id, starts_at=iso(5), ends_at=iso(6)
        )
        work.calendar.update(gone, status="cancelled")
        ids = mine.id, kept.id, elsewhere.id, gone.id, bay.id
    with crm.system() as work:
        work.users.block(anna.id)
    mine_id, kept_id, elsewhere_id, gone_id, bay_id = ids
    refusal = {"resource_id": ["Мастер Анна: Анна Смирнова is blocked and cannot be booked"]}
    attempts = [
        lambda w: w.calendar.create(
            title="Новый", resource_id=mine_id, starts_at=iso(8), ends_at=iso(9)
        ),
        lambda w: w.calendar.update(elsewhere_id, {"resource_id": mine_id}),
        lambda w: w.calendar.reschedule(
            kept_id, NOW + dt.timedelta(hours=10), NOW + dt.timedelta(hours=11)
        ),
        lambda w: w.calendar.update(gone_id, status="confirmed"),
    ]
    for attempt in attempts:
        with crm.system() as work, pytest.raises(ValidationFailed) as refused:
            attempt(work)
        assert {k: [str(m) for m in v] for k, v in refused.value.errors.items()} == refusal
    with crm.system() as work:
        assert work.calendar.get(elsewhere_id).resource_id == bay_id
        assert work.calendar.get(kept_id).starts_at == NOW + dt.timedelta(hours=1)
        assert work.calendar.get(gone_id).status == "cancelled"
        assert (
            len(work.calendar.between(NOW, NOW + dt.timedelta(hours=12), resource_id=mine_id)) == 2
        )
        work.calendar.update(kept_id, {"title": "Клиент 1 (перезвонить)"})
        work.calendar.update(kept_id, status="cancelled")  # a booking of theirs can be undone


def test_a_retired_resource_takes_no_new_event(crm):
    """Bay 1 is taken out of service (``active`` false) with a client still on it.  Putting
    an event on it is refused on resource_id, naming the bay, whatever does it (the
    calendar's form and the API create and update through the service): a new event, one
    moved onto it from another bay, the one it holds moved in time (a drag, or its end
    alone), or one taken back from cancelled, as for a blocked specialist.  The event it
    still holds can be edited otherwise, moved to another bay and cancelled, so the desk
    can deal with it."""
    from crmkit.model import Resource

    with crm.system() as work:
        bay = _bay(work)
        other = _bay(work, "Пост 2")
        kept = work.calendar.create(
            title="Клиент 1", resource_id=bay.id, starts_at=iso(1), ends_at=iso(2)
        )
        elsewhere = work.calendar.create(
            title="Клиент 2", resource_id=other.id, starts_at=iso(3), ends_at=iso(4)
        )
        gone = work.calendar.create(
            title="Клиент 3", resource_id=bay.id, starts_at=iso(5), ends_at=iso(6)
        )
        work.calendar.update(gone, status="cancelled")
        ids = bay.id, kept.id, elsewhere.id, gone.id, other.id
    bay_id, kept_id, elsewhere_id, gone_id, other_id = ids
    with crm.system() as work:
        work.session.get(Resource, bay_id).active = False
    refusal = {"resource_id": ["Пост 1 is out of service and cannot be booked"]}
    attempts = [
        lambda w: w.calendar.create(
            title="Новый", resource_id=bay_id, starts_at=iso(8), ends_at=iso(9)
        ),
        lambda w: w.calendar.update(elsewhere_id, {"resource_id": bay_id}),
        lambda w: w.calendar.reschedule(
            kept_id, NOW + dt.timedelta(hours=10), NOW + dt.timedelta(hours=11)
        ),
        lambda w: w.calendar.update(kept_id, {"ends_at": iso(3)}),
        lambda w: w.calendar.update(gone_id, status="confirmed"),
    ]
    for attempt in attempts:
        with crm.system() as work, pytest.raises(ValidationFailed) as refused:
            attempt(work)
        assert {k: [str(m) for m in v] for k, v in refused.value.errors.items()} == refusal
    with crm.system() as work:
        assert work.calendar.get(elsewhere_id).resource_id == other_id
        assert work.calendar.get(gone_id).status == "cancelled"
        assert [
            e.id
            for e in work.calendar.between(NOW, NOW + dt.timedelta(hours=12), resource_id=bay_id)
        ] == [kept_id, gone_id]
        work.calendar.update(kept_id, {"title": "Клиент 1 (перезвонить)"})
    with crm.system() as work:
        kept = work.calendar.get(kept_id)
        assert (kept.title, kept.resource_id) == ("Клиент 1 (перезвонить)", bay_id)
        assert (kept.starts_at, kept.ends_at) == (
            NOW + dt.timedelta(hours=1),
            NOW + dt.timedelta(hours=2),
        )
        work.calendar.update(kept_id, status="cancelled")
        work.calendar.update(kept_id, {"resource_id": other_id, "status": "confirmed"})
        assert work.calendar.get(kept_id).resource_id == other_id  # moved off it: fine


def test_a_resource_holding_upcoming_bookings_is_not_deleted(crm):
    """Deleting a bay used to unlink its bookings silently (the column is ``SET NULL``):
    the clients booked next week vanished from the journal and still came.  While the
    resource holds a live event that has not ended, deleting it is refused, naming it and
    how many; once they are cancelled (or over), it is deleted and past events keep
    their times, without the resource."""
    with crm.system() as work:
        bay = _bay(work)
        past = work.calendar.create(
            title="Было", resource_id=bay.id, starts_at=iso(-3), ends_at=iso(-2)
        )
        coming = [
            work.calendar.create(
                title=f"Клиент {n}", resource_id=bay.id, starts_at=iso(n), ends_at=iso(n + 1)
            )
            for n in (1, 2)
        ]
    with crm.system() as work, pytest.raises(ValidationFailed) as refused:
        work.records("resource").delete(bay.id)
    assert {k: [str(m) for m in v] for k, v in refused.value.errors.items()} == {
        "_schema": ["Пост 1 holds 2 upcoming events: move or cancel them first"]
    }
    with crm.system() as work:
        assert [e.resource_id for e in map(work.calendar.get, [c.id for c in coming])] == [
            bay.id
        ] * 2
        for event in coming:
            work.calendar.update(event.id, status="cancelled")
    with crm.system() as work:
        work.records("resource").delete(bay.id)
    with crm.system() as work:
        assert work.calendar.get(past.id).resource_id is None
