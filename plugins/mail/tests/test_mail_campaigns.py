"""Mass mailings through aiosmtpd: per-recipient text, rate limit, unsubscribes, bounces, report."""

from __future__ import annotations

import re

import httpx
import pytest
from crmkit_mail import mail
from crmkit_mail.campaigns import REFUSED_IN_A_ROW, TRIES, send_campaign
from crmkit_mail.imap import append
from crmkit_mail.model import MailCampaignRecipient
from crmkit_mail.parsing import parse_message
from crmkit_mail.sync import sync_account
from sqlalchemy import select, update

from crmkit.clock import utcnow
from crmkit.jobs.delivery import deliver_due
from crmkit.model import Activity, Party
from crmkit.testing.channel_contract import make_due
from crmkit.web.app import create_app

pytestmark = pytest.mark.anyio


def clients(crm):
    with crm.system() as work:
        group = work.groups.create(name="Автосервисы")
        ids = []
        for n, email in enumerate(["a@one.ru", "b@two.ru", "c@three.ru", None, "gone@four.ru"]):
            points = [{"kind": "email", "value": email}] if email else []
            ids.append(work.parties.create({"kind": "organisation", "name": f"Сервис {n}",
                                            "contact_points": points}).id)  # fmt: skip
        work.groups.add_members(group.id, ids)
        mail(work).campaigns.unsubscribe("Gone@Four.ru")
        return group.id


async def test_a_mailing_from_start_to_report(mail_crm, account, smtp, dovecot, imap_user):
    group_id = clients(mail_crm)
    with mail_crm.system() as work:
        campaign = mail(work).campaigns.create(
            "Зимние шины", subject="{{ party.name }}: шины со скидкой",
            body="Здравствуйте, {{ party.name }}!\nОтписаться: {{ unsubscribe_url }}",
            group_id=group_id, rate_per_minute=0,
        )  # fmt: skip
        assert mail(work).campaigns.start(campaign.id) == 3
        campaign_id = campaign.id
    smtp.refuse["c@three"] = "550 5.1.1 mailbox unavailable"
    assert smtp.received == []  # the job goes through the outbox, after commit

    deliver_due(mail_crm)

    sent = {r.recipients[0]: parse_message(r.raw) for r in smtp.received}
    assert set(sent) == {"a@one.ru", "b@two.ru"}
    first = sent["a@one.ru"]
    assert first.subject == "Сервис 0: шины со скидкой" and "Здравствуйте, Сервис 0!" in first.text
    link = re.search(r"http\S+/mail/unsubscribe/\S+", first.text).group(0)
    assert link.startswith("https://crm.example.test/mail/unsubscribe/")  # web.base_url
    assert first.list_unsubscribe == f"<{link}>"

    # b@two.ru bounces: the notice arrives in the mailbox and is read from there
    dsn = (
        "From: MAILER-DAEMON@two.ru\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        "--r\r\nContent-Type: text/plain\r\n\r\nsorry\r\n--r\r\n"
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; two.ru\r\n\r\n"
        "Final-Recipient: rfc822; b@two.ru\r\nAction: failed\r\nStatus: 5.2.1\r\n\r\n"
        "--r\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {sent['b@two.ru'].message_id}\r\n"
        "\r\n--r--\r\n"
    )
    append(dovecot.settings(imap_user), dsn.encode())
    assert sync_account(mail_crm, account).bounces == 1

    # a@one.ru follows the link: a page with a button (link scanners change nothing), then POST
    path = link.removeprefix("https://crm.example.test")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(mail_crm)), base_url="http://test"
    ) as client:
        page = await client.get(path)
        assert page.status_code == 200 and "data-unsubscribe" in page.text
        with mail_crm.system() as work:
            assert mail(work).campaigns.report(campaign_id)["unsubscribed_after"] == 0
        assert (await client.post(path)).status_code == 200
        assert (await client.get(path[:-3] + "xyz")).status_code == 404

    with mail_crm.system() as work:
        report = mail(work).campaigns.report(campaign_id)
        assert {k: report[k] for k in ("sent", "failed", "bounced", "unsubscribed", "skipped")} == {
            "sent": 1, "failed": 1, "bounced": 1, "unsubscribed": 1, "skipped": 1,
        }  # fmt: skip
        assert report["unsubscribed_after"] == 1
        # every later mailing leaves both opted-out addresses out
        later = mail(work).campaigns.create("Весна", subject="s", body="b", group_id=group_id)
        assert mail(work).campaigns.start(later.id) == 2


