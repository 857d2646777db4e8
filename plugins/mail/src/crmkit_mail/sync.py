"""Reading mailboxes into the timeline, so that a restart neither misses nor duplicates.

For each mailbox the database keeps the folder's ``UIDVALIDITY`` and the highest UID
recorded.  A sync opens the folder read-only, lists the UIDs above that one, fetches them in
batches and records each batch in **one transaction that also moves the mailbox's UID**:
a worker killed mid-batch leaves neither the messages nor the new UID, so the next run
fetches the batch again.  Ingest is idempotent too (a message's Message-ID, or the digest
of its bytes, is its external id), which also covers a changed ``UIDVALIDITY``: the folder
is read again from the start and what was recorded already is passed over.

Delivery status notifications (bounces) are not put on the timeline: they mark the mailing
recipient, or the outbound mail they answer, as bounced.

Mail from one of the CRM's own mailboxes (a colleague writing to a client from their mail
program with ``sales@`` in copy) is not incoming mail: it goes on the client's timeline as
a sent mail, as its sender's Sent folder would put it (:func:`crmkit_mail.sent_reading.
record_sent`), and mail between colleagues with no client among its recipients is passed
over.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import and_, case, select, text, update
from sqlalchemy.sql.elements import ColumnElement

from crmkit.channels import Attachment, InboundMessage
from crmkit.clock import utcnow
from crmkit.identity import contact_key, email_key
from crmkit.jobs.delivery import ClaimLost, keep_claim
from crmkit.model import Activity, ContactPoint
from crmkit.model import Attachment as AttachmentRow
from crmkit.services import bulk
from crmkit.services.channels import MAX_COPIES
from crmkit.storage import FileStorage
from crmkit_mail.accounts import imap_settings, sender_filter
from crmkit_mail.imap import FetchedMessage, ImapMailbox, ImapSettings
from crmkit_mail.model import MailAccount, MailCampaignRecipient
from crmkit_mail.parse_worker import ParserProcess, stored_keys
from crmkit_mail.parsing import MAIL_SYSTEMS, Bounce, ParsedMail, aligned, parse_message

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.services.unit import UnitOfWork

CHANNEL = "mail"


@attrs.define
class SyncReport:
    """What one sync of one mailbox did."""

    account: str
    uidvalidity: int | None = None
    last_uid: int = 0
    fetched: int = 0
    recorded: int = 0
    duplicates: int = 0
    #: messages refused for their content, as "UID n: reason" (skipped, the rest recorded)
    failures: list[str] = attrs.Factory(list)
    bounces: int = 0
    #: delivery reports that are no bounce (delayed: the server still tries), not recorded
    notices: int = 0
    #: messages older than the mailbox's import window, never to be recorded
    passed_over: int = 0
    #: messages from senders the mailbox ignores (``ignore_senders``), not recorded
    ignored: int = 0
    restarted: bool = False
    #: mail people sent from their own mail programs, recorded from the Sent folder, or from
    #: the inbox when one of the CRM's mailboxes sent it (a colleague's copy)
    sent_recorded: int = 0
    #: mail from one of the CRM's mailboxes to none of its clients (colleagues writing to
    #: each other), not recorded
    internal: int = 0
    error: str | None = None


def is_mail_system(address: str) -> bool:
    """Whether ``address`` is a mail system's (``MAILER-DAEMON@...``, ``postmaster@...``)."""
    return address.partition("@")[0].lower() in MAIL_SYSTEMS


def external_id(parsed: ParsedMail) -> str:
    """The id a mail is recorded under: its Message-ID, else the digest of its bytes."""
    return parsed.message_id or f"sha256:{parsed.digest}"


