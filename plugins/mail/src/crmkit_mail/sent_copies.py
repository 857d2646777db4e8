"""Copies of sent mail in the mailbox's own folder (IMAP APPEND), through the outbox.

People who also read a mailbox in their mail program (Thunderbird, Outlook, a phone) expect
what the CRM sent from it to be in its Sent folder, as if they had sent it themselves.  A
mailbox with ``sent_folder`` set gets that copy:

* once the SMTP server took a mail, the adapter keeps the message's bytes in the CRM's
  storage and queues a ``mail.sent_copy`` outbox item, in the same transaction that marks
  the timeline entry with the mail's Message-ID (:func:`queue_copy`); a delivery retried
  after that queues nothing more (the item's key is the Message-ID);
* a worker stores the copy (:func:`store_copy`): it looks for the Message-ID in the folder
  first (a copy the server kept before a crash is not stored twice), creates the folder
  when the server has none of that name, appends the mail marked seen with the time it
  was sent, then deletes the kept bytes;
* an IMAP server that is down or refuses is retried with back-off like every outbox item,
  and after the last attempt the item is on the admins' *Failed deliveries* list with the
  server's answer, the bytes still kept for a retry from there.  The mail itself counts as
  sent all along: a copy that cannot be stored never sends it again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

from crmkit.channels import PermanentFailure
from crmkit.clock import utcnow
from crmkit.jobs import Delivery, OutboxHandler
from crmkit_mail.accounts import imap_settings
from crmkit_mail.imap import append_once
from crmkit_mail.model import MailAccount

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.services.unit import UnitOfWork

KIND = "mail.sent_copy"


def wants_copy(account: MailAccount) -> bool:
    """Whether mail sent from ``account`` is copied to a folder of its IMAP server."""
    return bool(account.sent_folder.strip() and account.imap_host.strip())


def keep_bytes(crm: CRM, raw: bytes) -> str:
    """Keep a sent mail's bytes in the CRM's storage until its copy is stored; their key."""
    return crm.storage.save([raw]).key


def queue_copy(work: UnitOfWork, account_id: int, message_id: str, key: str) -> bool:
    """Queue storing the copy kept under ``key``; ``False`` when one was queued before for
    this Message-ID (a retried delivery), the caller then deletes its bytes."""
    item = work.outbox.add(
        KIND,
        {
            "account_id": account_id,
            "message_id": message_id,
            "storage_key": key,
            "sent_at": utcnow().isoformat(),
        },
        idempotency_key=f"{KIND}:{message_id}",
    )
    return bool(item.payload.get("storage_key") == key)


def store_copy(crm: CRM, delivery: Delivery) -> dict[str, Any]:
    """The ``mail.sent_copy`` outbox handler (see the module's documentation)."""
    payload = delivery.payload
    key = str(payload["storage_key"])
    with crm.system() as work:
        account = work.session.get(MailAccount, int(payload["account_id"]))
        if account is None:
            raise PermanentFailure("the mailbox was removed: there is nowhere to keep the copy")
        if not wants_copy(account):  # switched off since: nothing to do
            with contextlib.suppress(FileNotFoundError):
                crm.storage.delete(key)
            return {"skipped": "the mailbox keeps no copies of sent mail any more"}
        folder = account.sent_folder.strip()
        settings = imap_settings(crm, account)

    def raw() -> bytes:  # not needed when the copy is there already (an earlier attempt)
        try:
            with crm.storage.open(key) as stream:
                return stream.read()
        except FileNotFoundError:
            raise PermanentFailure(f"the sent mail's bytes ({key}) are gone") from None

    sent_at = dt.datetime.fromisoformat(payload["sent_at"]) if payload.get("sent_at") else None
    uid = append_once(settings, folder, raw, str(payload["message_id"]), sent_at)
    with contextlib.suppress(FileNotFoundError):
        crm.storage.delete(key)
    return {"folder": folder, "uid": uid}


HANDLER = OutboxHandler(
    KIND,
    store_copy,
    "Store a copy of a sent mail in its mailbox's Sent folder (IMAP).",
)
