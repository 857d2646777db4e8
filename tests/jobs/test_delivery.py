"""Outbox delivery in one process: handlers by kind, claims, backoff, dead letters, retry."""

from __future__ import annotations

import datetime as dt
import json
import random
import time

import pytest
from sqlalchemy import select, update

from crmkit import AddressKind, Capability, Channel, DeliveryReceipt, hookimpl
from crmkit.channels import PermanentFailure
from crmkit.clock import utcnow
from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.jobs import Delivery, Job, OutboxHandler
from crmkit.jobs.delivery import (
    ClaimLost,
    claim,
    deliver_batch,
    deliver_due,
    deliver_item,
    keep_claim,
    retry_delay,
)
from crmkit.jobs.handlers import channel_message_dead
from crmkit.jobs.worker import Worker
from crmkit.model import Activity, OutboxItem
from crmkit.testing import add_user, factories
from crmkit.testing.peer import RecordingPeer

FAST = {"outbox.retry_base_seconds": 0.0, "outbox.retry_max_seconds": 0.0}


class RecordingAdapter:
    def __init__(self, plugin):
        self.plugin = plugin

    def send(self, message):
        if self.plugin.refuse:
            raise PermanentFailure(f"mailbox {message.to} does not exist")
        self.plugin.sent.append(message)
        return DeliveryReceipt(f"<{message.idempotency_key}@peer>")


class MailPlugin:
    crmkit_plugin_name = "test_mail"

    def __init__(self):
        self.sent = []
        self.refuse = False
        self.job_runs = []

    @hookimpl
    def crmkit_register_channels(self):
        return [
            Channel(
                "mail",
                AddressKind.EMAIL,
                {Capability.SEND},
                lambda crm: RecordingAdapter(self),
                activity_kind="mail",
            )
        ]

    @hookimpl
    def crmkit_register_jobs(self):
        def remember(crm, n):
            self.job_runs.append(n)
            return f"ran {n}"

        return [Job("test.remember", remember, retries=2)]


@pytest.fixture
def plugin():
    return MailPlugin()


@pytest.fixture
def peer():
    with RecordingPeer() as running:
        yield running


def item(crm, item_id):
    with crm.system() as work:
        return work.session.get(OutboxItem, item_id)


def add_webhook(crm, url, key=None, **kw):
    with crm.system() as work:
        return work.outbox.add(
            "webhook", {"url": url, "json": {"hello": "мир"}}, idempotency_key=key, **kw
        ).id


def test_webhook_reaches_the_peer_with_its_idempotency_key(make_crm, peer):
    crm = make_crm()
    item_id = add_webhook(crm, peer.url, key="order:42:paid")
    assert deliver_due(crm) == {"delivered": 1}
    assert peer.accepted_count("order:42:paid") == 1
    assert json.loads(peer.accepted["order:42:paid"]) == {"hello": "мир"}
    done = item(crm, item_id)
    assert done.status == "delivered" and done.attempts == 1
    assert done.result["status"] == 200 and done.delivered_at is not None
    assert deliver_due(crm) == {}  # nothing due any more


def test_one_claim_at_a_time_and_a_lapsed_lease_is_claimed_again(make_crm, peer):
    crm = make_crm(settings={"outbox.lease_seconds": 30})
    item_id = add_webhook(crm, peer.url)
    claimed = claim(crm, item_id)
    assert claimed is not None and claimed[0].item_id == item_id
    assert claim(crm, item_id) is None  # a second worker gets nothing
    # the first worker dies; once its lease ran out, another worker takes the item
    with crm.engine.begin() as connection:
        connection.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id)
            .values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
        )
    assert deliver_item(crm, item_id) == "delivered"
    done = item(crm, item_id)
    assert done.status == "delivered" and done.attempts == 2