def inbound(
    parsed: ParsedMail,
    fetched: FetchedMessage | None,
    account: str,
    ours: frozenset[str] = frozenset(),
    owner_id: int | None = None,
) -> InboundMessage:
    """The channel contract's view of a parsed mail; ``ours`` are the CRM's mailbox
    addresses (lower case), left out of the copies a reply to all would send; ``owner_id``
    the user whose own mailbox ``account`` is (their conversation, not everyone's triage)."""
    sender = email_key(parsed.sender or "")
    cc: list[str] = []
    seen = {sender, *ours}
    for address in parsed.recipients:
        normalized = contact_key("email", address)
        if normalized.key not in seen and normalized.valid:  # a reply could reach it
            seen.add(normalized.key)
            cc.append(address)
    when = parsed.date or (fetched.internal_date if fetched else None)
    meta: dict[str, Any] = {}
    if parsed.defects:
        meta["defects"] = list(parsed.defects[:20])
    if fetched is not None:
        meta["uid"] = fetched.uid
    if parsed.auto_submitted:
        meta["auto_submitted"] = True
    if parsed.auto_submitted or is_mail_system(sender):
        meta["automatic"] = True  # an auto-reply or a mail system's notice: never a lead
    return InboundMessage(
        channel=CHANNEL,
        external_id=external_id(parsed)[:500],
        sender=parsed.sender or "unknown@invalid",
        sender_name=parsed.sender_name,
        subject=parsed.subject[:500] if parsed.subject else None,
        body=parsed.text,
        html=parsed.html,
        recipients=parsed.recipients,
        received_at=when,
        thread_refs=parsed.thread_refs,
        attachments=[
            Attachment(a.filename, a.content_type, a.data, stored=a.stored)
            for a in parsed.attachments
        ],
        account=account,
        meta=meta,
        cc=cc[:MAX_COPIES],
        arrived_at=fetched.internal_date if fetched else None,  # the server's, not the sender's
        owner_id=owner_id,
    )


def record_bounce(work: UnitOfWork, bounce: Bounce) -> int:
    """Mark what a bounce is about: mailing recipients and outbound mails. Returns how many.

    The original's Message-ID (from the report's copy of its headers) names it; a report
    without that copy, or naming a mail the CRM does not know, falls back to each failed
    address (``Final-Recipient``): the latest mail sent to it, a mailing's or one by hand.
    A report that is no failure (delayed) marks nothing.
    """
    if not bounce.failed:
        return 0
    error = f"{bounce.status} bounced".strip()
    marked = 0
    if bounce.original_message_id:
        result = work.session.execute(
            update(MailCampaignRecipient)
            .where(
                MailCampaignRecipient.message_id == bounce.original_message_id,
                MailCampaignRecipient.status.in_(("sent", "pending", "unknown")),
            )
            .values(status="bounced", error=error)
        )
        marked += result.rowcount or 0
        activity = work.session.scalar(
            select(Activity).where(
                Activity.channel == CHANNEL, Activity.external_id == bounce.original_message_id
            )
        )
        if activity is not None:
            _bounced(activity, bounce)
            marked += 1
    if marked:
        return marked
    for address in bounce.recipients:
        marked += _bounce_latest(work, address, bounce, error)
    return marked


def _bounced(activity: Activity, bounce: Bounce) -> None:
    activity.status = "bounced"
    activity.data = {**(activity.data or {}), "bounce": bounce.status}


def _bounce_latest(work: UnitOfWork, address: str, bounce: Bounce, error: str) -> int:
    """Mark the latest mail sent to ``address`` bounced (a mailing's row or an outbound
    mail, whichever went last); 1 if there was one."""
    key = email_key(address)
    row = work.session.scalar(
        select(MailCampaignRecipient)
        .where(MailCampaignRecipient.address == key, MailCampaignRecipient.status == "sent")
        .order_by(MailCampaignRecipient.sent_at.desc(), MailCampaignRecipient.id.desc())
        .limit(1)
    )
    parties = select(ContactPoint.party_id).where(
        ContactPoint.kind == "email", ContactPoint.key == key
    )
    activity = next(
        (
            a
            for a in work.session.scalars(
                select(Activity)
                .where(
                    Activity.channel == CHANNEL,
                    Activity.direction == "out",
                    Activity.status == "sent",
                    Activity.party_id.in_(parties),
                )
                .order_by(Activity.occurred_at.desc(), Activity.id.desc())
                .limit(50)
            )
            if email_key(str((a.data or {}).get("to") or "")) == key
        ),
        None,
    )
    if row is not None and (
        activity is None or (row.sent_at is not None and row.sent_at >= activity.occurred_at)
    ):
        row.status, row.error = "bounced", error
        return 1
    if activity is not None:
        _bounced(activity, bounce)
        return 1
    return 0


def child_storage(crm: CRM) -> tuple[FileStorage | None, int]:
    """Where the decoding process may write attachments itself, and up to what size:
    the CRM's storage when it is the plain directory one (others are left to the sync)."""
    limit = int(crm.config["storage.max_upload_mb"]) * 1024 * 1024
    return (crm.storage if type(crm.storage) is FileStorage else None), limit


