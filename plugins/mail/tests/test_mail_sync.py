"""Inbound mail from a real Dovecot: the recorded messages, restarts, UIDVALIDITY, IDLE."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from crmkit_mail.imap import ImapMailbox, append
from crmkit_mail.model import MailAccount
from crmkit_mail.sync import import_since, sync_account, watch
from sqlalchemy import func, select

from crmkit import hookimpl
from crmkit.errors import ValidationFailed
from crmkit.model import Activity, Attachment, Party
from crmkit.testing import factories


def deliver(dovecot, user, raw, folder="INBOX"):
    return append(dovecot.settings(user, folder=folder), raw)


def simple(n, sender="client@example.ru", subject=None, extra=""):
    return (
        f"From: Client <{sender}>\r\nTo: sales@firm.test\r\nSubject: {subject or f'letter {n}'}\r\n"
        f"Message-ID: <m{n}.{time.monotonic_ns()}@example.ru>\r\n{extra}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Письмо номер {n}\r\n"
    ).encode()


def mails(crm):
    with crm.system() as work:
        return list(
            work.session.scalars(
                select(Activity).where(Activity.kind == "mail").order_by(Activity.id)
            )
        )


def test_recorded_messages_land_on_the_right_timeline(
    mail_crm, account, dovecot, imap_user, peers_dir
):
    with mail_crm.system() as work:
        yandex = factories.organisation(
            work, name="Яндекс", contact_points=[{"kind": "email", "value": "Hello@Yandex.ru"}]
        )
    for name in ("base.eml", "attachment_inline1.eml", "attachment_7bit.eml"):
        deliver(dovecot, imap_user, (peers_dir / "mail" / "imap_tools" / name).read_bytes())

    report = sync_account(mail_crm, account)

    assert (report.recorded, report.duplicates, report.error) == (3, 0, None)
    by_subject = {m.subject: m for m in mails(mail_crm)}
    known = by_subject["Соберите всю почту в этот ящик"]
    assert known.party_id == yandex.id and known.status == "new"
    assert known.data["from_name"] == "Яндекс"
    assert "Соберите письма из других почтовых ящиков" in known.body
    # unknown senders wait in triage (the default of channels.unknown_sender)
    triaged = by_subject["статус"]
    assert triaged.party_id is None and triaged.status == "triage"
    # a reply to all copies its recipients as they are: a display name that is an address
    # ("Rabea.Bartölke@uni.de", encoded) is no copy, a UTF-8 local part is kept as written
    assert triaged.data["cc"] == ["jessica.schmidt@uni.de", "я你Rabea.Bartölke@uni.de"]
    with mail_crm.system() as work:
        files = {a.filename: a for a in work.session.scalars(select(Attachment))}
        assert set(files) == {"collector.jpg", "Contract 25 04 2020.docx"}
        assert files["collector.jpg"].party_id == yandex.id
        _, stream = work.attachments.open(files["collector.jpg"].id)
        with stream:
            assert stream.read()[:2] == b"\xff\xd8"
        assert files["collector.jpg"].id in known.data["attachments"]


def test_unknown_sender_becomes_a_lead_when_configured(
    make_crm, certificate, dovecot, imap_user, smtp
):
    from crmkit_mail import mail
    from crmkit_mail import plugin as mail_plugin

    crm = make_crm(
        plugins=[mail_plugin],
        settings={"mail.ca_file": str(certificate[0]), "channels.unknown_sender": "lead"},
    )
    with crm.system() as work:
        account_id = mail(work).accounts.create(
            name="in", address=imap_user, imap_host=dovecot.host, imap_port=dovecot.port,
            imap_security="none", imap_password=dovecot.users[imap_user],
        ).id  # fmt: skip
    deliver(dovecot, imap_user, simple(1, sender="new.client@example.ru"))
    sync_account(crm, account_id)
    (entry,) = mails(crm)
    with crm.system() as work:
        lead = work.parties.get(entry.party_id)
        assert [p.value for p in lead.contact_points] == ["new.client@example.ru"]
        assert lead.name == "Client"


def test_a_nameless_senders_lead_is_named_from_the_address(
    make_crm, certificate, dovecot, imap_user, smtp
):
    """Mail from a bare address (``From: ivan.petrov@romashka.ru``) made a lead named by
    the address.  The person the local part names, else the company of the domain (not a
    public mail service's), else the address; the address is the lead's email."""
    from crmkit_mail import mail
    from crmkit_mail import plugin as mail_plugin

    crm = make_crm(
        plugins=[mail_plugin],
        settings={"mail.ca_file": str(certificate[0]), "channels.unknown_sender": "lead"},
    )
    with crm.system() as work:
        account_id = mail(work).accounts.create(
            name="in", address=imap_user, imap_host=dovecot.host, imap_port=dovecot.port,
            imap_security="none", imap_password=dovecot.users[imap_user],
        ).id  # fmt: skip
    senders = {
        "ivan.petrov@romashka.ru": ("person", "Ivan Petrov"),
        "info@kedr-stroy.ru": ("organisation", "Kedr-Stroy"),
        "zakaz@mail.ru": ("person", "zakaz@mail.ru"),
    }
    for n, (sender, form) in enumerate(zip(senders, ("{0}", "<{0}>", "{0}"), strict=True), start=1):
        raw = simple(n, sender=sender).replace(
            f"From: Client <{sender}>".encode(), f"From: {form.format(sender)}".encode()
        )
        deliver(dovecot, imap_user, raw)
    sync_account(crm, account_id)
    with crm.system() as work:
        for entry in mails(crm):
            lead = work.parties.get(entry.party_id)
            (address,) = [p.value for p in lead.contact_points]
            assert (lead.kind, lead.name) == senders[address]
        assert len(mails(crm)) == 3


def delivery_report(action, status, recipient, original=""):
    """A multipart/report DSN from a mail system (``original``: a copy of the headers)."""
    tail = f"--r\r\nContent-Type: text/rfc822-headers\r\n\r\n{original}\r\n" if original else ""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\nTo: in@firm.test\r\n"
        f"Subject: Delivery Status Notification\r\nMessage-ID: <dsn{time.monotonic_ns()}@mx>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
        'boundary="r"\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--r\r\n'
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n\r\n"
        + tail
        + "--r--\r\n"
    ).encode()


def test_machines_never_become_leads_and_reports_never_conversations(
    make_crm, certificate, dovecot, imap_user, smtp
):
    from crmkit_mail import mail
    from crmkit_mail import plugin as mail_plugin

    crm = make_crm(
        plugins=[mail_plugin],
        settings={"mail.ca_file": str(certificate[0]), "channels.unknown_sender": "lead"},
    )
    with crm.system() as work:
        account_id = mail(work).accounts.create(
            name="in", address=imap_user, imap_host=dovecot.host, imap_port=dovecot.port,
            imap_security="none", imap_password=dovecot.users[imap_user],
        ).id  # fmt: skip
    # still trying (delayed) and given up (failed, with a comment): notices, not mail
    deliver(dovecot, imap_user, delivery_report("delayed", "4.4.7", "p1@example.org"))
    deliver(dovecot, imap_user, delivery_report("failed (mailbox full)", "5.2.2", "p2@example.org"))
    # an auto-reply and a postmaster's note from addresses nobody knows
    deliver(
        dovecot,
        imap_user,
        simple(1, sender="petrov@client.ru", extra="Auto-Submitted: auto-replied\r\n"),
    )
    deliver(dovecot, imap_user, simple(2, sender="postmaster@client.ru"))
    deliver(dovecot, imap_user, simple(3, sender="new.client@example.ru"))  # a person

    report = sync_account(crm, account_id)

    assert (report.bounces, report.notices, report.recorded) == (1, 1, 3)
    with crm.system() as work:
        leads = {
            p.value for party in work.session.scalars(select(Party)) for p in party.contact_points
        }
        assert leads == {"new.client@example.ru"}
        entries = mails(crm)
        assert sorted(e.data["from"] for e in entries) == [
            "new.client@example.ru", "petrov@client.ru", "postmaster@client.ru"
        ]  # fmt: skip
        assert [
            e.party_id is None for e in entries if e.data["from"] != "new.client@example.ru"
        ] == [True, True]


def test_restart_mid_sync_neither_misses_nor_duplicates(mail_crm, account, dovecot, imap_user):
    for n in range(7):
        deliver(dovecot, imap_user, simple(n))

    class Crash(Exception):
        pass

    batches = []

    def crash_after_two(report):
        batches.append(report.last_uid)
        if len(batches) == 2:
            raise Crash

    with pytest.raises(Crash):
        sync_account(mail_crm, account, batch_size=2, after_batch=crash_after_two)
    assert len(mails(mail_crm)) == 4
    with mail_crm.system() as work:
        assert work.session.get(MailAccount, account).last_uid == 4

    deliver(dovecot, imap_user, simple(7))
    report = sync_account(mail_crm, account, batch_size=2)

    assert report.recorded == 4 and report.duplicates == 0
    bodies = [m.body for m in mails(mail_crm)]
    assert bodies == [f"Письмо номер {n}" for n in range(8)]
    assert sync_account(mail_crm, account).recorded == 0


def test_a_batch_that_fails_is_not_half_recorded(mail_crm, account, dovecot, imap_user):
    from crmkit import hookimpl

    for n in range(3):
        deliver(dovecot, imap_user, simple(n))

    class Refuses:
        fail = True

        @hookimpl
        def crmkit_message_received(self, work, message, activity):
            if self.fail and message.body.endswith("2"):
                raise RuntimeError("handler down")

    plugin = Refuses()
    mail_crm.pm.register(plugin)
    with pytest.raises(RuntimeError):
        sync_account(mail_crm, account, batch_size=10)
    assert mails(mail_crm) == []
    with mail_crm.system() as work:
        stored = work.session.get(MailAccount, account)
        assert stored.last_uid == 0 and "handler down" in stored.last_error
    plugin.fail = False
    assert sync_account(mail_crm, account).recorded == 3


class RefusesNumberTwo:
    """A plugin that refuses "Письмо номер 2" (the third of ``simple``'s mails)."""

    @hookimpl
    def crmkit_message_received(self, work, message, activity):
        if message.body.endswith("2"):
            raise ValidationFailed({"body": ["not for us"]})


def test_a_refused_message_does_not_stop_its_batch(mail_crm, account, dovecot, imap_user):
    for n in range(4):
        deliver(dovecot, imap_user, simple(n))
    mail_crm.pm.register(RefusesNumberTwo())
    report = sync_account(mail_crm, account, batch_size=10)

    assert [m.body for m in mails(mail_crm)] == [f"Письмо номер {n}" for n in (0, 1, 3)]
    assert report.recorded == 3 and len(report.failures) == 1
    assert report.failures[0].startswith("UID 3:") and "not for us" in report.failures[0]
    with mail_crm.system() as work:
        stored = work.session.get(MailAccount, account)
        assert stored.last_uid == 4 and "UID 3" in stored.last_error
        # the neighbours' conversation counts them and nothing of the refused one
        assert work.conversations.list(limit=10)[0].unread == 3


def test_new_uidvalidity_rereads_without_duplicates(mail_crm, account, dovecot, imap_user):
    settings = dovecot.settings(imap_user)
    with ImapMailbox(settings) as box:
        box.conn.create("Support")
    with mail_crm.system() as work:
        work.session.get(MailAccount, account).imap_folder = "Support"
    first = simple(1)
    deliver(dovecot, imap_user, first, folder="Support")
    assert sync_account(mail_crm, account).recorded == 1
    # the folder is removed and made again: the server numbers it anew
    with ImapMailbox(settings) as box:
        box.conn.delete("Support")
        box.conn.create("Support")
    deliver(dovecot, imap_user, first, folder="Support")
    deliver(dovecot, imap_user, simple(2), folder="Support")

    report = sync_account(mail_crm, account)

    assert report.restarted and (report.recorded, report.duplicates) == (1, 1)
    assert len(mails(mail_crm)) == 2


def test_watch_records_new_mail_through_idle(mail_crm, account, dovecot, imap_user):
    stop = threading.Event()
    syncs = []
    worker = threading.Thread(
        target=watch,
        args=(mail_crm, account),
        kwargs={"stop": stop, "idle_seconds": 20, "on_sync": syncs.append},
        daemon=True,
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not syncs and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        deliver(dovecot, imap_user, simple(1, subject="срочно"))
        while not mails(mail_crm) and time.monotonic() < started + 15:
            time.sleep(0.1)
        # well inside the 20 s idle: the server's IDLE push woke the watcher
        assert [m.subject for m in mails(mail_crm)] == ["срочно"]
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        stopping = time.monotonic()
        worker.join(25)
    assert not worker.is_alive()
    assert time.monotonic() - stopping < 2  # the stop ends the IDLE, no new mail needed


def test_attachments_of_a_triaged_mail_follow_it_to_the_party(
    mail_crm, account, dovecot, imap_user, peers_dir
):
    deliver(dovecot, imap_user, (peers_dir / "mail" / "imap_tools" / "base.eml").read_bytes())
    sync_account(mail_crm, account)
    (entry,) = mails(mail_crm)
    with mail_crm.system() as work:
        party = factories.organisation(work, name="Яндекс")
        work.channels.attach_to_party(entry.id, party.id)
    with mail_crm.system() as work:
        (file,) = work.attachments.for_party(party.id)
        assert file.filename == "collector.jpg"
        assert work.session.scalar(select(func.count()).select_from(Activity).where(
            Activity.party_id == party.id, Activity.kind == "mail")) == 1  # fmt: skip


def test_a_long_sync_lets_the_planner_see_the_tables_it_grew(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    from crmkit_mail import sync

    def analyses():
        with mail_crm.engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'activity'::regclass"
            ).scalar()

    for n in range(5):
        deliver(dovecot, imap_user, simple(n))
    monkeypatch.setattr(sync, "ANALYZE_FROM", 2)
    postgres = mail_crm.engine.dialect.name == "postgresql"
    before = analyses() if postgres else None

    assert sync_account(mail_crm, account, batch_size=2).recorded == 5

    if postgres:  # after 2 and 4 messages
        assert analyses() == before + 2


def test_the_first_reading_keeps_to_the_import_window(mail_crm, account, dovecot, imap_user):
    now = dt.datetime.now(dt.UTC)
    # a mailbox with years of mail: two old letters, two of this week, an old one filed late
    for n, age in enumerate((400, 90, 3, 1, 200)):
        append(dovecot.settings(imap_user), simple(n), received_at=now - dt.timedelta(days=age))
    with mail_crm.system() as work:
        work.session.get(MailAccount, account).import_days = 30

    report = sync_account(mail_crm, account, batch_size=1)

    assert (report.recorded, report.passed_over, report.error) == (2, 3, None)
    assert [m.body for m in mails(mail_crm)] == ["Письмо номер 2", "Письмо номер 3"]
    with mail_crm.system() as work:
        assert work.session.get(MailAccount, account).last_uid == 5  # the old ones stay behind
    # later mail is all recorded, whatever date it carries (a letter moved in from an archive)
    append(dovecot.settings(imap_user), simple(5), received_at=now - dt.timedelta(days=700))
    deliver(dovecot, imap_user, simple(6))
    later = sync_account(mail_crm, account)
    assert (later.recorded, later.passed_over) == (2, 0)
    assert [m.body for m in mails(mail_crm)][-2:] == ["Письмо номер 5", "Письмо номер 6"]


def test_a_first_reading_stopped_midway_goes_on_with_its_window(
    mail_crm, account, dovecot, imap_user
):
    now = dt.datetime.now(dt.UTC)
    # recent, recent, old (numbered after them: filed late), recent
    for n, age in enumerate((2, 1, 300, 0)):
        append(dovecot.settings(imap_user), simple(n), received_at=now - dt.timedelta(days=age))
    with mail_crm.system() as work:
        work.session.get(MailAccount, account).import_days = 30

    class Crash(Exception):
        pass

    def crash_after_one(report):
        raise Crash

    with pytest.raises(Crash):
        sync_account(mail_crm, account, batch_size=1, after_batch=crash_after_one)
    with mail_crm.system() as work:
        stopped = work.session.get(MailAccount, account)
        assert (stopped.last_uid, stopped.import_until_uid) == (1, 4)

    report = sync_account(mail_crm, account, batch_size=1)

    assert (report.recorded, report.passed_over, report.last_uid) == (2, 1, 4)
    assert [m.body for m in mails(mail_crm)] == [f"Письмо номер {n}" for n in (0, 1, 3)]
    with mail_crm.system() as work:
        assert work.session.get(MailAccount, account).import_until_uid is None
    append(dovecot.settings(imap_user), simple(4), received_at=now - dt.timedelta(days=900))
    assert sync_account(mail_crm, account).recorded == 1  # the window is over


def test_a_window_with_nothing_in_it_still_passes_the_old_mail_over(
    mail_crm, account, dovecot, imap_user
):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    for n in range(3):
        append(dovecot.settings(imap_user), simple(n), received_at=old)
    with mail_crm.system() as work:
        work.session.get(MailAccount, account).import_days = 7
    report = sync_account(mail_crm, account)
    assert (report.recorded, report.passed_over, report.last_uid) == (0, 3, 3)
    assert mails(mail_crm) == []
    deliver(dovecot, imap_user, simple(3))
    assert sync_account(mail_crm, account).recorded == 1
    assert [m.body for m in mails(mail_crm)] == ["Письмо номер 3"]


def test_crmkit_mail_sync_says_what_the_window_passed_over(mail_crm, account, dovecot, imap_user):
    from click.testing import CliRunner
    from crmkit_mail.cli import mail_group

    from crmkit.cli import Env

    now = dt.datetime.now(dt.UTC)
    append(dovecot.settings(imap_user), simple(0), received_at=now - dt.timedelta(days=90))
    deliver(dovecot, imap_user, simple(1))
    with mail_crm.system() as work:
        work.session.get(MailAccount, account).import_days = 30
    env = Env(None, debug=False)
    env._crm = mail_crm
    result = CliRunner().invoke(mail_group, ["sync", "--account", "sales"], obj=env)
    assert result.exit_code == 0, result.output
    assert "sales: 1 recorded" in result.output
    assert "1 older than the import window (uid 2)" in result.output


def test_crmkit_mail_sync_fails_when_a_mailbox_fails(make_crm):
    from click.testing import CliRunner
    from crmkit_mail import mail
    from crmkit_mail import plugin as mail_plugin
    from crmkit_mail.cli import mail_group

    from crmkit.cli import Env

    crm = make_crm(plugins=[mail_plugin], settings={"mail.timeout_seconds": 2})
    with crm.system() as work:
        mail(work).accounts.create(
            name="closed",
            address="closed@example.test",
            imap_host="127.0.0.1",
            imap_port=1,  # nothing listens there
            imap_security="tls",
            imap_username="closed@example.test",
            imap_password="x",
            smtp_host="127.0.0.1",
            smtp_port=1,
            smtp_security="starttls",
        )
    env = Env(None, debug=False)
    env._crm = crm
    result = CliRunner().invoke(mail_group, ["sync"], obj=env)
    assert result.exit_code == 1, result.output
    assert "closed: failed: " in result.output


def test_a_window_that_holds_all_the_mail_records_all_of_it(mail_crm, account, dovecot, imap_user):
    for n in range(3):
        deliver(dovecot, imap_user, simple(n))
    with mail_crm.system() as work:
        work.session.get(MailAccount, account).import_days = 30
    report = sync_account(mail_crm, account)
    assert (report.recorded, report.passed_over, report.last_uid) == (3, 0, 3)
    with mail_crm.system() as work:
        done = work.session.get(MailAccount, account)
        assert (done.last_uid, done.import_until_uid) == (3, None)


def test_without_a_window_every_old_letter_is_recorded(mail_crm, account, dovecot, imap_user):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3000)
    append(dovecot.settings(imap_user), simple(0), received_at=old)
    deliver(dovecot, imap_user, simple(1))
    report = sync_account(mail_crm, account)
    assert (report.recorded, report.passed_over) == (2, 0)


def test_a_renumbered_folder_keeps_the_mail_received_since_the_last_sync():
    last_sync = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
    assert import_since(30) == (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).date()
    # the worker was stopped for longer than the window: the window reaches back to it
    assert import_since(30, last_sync) == last_sync.date() - dt.timedelta(days=1)
    recent_sync = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    assert import_since(30, recent_sync) == import_since(30)


def test_mail_from_ignored_senders_is_not_recorded(mail_crm, account, dovecot, imap_user):
    from crmkit_mail import mail

    with mail_crm.system() as work:
        mail(work).accounts.update(
            account, ignore_senders="GitHub.com\nmailer-daemon@\n\n*-bounces@*.org"
        )
        assert work.session.get(MailAccount, account).ignore_senders == (
            "github.com\nmailer-daemon@*\n*-bounces@*.org"
        )
    senders = (
        "client@example.ru", "notifications@github.com", "noreply@mail.github.com",
        "MAILER-DAEMON@mx.example.ru", "debian-bounces@lists.debian.org", "me@notgithub.com",
    )  # fmt: skip
    for n, sender in enumerate(senders):
        deliver(dovecot, imap_user, simple(n, sender=sender))

    report = sync_account(mail_crm, account, batch_size=2)

    assert (report.recorded, report.ignored, report.last_uid) == (2, 4, 6)
    assert [m.data["from"] for m in mails(mail_crm)] == ["client@example.ru", "me@notgithub.com"]
    with mail_crm.system() as work:
        assert work.session.get(MailAccount, account).last_uid == 6  # not read again


def test_a_batch_overtaken_by_another_worker_is_not_counted(mail_crm, account, dovecot, imap_user):
    for n in range(4):
        deliver(dovecot, imap_user, simple(n))
    mail_crm.pm.register(RefusesNumberTwo())

    def another_worker_moves_on(report):
        # meanwhile another worker recorded the rest and moved the mark past it
        with mail_crm.system() as work:
            work.session.get(MailAccount, account).last_uid = 4

    report = sync_account(mail_crm, account, batch_size=2, after_batch=another_worker_moves_on)

    # only the first batch is this worker's: the second, with the refused message, was dropped
    assert (report.recorded, report.failures, report.last_uid, report.error) == (2, [], 2, None)
    assert [m.body for m in mails(mail_crm)] == ["Письмо номер 0", "Письмо номер 1"]
    with mail_crm.system() as work:
        stored = work.session.get(MailAccount, account)
        assert (stored.last_uid, stored.last_error) == (4, None)


def test_a_renumbered_folder_keeps_the_mail_received_while_syncs_failed(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    from crmkit_mail import mail, sync

    from crmkit.testing import free_port

    now = dt.datetime.now(dt.UTC)
    settings = dovecot.settings(imap_user)
    with ImapMailbox(settings) as box:
        box.conn.create("Support")
    with mail_crm.system() as work:
        stored = work.session.get(MailAccount, account)
        stored.imap_folder, stored.import_days = "Support", 30
    earlier = simple(0)
    append(settings, earlier, folder="Support", received_at=now - dt.timedelta(days=55))
    # seven weeks ago the mailbox was read, for the last time with success
    monkeypatch.setattr(sync, "utcnow", lambda: now - dt.timedelta(days=50))
    assert sync_account(mail_crm, account).recorded == 1
    # then its server moved: every sync failed for weeks, the last one yesterday
    with mail_crm.system() as work:
        mail(work).accounts.update(account, imap_port=free_port())
    monkeypatch.setattr(sync, "utcnow", lambda: now - dt.timedelta(days=1))
    with pytest.raises(OSError):
        sync_account(mail_crm, account)
    # meanwhile a client wrote, and the folder was renumbered (made again, its mail copied)
    with ImapMailbox(settings) as box:
        box.conn.delete("Support")
        box.conn.create("Support")
    append(settings, earlier, folder="Support", received_at=now - dt.timedelta(days=55))
    during = simple(1, subject="пока почта не читалась")
    append(settings, during, folder="Support", received_at=now - dt.timedelta(days=40))
    with mail_crm.system() as work:
        work.session.get(MailAccount, account).imap_port = dovecot.tls_port  # fixed
    monkeypatch.setattr(sync, "utcnow", lambda: now)

    report = sync_account(mail_crm, account)

    # the window reaches back to the last sync that succeeded, not to the failed ones
    assert report.restarted and (report.recorded, report.passed_over) == (1, 1)
    assert [m.subject for m in mails(mail_crm)] == ["letter 0", "пока почта не читалась"]


#: what the receiving server writes above a colleague's mail it verified
VERIFIED = (
    b"Authentication-Results: mx.firm.test;\r\n dkim=pass header.d=firm.test header.s=mail;"
    b"\r\n spf=pass (sender SPF authorized) smtp.mailfrom=mia@firm.test;"
    b"\r\n dmarc=pass (p=REJECT) header.from=firm.test\r\n"
)


def test_a_colleagues_mail_copied_to_the_mailbox_is_sent_mail_on_the_clients_timeline(
    mail_crm, account, dovecot, imap_user
):
    from crmkit_mail import mail

    from crmkit.testing import add_user

    manager = add_user(mail_crm, "mia", ["manager"])
    with mail_crm.system() as work:
        mail(work).accounts.create(name="mia", address="Mia@Firm.test", owner_id=manager.id)
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
        deal = factories.deal(work, party_id=client.id)
    question = (
        "From: Buyer <buyer@client.ru>\r\nTo: mia@firm.test\r\nSubject: Счёт\r\n"
        "Message-ID: <q@client.ru>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nГде счёт?\r\n"
    ).encode()
    deliver(dovecot, imap_user, question)
    sync_account(mail_crm, account)  # the client's question, which Mia joins to the deal
    with mail_crm.system() as work:
        asked = work.session.scalar(select(Activity).where(Activity.external_id == "<q@client.ru>"))
        asked.record_entity, asked.record_id = "deal", deal.id
    # Mia answers from Thunderbird with the shared mailbox in copy, and writes to a colleague;
    # the receiving server checked both (DKIM, SPF, DMARC)
    answer = (
        VERIFIED
        + (
            f"From: Mia <mia@firm.test>\r\nTo: Buyer <buyer@client.ru>\r\nCc: {imap_user}\r\n"
            "Subject: Re: Счёт\r\nMessage-ID: <a@firm.test>\r\nReferences: <q@client.ru>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nСчёт во вложении\r\n"
        ).encode()
    )
    internal = (
        VERIFIED
        + (
            f"From: mia@firm.test\r\nTo: {imap_user}\r\nSubject: Обед\r\n"
            "Message-ID: <lunch@firm.test>\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "\r\nИдём?\r\n"
        ).encode()
    )
    deliver(dovecot, imap_user, answer)
    deliver(dovecot, imap_user, internal)

    report = sync_account(mail_crm, account)

    assert report.recorded == 0  # neither is incoming mail
    assert (report.sent_recorded, report.internal) == (1, 1)
    with mail_crm.system() as work:
        (written,) = work.session.scalars(
            select(Activity).where(Activity.external_id == "<a@firm.test>")
        ).all()
        # on the client's timeline, as Mia's Sent folder would have put it: written by her
        assert (written.party_id, written.direction, written.status) == (client.id, "out", "sent")
        assert (written.record_entity, written.record_id) == ("deal", deal.id)
        assert written.actor_id == manager.id and written.data["account"] == "mia"
        assert written.conversation_id is None
        # neither is waiting in triage, nor made a lead of Mia
        assert work.session.scalar(
            select(func.count()).select_from(Activity).where(Activity.party_id.is_(None))
        ) == 0  # fmt: skip
        assert [c.party_id for c in work.conversations.list(limit=10)] == [client.id]
        assert work.channels.resolve("email", "mia@firm.test") is None
    # read again (a renumbering, or Mia's Sent folder first): recorded once
    with mail_crm.system() as work:
        work.session.get(MailAccount, account).last_uid = 1
    again = sync_account(mail_crm, account)
    assert (again.sent_recorded, again.duplicates, again.internal) == (0, 1, 1)


def test_a_colleagues_unverified_copy_read_before_her_sent_folder_becomes_her_sent_mail(
    mail_crm, account, dovecot, imap_user
):
    """Mia answers a client from her mail program with sales@ in copy; the server adds no
    Authentication-Results to its own users' mail, and sales@ is read first: flagged, in
    triage.  Reading Mia's Sent folder then finds the same Message-ID: it is hers after
    all, and becomes the sent mail on the client's timeline, unflagged, out of triage."""
    from crmkit_mail import mail
    from crmkit_mail.sent_reading import read_sent

    from crmkit.model import Conversation
    from crmkit.testing import add_user

    manager = add_user(mail_crm, "mia", ["manager"])
    with mail_crm.system() as work:
        mia_box = mail(work).accounts.create(
            name="mia", address="mia@firm.test", owner_id=manager.id, sent_folder="Sent",
            imap_host=dovecot.host, imap_port=dovecot.port, imap_security="none",
            imap_username=imap_user, imap_password=dovecot.users[imap_user],
        ).id  # fmt: skip
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
    with ImapMailbox(dovecot.settings(imap_user)) as box:
        box.conn.create("Sent")
    read_sent(mail_crm, mia_box, 10)  # the first reading marks where the folder starts
    copies = [
        (
            f"From: Mia <mia@firm.test>\r\nTo: Buyer <buyer@client.ru>\r\nCc: {imap_user}\r\n"
            "Subject: Счёт\r\nMessage-ID: <bill@firm.test>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nСчёт во вложении\r\n"
        ).encode(),
        (
            f"From: mia@firm.test\r\nTo: {imap_user}\r\nSubject: Обед\r\n"
            "Message-ID: <lunch@firm.test>\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "\r\nИдём?\r\n"
        ).encode(),
    ]
    for raw in copies:
        deliver(dovecot, imap_user, raw)
    assert sync_account(mail_crm, account).recorded == 2  # unverified: incoming, flagged
    with mail_crm.system() as work:
        flagged = work.session.scalars(select(Activity).order_by(Activity.id)).all()
        assert [a.data.get("suspicious") for a in flagged] == ["mia@firm.test"] * 2
        assert [c.party_id for c in work.conversations.list(limit=10)] == [None]

    for raw in copies:
        deliver(dovecot, imap_user, raw, folder="Sent")
    assert read_sent(mail_crm, mia_box, 10).recorded == 1

    with mail_crm.system() as work:
        (bill,) = work.session.scalars(select(Activity)).all()  # lunch: between colleagues
        assert (bill.external_id, bill.party_id, bill.direction, bill.status) == (
            "<bill@firm.test>", client.id, "out", "sent",
        )  # fmt: skip
        assert "suspicious" not in bill.data and bill.actor_id == manager.id
        assert (bill.data["account"], bill.data["to"]) == ("mia", "buyer@client.ru")
        assert bill.conversation_id is None
        assert list(work.session.scalars(select(Conversation))) == []
    assert read_sent(mail_crm, mia_box, 10).recorded == 0


def test_watch_records_mail_that_arrived_while_it_synced_without_waiting_for_idle(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    deliver(dovecot, imap_user, simple(1))
    fetch = ImapMailbox.fetch
    delivered = []

    def fetch_while_a_letter_arrives(self, uids):
        if not delivered:  # after the sync listed the folder, before its FETCH
            delivered.append(deliver(dovecot, imap_user, simple(2, subject="во время чтения")))
        return fetch(self, uids)

    monkeypatch.setattr(ImapMailbox, "fetch", fetch_while_a_letter_arrives)
    stop = threading.Event()
    syncs = []
    worker = threading.Thread(
        target=watch,
        args=(mail_crm, account),
        kwargs={"stop": stop, "idle_seconds": 30, "on_sync": syncs.append},
        daemon=True,
    )
    started = time.monotonic()
    worker.start()
    try:
        # the second sync's mail is committed before its report reaches on_sync: wait for both
        while (len(mails(mail_crm)) < 2 or len(syncs) < 2) and time.monotonic() < started + 15:
            time.sleep(0.1)
        # the server said EXISTS in its answer to the FETCH, not again in IDLE: the watcher
        # syncs again at once rather than after its 30 s in IDLE
        assert [m.subject for m in mails(mail_crm)] == ["letter 1", "во время чтения"]
        assert time.monotonic() - started < 10
        assert syncs[0].recorded == 1 and syncs[1].recorded == 1
    finally:
        stop.set()
        worker.join(35)
    assert not worker.is_alive()


def test_watch_follows_a_changed_folder_instead_of_reading_the_old_one(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    from crmkit_mail import mail, sync

    monkeypatch.setattr(sync, "SETTINGS_CHECK_SECONDS", 0.5)
    settings = dovecot.settings(imap_user)
    with ImapMailbox(settings) as box:
        box.conn.create("Support")
    deliver(dovecot, imap_user, simple(1, subject="во входящих"))
    stop = threading.Event()
    syncs = []
    worker = threading.Thread(
        target=watch,
        args=(mail_crm, account),
        kwargs={"stop": stop, "idle_seconds": 30, "on_sync": syncs.append},
        daemon=True,
    )
    worker.start()

    def subjects_within(seconds, expected):
        deadline = time.monotonic() + seconds
        while [m.subject for m in mails(mail_crm)] != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return [m.subject for m in mails(mail_crm)]

    try:
        assert subjects_within(10, ["во входящих"]) == ["во входящих"]
        # the admin points the mailbox at another folder while the watcher waits in IDLE
        deliver(dovecot, imap_user, simple(2, subject="в поддержке"), folder="Support")
        with mail_crm.system() as work:
            mail(work).accounts.update(account, imap_folder="Support")
        # noticed within a second, not after the 30 s in IDLE: the new folder is read
        assert subjects_within(10, ["во входящих", "в поддержке"]) == ["во входящих", "в поддержке"]
        # and only it: mail to the old folder is no longer recorded, the new one's is
        deliver(dovecot, imap_user, simple(3, subject="снова во входящих"))
        deliver(dovecot, imap_user, simple(4, subject="снова в поддержке"), folder="Support")
        expected = ["во входящих", "в поддержке", "снова в поддержке"]
        assert subjects_within(10, expected) == expected
        with ImapMailbox(dovecot.settings(imap_user, folder="Support")) as box:
            support = box.uidvalidity
        with mail_crm.system() as work:
            stored = work.session.get(MailAccount, account)
            assert (stored.uidvalidity, stored.last_uid) == (support, 2)
        assert not any(report.restarted for report in syncs)
        # the two-minute backstop agrees: nothing to read again
        backstop = sync_account(mail_crm, account)
        assert (backstop.restarted, backstop.recorded, backstop.last_uid) == (False, 0, 2)
    finally:
        stop.set()
        worker.join(35)
    assert not worker.is_alive()


def test_mail_to_a_personal_mailbox_is_its_owners_conversation(
    mail_crm, account, dovecot, imap_user
):
    from crmkit_mail import mail

    from crmkit.errors import NotFound
    from crmkit.testing import add_user

    anna, boris = add_user(mail_crm, "anna"), add_user(mail_crm, "boris")
    with mail_crm.system() as work:
        mail(work).accounts.update(account, owner_id=anna.id)  # Anna's own mailbox
    with mail_crm.acting_as(boris) as work:
        factories.organisation(
            work, name="Boris's client", contact_points=[{"kind": "email", "value": "c@corp.ru"}]
        )
    deliver(dovecot, imap_user, simple(1, sender="doctor@clinic.ru", subject="your results"))
    deliver(dovecot, imap_user, simple(2, sender="c@corp.ru", subject="for Anna only"))

    sync_account(mail_crm, account)

    with mail_crm.acting_as(anna) as work:
        mine = sorted(work.conversations.list("unassigned"), key=lambda c: c.id)
        assert [(c.subject, c.account, c.owner_id) for c in mine] == [
            ("your results", "sales", anna.id),
            ("for Anna only", "sales", anna.id),  # Boris's client: hers to answer
        ]
    with mail_crm.acting_as(boris) as work:
        # his client's mail to Anna's address: he owns the client, so he sees it too
        assert [(c.subject, c.owner_id) for c in work.conversations.list("unassigned")] == [
            ("for Anna only", anna.id)
        ]
        with pytest.raises(NotFound):
            work.conversations.get(mine[0].id)


@pytest.mark.parametrize(
    "checked",
    [
        b"",  # no word from the receiving server
        b"Authentication-Results: mx.firm.test; spf=fail smtp.mailfrom=firm.test; dkim=none;"
        b" dmarc=fail header.from=firm.test\r\n",
        # a pass for another domain, and a forged pass below the server's own results
        b"Authentication-Results: mx.firm.test; dkim=pass header.d=evil.example.net;"
        b" spf=pass smtp.mailfrom=bounce@evil.example.net\r\n"
        b"Authentication-Results: mx.firm.test; dmarc=pass header.from=firm.test\r\n",
    ],
)
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_forged_mail_from_our_own_mailbox_is_incoming_and_flagged(
    mail_crm, account, dovecot, imap_user, checked, anyio_backend
):
    from crmkit_mail import mail

    with mail_crm.system() as work:
        mail(work).accounts.create(name="mia", address="mia@firm.test")
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
    forged = checked + (
        b"Received: from evil.example.net (evil.example.net [203.0.113.9])\r\n"
        b"From: mia@firm.test\r\nTo: buyer@client.ru\r\nSubject: New bank details\r\n"
        b"Message-ID: <forged@evil.example.net>\r\n\r\nPay invoice 42 to another bank.\r\n"
    )
    deliver(dovecot, imap_user, forged)

    report = sync_account(mail_crm, account)

    assert (report.sent_recorded, report.recorded) == (0, 1)
    with mail_crm.system() as work:
        (entry,) = work.session.scalars(
            select(Activity).where(Activity.external_id == "<forged@evil.example.net>")
        ).all()
        assert entry.direction == "in" and entry.data["suspicious"] == "mia@firm.test"
        assert entry.party_id != client.id  # nothing "we sent" on the client's timeline
        conversation_id = entry.conversation_id
    # the inbox shows it with the warning
    from crmkit.testing import add_user
    from crmkit.testing.web import WebClient

    add_user(mail_crm, "boss", ["admin"], locale="en")
    web = WebClient.for_crm(mail_crm)
    assert (await web.login("boss")).status_code == 303
    page = await web.get(f"/inbox/{conversation_id}")
    assert page.status_code == 200 and "Sender not verified" in page.text
    assert "mia@firm.test" in page.text