async def test_the_link_of_a_deleted_mailing_still_unsubscribes(mail_crm, account, smtp):
    group_id = clients(mail_crm)
    with mail_crm.system() as work:
        old = mail(work).campaigns.create("Осень", subject="s", body="b", group_id=group_id,
                                          rate_per_minute=0)  # fmt: skip
        mail(work).campaigns.start(old.id)
    deliver_due(mail_crm)
    mailed = {r.recipients[0]: parse_message(r.raw) for r in smtp.received}
    link = re.search(r"http\S+/mail/unsubscribe/\S+", mailed["a@one.ru"].text).group(0)
    with mail_crm.system() as work:
        work.records("mail_campaign").delete(old.id)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(mail_crm)), base_url="http://test"
    ) as client:
        done = await client.post(link.removeprefix("https://crm.example.test"))
    assert done.status_code == 200 and "You are unsubscribed" in done.text

    with mail_crm.system() as work:
        later = mail(work).campaigns.create("Весна", subject="s", body="b", group_id=group_id)
        assert mail(work).campaigns.start(later.id) == 2  # b@two.ru and c@three.ru
        statuses = {r.address: r.status for r in mail(work).campaigns.recipients(later.id)}
    assert statuses["a@one.ru"] == "unsubscribed"


def started(crm, group_id):
    with crm.system() as work:
        campaign = mail(work).campaigns.create("Шины", subject="s", body="b", group_id=group_id,
                                               rate_per_minute=0)  # fmt: skip
        mail(work).campaigns.start(campaign.id)
        return campaign.id


def received_by(smtp):
    return sorted(r.recipients[0] for r in smtp.received)


def due_now(crm):
    """Let the recipients refused for now, and the job's later run, be due now."""
    with crm.system() as work:
        work.session.execute(update(MailCampaignRecipient).values(retry_at=None))
    make_due(crm)


@pytest.mark.parametrize(
    "answer", ["450 4.2.0 Greylisted, try again later", "452 4.2.2 Mailbox full"]
)
def test_a_recipient_refused_for_now_is_tried_again_later(mail_crm, account, smtp, answer):
    campaign_id = started(mail_crm, clients(mail_crm))
    smtp.refuse["b@two"] = answer

    deliver_due(mail_crm)

    assert received_by(smtp) == ["a@one.ru", "c@three.ru"]
    with mail_crm.system() as work:
        campaigns = mail(work).campaigns
        report = campaigns.report(campaign_id)
        assert (report["sent"], report["failed"], report["pending"]) == (2, 0, 1)
        assert campaigns.get(campaign_id).status == "sending"  # not over: b@ is waiting
        (waiting,) = campaigns.recipients(campaign_id, status="pending")
        assert waiting.address == "b@two.ru" and answer in waiting.error
        assert waiting.attempts == 1 and waiting.retry_at > utcnow()
    # the job's later run is queued for then: before, nobody is mailed again
    deliver_due(mail_crm)
    assert received_by(smtp) == ["a@one.ru", "c@three.ru"]

    smtp.refuse.clear()  # the greylisting is over
    due_now(mail_crm)
    deliver_due(mail_crm)

    assert received_by(smtp) == ["a@one.ru", "b@two.ru", "c@three.ru"]  # each once
    with mail_crm.system() as work:
        report = mail(work).campaigns.report(campaign_id)
        assert (report["sent"], report["failed"], report["pending"]) == (3, 0, 0)
        assert mail(work).campaigns.get(campaign_id).status == "done"


def test_a_recipient_refused_for_now_again_and_again_fails_in_the_end(mail_crm, account, smtp):
    campaign_id = started(mail_crm, clients(mail_crm))
    smtp.refuse["b@two"] = "452 4.2.2 Mailbox full"
    for _ in range(TRIES):
        send_campaign(mail_crm, campaign_id)
        due_now(mail_crm)
    with mail_crm.system() as work:
        campaigns = mail(work).campaigns
        (failed,) = campaigns.recipients(campaign_id, status="failed")
        assert failed.address == "b@two.ru" and failed.attempts == TRIES
        assert failed.error.startswith(f"refused for now {TRIES} times: ")
        assert "452 4.2.2 Mailbox full" in failed.error
        assert campaigns.get(campaign_id).status == "done"
    assert received_by(smtp) == ["a@one.ru", "c@three.ru"]


