"""Mail plugin (issue 6): ingest of 10,000 messages from a real Dovecot.

``python -m benchmarks --only mail [--db sqlite,postgresql]``

Starts Dovecot (Debian ``dovecot-imapd``) on loopback with a config of its own, appends
10,000 varied messages (UTF-8, windows-1251 and KOI8-R bodies, encoded headers, a fifth
from known clients, some with a small attachment) to one mailbox, then measures in the same
run:

* the baseline: a bare ``imaplib`` session fetching the same messages by UID in batches of
  200 (``UID FETCH ... BODY.PEEK[]``), nothing else;
* crmkit: ``sync_account`` of a fresh mailbox: the same fetches, plus decoding, party
  resolution, timeline entries, conversations, files and the UID bookkeeping, per batch
  in one transaction.

Reports messages/s of both and their ratio (target >= 0.5x), and, as what bounds that
ratio, the recording stage alone: the same batches fetched and decoded beforehand, then
recorded as the sync records them (see docs/decisions.md, "Mail ingest: what bounds it").

Mass mailing: 10,000 parties in a group, a mailing started and sent by ``send_campaign``
with the rate limit off (per-recipient rendering in the sandbox, unsubscribe links, status
rows) through aiosmtpd on loopback, against a bare ``smtplib`` session sending 10,000
prebuilt messages to the same server in the same run.

``BENCH_MAIL=ingest`` (or ``mailing``) measures only that half, for iterating on one.
"""

from __future__ import annotations

import base64
import imaplib
import os
import smtplib
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import Context, Row, timed
from crmkit.services.bulk import refresh_statistics
from crmkit.testing import make_crm, postgres_reachable

MESSAGES = 10_000
BATCH = 200
TARGET = 0.5


