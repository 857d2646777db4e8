"""The timeline: one per party, notes with mentions, pinning, kinds, paging."""

from __future__ import annotations

import datetime as dt

import pytest

from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.services.timeline import mentioned_usernames
from crmkit.testing import add_user, factories


def test_mentions_are_parsed_without_emails():
    assert mentioned_usernames("@ivan call, ask @maria.k. mail ivan@corp.ru @ivan") == [
        "ivan",
        "maria.k",
    ]


def test_mention_of_someone_who_cannot_see_the_client_tells_them_nothing(crm):
    """Igor (an agent) may not see Ivan's client: mentioning him sends him neither a
    notification nor the note's text, and the note says he was not told."""
    ivan = add_user(crm, "ivan", ["agent"])
    igor = add_user(crm, "igor", ["agent"])
    maria = add_user(crm, "maria", ["manager"])
    with crm.acting_as(ivan) as work:
        client = factories.organisation(work)
        note = work.timeline.add_note(
            party_id=client.id, body="@igor @maria the director's mobile is +7 916 000-00-00"
        )
        assert note.data == {"mentions": ["maria"], "not_told": ["igor"]}
    with crm.acting_as(igor) as work:
        assert work.notifications.latest() == []
        assert work.notifications.unread_count() == 0
    with crm.acting_as(maria) as work:
        assert [n.kind for n in work.notifications.latest()] == ["mention"]
    with crm.system() as work:
        assert [n.id for n in work.timeline.mentions_of(igor.id)] == []


def test_note_with_mention_notifies_the_colleague_only(crm):
    ivan = add_user(crm, "ivan", ["agent"])
    maria = add_user(crm, "maria", ["manager"])
    blocked = add_user(crm, "gone", ["agent"])
    with crm.system() as work:
        work.users.block("gone")
    with crm.acting_as(ivan) as work:
        client = factories.organisation(work)
        note = work.timeline.add_note(
            party_id=client.id, pinned=True, body="@maria please call them, cc @gone and @ivan"
        )
        assert note.data["mentions"] == ["ivan", "maria"]
    with crm.acting_as(maria) as work:
        [notice] = work.notifications.latest()
        assert notice.kind == "mention" and notice.party_id == client.id
        assert notice.text.startswith("ivan: @maria please call them")
        assert work.notifications.unread_count() == 1
        assert work.notifications.mark_read() == 1 and work.notifications.unread_count() == 0
        assert [n.id for n in work.timeline.mentions_of(maria.id)] == [note.id]
    with crm.acting_as(ivan) as work:
        assert work.notifications.latest() == []  # no notice for mentioning yourself
        assert [n.id for n in work.timeline.pinned(client.id)] == [note.id]
    with crm.acting_as(blocked.id) if False else crm.system() as work:
        assert work.session.get(type(note), note.id).data["mentions"] == ["ivan", "maria"]


def test_empty_note_is_refused(crm):
    with crm.system() as work:
        client = factories.organisation(work)
        with pytest.raises(ValidationFailed, match="body"):
            work.timeline.add_note(party_id=client.id, body="   ")


def test_timeline_newest_first_with_kinds_and_pages(crm):
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with crm.system() as work:
        client = factories.organisation(work)
        for i in range(7):
            work.timeline.add(
                "call" if i % 2 else "mail",
                party_id=client.id,
                subject=f"#{i}",
                occurred_at=start + dt.timedelta(hours=i),
            )
    with crm.system() as work:
        first = work.timeline.list(client.id, kinds=["call", "mail"], limit=3)
        assert [a.subject for a in first.items] == ["#6", "#5", "#4"]
        second = work.timeline.list(
            client.id, kinds=["call", "mail"], limit=3, after=first.next_cursor
        )
        third = work.timeline.list(
            client.id, kinds=["call", "mail"], limit=3, after=second.next_cursor
        )
        assert [a.subject for a in second.items + third.items] == ["#3", "#2", "#1", "#0"]
        assert third.next_cursor is None
        calls = work.timeline.list(client.id, kinds=["call"]).items
        assert [a.subject for a in calls] == ["#5", "#3", "#1"]


def test_assistant_entries_are_signed(crm):
    with crm.system() as work:
        client = factories.organisation(work)
    with crm.assistant() as work:
        entry = work.timeline.add("assistant", party_id=client.id, subject="moved to paid")
        assert entry.by_assistant and entry.actor_id is None


def test_pinning_is_an_update_of_that_note_in_its_scope(crm):
    """Agents here read every note but update only their own clients' ones: Ivan pins a
    note on his client, not Maria's note on hers."""
    ivan = add_user(crm, "ivan", ["agent"])
    maria = add_user(crm, "maria", ["agent"])
    with crm.system() as work:
        work.permissions.set("agent", "party", "read", "all")
        work.permissions.set("agent", "activity", "read", "all")
        work.permissions.set("agent", "activity", "update", "own")
    with crm.acting_as(maria) as work:
        hers = factories.organisation(work)
        her_note = work.timeline.add_note(party_id=hers.id, body="Договор у юриста")
    with crm.acting_as(ivan) as work:
        his = factories.organisation(work)
        his_note = work.timeline.add_note(party_id=his.id, body="Перезвонить в среду")
    with crm.acting_as(ivan) as work:
        assert work.timeline.get(her_note.id).body == "Договор у юриста"  # he may read it
        with pytest.raises(PermissionDenied):
            work.timeline.pin(her_note.id)
        assert work.timeline.pin(his_note.id).pinned
    with crm.acting_as(maria) as work:
        assert work.timeline.pinned(hers.id) == []