def test_a_throttling_server_stops_the_run_and_the_mailing_goes_on_later(mail_crm, account, smtp):
    with mail_crm.system() as work:
        group = work.groups.create(name="Все")
        ids = [
            work.parties.create(
                {"kind": "person", "name": f"Клиент {n}",
                 "contact_points": [{"kind": "email", "value": f"p{n}@x.ru"}]}
            ).id
            for n in range(10)
        ]  # fmt: skip
        work.groups.add_members(group.id, ids)
    campaign_id = started(mail_crm, group.id)
    smtp.fail_data = "451 4.7.1 Too many messages, try again later"  # the provider's quota

    report = send_campaign(mail_crm, campaign_id)

    assert smtp.received == []
    assert (report["pending"], report["failed"]) == (10, 0)  # nobody failed for good
    with mail_crm.system() as work:
        rows = mail(work).campaigns.recipients(campaign_id)
        tried = [r.address for r in rows if r.attempts]
        assert len(tried) == REFUSED_IN_A_ROW  # the run stopped: the rest were not tried
        assert mail(work).campaigns.get(campaign_id).status == "sending"
    smtp.fail_data = None
    due_now(mail_crm)
    deliver_due(mail_crm)
    assert len(received_by(smtp)) == len(set(received_by(smtp))) == 10


def test_a_server_that_goes_away_is_tried_again_without_mailing_anyone_twice(
    mail_crm, account, smtp
):
    campaign_id = started(mail_crm, clients(mail_crm))
    smtp.refuse["b@two"] = "421 4.3.2 Service shutting down"  # and closes the connection

    deliver_due(mail_crm)

    assert received_by(smtp) == ["a@one.ru"]
    with mail_crm.system() as work:
        report = mail(work).campaigns.report(campaign_id)
        assert (report["sent"], report["failed"], report["pending"]) == (1, 0, 2)
    smtp.refuse.clear()  # the server is back: the job's retry sends the rest
    make_due(mail_crm)
    deliver_due(mail_crm)

    assert received_by(smtp) == ["a@one.ru", "b@two.ru", "c@three.ru"]
    with mail_crm.system() as work:
        report = mail(work).campaigns.report(campaign_id)
        assert (report["sent"], report["failed"], report["pending"]) == (3, 0, 0)


def test_a_mailing_started_twice_at_once_sends_each_mail_once(mail_crm, account, smtp):
    from crmkit.errors import ValidationFailed

    group_id = clients(mail_crm)
    with mail_crm.system() as work:
        draft = mail(work).campaigns.create("Шины", subject="s", body="b", group_id=group_id,
                                            rate_per_minute=0)  # fmt: skip
    # two managers press Start on the same draft at once: the second unit has read it as a
    # draft (and holds it) before the first one's start commits
    with mail_crm.system() as second:
        seen = mail(second).campaigns.get(draft.id)
        assert seen.status == "draft"
        with mail_crm.system() as first:
            assert mail(first).campaigns.start(draft.id) == 3
        with pytest.raises(ValidationFailed, match="status: the mailing is already started"):
            mail(second).campaigns.start(draft.id)

    deliver_due(mail_crm)

    assert received_by(smtp) == ["a@one.ru", "b@two.ru", "c@three.ru"]
    with mail_crm.system() as work:
        assert len(mail(work).campaigns.recipients(draft.id)) == 5  # one row per client


def test_the_rate_limit_spaces_the_mails(mail_crm, account, smtp):
    group_id = clients(mail_crm)
    with mail_crm.system() as work:
        campaign = mail(work).campaigns.create("r", subject="s", body="b", group_id=group_id,
                                               rate_per_minute=120)  # fmt: skip
        mail(work).campaigns.start(campaign.id)
    now, waits = [0.0], []

    def sleep(seconds):  # a clock that moves only while the sender waits
        waits.append(seconds)
        now[0] += seconds

    report = send_campaign(mail_crm, campaign.id, sleep=sleep, clock=lambda: now[0])
    assert report["sent"] == 3 and len(smtp.received) == 3
    assert [w for w in waits if w] == [0.5, 0.5]  # 120 a minute: half a second apart


