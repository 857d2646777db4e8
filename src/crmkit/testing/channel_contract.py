"""The channel contract test suite: what every channel (mail, Telegram, phone...) must pass.

A channel plugin subclasses :class:`ChannelContract` in its tests and provides two
fixtures; the inherited tests then run against its real peer (a local server, or a replay
of recorded traffic over a real socket)::

    from crmkit.testing.channel_contract import ChannelContract

    class TestMailContract(ChannelContract):
        @pytest.fixture
        def channel_app(self, make_crm, ...):
            def build(settings):          # an application with the plugin, ready to reach the peer
                ...
            return build

        @pytest.fixture
        def channel_peer(self, ...):
            return MailPeer(...)          # implements ChannelPeer

The tests check, in the channel's own terms: an inbound message lands on the right party's
timeline exactly once however often it is received; an unknown sender waits in triage or
becomes a lead (``channels.unknown_sender``); an outbound message leaves only through the
outbox, after commit; temporary failures are retried and permanent ones, or too many
temporary ones, end in the dead-letter list; a crash (a rolled-back transaction, a worker
dying mid-delivery or mid-receive) loses nothing and sends nothing twice; a message with
copies reaches each recipient once on a channel that can send copies and is refused,
with nothing queued, on one that cannot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import pytest
from sqlalchemy import select, update

from crmkit.channels import Capability
from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.model import Activity, OutboxItem
from crmkit.plugins import hookimpl


class ChannelPeer(Protocol):
    """The far side of a channel, as the contract tests drive it."""

    #: the registered channel's name
    channel: str

    def address(self, n: int) -> str:
        """A distinct address (email, phone, handle) on this channel; ``n`` tells them apart."""
        ...

    def deliver_inbound(self, sender: str, body: str, *, sender_name: str | None = None) -> None:
        """Make the peer hold a new message from ``sender`` for the CRM to receive."""
        ...

    def receive(self, crm: Any) -> None:
        """Run the channel's own inbound path once (a poll, a sync, a webhook replay)."""
        ...

    def sent(self) -> list[tuple[str, str]]:
        """``(recipient address, text)`` of every message the peer accepted, in order: one
        pair for each recipient of a message sent with copies."""
        ...

    def fail_sending(self, mode: str | None) -> None:
        """From now on refuse messages: ``"temporary"``, ``"permanent"``; ``None`` heals."""
        ...


def _delivery() -> Any:
    """The outbox delivery worker's module (skip, or fail under CI, while it is missing)."""
    import importlib
    import importlib.util

    from crmkit.testing import require

    found = importlib.util.find_spec("crmkit.jobs.delivery") is not None
    require(found, "the outbox delivery worker (crmkit.jobs.delivery)")
    return importlib.import_module("crmkit.jobs.delivery")


def deliver_outbox(crm: Any) -> dict[str, int]:
    """Deliver every due outbox item now, as a worker would (see :mod:`crmkit.jobs.delivery`)."""
    return dict(_delivery().deliver_due(crm))


def make_due(crm: Any) -> None:
    """Let every waiting outbox item be tried again now (skips the retry back-off)."""
    with crm.engine.begin() as connection:
        connection.execute(
            update(OutboxItem)
            .where(OutboxItem.status.in_(("pending", "delivering")))
            .values(next_attempt_at=utcnow())
        )


def _messages(crm: Any, channel: str, direction: str) -> list[Activity]:
    with crm.system() as work:
        return list(
            work.session.scalars(
                select(Activity)
                .where(Activity.channel == channel, Activity.direction == direction)
                .order_by(Activity.id)
            )
        )


