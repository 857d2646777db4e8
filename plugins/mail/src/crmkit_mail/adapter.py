"""The mail channel's adapter: what the outbox worker and pollers call (see crmkit.channels).

``send`` turns an :class:`~crmkit.channels.OutboundMessage` into a MIME message and hands it
to the SMTP server of the mailbox it goes out from (named, the sender's own, or a shared
one).  Its Message-ID derives from the idempotency key, so a retry after a crash carries
the same id and the recipient's mail client shows one message, and replies to it thread.
``poll`` reads every active mailbox once (see :mod:`crmkit_mail.sync`).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from crmkit.channels import DeliveryReceipt, OutboundMessage, PermanentFailure, PollResult
from crmkit.errors import NotFound
from crmkit.model import Activity, User
from crmkit_mail.accounts import MailAccounts, smtp_settings
from crmkit_mail.sent_copies import keep_bytes, queue_copy, wants_copy
from crmkit_mail.signatures import Signatures, signed
from crmkit_mail.smtp import FileToSend, SmtpTransport, compose, make_message_id

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)


def _attachment_id(item: Any) -> int | None:
    if isinstance(item, int):
        return item
    if isinstance(item, dict):
        return item.get("attachment_id")
    return getattr(item, "attachment_id", None)


class MailAdapter:
    """Sends through SMTP and reads through IMAP for one application."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Deliver one mail; PermanentFailure for a refused address or a missing mailbox."""
        files: list[FileToSend] = []
        with self.crm.system() as work:
            try:
                account = MailAccounts(work).sending_account(
                    name=message.account, user_id=message.sender_user_id
                )
            except NotFound as exc:
                raise PermanentFailure(f"no mailbox to send from: {exc}") from None
            settings = smtp_settings(self.crm, account)
            sender_name = account.display_name or None
            if account.owner_id is None and message.sender_user_id is not None:
                user = work.session.get(User, message.sender_user_id)
                if user is not None and account.display_name:
                    sender_name = f"{user.label} ({account.display_name})"
            for item in message.attachments:
                attachment_id = _attachment_id(item)
                if attachment_id is not None:
                    row, stream = work.attachments.open(attachment_id)
                    with stream:
                        files.append(FileToSend(row.filename, row.content_type, stream.read()))
                elif getattr(item, "data", None) is not None:
                    files.append(FileToSend(item.filename, item.content_type, item.data))
            address = account.address
            account_id, copied = account.id, wants_copy(account)
            # the writer's signature (mail a user sends; the system's own goes without)
            signature = (
                Signatures(work).get(message.sender_user_id)
                if message.sender_user_id is not None
                else ""
            )
        body, html = signed(message.body, message.html, signature)
        message_id = make_message_id(message.idempotency_key, address)
        mime = compose(
            sender=address,
            sender_name=sender_name,
            to=[message.to],
            cc=message.cc,
            subject=message.subject or "",
            body=body,
            html=html,
            message_id=message_id,
            in_reply_to=message.in_reply_to,
            references=message.references,
            attachments=files,
            headers=dict(message.headers),
        )
        with SmtpTransport(settings) as transport:
            refused = transport.send(mime, address, [message.to, *message.cc])
        copy, note = None, {}
        if copied:
            try:
                copy = (account_id, keep_bytes(self.crm, mime.as_bytes()))
            except OSError as exc:  # the mail went out: failing now would send it again
                log.warning("mail %s: its copy for the Sent folder not kept: %s", message_id, exc)
                note["sent_copy"] = f"not kept: {exc}"[:300]
        if refused:
            note["refused"] = refused
        self._remember_sent(message.activity_id, message_id, body, note, copy)
        detail: dict[str, Any] = {"account": account.name}
        if refused:
            detail["refused"] = refused
        return DeliveryReceipt(external_id=message_id, detail=detail)

    def _remember_sent(
        self,
        activity_id: int | None,
        message_id: str,
        body: str,
        note: dict[str, Any],
        copy: tuple[int, str] | None,
    ) -> None:
        # replies quote this id in References: it is how they find the deal or task; the
        # entry keeps the text as it went out (with the signature) and says who did not get
        # it (a copy's address the server refused while it took the mail for the others);
        # the mailbox's Sent folder gets its copy later, through the outbox
        if activity_id is None and copy is None:
            return
        kept = False
        try:
            with self.crm.system() as work:
                queued = copy is not None and queue_copy(work, copy[0], message_id, copy[1])
                activity = work.session.get(Activity, activity_id) if activity_id else None
                if activity is not None:
                    if activity.external_id is None:
                        activity.external_id = message_id
                    if activity.body != body:
                        activity.body = body
                    if note:
                        activity.data = {**(activity.data or {}), **note}
            kept = queued  # committed
        finally:
            if copy is not None and not kept:  # queued before (a retry), or undone
                self.crm.storage.delete(copy[1])

    def poll(self, cursor: str | None) -> PollResult:
        """Record new mail of every active mailbox; the cursor is each one's UID state."""
        from crmkit_mail.sync import sync_all

        reports = sync_all(self.crm)
        state = {r.account: f"{r.uidvalidity}:{r.last_uid}" for r in reports}
        # messages are recorded by sync itself, in the transaction that moves each cursor
        return PollResult(messages=(), cursor=json.dumps(state, sort_keys=True))
