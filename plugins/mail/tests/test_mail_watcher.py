"""The mail.idle watcher inside a worker, on a real Dovecot: mail recorded within seconds
with no polling schedule; a mailbox whose server is down shows its error, is retried, and
is watched once its settings are fixed; one switched off is let go."""

from __future__ import annotations

import time

from crmkit_mail import mail
from crmkit_mail.imap import append
from sqlalchemy import select

from crmkit.jobs import watchers
from crmkit.jobs.worker import Worker
from crmkit.model import Activity
from crmkit.testing import free_port, wait_until


def subjects(crm):
    with crm.system() as work:
        return list(
            work.session.scalars(
                select(Activity.subject).where(Activity.kind == "mail").order_by(Activity.id)
            )
        )


def last_sync(crm, name):
    with crm.system() as work:
        return mail(work).accounts.by_name(name).last_sync_at


def letter(subject):
    return (
        f"From: Client <client@example.ru>\r\nTo: sales@firm.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <w{time.monotonic_ns()}@example.ru>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nЗдравствуйте!\r\n"
    ).encode()


def test_a_worker_records_new_mail_through_idle_without_polling(
    mail_crm, account, dovecot, imap_user
):
    assert mail_crm.watchers["mail.idle"].keys(mail_crm) == ["sales"]
    del mail_crm.schedules["mail.sync"]  # no backstop polling: only IDLE can record the mail
    worker = Worker(mail_crm, concurrency=1)
    worker.start()
    try:
        # the watcher's first sync (of an empty mailbox) means it now waits in IDLE
        assert wait_until(lambda: last_sync(mail_crm, "sales") is not None, timeout=15)
        synced = last_sync(mail_crm, "sales")
        assert worker.watchers is not None
        assert worker.watchers.running() == [("mail.idle", "sales")]
        time.sleep(0.5)
        appended = time.monotonic()
        append(dovecot.settings(imap_user), letter("заказ через IDLE"))
        assert wait_until(lambda: subjects(mail_crm) == ["заказ через IDLE"], timeout=10)
        elapsed = time.monotonic() - appended
        assert elapsed < 5, f"recorded {elapsed:.1f} s after it arrived"
        # the watcher's sync, which notes its end just after recording the batch
        assert wait_until(lambda: last_sync(mail_crm, "sales") > synced, timeout=5)
    finally:
        began = time.monotonic()
        worker.stop()
    assert time.monotonic() - began < 5  # IDLE ends when the worker stops
    (state,) = watchers.states(mail_crm)
    assert (state.watcher, state.key, state.running, state.last_error) == (
        "mail.idle",
        "sales",
        False,
        None,
    )


def test_a_mailbox_whose_server_is_down_shows_the_error_and_is_watched_once_fixed(
    mail_crm, dovecot, imap_user
):
    # (a wrong password would do too, but Dovecot then slows every login from this address)
    mail_crm.config.values["queue.watcher_retry_max_seconds"] = 0.5
    mail_crm.config.values["queue.watcher_lease_seconds"] = 3
    with mail_crm.system() as work:
        account_id = (
            mail(work)
            .accounts.create(
                name="support",
                address=imap_user,
                imap_host=dovecot.host,
                imap_port=free_port(),  # nothing listens there
                imap_security="tls",
                imap_username=imap_user,
                imap_password=dovecot.users[imap_user],
            )
            .id
        )
    del mail_crm.schedules["mail.sync"]
    worker = Worker(mail_crm, concurrency=1)
    worker.start()
    try:

        def failed_twice():
            found = watchers.states(mail_crm)
            return bool(found) and found[0].runs >= 2 and found[0].last_error is not None

        assert wait_until(failed_twice, timeout=20)
        (state,) = watchers.states(mail_crm)
        assert (state.watcher, state.key, state.running) == ("mail.idle", "support", True)
        assert state.last_error.startswith("ConnectionRefusedError")

        # the admin corrects the port: the next restart connects, no worker restart needed
        with mail_crm.system() as work:
            mail(work).accounts.update(account_id, imap_port=dovecot.tls_port)
        assert wait_until(lambda: last_sync(mail_crm, "support") is not None, timeout=15)
        append(dovecot.settings(imap_user), letter("снова на связи"))
        assert wait_until(lambda: subjects(mail_crm) == ["снова на связи"], timeout=10)

        with mail_crm.system() as work:
            mail(work).accounts.update(account_id, active=False)
        # switched off: the workers stop watching it and forget it
        assert wait_until(lambda: watchers.states(mail_crm) == [], timeout=15)
        assert worker.watchers is not None and worker.watchers.running() == []
    finally:
        worker.stop()