def _outbox(crm: Any) -> list[OutboxItem]:
    with crm.system() as work:
        return list(work.session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


class _RefusesOnce:
    """A plugin whose message handler fails for the first message: a crash mid-ingest."""

    crmkit_plugin_name = "contract_refuses_once"

    def __init__(self) -> None:
        self.armed = True

    @hookimpl
    def crmkit_message_received(self, work: Any, message: Any, activity: Any) -> None:
        if self.armed:
            raise RuntimeError("the worker died while recording the message")


class ChannelContract:
    """Tests every channel inherits; see the module documentation for the fixtures."""

    @pytest.fixture
    def channel_app(self) -> Callable[[dict[str, Any]], Any]:
        raise NotImplementedError("a channel's contract tests must provide `channel_app`")

    @pytest.fixture
    def channel_peer(self) -> ChannelPeer:
        raise NotImplementedError("a channel's contract tests must provide `channel_peer`")

    @pytest.fixture
    def app(self, channel_app: Callable[[dict[str, Any]], Any]) -> Any:
        return channel_app({})

    def _party(self, crm: Any, peer: ChannelPeer, n: int, name: str) -> int:
        channel = crm.channels[peer.channel]
        point: dict[str, Any] = {"kind": channel.address_kind.value, "value": peer.address(n)}
        if channel.service:
            point["service"] = channel.service
        with crm.system() as work:
            party = work.parties.create({"kind": "person", "name": name, "contact_points": [point]})
            return int(party.id)

    # -- inbound --------------------------------------------------------------------------

    def test_inbound_lands_on_the_party_timeline_exactly_once(
        self, app: Any, channel_peer: ChannelPeer
    ) -> None:
        party_id = self._party(app, channel_peer, 1, "Contract Client")
        self._party(app, channel_peer, 2, "Someone Else")
        channel_peer.deliver_inbound(channel_peer.address(1), "contract inbound 1")
        channel_peer.receive(app)
        channel_peer.receive(app)  # received again (a second poll, a replayed webhook)
        entries = _messages(app, channel_peer.channel, "in")
        assert [(e.party_id, e.body.strip()) for e in entries] == [(party_id, "contract inbound 1")]
        assert entries[0].status == "new"

    def test_unknown_sender_waits_in_triage(self, app: Any, channel_peer: ChannelPeer) -> None:
        channel_peer.deliver_inbound(channel_peer.address(3), "who am I", sender_name="Stranger")
        channel_peer.receive(app)
        (entry,) = _messages(app, channel_peer.channel, "in")
        assert (entry.party_id, entry.status) == (None, "triage")
        with app.system() as work:
            assert work.parties.count() == 0

    def test_unknown_sender_becomes_a_lead_when_configured(
        self, channel_app: Callable[[dict[str, Any]], Any], channel_peer: ChannelPeer
    ) -> None:
        app = channel_app({"channels.unknown_sender": "lead"})
        channel_peer.deliver_inbound(channel_peer.address(4), "new here", sender_name="Newcomer")
        channel_peer.receive(app)
        (entry,) = _messages(app, channel_peer.channel, "in")
        assert entry.status == "new" and entry.party_id is not None
        with app.system() as work:
            lead = work.parties.get(entry.party_id)
            assert lead.source == channel_peer.channel
            assert len(lead.contact_points) == 1
        # the next message from that address finds the lead instead of making another
        channel_peer.deliver_inbound(channel_peer.address(4), "me again", sender_name="Newcomer")
        channel_peer.receive(app)
        assert {e.party_id for e in _messages(app, channel_peer.channel, "in")} == {lead.id}

    def test_a_crash_while_receiving_loses_nothing(
        self, app: Any, channel_peer: ChannelPeer
    ) -> None:
        party_id = self._party(app, channel_peer, 5, "Patient Client")
        crash = _RefusesOnce()
        app.pm.register(crash)
        channel_peer.deliver_inbound(channel_peer.address(5), "survives a crash")
        # the channel may let the failure through; either way nothing may be recorded
        with contextlib.suppress(RuntimeError):
            channel_peer.receive(app)
        assert _messages(app, channel_peer.channel, "in") == []
        crash.armed = False
        channel_peer.receive(app)
        entries = _messages(app, channel_peer.channel, "in")
        assert [(e.party_id, e.body.strip()) for e in entries] == [(party_id, "survives a crash")]

    # -- outbound -------------------------------------------------------------------------

    def _send(self, app: Any, peer: ChannelPeer, n: int, text: str) -> int:
        party_id = self._party(app, peer, n, f"Recipient {n}")
        with app.system() as work:
            activity = work.channels.send(
                peer.channel, to=peer.address(n), body=text, subject="contract", party_id=party_id
            )
            return int(activity.id)

    def test_outbound_leaves_through_the_outbox_once(
        self, app: Any, channel_peer: ChannelPeer
    ) -> None:
        activity_id = self._send(app, channel_peer, 6, "contract outbound")
        assert channel_peer.sent() == []  # nothing leaves inside the transaction
        (item,) = _outbox(app)
        assert item.kind == "channel.send" and item.status == "pending"
        deliver_outbox(app)
        make_due(app)
        deliver_outbox(app)  # a second worker pass sends nothing more
        assert [(to, text.strip()) for to, text in channel_peer.sent()] == [
            (channel_peer.address(6), "contract outbound")
        ]
        (item,) = _outbox(app)
        assert item.status == "delivered"
        with app.system() as work:
            assert work.session.get(Activity, activity_id).status == "sent"

    def test_copies_reach_each_recipient_once_or_are_refused(
        self, app: Any, channel_peer: ChannelPeer
    ) -> None:
        party_id = self._party(app, channel_peer, 11, "Copied Client")
        copies = (channel_peer.address(12), channel_peer.address(13))
        if not app.channels[channel_peer.channel].can(Capability.COPIES):
            with pytest.raises(ValidationFailed) as refused, app.system() as work:
                work.channels.send(
                    channel_peer.channel, to=channel_peer.address(11), body="never",
                    party_id=party_id, cc=copies,
                )  # fmt: skip
            assert "cc" in refused.value.errors
            assert _outbox(app) == []
            return
        with app.system() as work:
            work.channels.send(
                channel_peer.channel, to=channel_peer.address(11), body="to all of you",
                subject="contract", party_id=party_id, cc=copies,
            )  # fmt: skip
        deliver_outbox(app)
        make_due(app)
        deliver_outbox(app)
        assert sorted((to, text.strip()) for to, text in channel_peer.sent()) == sorted(
            (address, "to all of you") for address in (channel_peer.address(11), *copies)
        )

    def test_a_rolled_back_change_sends_nothing(self, app: Any, channel_peer: ChannelPeer) -> None:
        party_id = self._party(app, channel_peer, 7, "Rolled Back")
        with pytest.raises(RuntimeError), app.system() as work:
            work.channels.send(
                channel_peer.channel, to=channel_peer.address(7), body="never", party_id=party_id
            )
            raise RuntimeError("the change failed after queueing the message")
        deliver_outbox(app)
        assert _outbox(app) == [] and channel_peer.sent() == []

    def test_temporary_failures_are_retried(self, app: Any, channel_peer: ChannelPeer) -> None:
        self._send(app, channel_peer, 8, "after an outage")
        channel_peer.fail_sending("temporary")
        deliver_outbox(app)
        (item,) = _outbox(app)
        assert (item.status, item.attempts) == ("pending", 1) and item.last_error
        assert item.next_attempt_at > utcnow()  # backs off before the next try
        channel_peer.fail_sending(None)
        make_due(app)
        deliver_outbox(app)
        (item,) = _outbox(app)
        assert (item.status, item.attempts) == ("delivered", 2)
        assert [text.strip() for _, text in channel_peer.sent()] == ["after an outage"]

    def test_failures_end_in_the_dead_letter_list(
        self, app: Any, channel_peer: ChannelPeer
    ) -> None:
        refused = self._send(app, channel_peer, 9, "refused for good")
        channel_peer.fail_sending("permanent")
        deliver_outbox(app)
        (item,) = _outbox(app)
        assert (item.status, item.attempts) == ("dead", 1)  # retrying cannot help
        # temporary failures past max_attempts end there too
        channel_peer.fail_sending("temporary")
        self._send(app, channel_peer, 10, "never gets through")
        with app.engine.begin() as connection:
            connection.execute(update(OutboxItem).values(max_attempts=3))
        for _ in range(3):
            make_due(app)
            deliver_outbox(app)
        assert [(i.status, i.attempts) for i in _outbox(app)] == [("dead", 1), ("dead", 3)]
        assert channel_peer.sent() == []
        with app.system() as work:
            assert work.session.get(Activity, refused).status == "failed"

    def test_a_worker_dying_mid_delivery_loses_nothing(
        self, app: Any, channel_peer: ChannelPeer
    ) -> None:
        claim = _delivery().claim_batch
        self._send(app, channel_peer, 11, "claimed then orphaned")
        (item,) = _outbox(app)
        claimed, _token = claim(app, [item.id])
        assert len(claimed) == 1  # a worker took it, then died
        deliver_outbox(app)
        assert channel_peer.sent() == []  # still leased to the dead worker
        make_due(app)  # the lease ran out
        deliver_outbox(app)
        assert [text.strip() for _, text in channel_peer.sent()] == ["claimed then orphaned"]
