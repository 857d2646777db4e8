"""The core's outbox handlers: ``channel.send``, ``channel.call``, ``webhook`` and ``job``.

``channel.send``
    payload: an :class:`~crmkit.channels.OutboundMessage` as a mapping (written by
    :meth:`crmkit.services.channels.ChannelService.send`; ``attachments`` a list of
    attachment ids).  Calls the channel adapter's ``send`` with the item's idempotency key;
    the message's timeline entry becomes ``sent`` (with the peer's id) or, once given up,
    ``failed``.  A notification forwarded to a user's own address (``forward``: the
    user's id and the notification's kind) is cancelled instead when the user was blocked
    since, or no longer forwards that kind to that address.
``channel.call``
    payload: an :class:`~crmkit.channels.OutboundCall` as a mapping; calls ``originate``.
``webhook``
    payload: ``url``, optional ``method`` (POST), ``json`` or ``body``, ``headers``.  Sent
    with httpx and an ``Idempotency-Key`` header; a 2xx answer is success, a 4xx other than
    408, 409, 425 and 429 is permanent (dead at once), anything else is retried.
``job``
    payload: ``job`` (a registered job's name) and ``payload`` (its keyword arguments).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import select

from crmkit.channels import Attachment, OutboundCall, OutboundMessage, PermanentFailure
from crmkit.db import lock_row
from crmkit.jobs import Cancelled, Delivery, OutboxHandler
from crmkit.model import Activity, NotificationPreference, OutboxItem, User
from crmkit.model import Attachment as StoredAttachment

if TYPE_CHECKING:
    from crmkit.app import CRM

_local = threading.local()

#: 4xx answers worth retrying: timeout, conflict, too early, too many requests.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def channel_adapter(crm: CRM, name: str) -> Any:
    """The adapter of channel ``name`` for this thread, built once (adapters need not be
    thread-safe: each worker thread gets its own)."""
    adapters = getattr(_local, "adapters", None)
    if adapters is None:
        adapters = _local.adapters = weakref.WeakKeyDictionary()
    per_crm = adapters.setdefault(crm, {})
    adapter = per_crm.get(name)
    if adapter is None:
        channel = crm.channels.get(name)
        if channel is None:
            raise LookupError(f"no channel {name!r} is registered in this worker")
        adapter = per_crm[name] = channel.adapter(crm)
    return adapter


# -- channel.send -------------------------------------------------------------------------


def _message(crm: CRM, delivery: Delivery) -> OutboundMessage:
    payload = dict(delivery.payload)
    attachment_ids = [int(i) for i in payload.pop("attachments", []) or []]
    attachments: list[Attachment] = []
    if attachment_ids:
        with crm.session_factory() as session:
            rows = session.execute(
                select(
                    StoredAttachment.id, StoredAttachment.filename, StoredAttachment.content_type
                ).where(StoredAttachment.id.in_(attachment_ids))
            )
            attachments = [
                Attachment(filename=r.filename, content_type=r.content_type, attachment_id=r.id)
                for r in rows
            ]
    fields = {f.name for f in attrs.fields(OutboundMessage)}
    values = {k: v for k, v in payload.items() if k in fields}
    values["idempotency_key"] = delivery.idempotency_key
    values["attachments"] = attachments
    return OutboundMessage(**values)


def _mark_activity(
    crm: CRM, activity_id: int | None, status: str, *, while_dead: int | None = None, **data: Any
) -> None:
    """Set a message's status; ``sent`` drops the error of an earlier failure.

    ``while_dead``: the id of the message's outbox item, when the mark is right only while
    that item is dead (read under its lock: a late delivery recorded meanwhile wins).
    """
    if not activity_id:
        return
    with crm.system() as work:
        if while_dead is not None:
            lock_row(work.session, OutboxItem, while_dead)
            item = select(OutboxItem.status).where(OutboxItem.id == while_dead)
            if work.session.scalar(item) != "dead":
                return
        activity = work.session.get(Activity, activity_id)
        if activity is None:
            return
        activity.status = status
        external_id = data.pop("external_id", None)
        if external_id and not activity.external_id:
            activity.external_id = str(external_id)[:500]
        kept = dict(activity.data or {})
        if status == "sent":
            kept.pop("error", None)
        if data or kept != (activity.data or {}):
            activity.data = {**kept, **data}


def _check_forward(crm: CRM, forward: dict[str, Any], channel: str, to: Any) -> None:
    """Raise :class:`Cancelled` unless the user a notification is forwarded to is still
    active and still forwards its kind to this address on this channel."""
    with crm.session_factory() as session:
        user = session.get(User, forward.get("user_id"))
        if user is None:
            raise Cancelled("not sent: the user it was for is gone")
        if user.blocked:
            raise Cancelled(f"not sent: {user.username} is blocked")
        preference = session.scalar(
            select(NotificationPreference).where(
                NotificationPreference.user_id == user.id,
                NotificationPreference.channel == channel,
            )
        )
        kind = forward.get("kind")
        if preference is None or (preference.kinds and kind not in preference.kinds):
            raise Cancelled(
                f"not sent: {user.username} no longer forwards {kind} notifications to {channel}"
            )
        if preference.address != to:
            raise Cancelled(
                f"not sent: {user.username} forwards {channel} notifications to another address now"
            )


def deliver_channel_message(crm: CRM, delivery: Delivery) -> dict[str, Any]:
    """Send an :class:`OutboundMessage` through its channel's adapter (a forwarded
    notification only while its user is active and still forwards it there)."""
    forward = delivery.payload.get("forward")
    if forward:
        _check_forward(crm, forward, delivery.payload.get("channel"), delivery.payload.get("to"))
    message = _message(crm, delivery)
    receipt = channel_adapter(crm, message.channel).send(message)
    _mark_activity(crm, message.activity_id, "sent", external_id=receipt.external_id)
    return {"external_id": receipt.external_id, **(receipt.detail or {})}


def channel_message_dead(crm: CRM, delivery: Delivery, error: str) -> None:
    """The message was given up: its timeline entry says so, with the reason (unless a
    delivery that outlived its lease has landed meanwhile)."""
    activity_id = delivery.payload.get("activity_id")
    _mark_activity(crm, activity_id, "failed", while_dead=delivery.item_id, error=error)


def channel_message_revived(crm: CRM, delivery: Delivery, result: dict[str, Any]) -> None:
    """The message given up was sent after all: its timeline entry says so."""
    activity_id = delivery.payload.get("activity_id")
    _mark_activity(crm, activity_id, "sent", external_id=result.get("external_id"))


# -- channel.call -------------------------------------------------------------------------


def place_call(crm: CRM, delivery: Delivery) -> dict[str, Any]:
    """Place an :class:`OutboundCall` through its telephony channel."""
    fields = {f.name for f in attrs.fields(OutboundCall)}
    values = {k: v for k, v in delivery.payload.items() if k in fields}
    values["idempotency_key"] = delivery.idempotency_key
    call = OutboundCall(**values)
    receipt = channel_adapter(crm, call.channel).originate(call)
    return {"external_id": receipt.external_id, **(receipt.detail or {})}


# -- webhook ------------------------------------------------------------------------------


def call_webhook(crm: CRM, delivery: Delivery) -> dict[str, Any]:
    """POST (or ``method``) the payload to ``url`` with an ``Idempotency-Key`` header."""
    payload = delivery.payload
    url = payload.get("url")
    if not url or not str(url).startswith(("http://", "https://")):
        raise PermanentFailure(f"webhook url must be http(s)://..., got {url!r}")
    headers = {str(k): str(v) for k, v in (payload.get("headers") or {}).items()}
    headers["Idempotency-Key"] = delivery.idempotency_key
    request: dict[str, Any] = {"headers": headers}
    if "json" in payload:
        request["json"] = payload["json"]
    elif "body" in payload:
        request["content"] = str(payload["body"]).encode()
    response = crm.http.request(str(payload.get("method") or "POST"), url, **request)
    code = response.status_code
    if 200 <= code < 300:
        return {"status": code, "body": response.text[:500]}
    text = f"HTTP {code} from {url}: {response.text[:300]}"
    if 400 <= code < 500 and code not in RETRYABLE_4XX:
        raise PermanentFailure(text)
    raise RuntimeError(text)


# -- job ----------------------------------------------------------------------------------


def run_job(crm: CRM, delivery: Delivery) -> dict[str, Any]:
    """Run a registered job with the item's payload."""
    name = delivery.payload.get("job")
    job = crm.jobs.get(str(name))
    if job is None:
        raise LookupError(f"no job {name!r} is registered in this worker")
    result = job.func(crm, **dict(delivery.payload.get("payload") or {}))
    return {
        "result": result if isinstance(result, (str, int, float, bool, type(None))) else str(result)
    }


CORE_HANDLERS = (
    OutboxHandler(
        "channel.send",
        deliver_channel_message,
        "Send a message through a channel adapter.",
        on_dead=channel_message_dead,
        on_revived=channel_message_revived,
    ),
    OutboxHandler("channel.call", place_call, "Place an outbound call through telephony."),
    OutboxHandler("webhook", call_webhook, "Call an HTTP endpoint (httpx)."),
    OutboxHandler("job", run_job, "Run a registered job later."),
)