def message(n: int) -> bytes:
    """A varied, realistic message number ``n``."""
    sender = f"client{n % 2000}@example.ru" if n % 5 == 0 else f"stranger{n}@mail.example"
    body = f"Здравствуйте! Заявка номер {n}: нужны запчасти, счёт и сроки поставки. Спасибо."
    charset = ("utf-8", "windows-1251", "koi8-r")[n % 3]
    codec = {"utf-8": "utf-8", "windows-1251": "cp1251", "koi8-r": "koi8_r"}[charset]
    subject = base64.b64encode(f"Заявка {n}".encode(codec)).decode()
    head = (
        f"From: =?{charset}?B?{base64.b64encode('Клиент'.encode(codec)).decode()}?= <{sender}>\r\n"
        f"To: sales@firm.test\r\nSubject: =?{charset}?B?{subject}?=\r\n"
        f"Date: Mon, 3 Mar 2025 10:{n % 60:02d}:00 +0300\r\nMessage-ID: <bench{n}@example.ru>\r\n"
        "MIME-Version: 1.0\r\n"
    )
    if n % 10 == 3:
        return (
            (
                head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
                f"Content-Type: text/plain; charset={charset}\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
            ).encode()
            + body.encode(codec)
            + (
                "\r\n--b\r\nContent-Type: application/pdf\r\n"
                f'Content-Disposition: attachment; filename="zayavka-{n}.pdf"\r\n'
                "Content-Transfer-Encoding: base64\r\n\r\n"
                + base64.b64encode(b"%PDF-1.4 " + bytes(600)).decode()
                + "\r\n--b--\r\n"
            ).encode()
        )
    return (
        head
        + f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body.encode(codec)


def fill(dovecot, user: str, count: int) -> None:
    conn = imaplib.IMAP4(dovecot.host, dovecot.port)
    conn.login(user, dovecot.users[user])
    for n in range(count):
        conn.append("INBOX", None, None, message(n))
    conn.logout()


def bare_fetch(dovecot, user: str) -> int:
    """The baseline: fetch every message's bytes by UID, in batches, with imaplib alone."""
    conn = imaplib.IMAP4(dovecot.host, dovecot.port)
    conn.login(user, dovecot.users[user])
    conn.select("INBOX", readonly=True)
    uids = [int(u) for u in conn.uid("SEARCH", "UID 1:*")[1][0].split()]
    fetched = 0
    for start in range(0, len(uids), BATCH):
        spec = ",".join(str(u) for u in uids[start : start + BATCH])
        data = conn.uid("FETCH", spec, "(UID INTERNALDATE BODY.PEEK[])")[1]
        fetched += sum(1 for item in data if isinstance(item, tuple))
    conn.logout()
    return fetched


def _bench_crm(db: str, directory: Path, dovecot, user: str):
    """A CRM with 2,000 clients (a fifth of the mail is theirs) and the mailbox; and its id."""
    from crmkit_mail import mail
    from crmkit_mail import plugin as mail_plugin

    crm = make_crm([mail_plugin], db=db, directory=directory)
    with crm.system() as work:
        work.parties.bulk_create(
            [
                {"kind": "person", "name": f"Клиент {i}",
                 "contact_points": [{"kind": "email", "value": f"client{i}@example.ru"}]}
                for i in range(2000)
            ]
        )  # fmt: skip
        # the clients were there before the mail: PostgreSQL's autovacuum would have
        # analyzed them long since (without statistics the senders' look-up reads them all)
        refresh_statistics(work.session.connection())
        account_id = mail(work).accounts.create(
            name="bench", address=user, imap_host=dovecot.host, imap_port=dovecot.port,
            imap_security="none", imap_password=dovecot.users[user],
        ).id  # fmt: skip
    return crm, account_id


def crmkit_ingest(db: str, directory: Path, dovecot, user: str) -> tuple[float, int]:
    from crmkit_mail.sync import sync_account

    crm, account_id = _bench_crm(db, directory, dovecot, user)
    try:
        seconds, report = timed(lambda: sync_account(crm, account_id, batch_size=BATCH))
        return seconds, report.recorded
    finally:
        crm.close()


def recording_only(db: str, directory: Path, dovecot, user: str) -> tuple[float, int]:
    """The sync's recording stage alone: the same batches fetched and decoded (by the
    decoding process, files stored) beforehand, then recorded as ``sync_account`` does."""
    from crmkit_mail.accounts import imap_settings
    from crmkit_mail.imap import ImapMailbox
    from crmkit_mail.model import MailAccount
    from crmkit_mail.parse_worker import ParserProcess
    from crmkit_mail.sync import SyncReport, child_storage, parsed_by, parser_feed, record_batches
    from sqlalchemy import update

    crm, account_id = _bench_crm(db, directory, dovecot, user)
    try:
        with crm.system() as work:
            settings = imap_settings(crm, work.session.get(MailAccount, account_id))
        with ImapMailbox(settings) as box, ParserProcess(*child_storage(crm)) as parser:
            validity = box.uidvalidity
            uids = box.uids_after(0)
            feed = parser_feed(parser)
            fed = [feed(box.fetch(uids[at : at + BATCH])) for at in range(0, len(uids), BATCH)]
            decoded = [parsed_by(parser, batch) for batch in fed]
        with crm.system() as work:
            work.session.execute(
                update(MailAccount)
                .where(MailAccount.id == account_id)
                .values(uidvalidity=validity, last_uid=0)
            )
        report = SyncReport(account="bench")
        seconds, _ = timed(lambda: record_batches(crm, account_id, validity, decoded, report))
        return seconds, report.recorded
    finally:
        crm.close()


def mass_mailing(db: str, directory: Path, smtp, count: int) -> tuple[float, int]:
    from crmkit_mail import mail
    from crmkit_mail import plugin as mail_plugin
    from crmkit_mail.campaigns import send_campaign

    settings = {"web.base_url": "https://crm.example.test"}  # unsubscribe links need it
    crm = make_crm([mail_plugin], db=db, directory=directory, settings=settings)
    try:
        with crm.system() as work:
            created = work.parties.bulk_create(
                [
                    {"kind": "organisation", "name": f"Сервис {i}",
                     "contact_points": [{"kind": "email", "value": f"r{i}@example.ru"}]}
                    for i in range(count)
                ]
            )  # fmt: skip
            group = work.groups.create(name="Все")
            work.groups.add_members(group.id, created.ids)
            mail(work).accounts.create(
                name="out", address="news@firm.test", smtp_host=smtp.host, smtp_port=smtp.port,
                smtp_security="none",
            )  # fmt: skip
            campaign = mail(work).campaigns.create(
                "bench", subject="{{ party.name }}: новости",
                body="Здравствуйте, {{ party.name }}! Новые цены на шины.", group_id=group.id,
                rate_per_minute=0,
            )  # fmt: skip
            mail(work).campaigns.start(campaign.id)
        seconds, report = timed(lambda: send_campaign(crm, campaign.id))
        return seconds, report["sent"]
    finally:
        crm.close()


def bare_smtp(smtp, count: int) -> int:
    """The baseline: one smtplib session sending ``count`` prebuilt messages."""
    raw = (
        "From: news@firm.test\r\nTo: r@example.ru\r\nSubject: =?utf-8?b?0J3QvtCy0L7RgdGC0Lg=?=\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Здравствуйте! Новые цены на шины.\r\n"
    ).encode()
    client = smtplib.SMTP(smtp.host, smtp.port)
    for n in range(count):
        client.sendmail("news@firm.test", [f"r{n}@example.ru"], raw)
    client.quit()
    return count


def run(context: Context) -> list[Row]:
    from crmkit_mail.testing import dovecot_available

    parts = os.environ.get("BENCH_MAIL", "ingest,mailing").split(",")
    rows: list[Row] = []
    count = min(MESSAGES, context.size)
    with tempfile.TemporaryDirectory(prefix="bench-mail-") as tmp:
        root = Path(tmp)
        if "ingest" in parts:
            if dovecot_available():
                rows += ingest_rows(context, root, count)
            else:
                print("   dovecot is not installed (make mailserver): skipped", file=sys.stderr)
        if "mailing" in parts:
            rows += mailing_rows(context, root, count)
    return rows


def ingest_rows(context: Context, root: Path, count: int) -> list[Row]:
    from crmkit_mail.testing import dovecot_server

    rows: list[Row] = []
    with dovecot_server(root / "dovecot", {"bench@example.test": "bench-pass"}) as dovecot:
        user = "bench@example.test"
        print(f"   appending {count} messages to Dovecot ...", file=sys.stderr, flush=True)
        fill(dovecot, user, count)
        bare_fetch(dovecot, user)  # warm Dovecot's index and the page cache for both
        for db in context.databases:
            if db == "postgresql" and not postgres_reachable():
                continue
            bare_seconds, fetched = timed(lambda: bare_fetch(dovecot, user))
            seconds, recorded = crmkit_ingest(db, root / f"crm-{db}", dovecot, user)
            assert fetched == count and recorded == count, (fetched, recorded)
            ours, bare = recorded / seconds, fetched / bare_seconds
            rows.append(
                Row(
                    "mail ingest from Dovecot",
                    db,
                    f"{count} messages, msgs/s",
                    f"{ours:,.0f}",
                    f"{bare:,.0f} (bare imaplib fetch)",
                    ours / bare,
                    f">= {TARGET}x",
                    ours / bare >= TARGET,
                )
            )
            # what bounds the figure above: its recording stage with nothing else to do
            seconds, recorded = recording_only(db, root / f"record-{db}", dovecot, user)
            assert recorded == count, recorded
            rows.append(
                Row(
                    "  of which recording alone",
                    db,
                    f"{count} decoded messages, msgs/s",
                    f"{recorded / seconds:,.0f}",
                    f"{bare:,.0f} (bare imaplib fetch)",
                    recorded / seconds / bare,
                )
            )
    return rows


def mailing_rows(context: Context, root: Path, count: int) -> list[Row]:
    from crmkit_mail.testing import smtp_server

    rows: list[Row] = []
    with smtp_server(root / "smtp", security="none", users={}) as smtp:
        for db in context.databases:
            if db == "postgresql" and not postgres_reachable():
                continue
            smtp.received.clear()
            bare_seconds, bare_count = timed(lambda: bare_smtp(smtp, count))
            smtp.received.clear()
            seconds, sent = mass_mailing(db, root / f"mailing-{db}", smtp, count)
            assert sent == count and len(smtp.received) == count, (sent, len(smtp.received))
            ours, bare = sent / seconds, bare_count / bare_seconds
            rows.append(
                Row(
                    "mass mailing via aiosmtpd",
                    db,
                    f"{count} recipients, msgs/s (no rate limit)",
                    f"{ours:,.0f}",
                    f"{bare:,.0f} (bare smtplib)",
                    ours / bare,
                )
            )
    return rows