def test_peer_down_backs_off_then_dead_letter_then_admin_retry(make_crm, peer):
    crm = make_crm(settings={"outbox.retry_base_seconds": 60, "outbox.retry_max_seconds": 600})
    peer.down = True
    item_id = add_webhook(crm, peer.url, key="k1", max_attempts=3)
    before = utcnow()
    assert deliver_item(crm, item_id) == "retry"
    waiting = item(crm, item_id)
    assert waiting.status == "pending" and "HTTP 503" in waiting.last_error
    delay = (waiting.next_attempt_at - before).total_seconds()
    assert 30 <= delay <= 61  # first retry: 60 s with jitter in [30, 60]
    assert deliver_item(crm, item_id) == "skipped"  # not due yet
    for _ in range(2):
        with crm.engine.begin() as connection:
            connection.execute(update(OutboxItem).values(next_attempt_at=utcnow()))
        deliver_item(crm, item_id)
    dead = item(crm, item_id)
    assert dead.status == "dead" and dead.attempts == 3 and "503" in dead.last_error
    assert peer.request_count("k1") == 3 and peer.accepted_count("k1") == 0

    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(agent) as work, pytest.raises(PermissionDenied):
        work.outbox.failed()
    admin = add_user(crm, "admin1", ["admin"])
    with crm.acting_as(admin) as work:
        assert [i.id for i in work.outbox.failed()] == [item_id]
        work.outbox.retry([item_id])
    peer.down = False
    assert deliver_due(crm) == {"delivered": 1}
    assert peer.accepted_count("k1") == 1
    with crm.acting_as(admin) as work:
        assert work.outbox.failed() == []
        with pytest.raises(ValidationFailed, match="not in the dead-letter list"):
            work.outbox.retry([item_id])


def test_client_errors_are_permanent_and_can_be_discarded(make_crm):
    crm = make_crm()
    item_id = add_webhook(crm, "ftp://example.invalid/x")
    assert deliver_item(crm, item_id) == "dead"
    dead = item(crm, item_id)
    assert dead.attempts == 1 and "http(s)" in dead.last_error
    with crm.system() as work:
        work.outbox.discard([item_id])
    assert item(crm, item_id).status == "discarded"


def test_backoff_doubles_with_jitter_up_to_the_cap():
    rng = random.Random(7)
    for attempt, full in [(1, 10), (2, 20), (3, 40), (4, 80)]:
        values = [retry_delay(attempt, 10, 1000, rng) for _ in range(200)]
        assert full / 2 <= min(values) and max(values) <= full
        assert max(values) - min(values) > full / 4  # really spread out
    assert retry_delay(30, 10, 300, rng) <= 300


def test_channel_send_goes_through_the_adapter_and_marks_the_timeline(make_crm, plugin):
    crm = make_crm(plugins=[plugin])
    with crm.system() as work:
        party = factories.organisation(work)
        activity = work.channels.send(
            "mail",
            to="boss@romashka.ru",
            body="Счёт во вложении",
            party_id=party.id,
            subject="Счёт",
        )
    assert deliver_due(crm) == {"delivered": 1}
    [sent] = plugin.sent
    assert sent.to == "boss@romashka.ru" and sent.subject == "Счёт"
    assert sent.idempotency_key == f"mail:activity:{activity.id}"
    with crm.system() as work:
        row = work.session.get(Activity, activity.id)
        assert row.status == "sent" and row.external_id == f"<{sent.idempotency_key}@peer>"

    plugin.refuse = True
    with crm.system() as work:
        refused = work.channels.send("mail", to="nobody@romashka.ru", body="?", party_id=party.id)
    assert deliver_due(crm) == {"dead": 1}
    with crm.system() as work:
        row = work.session.get(Activity, refused.id)
        assert row.status == "failed" and "does not exist" in row.data["error"]