def test_a_mailing_needs_an_audience_and_a_body(mail_crm, account):
    from crmkit.errors import ValidationFailed

    with mail_crm.system() as work, pytest.raises(ValidationFailed, match="audience"):
        mail(work).campaigns.create("x", body="b")
    with mail_crm.system() as work, pytest.raises(ValidationFailed, match="line 1"):
        mail(work).campaigns.create("x", body="{{ party.name", group_id=None, where={})


@pytest.mark.parametrize("mail_settings", [{"outbox.lease_seconds": 1.0}])
def test_a_mailing_longer_than_its_lease_is_not_taken_over_by_another_worker(
    mail_crm, account, smtp
):
    import threading
    import time

    group_id = clients(mail_crm)
    with mail_crm.system() as work:  # three mails a second apart: twice the lease
        campaign = mail(work).campaigns.create("Шины", subject="s", body="b", group_id=group_id,
                                               rate_per_minute=60)  # fmt: skip
        mail(work).campaigns.start(campaign.id)
    done = threading.Event()

    def second_worker():  # sweeps for items whose lease ran out, as idle workers do
        while not done.is_set():
            deliver_due(mail_crm)
            time.sleep(0.1)

    other = threading.Thread(target=second_worker)
    other.start()
    try:
        deliver_due(mail_crm)
    finally:
        done.set()
        other.join()

    assert received_by(smtp) == ["a@one.ru", "b@two.ru", "c@three.ru"]  # each once
    with mail_crm.system() as work:
        assert mail(work).campaigns.report(campaign.id)["sent"] == 3


def test_a_mail_that_cannot_be_made_fails_its_recipient_alone(mail_crm, account, smtp):
    group_id = clients(mail_crm)
    with mail_crm.system() as work:
        work.session.execute(  # an imported name that a subject cannot carry
            update(Party).where(Party.name == "Сервис 1").values(name="Сервис\n1")
        )
        campaign = mail(work).campaigns.create(
            "Шины", subject="Для {{ party.name }}", body="b", group_id=group_id, rate_per_minute=0
        )
        mail(work).campaigns.start(campaign.id)

    deliver_due(mail_crm)

    assert received_by(smtp) == ["a@one.ru", "c@three.ru"]
    with mail_crm.system() as work:
        campaigns = mail(work).campaigns
        assert campaigns.get(campaign.id).status == "done"
        (failed,) = campaigns.recipients(campaign.id, status="failed")
        assert failed.address == "b@two.ru" and "linefeed" in failed.error


def test_an_address_in_a_cyrillic_domain_is_sent_in_its_ascii_form(mail_crm, account, smtp):
    with mail_crm.system() as work:
        mail(work).send(to="info@магазин.рф", subject="Счёт", body="Счёт во вложении")
    deliver_due(mail_crm)
    (received,) = smtp.received
    assert received.recipients == ["info@xn--80aairftm.xn--p1ai"]
    assert parse_message(received.raw).recipients == ("info@xn--80aairftm.xn--p1ai",)


def test_two_recipients_of_a_mailing_merged_are_its_recipient_once(mail_crm, account, smtp):
    """A client is a mailing's recipient once: merging two who both got it keeps one row,
    the survivor's."""
    group_id = clients(mail_crm)
    with mail_crm.system() as work:
        campaign = mail(work).campaigns.create("Шины", subject="s", body="b", group_id=group_id,
                                               rate_per_minute=0)  # fmt: skip
        assert mail(work).campaigns.start(campaign.id) == 3
    deliver_due(mail_crm)
    with mail_crm.system() as work:
        sent = mail(work).campaigns.recipients(campaign.id, status="sent")
        survivor, merged = (r.party_id for r in sent[:2])
        work.merges.merge(survivor, merged)
    with mail_crm.system() as work:
        rows = mail(work).campaigns.recipients(campaign.id)
        assert [(r.party_id, r.address) for r in rows if r.party_id in (survivor, merged)] == [
            (survivor, "a@one.ru")
        ]
        assert len(rows) == 4
        assert mail(work).campaigns.report(campaign.id)["sent"] == 2


def test_a_mailing_past_a_template_limit_fails_its_recipients_with_the_reason(
    mail_crm, account, smtp
):
    group_id = clients(mail_crm)
    with mail_crm.system() as work:  # long for a client with a long name only
        campaign = mail(work).campaigns.create(
            "Шины", subject="s", body="{{ party.name * (100000 if '1' in party.name else 1) }}",
            group_id=group_id, rate_per_minute=0,
        )  # fmt: skip
        mail(work).campaigns.start(campaign.id)

    deliver_due(mail_crm)  # the job ends; it is not a crashed worker

    assert received_by(smtp) == ["a@one.ru", "c@three.ru"]
    with mail_crm.system() as work:
        campaigns = mail(work).campaigns
        assert campaigns.get(campaign.id).status == "done"
        (failed,) = campaigns.recipients(campaign.id, status="failed")
        assert failed.address == "b@two.ru"
        assert "template “Шины”: it makes a value longer than 200000 characters" in failed.error


