"""Decoding in a child process: the same mails as in process, and a sync that survives it."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading

import pytest
from crmkit_mail import parse_worker
from crmkit_mail.imap import append
from crmkit_mail.model import MailAccount
from crmkit_mail.parse_worker import ParserProcess
from crmkit_mail.parsing import parse_message
from crmkit_mail.sync import sync_account
from sqlalchemy import select, update

from crmkit.model import Activity, Attachment


def russian(n: int, charset: str, *, attachment: bool = False) -> bytes:
    """A mail in ``charset`` with encoded headers, and a file when asked."""
    codec = {"utf-8": "utf-8", "windows-1251": "cp1251", "koi8-r": "koi8_r"}[charset]
    name = base64.b64encode("Клиент".encode(codec)).decode()
    subject = base64.b64encode(f"Заявка {n}".encode(codec)).decode()
    head = (
        f"From: =?{charset}?B?{name}?= <client{n}@example.ru>\r\nTo: sales@firm.test\r\n"
        f"Subject: =?{charset}?B?{subject}?=\r\nDate: Mon, 3 Mar 2025 10:00:00 +0300\r\n"
        f"Message-ID: <worker{n}@example.ru>\r\nMIME-Version: 1.0\r\n"
    )
    body = f"Нужны запчасти, заявка {n}.".encode(codec)
    if not attachment:
        return (
            head + f"Content-Type: text/plain; charset={charset}\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode() + body
    return (
        (
            head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            f"Content-Type: text/plain; charset={charset}\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + body
        + (
            "\r\n--b\r\nContent-Type: application/pdf\r\n"
            f'Content-Disposition: attachment; filename="zayavka-{n}.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.b64encode(b"%PDF-1.4 " + bytes(60)).decode()
            + "\r\n--b--\r\n"
        ).encode()
    )


BOUNCE = (
    b"From: MAILER-DAEMON@mx.example.ru\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
    b"--r\r\nContent-Type: text/plain\r\n\r\nsorry\r\n"
    b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
    b"Final-Recipient: rfc822; nobody@example.ru\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    b"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <x@firm.test>\r\n\r\n--r--\r\n"
)


def corpus(peers_dir) -> list[bytes]:
    raws = [
        russian(n, charset, attachment=n % 2 == 0)
        for n, charset in enumerate(("utf-8", "windows-1251", "koi8-r") * 2)
    ]
    raws += [p.read_bytes() for p in sorted((peers_dir / "mail" / "imap_tools").glob("*.eml"))]
    return [*raws, BOUNCE, b"\xff\xfe not a mail at all", b""]


def test_the_child_decodes_every_mail_as_parse_message_does(peers_dir):
    raws = corpus(peers_dir)
    with ParserProcess() as parser:
        assert parser.submit(raws[:5]) and parser.submit(raws[5:])
        decoded = parser.results() + parser.results()
    assert not parser.broken
    assert decoded == [parse_message(raw) for raw in raws]
    assert decoded[1].subject == "Заявка 1" and decoded[2].sender_name == "Клиент"
    assert decoded[0].attachments[0].filename == "zayavka-0.pdf"


def deliver_many(dovecot, imap_user, count):
    charsets = ("utf-8", "windows-1251", "koi8-r")
    for n in range(count):
        append(
            dovecot.settings(imap_user),
            russian(n, charsets[n % 3], attachment=n % 3 == 0),
        )


def recorded(crm):
    with crm.system() as work:
        entries = list(
            work.session.scalars(
                select(Activity).where(Activity.kind == "mail").order_by(Activity.id)
            )
        )
        files = sorted(a.filename for a in work.session.scalars(select(Attachment)))
    return entries, files


def test_a_long_sync_decodes_in_the_child(mail_crm, account, dovecot, imap_user, monkeypatch):
    deliver_many(dovecot, imap_user, 7)
    answered = []
    results = ParserProcess.results

    def counted(self):
        found = results(self)
        answered.append(len(found))
        return found

    monkeypatch.setattr(ParserProcess, "results", counted)

    report = sync_account(mail_crm, account, batch_size=2)

    assert (report.recorded, report.failures, report.error) == (7, [], None)
    assert answered == [2, 2, 2, 1]
    entries, files = recorded(mail_crm)
    assert [e.subject for e in entries] == [f"Заявка {n}" for n in range(7)]
    assert [e.body for e in entries] == [f"Нужны запчасти, заявка {n}." for n in range(7)]
    assert files == ["zayavka-0.pdf", "zayavka-3.pdf", "zayavka-6.pdf"]


def test_a_child_that_dies_leaves_decoding_to_the_sync(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    deliver_many(dovecot, imap_user, 5)

    def dead_on_arrival(self):
        self.process = subprocess.Popen(
            [sys.executable, "-c", "pass"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    monkeypatch.setattr(ParserProcess, "start", dead_on_arrival)

    report = sync_account(mail_crm, account, batch_size=2)

    assert (report.recorded, report.failures, report.error) == (5, [], None)
    entries, files = recorded(mail_crm)
    assert [e.subject for e in entries] == [f"Заявка {n}" for n in range(5)]
    assert files == ["zayavka-0.pdf", "zayavka-3.pdf"]


def test_a_child_that_cannot_start_leaves_decoding_to_the_sync(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    deliver_many(dovecot, imap_user, 3)
    monkeypatch.setattr(parse_worker.sys, "executable", "/nonexistent/python")

    report = sync_account(mail_crm, account, batch_size=2)

    assert (report.recorded, report.error) == (3, None)
    assert [e.subject for e in recorded(mail_crm)[0]] == ["Заявка 0", "Заявка 1", "Заявка 2"]


def files_on_disk(crm) -> list[str]:
    return sorted(p.name for p in crm.storage.root.rglob("*") if p.is_file())


def keys_recorded(crm) -> list[str]:
    with crm.system() as work:
        return sorted(work.session.scalars(select(Attachment.storage_key)))


def test_the_child_stores_the_files_and_the_entries_refer_to_them(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    deliver_many(dovecot, imap_user, 7)
    shipped = []
    results = ParserProcess.results

    def watched(self):
        found = results(self)
        shipped.extend(a for mail in found for a in mail.attachments)
        return found

    monkeypatch.setattr(ParserProcess, "results", watched)

    sync_account(mail_crm, account, batch_size=2)

    # the bytes stayed in the child: what came back is where it put them
    assert [(a.data, a.stored is not None) for a in shipped] == [(None, True)] * 3
    assert keys_recorded(mail_crm) == sorted(a.stored.key for a in shipped)
    assert files_on_disk(mail_crm) == keys_recorded(mail_crm)
    with mail_crm.system() as work:
        for row in work.session.scalars(select(Attachment)):
            with mail_crm.storage.open(row.storage_key) as handle:
                content = handle.read()
            assert content.startswith(b"%PDF-1.4 ") and len(content) == row.size == 69


def test_files_of_mails_not_recorded_are_deleted(mail_crm, account, dovecot, imap_user):
    deliver_many(dovecot, imap_user, 7)
    sync_account(mail_crm, account, batch_size=2)
    before = files_on_disk(mail_crm)
    with mail_crm.system() as work:  # read the folder again: every mail is a duplicate now
        work.session.execute(update(MailAccount).values(last_uid=0))

    report = sync_account(mail_crm, account, batch_size=2)

    assert (report.recorded, report.duplicates) == (0, 7)
    assert files_on_disk(mail_crm) == before == keys_recorded(mail_crm)


def test_a_sync_stopped_midway_leaves_no_stray_files(mail_crm, account, dovecot, imap_user):
    deliver_many(dovecot, imap_user, 9)

    def stop(report):
        raise RuntimeError("worker stopped")

    with pytest.raises(RuntimeError, match="worker stopped"):
        # the batch recorded is kept; the one decoded ahead (its files written) is not
        sync_account(mail_crm, account, batch_size=2, after_batch=stop)

    assert len(keys_recorded(mail_crm)) == 1  # zayavka-0
    assert files_on_disk(mail_crm) == keys_recorded(mail_crm)
    report = sync_account(mail_crm, account, batch_size=2)
    assert report.recorded == 7
    assert len(files_on_disk(mail_crm)) == 3
    assert files_on_disk(mail_crm) == keys_recorded(mail_crm)


def test_a_failed_batch_deletes_the_files_the_child_stored(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    deliver_many(dovecot, imap_user, 4)
    from crmkit.services.channels import ChannelService

    def broken(self, messages):
        raise ConnectionError("database gone")

    monkeypatch.setattr(ChannelService, "record_isolated", broken)

    with pytest.raises(ConnectionError):
        sync_account(mail_crm, account, batch_size=2)

    assert files_on_disk(mail_crm) == [] == keys_recorded(mail_crm)


def test_a_sync_stopped_midway_with_large_mails_does_not_hang(
    mail_crm, account, dovecot, imap_user
):
    # each decoded batch is larger than a pipe holds: the child must still take the
    # batches fetched ahead while nobody reads its answers, or closing waits forever
    settings = dovecot.settings(imap_user)
    for n in range(9):
        body = f"Строка {n} ".encode() * 12_000
        append(
            settings,
            b"From: client@example.ru\r\nSubject: big\r\nContent-Type: text/plain; "
            b"charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nMessage-ID: <big"
            + str(n).encode()
            + b"@example.ru>\r\n\r\n"
            + body,
        )
    outcome = []

    def stop(report):
        raise RuntimeError("worker stopped")

    def run():
        try:
            sync_account(mail_crm, account, batch_size=2, after_batch=stop)
        except RuntimeError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the sync hung while stopping"
    assert outcome == ["worker stopped"]
    assert sync_account(mail_crm, account, batch_size=2).recorded == 7