def test_jobs_run_later_with_retries_from_the_job(make_crm, plugin):
    crm = make_crm(plugins=[plugin])
    with crm.system() as work:
        queued = work.outbox.run_job("test.remember", {"n": 5})
        later = work.outbox.run_job("test.remember", {"n": 6}, due=utcnow() + dt.timedelta(hours=1))
        assert queued.max_attempts == 3
        with pytest.raises(ValidationFailed, match="no job"):
            work.outbox.run_job("test.nothing")
    assert deliver_due(crm) == {"delivered": 1}
    assert plugin.job_runs == [5]
    assert item(crm, queued.id).result == {"result": "ran 5"}
    assert item(crm, later.id).status == "pending"


def test_unknown_kind_is_retried_with_a_clear_error(make_crm):
    crm = make_crm(settings=FAST)
    with crm.system() as work:
        item_id = work.outbox.add("sms.send", {"to": "+79161234567"}, max_attempts=2).id
    deliver_due(crm)
    deliver_due(crm)
    dead = item(crm, item_id)
    assert dead.status == "dead" and "no outbox handler for kind 'sms.send'" in dead.last_error


def test_rolled_back_change_leaves_no_item_and_wakes_nobody(make_crm, peer):
    crm = make_crm()
    crm.queue.flush()
    with pytest.raises(RuntimeError), crm.system() as work:
        work.outbox.add("webhook", {"url": peer.url})
        raise RuntimeError("the change failed")
    with crm.system() as work:
        assert work.session.scalars(select(OutboxItem)).all() == []
    assert crm.queue.pending_count() == 0


def test_embedded_worker_delivers_after_commit(make_crm, peer):
    crm = make_crm(settings={"queue.tick_seconds": 0.1})
    crm.queue.flush()
    with crm.system() as work:
        ids = [
            work.outbox.add("webhook", {"url": peer.url}, idempotency_key=f"e{n}").id
            for n in range(3)
        ]
    assert crm.queue.pending_count() == 1  # one wake-up for the transaction
    worker = Worker(crm, concurrency=2)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(item(crm, i).status == "delivered" for i in ids):
                break
            time.sleep(0.05)
    finally:
        worker.stop()
    assert [peer.accepted_count(f"e{n}") for n in range(3)] == [1, 1, 1]
    assert all(item(crm, i).status == "delivered" for i in ids)


class LongJob:
    """A job that runs past its item's lease: it renews the claim, or finds it lost."""

    crmkit_plugin_name = "test_long_job"

    def __init__(self):
        self.seen = []

    @hookimpl
    def crmkit_register_jobs(self):
        return [Job("test.long", self.run)]

    def run(self, crm, item_id, taken_over=False):
        with crm.engine.begin() as connection:  # the lease runs out while the job works
            values = {"next_attempt_at": utcnow() - dt.timedelta(seconds=1)}
            if taken_over:  # ... and another worker claimed the item meanwhile
                values["claimed_by"] = "another-worker"
            connection.execute(update(OutboxItem).where(OutboxItem.id == item_id).values(values))
        try:
            keep_claim()
        except ClaimLost as lost:
            self.seen.append(str(lost))
            raise
        self.seen.append(claim(crm, item_id))  # a second worker finds it held again


def test_a_long_job_keeps_its_claim_or_learns_it_was_taken_over(make_crm):
    job = LongJob()
    crm = make_crm(plugins=[job], settings={"outbox.lease_seconds": 30})
    keep_claim()  # outside a delivery: nothing to keep
    with crm.system() as work:
        held = work.outbox.run_job("test.long", {})
    with crm.engine.begin() as connection:
        connection.execute(
            update(OutboxItem)
            .where(OutboxItem.id == held.id)
            .values(payload={"job": "test.long", "payload": {"item_id": held.id}})
        )
    assert deliver_due(crm) == {"delivered": 1}
    assert job.seen == [None]  # renewed: no other worker could claim it

    with crm.system() as work:
        lost = work.outbox.run_job("test.long", {})
    with crm.engine.begin() as connection:
        connection.execute(
            update(OutboxItem)
            .where(OutboxItem.id == lost.id)
            .values(
                payload={"job": "test.long", "payload": {"item_id": lost.id, "taken_over": True}}
            )
        )
    deliver_due(crm, [lost.id])
    assert job.seen[1] == f"outbox item {lost.id} was taken over by another worker"
    # the other worker's claim is untouched by the first one's ending
    assert item(crm, lost.id).claimed_by == "another-worker"


