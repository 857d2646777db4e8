"""What background work changes, as API clients see it: ETags of fired reminders, the
timeline entry of a message given up and retried."""

from __future__ import annotations

import datetime as dt

from crmkit.channels import PermanentFailure
from crmkit.jobs.delivery import deliver_due
from crmkit.jobs.reminders import fire_due_reminders
from crmkit.testing import add_user, factories
from tests.web.api.conftest import problem
from tests.web.conftest import ChatChannel


class RefusingChat(ChatChannel):
    """The chat channel, refusing every message while ``refuse`` is set."""

    def __init__(self):
        super().__init__()
        self.refuse = False

    def send(self, message):
        if self.refuse:
            raise PermanentFailure(f"{message.to} is not a chat user")
        return super().send(message)


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


def test_a_retried_message_is_queued_again_then_sent_without_the_old_error(
    make_crm, client_for_crm
):
    peer = RefusingChat()
    crm = make_crm(plugins=[peer])
    admin = add_user(crm, "root", ["admin"])
    api = client_for_crm(crm, admin)
    peer.refuse = True
    with crm.acting_as(admin) as work:
        party_id = factories.organisation(work).id
        message_id = work.channels.send("chat", to="anna", body="Счёт готов", party_id=party_id).id
    assert deliver_due(crm) == {"dead": 1}
    failed = api.get(f"activity/{message_id}").json()
    assert failed["status"] == "failed"
    assert "anna is not a chat user" in failed["data"]["error"]

    peer.refuse = False
    with crm.acting_as(admin) as work:  # Failed deliveries: Retry
        [item] = work.outbox.failed()
        work.outbox.retry([item.id])
    queued = api.get(f"activity/{message_id}").json()
    assert queued["status"] == "queued" and "error" not in queued["data"]

    assert deliver_due(crm) == {"delivered": 1}
    sent = api.get(f"activity/{message_id}").json()
    assert sent["status"] == "sent" and "error" not in sent["data"]
    assert sent["data"]["to"] == "anna"  # the rest of what it says is kept
    assert [m.body for m in peer.sent] == ["Счёт готов"]