class Killed(BaseException):
    """The worker killed (kill -9) right after the server took a mail: nothing after runs."""


def test_a_worker_killed_while_sending_never_mails_anyone_twice(
    mail_crm, account, smtp, monkeypatch
):
    from crmkit_mail.smtp import SmtpTransport

    campaign_id = started(mail_crm, clients(mail_crm))
    send = SmtpTransport.send

    def killed_after_two(self, *args, **kwargs):
        send(self, *args, **kwargs)
        if len(smtp.received) == 2:
            raise Killed

    monkeypatch.setattr(SmtpTransport, "send", killed_after_two)
    with pytest.raises(Killed):
        send_campaign(mail_crm, campaign_id)
    monkeypatch.setattr(SmtpTransport, "send", send)
    assert received_by(smtp) == ["a@one.ru", "b@two.ru"]

    # the job's retry on another worker: what the dead one was sending may have gone out
    report = send_campaign(mail_crm, campaign_id)

    assert received_by(smtp) == ["a@one.ru", "b@two.ru"]  # nobody mailed a second time
    assert (report["unknown"], report["pending"], report["sending"]) == (3, 0, 0)
    with mail_crm.system() as work:
        campaigns = mail(work).campaigns
        assert campaigns.get(campaign_id).status == "done"
        rows = campaigns.recipients(campaign_id, status="unknown")
        assert all("maybe sent" in r.error for r in rows)
        # an admin decides to send them again
        assert campaigns.retry_unknown(campaign_id) == 3
    deliver_due(mail_crm)
    assert received_by(smtp) == ["a@one.ru", "a@one.ru", "b@two.ru", "b@two.ru", "c@three.ru"]
    with mail_crm.system() as work:
        report = mail(work).campaigns.report(campaign_id)
        assert (report["sent"], report["unknown"]) == (3, 0)
        assert mail(work).campaigns.get(campaign_id).status == "done"


def test_an_address_two_recipients_share_is_mailed_once(mail_crm, account, smtp):
    with mail_crm.system() as work:
        group = work.groups.create(name="Ромашка")
        points = [{"kind": "email", "value": "info@romashka.ru"}]
        firm = work.parties.create({"kind": "organisation", "name": "ООО Ромашка",
                                    "contact_points": points}, confirm_duplicates=True)  # fmt: skip
        points = [{"kind": "email", "value": "Info@Romashka.ru"}]
        person = work.parties.create(
            {"kind": "person", "name": "Иван", "contact_points": points}, confirm_duplicates=True
        )
        work.groups.add_members(group.id, [firm.id, person.id])
        campaign = mail(work).campaigns.create("Акция", subject="s", body="b", group_id=group.id,
                                               rate_per_minute=0)  # fmt: skip
        assert mail(work).campaigns.start(campaign.id) == 1
    deliver_due(mail_crm)
    assert received_by(smtp) == ["info@romashka.ru"]
    with mail_crm.system() as work:
        (skipped,) = mail(work).campaigns.recipients(campaign.id, status="skipped")
        assert skipped.party_id == person.id and "another recipient" in skipped.error


def test_the_rate_limit_is_the_mailboxs_for_all_its_mailings(mail_crm, account, smtp):
    import threading
    import time

    campaign_ids = []
    for name in ("Первая", "Вторая"):
        with mail_crm.system() as work:
            group = work.groups.create(name=name)
            ids = []
            for n in range(3):
                points = [{"kind": "email", "value": f"{n}@{len(campaign_ids)}.ru"}]
                person = {"kind": "person", "name": f"{name} {n}", "contact_points": points}
                ids.append(work.parties.create(person).id)
            work.groups.add_members(group.id, ids)
            campaign = mail(work).campaigns.create(name, subject="s", body="b", group_id=group.id,
                                                   rate_per_minute=300)  # fmt: skip
            mail(work).campaigns.start(campaign.id)
            campaign_ids.append(campaign.id)
    started_at = time.monotonic()
    runs = [threading.Thread(target=send_campaign, args=(mail_crm, c)) for c in campaign_ids]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    took = time.monotonic() - started_at

    assert len(smtp.received) == 6
    assert took >= 5 * 0.2 - 0.05  # six mails of one mailbox at 300 a minute: 0.2 s apart