def test_an_item_that_kills_its_worker_every_time_ends_in_the_failed_list(make_crm, plugin):
    crm = make_crm(plugins=[plugin], settings={"outbox.lease_seconds": 30})
    with crm.system() as work:
        party = factories.organisation(work)
        message = work.channels.send(
            "mail", to="boss@romashka.ru", body="x" * 10, party_id=party.id
        )
    [item_id] = [i.id for i in _all_items(crm)]
    with crm.engine.begin() as connection:
        connection.execute(update(OutboxItem).values(max_attempts=3))
    for attempt in (1, 2, 3):
        claimed = claim(crm, item_id)  # a worker takes it and is killed (out of memory)
        assert claimed is not None and claimed[0].attempt == attempt
        with crm.engine.begin() as connection:  # ... its lease runs out
            connection.execute(
                update(OutboxItem).values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
            )
    assert deliver_due(crm) == {"dead": 1}  # not a fourth time
    assert plugin.sent == []
    admin = add_user(crm, "admin1", ["admin"])
    with crm.acting_as(admin) as work:  # Failed deliveries, `crmkit jobs failed`
        [dead] = work.outbox.failed()
        assert (dead.id, dead.attempts) == (item_id, 3)
        assert "worker delivering it died (killed, out of memory?) in attempt 3 of 3" in (
            dead.last_error
        )
        activity = work.session.get(Activity, message.id)
        assert activity.status == "failed"  # on_dead marked the message
    assert deliver_due(crm) == {}
    with crm.acting_as(admin) as work:  # the admin's retry gives it fresh attempts
        work.outbox.retry([item_id])
    assert deliver_due(crm) == {"delivered": 1}
    assert [m.to for m in plugin.sent] == ["boss@romashka.ru"]