def parse_batch(batch: list[FetchedMessage]) -> list[tuple[FetchedMessage, ParsedMail]]:
    """Each fetched message with what it says (done ahead, while the last batch is recorded)."""
    return [(fetched, parse_message(fetched.raw)) for fetched in batch]


def parser_feed(
    parser: ParserProcess,
) -> Callable[[list[FetchedMessage]], tuple[list[FetchedMessage], bool]]:
    """What the fetching thread does with a batch: send it to ``parser`` (True if sent)."""

    def feed(batch: list[FetchedMessage]) -> tuple[list[FetchedMessage], bool]:
        return batch, bool(batch) and parser.submit([fetched.raw for fetched in batch])

    return feed


def parsed_by(
    parser: ParserProcess, fed: tuple[list[FetchedMessage], bool]
) -> list[tuple[FetchedMessage, ParsedMail]]:
    """A batch from :func:`parser_feed` with what it says: decoded by the child if it was
    sent and the child answers, else here."""
    batch, sent = fed
    if sent and not parser.broken:
        try:
            parsed = parser.results()
        except Exception:  # the child is gone: this batch and the rest are decoded here
            parsed = []
        if len(parsed) == len(batch):
            return list(zip(batch, parsed, strict=True))
        parser.discard(parsed)
    return parse_batch(batch)


def record_batch(
    crm: CRM,
    account_id: int,
    uidvalidity: int,
    batch: list[tuple[FetchedMessage, ParsedMail]],
    report: SyncReport,
    ignore: Callable[[str], bool] | None = None,
) -> None:
    """Record one batch (from :func:`parse_batch`) and move the mailbox's UID in the same
    transaction; mail from senders ``ignore`` matches is passed over (bounces are read)."""
    if not batch:
        return
    # files the decoding process stored: kept if an entry refers to them, else deleted
    keys = stored_keys([parsed for _fetched, parsed in batch])
    kept: set[str] = set()
    try:
        _record_batch(crm, account_id, uidvalidity, batch, report, keys, kept, ignore)
    finally:
        for key in keys:
            if key not in kept:
                crm.storage.delete(key)


def _record_batch(
    crm: CRM,
    account_id: int,
    uidvalidity: int,
    batch: list[tuple[FetchedMessage, ParsedMail]],
    report: SyncReport,
    keys: list[str],
    kept: set[str],
    ignore: Callable[[str], bool] | None,
) -> None:
    from crmkit_mail.sent_reading import KNOWN, RECORDED, record_sent  # it imports this one

    with crm.system() as work:
        mailboxes = {
            email_key(account.address): account
            for account in work.session.scalars(select(MailAccount).order_by(MailAccount.id))
        }
        ours = frozenset(mailboxes)
        reading = work.session.get(MailAccount, account_id)
        owner_id = reading.owner_id if reading is not None else None  # a personal mailbox
        # counted here, and added to the report only once the batch is ours (not overtaken)
        counts = dict.fromkeys(
            ("recorded", "duplicates", "bounces", "notices", "ignored", "sent", "internal"), 0
        )
        failed: list[str] = []
        messages = []
        for fetched, parsed in batch:
            if parsed.bounce is not None:  # a delivery report: a notice, never a conversation
                record_bounce(work, parsed.bounce)
                counts["bounces" if parsed.bounce.failed else "notices"] += 1
                continue
            if ignore is not None and ignore(parsed.sender):
                counts["ignored"] += 1
                continue
            sent_from = mailboxes.get(email_key(parsed.sender or ""))
            suspicious = None
            if sent_from is not None and not aligned(parsed.sender, parsed.authenticated):
                # anybody can write "From: sales@": without the receiving server's word
                # (DMARC, DKIM or SPF passed for our domain) it is incoming mail, flagged
                # with the mailbox it claims to come from
                suspicious, sent_from = sent_from.address, None
            if sent_from is not None:
                # a colleague's mail (or our own): sent mail on its client's timeline
                done, failure = record_sent(work, sent_from, parsed, fetched.internal_date)
                if failure is not None:
                    failed.append(f"UID {fetched.uid}: {failure}")
                else:
                    key = {RECORDED: "sent", KNOWN: "duplicates"}.get(done or "", "internal")
                    counts[key] += 1
                continue
            message = inbound(parsed, fetched, report.account, ours, owner_id)
            if suspicious is not None:
                message.meta["suspicious"] = suspicious
            messages.append(message)
        # one unit of work for the batch: a few statements, not a few per message; a message
        # refused for its content is left out (and reported) rather than stopping the mailbox
        recorded, failures = work.channels.record_isolated(messages)
        for index, reason in failures.items():
            failed.append(f"UID {messages[index].meta.get('uid')}: {reason}")
        for index, activity_id in enumerate(recorded):
            if index in failures:
                continue
            counts["duplicates" if activity_id is None else "recorded"] += 1
        top = batch[-1][0].uid
        moved = work.session.execute(
            update(MailAccount)
            .where(
                MailAccount.id == account_id,
                MailAccount.uidvalidity == uidvalidity,
                MailAccount.last_uid < top,
            )
            .values(last_uid=top)
        )
        if moved.rowcount == 0:
            # another worker got there first (or the folder was reset): drop our copy
            raise _Overtaken()
        # read before the commit, kept only once it succeeded
        referred = set(
            work.session.scalars(
                select(AttachmentRow.storage_key).where(AttachmentRow.storage_key.in_(keys))
            )
            if keys
            else ()
        )
    # committed: the batch is this worker's, and so are its counts
    report.last_uid = top
    report.recorded += counts["recorded"]
    report.duplicates += counts["duplicates"]
    report.bounces += counts["bounces"]
    report.notices += counts["notices"]
    report.ignored += counts["ignored"]
    report.sent_recorded += counts["sent"]
    report.internal += counts["internal"]
    report.failures.extend(failed)
    kept.update(referred)
    report.fetched += len(batch)