def test_bounces_without_the_originals_headers_find_the_latest_mail_sent(
    mail_crm, account, smtp, dovecot, imap_user
):
    from test_mail_sync import delivery_report

    campaign_id = started(mail_crm, clients(mail_crm))
    deliver_due(mail_crm)
    with mail_crm.system() as work:  # a mail by hand to c@ after the mailing
        party = work.session.scalar(select(Party).where(Party.name == "Сервис 2"))
        mail(work).send(to="c@three.ru", subject="Счёт", body="Счёт во вложении", party_id=party.id)
    deliver_due(mail_crm)
    # RET=HDRS not honoured: the reports name the address only
    append(
        dovecot.settings(imap_user), delivery_report("Failed (user unknown)", "5.1.1", "b@two.ru")
    )
    append(dovecot.settings(imap_user), delivery_report("failed", "5.2.2", "c@three.ru"))
    append(dovecot.settings(imap_user), delivery_report("delayed", "4.4.7", "a@one.ru"))

    assert sync_account(mail_crm, account).bounces == 2

    with mail_crm.system() as work:
        rows = {r.address: r for r in mail(work).campaigns.recipients(campaign_id)}
        assert rows["b@two.ru"].status == "bounced" and "5.1.1" in rows["b@two.ru"].error
        assert rows["a@one.ru"].status == "sent"  # delayed is no bounce
        assert rows["c@three.ru"].status == "sent"  # the later mail by hand bounced
        by_hand = work.session.scalar(
            select(Activity).where(Activity.direction == "out", Activity.subject == "Счёт")
        )
        assert by_hand.status == "bounced"


def test_plain_text_bounces_mark_the_mailing_and_wait_in_no_triage(
    mail_crm, account, smtp, dovecot, imap_user
):
    """Exim's notice quotes the original (its Message-ID names the mail); a Russian one
    without it names the address only; neither is a conversation."""
    from crmkit.model import Conversation

    campaign_id = started(mail_crm, clients(mail_crm))
    deliver_due(mail_crm)
    sent = {r.recipients[0]: parse_message(r.raw) for r in smtp.received}
    exim = (
        "From: Mail Delivery System <Mailer-Daemon@mx.two.ru>\r\nTo: in@firm.test\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n"
        "Auto-Submitted: auto-replied\r\nMessage-Id: <E1tX-0001@mx.two.ru>\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        "  b@two.ru\r\n    host mx.two.ru [192.0.2.4]\r\n"
        "    SMTP error from remote mail server after RCPT TO:<b@two.ru>:\r\n"
        "    550 5.1.1 User unknown\r\n\r\n"
        "------ This is a copy of the message, including all the headers. ------\r\n\r\n"
        f"From: in@firm.test\r\nTo: b@two.ru\r\nMessage-ID: {sent['b@two.ru'].message_id}\r\n"
        "Subject: s\r\n\r\nb\r\n"
    )
    russian = (
        "From: mailer-daemon@three.ru\r\nTo: in@firm.test\r\n"
        "Subject: =?utf-8?B?0J3QtdC00L7RgdGC0LDQstC70LXQvdC90L7QtSDRgdC+0L7QsdGJ0LXQvdC40LU=?=\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "К сожалению, Ваше письмо не может быть доставлено одному или нескольким\r\n"
        "получателям:\r\n\r\nc@three.ru\r\nmessage is not accepted: user not found\r\n"
    )
    append(dovecot.settings(imap_user), exim.encode())
    append(dovecot.settings(imap_user), russian.encode())

    report = sync_account(mail_crm, account)

    assert (report.bounces, report.recorded) == (2, 0)
    with mail_crm.system() as work:
        rows = {r.address: r for r in mail(work).campaigns.recipients(campaign_id)}
        assert rows["b@two.ru"].status == "bounced" and "5.1.1" in rows["b@two.ru"].error
        assert rows["c@three.ru"].status == "bounced"
        assert rows["a@one.ru"].status == "sent"
        assert list(work.session.scalars(select(Conversation))) == []
        assert list(work.session.scalars(select(Activity).where(Activity.direction == "in"))) == []