def _all_items(crm):
    with crm.system() as work:
        return list(work.session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


class WorkerKilled(BaseException):
    """What a killed worker leaves behind, simulated: not an exception the worker catches,
    so nothing after it is written."""


class PoisonPlugin:
    """Items of kind ``test.poison``: the one marked ``poison`` kills its worker, one marked
    ``slow`` runs so long that another worker gives it up meanwhile."""

    crmkit_plugin_name = "test_poison"

    def __init__(self):
        self.delivered = []
        self.dead = []
        self.revived = []

    @hookimpl
    def crmkit_register_outbox_handlers(self):
        return [
            OutboxHandler(
                "test.poison", self.deliver, on_dead=self.on_dead, on_revived=self.on_revived
            )
        ]

    def deliver(self, crm, delivery):
        if delivery.payload.get("poison"):
            raise WorkerKilled
        if delivery.payload.get("slow"):
            lapse_leases(crm)
            assert deliver_due(crm) == {"dead": 1}  # another worker gives it up
        self.delivered.append(delivery.payload["name"])
        return {"peer_id": delivery.payload["name"]}

    def on_dead(self, crm, delivery, error):
        self.dead.append(delivery.payload["name"])

    def on_revived(self, crm, delivery, result):
        self.revived.append((delivery.payload["name"], result))


def lapse_leases(crm):
    """The leases of the items being delivered run out (their worker is gone)."""
    with crm.engine.begin() as connection:
        connection.execute(
            update(OutboxItem)
            .where(OutboxItem.status == "delivering")
            .values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
        )


def test_an_item_that_kills_its_worker_takes_no_other_item_with_it(make_crm):
    plugin = PoisonPlugin()
    crm = make_crm(plugins=[plugin], settings={"outbox.lease_seconds": 30})
    with crm.system() as work:
        ids = {
            name: work.outbox.add(
                "test.poison", {"name": name, "poison": name == "poison"}, max_attempts=2
            ).id
            for name in ("before", "poison", "after")
        }
    batch = [ids["before"], ids["poison"], ids["after"]]
    for _ in range(2):  # the poison kills the worker of each batch it is in
        with pytest.raises(WorkerKilled):
            deliver_batch(crm, batch)
        lapse_leases(crm)
        batch = [ids["poison"], ids["after"]]
    assert deliver_due(crm) == {"dead": 1, "delivered": 1}  # the poison is given up

    states = {i.payload["name"]: (i.status, i.attempts) for i in _all_items(crm)}
    assert states == {"before": ("delivered", 1), "poison": ("dead", 2), "after": ("delivered", 1)}
    assert plugin.delivered == ["before", "after"]  # each once
    assert plugin.dead == ["poison"]
    [poison] = [i for i in _all_items(crm) if i.status == "dead"]
    assert "died (killed, out of memory?) in attempt 2 of 2" in poison.last_error


def test_an_item_given_up_while_it_was_still_delivered_is_revived(make_crm):
    plugin = PoisonPlugin()
    crm = make_crm(plugins=[plugin], settings={"outbox.lease_seconds": 30})
    with crm.system() as work:
        item_id = work.outbox.add("test.poison", {"name": "slow", "slow": True}, max_attempts=1).id
    assert deliver_item(crm, item_id) == "delivered"
    assert plugin.dead == ["slow"]  # the other worker's on_dead, then the kind's undoing
    assert plugin.revived == [("slow", {"peer_id": "slow"})]
    done = item(crm, item_id)
    assert (done.status, done.result, done.last_error) == ("delivered", {"peer_id": "slow"}, None)


class SlowAdapter(RecordingAdapter):
    """A mail peer that answers so late that another worker takes the item over meanwhile
    (``while_slow`` runs as that other worker), then accepts or refuses it."""

    def __init__(self, plugin):
        super().__init__(plugin)
        self.slow_calls = 0

    def send(self, message):
        if self.plugin.while_slow is not None and not self.slow_calls:
            self.slow_calls += 1
            lapse_leases(self.plugin.crm)  # this worker's lease runs out ...
            self.plugin.while_slow()  # ... and another worker takes the item over
            if self.plugin.late_refusal:
                raise PermanentFailure("the peer refused it after all")
        return super().send(message)


class SlowMailPlugin(MailPlugin):
    crmkit_plugin_name = "test_slow_mail"

    def __init__(self):
        super().__init__()
        self.crm = None
        self.while_slow = None
        self.late_refusal = False

    @hookimpl
    def crmkit_register_channels(self):
        return [
            Channel(
                "mail",
                AddressKind.EMAIL,
                {Capability.SEND},
                lambda crm: SlowAdapter(self),
                activity_kind="mail",
            )
        ]


def send_mail(crm, max_attempts):
    with crm.system() as work:
        party = factories.organisation(work)
        message = work.channels.send("mail", to="boss@romashka.ru", body="Счёт", party_id=party.id)
    [item_id] = [i.id for i in _all_items(crm) if i.status == "pending"]
    with crm.engine.begin() as connection:
        connection.execute(
            update(OutboxItem).where(OutboxItem.id == item_id).values(max_attempts=max_attempts)
        )
    return message.id, item_id


def test_a_last_attempt_that_outlives_its_lease_and_succeeds_is_delivered_not_dead(make_crm):
    plugin = SlowMailPlugin()
    crm = plugin.crm = make_crm(plugins=[plugin], settings={"outbox.lease_seconds": 30})
    message_id, item_id = send_mail(crm, max_attempts=1)
    taken_over = []
    # the other worker finds the last attempt unfinished past its lease: it gives it up
    plugin.while_slow = lambda: taken_over.append(deliver_due(crm))
    assert deliver_item(crm, item_id) == "delivered"
    assert taken_over == [{"dead": 1}]
    assert [m.to for m in plugin.sent] == ["boss@romashka.ru"]  # it did go out, once

    done = item(crm, item_id)
    assert (done.status, done.last_error, done.claimed_by) == ("delivered", None, None)
    admin = add_user(crm, "admin1", ["admin"])
    with crm.acting_as(admin) as work:
        assert work.outbox.failed() == []  # nothing for the admin to retry (twice)
        activity = work.session.get(Activity, message_id)
        assert activity.status == "sent" and "error" not in activity.data
        assert activity.external_id == f"<mail:activity:{message_id}@peer>"
    # had the other worker's on_dead come only now, the message would stay sent
    given_up = Delivery(item_id, "channel.send", {"activity_id": message_id}, "k", 1, 1)
    channel_message_dead(crm, given_up, "the worker delivering it died")
    with crm.system() as work:
        assert work.session.get(Activity, message_id).status == "sent"


def test_an_outcome_whose_claim_was_lost_is_not_recorded_nor_acted_on(make_crm):
    plugin = SlowMailPlugin()
    crm = plugin.crm = make_crm(plugins=[plugin], settings={"outbox.lease_seconds": 30})
    message_id, item_id = send_mail(crm, max_attempts=3)
    taken_over = []
    # another worker delivers the item while the first one still waits for the peer, which
    # then refuses the first worker's copy: that refusal must not make the item dead
    plugin.while_slow = lambda: taken_over.append(deliver_due(crm))
    plugin.late_refusal = True
    assert deliver_item(crm, item_id) == "skipped"  # its outcome was not ours to write
    assert taken_over == [{"delivered": 1}]
    done = item(crm, item_id)
    assert (done.status, done.attempts, done.last_error) == ("delivered", 2, None)
    with crm.system() as work:
        activity = work.session.get(Activity, message_id)
        assert activity.status == "sent" and "error" not in activity.data  # no on_dead


class FlakyJob:
    crmkit_plugin_name = "test_flaky_job"

    @hookimpl
    def crmkit_register_jobs(self):
        return [Job("test.flaky", self.run, retries=3, retry_delay=300)]

    def run(self, crm):
        raise RuntimeError("the report server is down")


def test_a_job_is_retried_after_its_own_retry_delay(make_crm):
    crm = make_crm(plugins=[FlakyJob()], settings={"outbox.retry_max_seconds": 60})
    with crm.system() as work:
        item_id = work.outbox.run_job("test.flaky").id
        other_id = work.outbox.add("job", {"job": "test.flaky"}).id  # queued without run_job
    failed_at = utcnow()
    assert deliver_due(crm) == {"retry": 2}
    for waiting in (item(crm, item_id), item(crm, other_id)):
        assert waiting.status == "pending" and "report server is down" in waiting.last_error
        delay = (waiting.next_attempt_at - failed_at).total_seconds()
        assert 150 <= delay <= 301  # 300 s with jitter, not outbox.retry_base_seconds (10)


def test_a_job_queued_as_an_outbox_item_gets_its_own_retries(make_crm):
    crm = make_crm(plugins=[FlakyJob()], settings=FAST)
    with crm.system() as work:
        queued = work.outbox.add("job", {"job": "test.flaky"}).id  # as the imports queue theirs
        told = work.outbox.add("job", {"job": "test.flaky"}, max_attempts=2).id
        webhook = work.outbox.add("webhook", {"url": "http://127.0.0.1:9/"}).id
    assert [item(crm, i).max_attempts for i in (queued, told, webhook)] == [4, 2, 8]
    for _ in range(4):  # Job.retries = 3: the first try and three more
        with crm.engine.begin() as connection:
            connection.execute(
                update(OutboxItem).where(OutboxItem.id == queued).values(next_attempt_at=utcnow())
            )
        deliver_item(crm, queued)
    dead = item(crm, queued)
    assert (dead.status, dead.attempts) == ("dead", 4)
    with crm.system() as work:
        assert [i.id for i in work.outbox.failed(kind="job")] == [queued]
