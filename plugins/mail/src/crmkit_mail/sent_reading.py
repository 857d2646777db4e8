"""Recording the mail people send from their own mail programs (the mailbox's Sent folder).

Staff who answer a client from Thunderbird or a phone leave the client's timeline without
that mail unless the CRM reads it.  A mailbox with ``sent_folder`` set is read there too,
after its inbox, on every sync (the ``mail.sync`` schedule: within two minutes):

* only mail put there from the moment the folder is first read: what it held before (years
  of history, most of it to people who are not clients) is passed over, and so is
  everything before a renumbering of the folder (a changed ``UIDVALIDITY``);
* a mail is recorded once (``(mail, Message-ID)``, like incoming mail), so the copies the
  CRM stores there itself (:mod:`crmkit_mail.sent_copies`) are never recorded twice; one
  recorded already as unverified incoming mail (another of the CRM's inboxes read its copy
  first, with no ``Authentication-Results`` to trust) is ours after all and becomes the sent
  mail this reading would have made, its "Sender not verified" flag cleared;
* it goes on the timeline of the first recipient (To, then Cc) who is a client, as a sent
  mail (direction ``out``, status ``sent``) written by the mailbox's owner, joined to the
  open deal or task of the mail it answers (``work.channels.thread_record``, as incoming
  mail is); mail to nobody the CRM knows is passed over;
* each batch is recorded in the transaction that moves the folder's UID mark
  (``sent_last_uid``), so a crash neither loses nor repeats anything;
* a mail refused for its content (a value the database rejects) is left out in its own
  savepoint and reported (``SyncReport.failures``, "Sent UID n: ..."), the rest of its batch
  recorded and the mark moved past it, as for incoming mail; any other error fails the
  batch, which is read again next time.

Their files are kept on the entry as incoming mail's are (``data["attachments"]``); a file
the CRM refuses (too large for ``storage.max_upload_mb``, a full disk) leaves the mail
recorded without its files, named in ``data["dropped_attachments"]``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import attrs
from sqlalchemy import func, select, update

from crmkit.channels import Attachment
from crmkit.identity import email_key
from crmkit.model import Activity, Conversation
from crmkit.model import Attachment as AttachmentRow
from crmkit.services.channels import BAD_MESSAGE, refusal_text
from crmkit_mail.accounts import imap_settings
from crmkit_mail.imap import ImapMailbox
from crmkit_mail.model import MailAccount
from crmkit_mail.parsing import ParsedMail, parse_message
from crmkit_mail.sent_copies import wants_copy
from crmkit_mail.sync import CHANNEL, external_id

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.services.unit import UnitOfWork


@attrs.define
class SentReading:
    """What one reading of a Sent folder recorded, and the mail it had to leave out."""

    recorded: int = 0
    #: mail refused for its content, as "Sent UID n: reason" (the rest recorded)
    failures: list[str] = attrs.Factory(list)


def read_sent(crm: CRM, account_id: int, batch_size: int) -> SentReading:
    """Record the new mail of a mailbox's Sent folder."""
    reading = SentReading()
    with crm.system() as work:
        account = work.session.get(MailAccount, account_id)
        if account is None or not wants_copy(account):
            return reading
        folder = account.sent_folder
        settings = imap_settings(crm, account)
        known, last_uid = account.sent_uidvalidity, account.sent_last_uid
    with ImapMailbox(settings) as box:
        if not box.has_folder(folder):
            return reading  # created with the first copy the CRM stores
        box.settings = attrs.evolve(settings, folder=folder)
        validity = box.examine()
        if validity != known:
            # read for the first time, or renumbered: from now on, not its history
            top = max(box.uids_after(0), default=0)
            with crm.system() as work:
                work.session.execute(
                    update(MailAccount)
                    .where(MailAccount.id == account_id)
                    .values(sent_uidvalidity=validity, sent_last_uid=top)
                )
            return reading
        uids = box.uids_after(last_uid)
        for start in range(0, len(uids), batch_size):
            fetched = box.fetch(uids[start : start + batch_size])
            if not fetched:
                continue
            with crm.system() as work:
                account = work.session.get(MailAccount, account_id)
                assert account is not None
                batch, failed = 0, []
                for message in fetched:
                    parsed = parse_message(message.raw)
                    done, failure = record_sent(work, account, parsed, message.internal_date)
                    batch += done == RECORDED
                    if failure is not None:
                        failed.append(f"Sent UID {message.uid}: {failure}")
                moved = work.session.execute(
                    update(MailAccount)
                    .where(
                        MailAccount.id == account_id,
                        MailAccount.sent_uidvalidity == validity,
                        MailAccount.sent_last_uid < fetched[-1].uid,
                    )
                    .values(sent_last_uid=fetched[-1].uid)
                )
                if moved.rowcount == 0:  # another worker got there first: drop our copy
                    work.rollback()
                    return reading
            reading.recorded += batch  # committed
            reading.failures.extend(failed)
    return reading


#: What :func:`record_sent` did with a mail: put it on a client's timeline, found it there
#: already (the CRM's own mail, or a copy read before), or found no client among its
#: recipients.
RECORDED, KNOWN, TO_NOBODY_KNOWN = "recorded", "known", "to nobody known"