#: A sync that has recorded this many messages lets PostgreSQL's planner see the tables it
#: grew (and again each time it has recorded twice as many).
ANALYZE_FROM = 1_000
#: The tables a sync grows.
GROWN_TABLES = ("activity", "conversation", "attachment")


def refresh_statistics(crm: CRM, grown: int) -> None:
    """``ANALYZE`` the tables a long sync grows, when it grew them by a tenth or more of
    what the planner last counted (PostgreSQL only).

    Autovacuum analyzes about once a minute; a first sync of a big mailbox writes
    thousands of entries in less.  Until then the batch look-ups (``external_id IN
    (...)``, ``address_key IN (...)``) were planned for the small tables last seen and
    read every entry of the channel: on 10,000 messages that was most of the sync.
    """
    if crm.engine.dialect.name != "postgresql":
        return
    with crm.engine.begin() as connection:
        counted = connection.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = 'activity'::regclass")
        )
        if counted is None or counted < 0 or grown >= 0.1 * counted:
            bulk.refresh_statistics(connection, GROWN_TABLES)


class _Overtaken(Exception):
    pass


def record_batches(
    crm: CRM,
    account_id: int,
    uidvalidity: int,
    batches: Iterable[list[tuple[FetchedMessage, ParsedMail]]],
    report: SyncReport,
    after_batch: Callable[[SyncReport], None] | None = None,
    ignore: Callable[[str], bool] | None = None,
) -> None:
    """Record decoded batches in order (:func:`record_batch`), refreshing the planner's
    statistics as the tables grow; stops when another worker has moved the mailbox on."""
    analyzed = 0
    for batch in batches:
        try:
            record_batch(crm, account_id, uidvalidity, batch, report, ignore)
        except _Overtaken:
            break
        if report.recorded >= max(ANALYZE_FROM, 2 * analyzed):
            refresh_statistics(crm, report.recorded - analyzed)
            analyzed = report.recorded
        if after_batch is not None:
            after_batch(report)


