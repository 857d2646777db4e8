"""The channel contract: how mail, messengers and telephony plug into crmkit.

A channel plugin returns a :class:`Channel` from ``crmkit_register_channels``.  The channel
says what it can do (send, receive, calls), which kind of address it uses (email, phone,
messenger handle) and which settings configure it, and gives a factory for its
:class:`ChannelAdapter`: the object that talks to the outside service.

* **Outbound** messages are never sent from a request: services write an outbox item
  (``channel.send``) in the same transaction as the change, and a worker calls
  :meth:`ChannelAdapter.send` with an :class:`OutboundMessage` whose ``idempotency_key``
  lets the adapter (or the peer) recognise a retry.
* **Inbound** messages, whether pushed (a webhook) or pulled (:meth:`ChannelAdapter.poll`),
  go to :meth:`crmkit.services.channels.ChannelService.ingest`, which finds the sender's
  party through the ``crmkit_resolve_party`` hook, records the message on the timeline
  once (``channel`` + ``external_id`` are unique) and calls ``crmkit_message_received``.
* **Calls** (telephony) report :class:`CallEvent` objects (ringing, answered, ended) to
  :meth:`~crmkit.services.channels.ChannelService.record_call`, which keeps one timeline
  entry per call and calls ``crmkit_call_event`` (the web UI shows a pop-up on ringing);
  outbound calls are placed by :meth:`ChannelAdapter.originate` through the outbox.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from crmkit.config import Setting

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.services.unit import UnitOfWork
    from crmkit.storage import StoredFile


class AddressKind(enum.StrEnum):
    """The kind of address a channel reaches people at (matches ``ContactPoint.kind``)."""

    EMAIL = "email"
    PHONE = "phone"
    MESSENGER = "messenger"


class Capability(enum.StrEnum):
    """What a channel can do."""

    SEND = "send"
    RECEIVE = "receive"
    CALL_OUT = "call_out"
    CALL_IN = "call_in"
    #: one message goes to further addresses at once, each seeing the others (mail's Cc)
    COPIES = "copies"


@attrs.frozen
class Attachment:
    """A file travelling with a message (inbound: the bytes; outbound: an attachment id).

    An inbound file may instead come ``stored``: the reader wrote it to the CRM's storage
    itself (a mail sync's decoding process does, off the recording thread) and the entry's
    attachment refers to that file rather than a copy.  The stored file stays the reader's
    to clean up: after its transaction it deletes those no attachment row refers to (the
    message was a duplicate, its files were refused, the transaction failed).
    """

    filename: str
    content_type: str = "application/octet-stream"
    data: bytes | None = None
    attachment_id: int | None = None
    stored: StoredFile | None = None


@attrs.frozen
class OutboundMessage:
    """A message to send: built by the services, stored in the outbox, given to ``send``."""

    channel: str
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    idempotency_key: str = ""
    party_id: int | None = None
    record_entity: str | None = None
    record_id: int | None = None
    sender_user_id: int | None = None
    account: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    attachments: tuple[Attachment, ...] = attrs.field(default=(), converter=tuple)
    headers: dict[str, str] = attrs.field(factory=dict)
    activity_id: int | None = None
    #: further addresses that get the same message (channels with ``Capability.COPIES``)
    cc: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class DeliveryReceipt:
    """What the peer said when it accepted a message or call: its id for the item."""

    external_id: str | None = None
    detail: dict[str, Any] = attrs.field(factory=dict)


class PermanentFailure(Exception):
    """Raised by an adapter when retrying cannot help (a rejected address, a banned bot)."""


@attrs.frozen
class InboundMessage:
    """A message that arrived through a channel.

    ``external_id`` is the peer's stable id of the message (a Message-ID, a Telegram
    ``chat_id:message_id``); together with ``channel`` it makes ingest idempotent.
    ``thread_refs`` are ids of earlier messages this one answers (mail References),
    used to link it to the conversation's deal or task.  ``cc`` are the others it was
    addressed to, neither the sender nor the channel's own address (mail's To and Cc
    besides the mailbox): those a reply to all copies.  ``received_at`` is the sender's
    time (shown on the timeline); ``arrived_at`` when the peer got it (IMAP's INTERNALDATE;
    ingest time when not given), which orders the contact center.  ``account`` names the
    channel's account it came in on (a mailbox: replies go out from it); ``owner_id`` the
    user whose own account that is (a personal mailbox), whose conversation it then is.
    ``meta["automatic"]`` true: sent by a machine (an auto-reply, a mail system's notice),
    so an unknown sender waits in triage and never becomes a lead, whatever
    ``channels.unknown_sender`` says; ``meta["suspicious"]`` (the address it claims): the
    sender may be forged, shown with it on the timeline and in the inbox (and never a lead
    either).
    """

    channel: str
    external_id: str
    sender: str
    body: str
    sender_name: str | None = None
    subject: str | None = None
    html: str | None = None
    recipients: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    received_at: dt.datetime | None = None
    thread_refs: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    attachments: tuple[Attachment, ...] = attrs.field(default=(), converter=tuple)
    account: str | None = None
    meta: dict[str, Any] = attrs.field(factory=dict)
    cc: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    arrived_at: dt.datetime | None = None
    owner_id: int | None = None


@attrs.frozen
class PollResult:
    """What one poll of a pulling channel returned, and where to continue next time."""

    messages: Sequence[InboundMessage]
    cursor: str | None


class CallPhase(enum.StrEnum):
    """Where a phone call is."""

    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    MISSED = "missed"


@attrs.frozen
class CallEvent:
    """A change in a phone call, as reported by a telephony channel.

    ``call_id`` is stable for the whole call (Asterisk's Linkedid, say); ``remote`` is the
    other party's number, ``extension`` the staff member's line.
    """

    channel: str
    call_id: str
    phase: CallPhase
    direction: str
    remote: str
    extension: str | None = None
    user_id: int | None = None
    at: dt.datetime | None = None
    duration_seconds: int | None = None
    recording_url: str | None = None
    meta: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class OutboundCall:
    """A call to place: ring the staff member's ``extension``, then dial ``to``."""

    channel: str
    to: str
    extension: str
    idempotency_key: str = ""
    party_id: int | None = None
    user_id: int | None = None


@runtime_checkable
class ChannelAdapter(Protocol):
    """The object a channel plugin implements to talk to its service.

    Only the methods matching the channel's capabilities are called.  Every method may
    raise :class:`PermanentFailure` (do not retry) or any other exception (retry later).
    """

    def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Deliver one message; must not send twice for one ``idempotency_key``."""
        ...

    def poll(self, cursor: str | None) -> PollResult:
        """Fetch messages that arrived after ``cursor`` (pulling channels only)."""
        ...

    def originate(self, call: OutboundCall) -> DeliveryReceipt:
        """Place an outbound call (telephony only)."""
        ...


@runtime_checkable
class SenderRules(Protocol):
    """A channel's list of senders it never records, per account (the mail plugin's
    mailboxes' ``ignore_senders``): what the contact center's "Not a client" adds to.

    ``rule`` is a lower-case address (``robot@shop.ru``) or a domain (``shop.ru``, every
    address there).  ``account`` is the conversation's account (``None``: the channel's
    default one).
    """

    def may_ignore(self, work: UnitOfWork, account: str | None) -> bool:
        """Whether the acting user may change ``account``'s rules (mail: admins)."""
        ...

    def ignore(self, work: UnitOfWork, account: str | None, rule: str) -> None:
        """Add ``rule`` to ``account``'s rules (a rule it has already: nothing changes);
        refused (:class:`~crmkit.errors.PermissionDenied`) to those :meth:`may_ignore`
        refuses."""
        ...


@attrs.frozen
class Channel:
    """A way of reaching people, contributed by a plugin.

    ``adapter`` builds the :class:`ChannelAdapter` for an application (reading the
    channel's ``settings`` from its config); ``activity_kind`` is the timeline kind of
    items it carries (``mail``, ``message``, ``call``); ``service`` names the messenger for
    ``messenger`` addresses (``telegram``); ``sender_rules`` (a :class:`SenderRules`), when
    the channel can stop recording a sender, lets the contact center do so in one click.
    """

    name: str
    address_kind: AddressKind
    capabilities: frozenset[Capability] = attrs.field(converter=frozenset)
    adapter: Callable[[CRM], ChannelAdapter]
    label: str = ""
    activity_kind: str = "message"
    service: str | None = None
    settings: tuple[Setting, ...] = attrs.field(default=(), converter=tuple)
    sender_rules: SenderRules | None = None

    def can(self, capability: Capability) -> bool:
        """Whether the channel has ``capability``."""
        return capability in self.capabilities