def record_sent(
    work: UnitOfWork, account: MailAccount, parsed: ParsedMail, received_at: dt.datetime | None
) -> tuple[str | None, str | None]:
    """Put one mail sent from ``account`` on the timeline of its first recipient who is a
    client, as a sent mail by the mailbox's owner, in a savepoint of its own.

    Used for the mailbox's Sent folder, and for the mail from one of the CRM's mailboxes
    that another one receives (a colleague's copy to ``sales@``, see
    :mod:`crmkit_mail.sync`).  Returns what it did (:data:`RECORDED`, :data:`KNOWN`,
    :data:`TO_NOBODY_KNOWN`) and, for a mail refused for its content (a value the database
    rejects, see ``work.channels.record_isolated``), ``None`` and why: it is undone, the
    rest of the unit of work kept.  Any other error propagates.
    """
    try:
        with work.savepoint():
            return _record(work, account, parsed, received_at), None
    except BAD_MESSAGE as exc:
        return None, refusal_text(exc)


def _record(
    work: UnitOfWork, account: MailAccount, parsed: ParsedMail, received_at: dt.datetime | None
) -> str:
    recorded_as = external_id(parsed)[:500]
    known = work.session.scalar(
        select(Activity).where(Activity.channel == CHANNEL, Activity.external_id == recorded_as)
    )
    party_id = next(
        (
            found
            for address in parsed.recipients
            if (found := work.channels.resolve("email", address)) is not None
        ),
        None,
    )
    if known is not None:
        if _unverified_copy(known, account):
            return _vouched(work, account, known, parsed, party_id)
        return KNOWN
    if party_id is None:
        return TO_NOBODY_KNOWN
    refs = [r for r in parsed.thread_refs if r]
    # the open deal or task of the mail it answers, as for incoming mail
    record = work.channels.thread_record(CHANNEL, tuple(refs))
    recipients = list(parsed.recipients)
    data = {
        "to": recipients[0] if recipients else "",
        "account": account.name,
        "from": parsed.sender,
        "mail_program": True,
        "refs": refs,
    }
    if recipients[1:]:
        data["cc"] = recipients[1:]
    activity = work.timeline.add(
        "mail",
        party_id=party_id,
        subject=parsed.subject[:500] if parsed.subject else None,
        body=parsed.text,
        record=record,
        data=data,
        occurred_at=parsed.date or received_at,
        direction="out",
        channel=CHANNEL,
        external_id=recorded_as,
        status="sent",
    )
    activity.actor_id = account.owner_id
    if parsed.attachments:  # kept as an incoming mail's are
        work.flush()
        files = [Attachment(f.filename, f.content_type, f.data) for f in parsed.attachments]
        kept = work.channels.keep_files(activity.id, files, party_id)
        activity.data = {**activity.data, **kept}
    return RECORDED


def _unverified_copy(entry: Activity, account: MailAccount) -> bool:
    """Whether ``entry`` is this mailbox's mail read first from another of the CRM's
    inboxes without the receiving server's word, so recorded as incoming and flagged."""
    claimed = (entry.data or {}).get("suspicious")
    return (
        entry.direction == "in"
        and isinstance(claimed, str)
        and email_key(claimed) == email_key(account.address)
    )


def _vouched(
    work: UnitOfWork,
    account: MailAccount,
    entry: Activity,
    parsed: ParsedMail,
    party_id: int | None,
) -> str:
    """The Sent folder holds the mail a colleague's inbox recorded as unverified: it is
    ours after all, so it becomes what reading the Sent folder first would have made.

    It leaves its triage conversation (removed when that held nothing else) and, flag
    cleared, is a sent mail by the mailbox's owner on its first recipient client's timeline
    (or the client someone filed it under meanwhile).  Mail to no client is passed over,
    as between colleagues: the entry and its files go.  Returns what :func:`record_sent`
    says for it.
    """
    _leave_conversation(work, entry)
    party_id = party_id or entry.party_id
    if party_id is None:
        for attachment_id in (entry.data or {}).get("attachments") or ():
            if work.session.get(AttachmentRow, attachment_id) is not None:
                work.attachments.delete(attachment_id)
        work.audit("activity", entry.id, "delete", {"suspicious": [entry.data["suspicious"], None]})
        work.session.delete(entry)
        return TO_NOBODY_KNOWN
    recipients = list(parsed.recipients)
    data = {
        key: value
        for key, value in (entry.data or {}).items()
        if key not in ("suspicious", "from_name", "has_html", "uid", "cc", "to")
    }
    data.update(
        {
            "to": recipients[0] if recipients else "",
            "account": account.name,
            "from": parsed.sender,
            "mail_program": True,
        }
    )
    if recipients[1:]:
        data["cc"] = recipients[1:]
    changes = {"direction": ["in", "out"], "suspicious": [entry.data["suspicious"], None]}
    if entry.party_id != party_id:
        changes["party_id"] = [entry.party_id, party_id]
        for attachment_id in data.get("attachments") or ():
            stored = work.session.get(AttachmentRow, attachment_id)
            if stored is not None and stored.party_id is None:
                stored.party_id = party_id
    if entry.record_entity is None:
        record = work.channels.thread_record(CHANNEL, tuple(r for r in parsed.thread_refs if r))
        if record is not None:
            entry.record_entity, entry.record_id = record
    entry.party_id, entry.direction, entry.status = party_id, "out", "sent"
    entry.actor_id, entry.data = account.owner_id, data
    work.timeline.touch(party_id, entry.occurred_at)
    work.audit("activity", entry.id, "verified", changes)
    return RECORDED


def _leave_conversation(work: UnitOfWork, entry: Activity) -> None:
    """Take ``entry`` out of its conversation; one left with no message goes too."""
    conversation_id = entry.conversation_id
    if conversation_id is None:
        return
    entry.conversation_id = None
    work.flush()
    left = work.session.scalar(
        select(func.count())
        .select_from(Activity)
        .where(Activity.conversation_id == conversation_id)
    )
    conversation = work.session.get(Conversation, conversation_id)
    if conversation is None:
        return
    if not left:
        work.session.delete(conversation)
    elif conversation.unread:
        conversation.unread -= 1