def sync_account(
    crm: CRM,
    account_id: int,
    *,
    batch_size: int | None = None,
    mailbox: ImapMailbox | None = None,
    after_batch: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    """Record the new mail of one mailbox (see the module's doc for the guarantees).

    ``mailbox``: a connection to use (a watcher's, kept open between syncs); one opened
    with other settings than the mailbox's current ones (an admin changed its server,
    login, password or folder) is connected again with the current ones first.
    """
    began = utcnow()
    with crm.system() as work:
        account = work.session.get(MailAccount, account_id)
        if account is None:
            raise LookupError(f"no mailbox {account_id}")
        settings = imap_settings(crm, account)
        report = SyncReport(account=account.name, uidvalidity=account.uidvalidity)
        known_validity, last_uid = account.uidvalidity, account.last_uid
        import_days = account.import_days
        # what was recorded for sure: the mail the server had when the last successful sync
        # began (failed syncs prove nothing; never one: nothing before the mailbox existed)
        recorded_until = account.last_success_at or account.created_at
        window_top = account.import_until_uid
        ignore = sender_filter(account.ignore_senders or "")
    size = batch_size or int(crm.config["mail.batch_size"])
    own = mailbox is None
    box = mailbox or ImapMailbox(settings)
    try:
        if own:
            box.open()
        elif box.settings != settings:
            # changed since the connection was opened: never read the old folder again
            box.close()
            box.settings = settings
            box.open()
        else:
            box.examine()
        validity = box.uidvalidity
        assert validity is not None
        if validity != known_validity:
            # a new folder, or the server renumbered it: start again from its first message
            with crm.system() as work:
                work.session.execute(
                    update(MailAccount)
                    .where(MailAccount.id == account_id)
                    .values(uidvalidity=validity, last_uid=0, import_until_uid=None)
                )
            report.restarted = known_validity is not None
            last_uid, window_top = 0, None
        report.uidvalidity, report.last_uid = validity, last_uid
        uids = box.uids_after(last_uid)
        passed_over: list[int] = []
        # the window applies to a reading from the start, and to one that stopped midway
        window = import_days if uids and (last_uid == 0 or window_top is not None) else None
        if window is not None:
            # only the window's mail among the messages there were when it began (for a
            # renumbered folder, since the day of the last successful sync too: nothing
            # received meanwhile, however long the syncs failed, is lost)
            top = window_top if window_top is not None else uids[-1]
            since = import_since(window, recorded_until if report.restarted else None)
            recent = set(box.uids_since(since))
            passed_over = [uid for uid in uids if uid <= top and uid not in recent]
            uids = [uid for uid in uids if uid > top or uid in recent]
            report.passed_over = len(passed_over)
            if passed_over and window_top is None:
                _window_pending(crm, account_id, validity, top)
        with contextlib.ExitStack() as stack:
            # a long sync decodes on another core (see parse_worker); one batch is decoded
            # in the fetching thread, as the child would take longer to start
            parser = (
                stack.enter_context(ParserProcess(*child_storage(crm)))
                if len(uids) > size
                else None
            )
            prepare = parse_batch if parser is None else parser_feed(parser)
            # closed first on the way out, so the batch fetched ahead is done before logout
            batches = stack.enter_context(contextlib.closing(box.batches(uids, size, prepare)))
            record_batches(
                crm,
                account_id,
                validity,
                (fetched if parser is None else parsed_by(parser, fetched) for fetched in batches),
                report,
                after_batch,
                ignore,
            )
        if window is not None and (not uids or report.last_uid >= uids[-1]):
            # every message of the window is recorded: the older ones stay below the mark,
            # and the window is done with
            _pass_over(crm, account_id, validity, max(passed_over, default=0))
            report.last_uid = max([report.last_uid, *passed_over])
        from crmkit_mail.sent_reading import read_sent  # it reads mail as this module does

        sent = read_sent(crm, account_id, size)
        report.sent_recorded += sent.recorded
        report.failures.extend(sent.failures)
        _finish(crm, account_id, _failures_text(report.failures), succeeded=began)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        _finish(crm, account_id, report.error)
        raise
    finally:
        if own:
            box.close()
    return report


def import_since(days: int, recorded_until: dt.datetime | None = None) -> dt.date:
    """The first day of a mailbox's import window of ``days`` days (see
    :class:`~crmkit_mail.model.MailAccount`), moved back to the day before
    ``recorded_until`` (the last successful sync) when that is earlier."""
    since = (utcnow() - dt.timedelta(days=days)).date()
    if recorded_until is not None:
        since = min(since, recorded_until.date() - dt.timedelta(days=1))
    return since


def _window_pending(crm: CRM, account_id: int, uidvalidity: int, top: int) -> None:
    """Remember that the import window applies up to UID ``top`` until it is recorded, so
    that a reading stopped midway goes on with it."""
    with crm.system() as work:
        work.session.execute(
            update(MailAccount)
            .where(MailAccount.id == account_id, MailAccount.uidvalidity == uidvalidity)
            .values(import_until_uid=top)
        )


def _pass_over(crm: CRM, account_id: int, uidvalidity: int, top: int) -> None:
    """Move the mailbox's mark above messages passed over (unless someone moved it further)
    and end its import window."""
    with crm.system() as work:
        work.session.execute(
            update(MailAccount)
            .where(MailAccount.id == account_id, MailAccount.uidvalidity == uidvalidity)
            .values(
                last_uid=case((MailAccount.last_uid < top, top), else_=MailAccount.last_uid),
                import_until_uid=None,
            )
        )


def _failures_text(failures: list[str]) -> str | None:
    if not failures:
        return None
    return f"{len(failures)} message(s) not recorded: " + "; ".join(failures)[:900]


def _finish(
    crm: CRM, account_id: int, error: str | None, succeeded: dt.datetime | None = None
) -> None:
    """Note a sync's end and its error; ``succeeded``: it went through, begun at that time."""
    values: dict[str, Any] = {"last_sync_at": utcnow(), "last_error": error}
    if succeeded is not None:
        values["last_success_at"] = succeeded
    with crm.system() as work:
        work.session.execute(
            update(MailAccount).where(MailAccount.id == account_id).values(**values)
        )


def reads_mail() -> ColumnElement[bool]:
    """The mailboxes that read mail: switched on, with an IMAP server."""
    return and_(MailAccount.active.is_(True), MailAccount.imap_host != "")


def active_accounts(crm: CRM) -> list[int]:
    """Ids of the mailboxes that read mail."""
    with crm.system() as work:
        return list(
            work.session.scalars(
                select(MailAccount.id).where(reads_mail()).order_by(MailAccount.id)
            )
        )


def sync_all(crm: CRM, **_payload: Any) -> list[SyncReport]:
    """Sync every active mailbox once; one failing mailbox does not stop the others."""
    reports = []
    for account_id in active_accounts(crm):
        keep_claim()  # a first sync of a big mailbox is long: the schedule must stay ours
        try:
            reports.append(sync_account(crm, account_id, after_batch=lambda _: keep_claim()))
        except ClaimLost:  # another run of the schedule took over: it goes on
            raise
        except Exception as exc:  # recorded on the mailbox (last_error); the rest go on
            reports.append(SyncReport(account=_account_name(crm, account_id), error=str(exc)))
    return reports


def _account_name(crm: CRM, account_id: int) -> str:
    """A mailbox's name for a report (its id when it cannot be read)."""
    try:
        with crm.system() as work:
            account = work.session.get(MailAccount, account_id)
            return account.name if account is not None else str(account_id)
    except Exception:  # the failure being reported may be the database's
        return str(account_id)


#: How often a watcher waiting in IDLE checks whether its mailbox's settings changed.
SETTINGS_CHECK_SECONDS = 60.0


def current_settings(crm: CRM, account_id: int) -> ImapSettings | None:
    """How a mailbox is to be reached now (``None``: it is gone)."""
    with crm.system() as work:
        account = work.session.get(MailAccount, account_id)
        return None if account is None else imap_settings(crm, account)


def watch(
    crm: CRM,
    account_id: int,
    *,
    stop: threading.Event,
    idle_seconds: float | None = None,
    on_sync: Callable[[SyncReport], None] | None = None,
) -> None:
    """Keep a mailbox in sync until ``stop`` is set: IDLE when the server has it, else poll.

    The connection is kept between syncs; changed settings (server, port, security, login,
    password, folder) are noticed within :data:`SETTINGS_CHECK_SECONDS` while it waits in
    IDLE, and before every sync, which then connects with the new ones.
    """
    settings = current_settings(crm, account_id)
    if settings is None:
        raise LookupError(f"no mailbox {account_id}")
    wait = idle_seconds or float(crm.config["mail.idle_seconds"])
    with ImapMailbox(settings) as box:
        while not stop.is_set():
            report = sync_account(crm, account_id, mailbox=box)
            if on_sync is not None:
                on_sync(report)
            if stop.is_set():
                break
            _wait_for_mail(crm, account_id, box, wait, stop)


def _wait_for_mail(
    crm: CRM, account_id: int, box: ImapMailbox, seconds: float, stop: threading.Event
) -> None:
    """IDLE up to ``seconds``, until mail arrives, ``stop`` is set or the mailbox's settings
    are no longer those ``box`` was opened with (a server without IDLE: sleep, then poll)."""
    if not box.has_idle:
        box.idle(seconds, stop=stop)
        return
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or box.idle(min(remaining, SETTINGS_CHECK_SECONDS), stop=stop):
            return
        if current_settings(crm, account_id) != box.settings:
            return  # the next sync connects with the new ones
