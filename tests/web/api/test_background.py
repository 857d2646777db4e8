"""What background work changes, as API clients see it: ETags of fired reminders, the
timeline entry of a message given up and retried."""

from __future__ import annotations

import datetime as dt

from crmkit.jobs.reminders import fire_due_reminders
from crmkit.testing import add_user
from tests.web.api.conftest import problem


def test_a_fired_reminder_has_a_new_etag(crm, client_for):
    ann = add_user(crm, "ann", ["agent"])
    api = client_for(ann)
    created = api.post("reminder", json={"text": "позвонить", "remind_at": "2030-01-01T09:00:00Z"})
    assert created.status_code == 201, created.text
    reminder_id, pending_tag = created.json()["id"], created.headers["etag"]

    assert fire_due_reminders(crm, now=dt.datetime(2030, 1, 1, 9, 1, tzinfo=dt.UTC)) == 1

    # a client holding the pending reminder learns that it changed ...
    fresh = api.get(f"reminder/{reminder_id}", headers={"If-None-Match": pending_tag})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["status"] == "fired"
    assert fresh.headers["etag"] != pending_tag
    # ... and cannot act on the reminder as it was before it fired
    stale = api.post(
        f"reminder/{reminder_id}/snooze",
        json={"until": "2030-01-02T09:00:00Z"},
        headers={"If-Match": pending_tag},
    )
    assert problem(stale, 412)["type"].endswith("#stale-write")
    snoozed = api.post(
        f"reminder/{reminder_id}/snooze",
        json={"until": "2030-01-02T09:00:00Z"},
        headers={"If-Match": fresh.headers["etag"]},
    )
    assert snoozed.status_code == 200, snoozed.text
    assert snoozed.json()["status"] == "pending"
