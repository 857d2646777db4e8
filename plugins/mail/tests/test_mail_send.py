"""Outbound mail to a real aiosmtpd: headers, attachments, TLS modes, threads, failures."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from crmkit_mail import mail
from crmkit_mail.imap import ImapMailbox, append, folder_name
from crmkit_mail.model import MailAccount, MailSignature
from crmkit_mail.parsing import parse_message
from crmkit_mail.sent_copies import KIND
from crmkit_mail.sync import sync_account
from crmkit_mail.testing import smtp_server
from sqlalchemy import select, text

from crmkit.channels import OutboundMessage, PermanentFailure
from crmkit.errors import ValidationFailed
from crmkit.model import Activity, OutboxItem
from crmkit.sealing import SecretUnreadable
from crmkit.testing import add_user, factories, free_port
from crmkit.testing.channel_contract import deliver_outbox, make_due


def queued_message(crm, activity_id):
    """The outbox item written for a queued mail, as the delivery worker reads it."""
    with crm.system() as work:
        item = work.session.scalar(
            select(OutboxItem).where(OutboxItem.kind == "channel.send")
            .where(OutboxItem.payload["activity_id"].as_integer() == activity_id)
        )  # fmt: skip
        payload = dict(item.payload)
    payload["references"] = tuple(payload.get("references") or ())
    return OutboundMessage(**payload)


def test_a_mail_from_a_template_with_an_attachment(mail_crm, account, smtp):
    manager = add_user(mail_crm, "maria", ["manager"], display_name="Мария Иванова")
    with mail_crm.acting_as(manager) as work:
        client = factories.organisation(
            work,
            name="ООО «Ромашка»",
            contact_points=[{"kind": "email", "value": "boss@romashka.ru"}],
        )
        deal = factories.deal(work, party_id=client.id, title="Поставка шин")
        template = work.message_templates.create(
            name="offer", subject="Предложение: {{ record.title }}",
            body="Здравствуйте, {{ party.name }}!\n{{ sender.name }}",
        )  # fmt: skip
        file = work.attachments.add("Прайс 2025.pdf", b"%PDF price", party_id=client.id)
        activity = mail(work).send(
            template=template.id, party_id=client.id, record=("deal", deal.id),
            attachment_ids=(file.id,),
        )  # fmt: skip
        activity_id, message_id = activity.id, activity.external_id
    assert smtp.received == []  # nothing leaves before the outbox delivers it

    receipt = (
        mail_crm.channels["mail"].adapter(mail_crm).send(queued_message(mail_crm, activity_id))
    )

    (received,) = smtp.received
    assert received.recipients == ["boss@romashka.ru"]
    sent = parse_message(received.raw)
    assert sent.subject == "Предложение: Поставка шин"
    assert sent.text.startswith("Здравствуйте, ООО «Ромашка»!")
    assert sent.sender_name == "Мария Иванова (Отдел продаж)"
    assert sent.message_id == message_id == receipt.external_id
    assert [(a.filename, a.data) for a in sent.attachments] == [("Прайс 2025.pdf", b"%PDF price")]


def test_a_reply_from_the_client_joins_the_deal(mail_crm, account, smtp, dovecot, imap_user):
    with mail_crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
        deal = factories.deal(work, party_id=client.id)
        out = mail(work).send(subject="Счёт", body="Счёт во вложении", party_id=client.id,
                              record=("deal", deal.id))  # fmt: skip
        out_id = out.id
    mail_crm.channels["mail"].adapter(mail_crm).send(queued_message(mail_crm, out_id))
    ours = parse_message(smtp.received[0].raw)
    reply = (
        "From: Buyer <buyer@client.ru>\r\nTo: sales@firm.test\r\nSubject: Re: Счёт\r\n"
        f"Message-ID: <reply1@client.ru>\r\nIn-Reply-To: {ours.message_id}\r\n"
        f"References: {ours.message_id}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Оплатим завтра\r\n"
    ).encode()
    append(dovecot.settings(imap_user), reply)

    sync_account(mail_crm, account)

    with mail_crm.system() as work:
        answer = work.session.scalar(
            select(Activity).where(Activity.external_id == "<reply1@client.ru>")
        )
        assert (answer.party_id, answer.record_entity, answer.record_id) == (
            client.id,
            "deal",
            deal.id,
        )
        # replying from the CRM threads back: In-Reply-To and References name the client's mail
        again = mail(work).send(reply_to=answer.id, body="Спасибо!")
        assert (again.record_entity, again.record_id, again.subject) == (
            "deal",
            deal.id,
            "Re: Счёт",
        )
        again_id = again.id
    mail_crm.channels["mail"].adapter(mail_crm).send(queued_message(mail_crm, again_id))
    second = parse_message(smtp.received[1].raw)
    assert second.in_reply_to == "<reply1@client.ru>"
    assert second.references == (ours.message_id, "<reply1@client.ru>")
    assert smtp.received[1].recipients == ["buyer@client.ru"]


@pytest.mark.parametrize("security", ["tls", "none"])
def test_implicit_tls_and_plain_servers(mail_crm, tmp_path, certificate, security):
    users = {"crm@example.test": "pw"} if security == "tls" else {}
    login = {"smtp_username": "crm@example.test", "smtp_password": "pw"} if users else {}
    with smtp_server(
        tmp_path / security, security=security, users=users, certificate=certificate
    ) as server:
        with mail_crm.system() as work:
            mail(work).accounts.create(
                name="out", address="crm@example.test", smtp_host=server.host,
                smtp_port=server.port, smtp_security=security, **login,
            )  # fmt: skip
            activity_id = mail(work).send(to="a@example.ru", subject="Тест", body="Привет").id
        mail_crm.channels["mail"].adapter(mail_crm).send(queued_message(mail_crm, activity_id))
        assert parse_message(server.received[0].raw).text == "Привет"


def test_refusals_are_permanent_and_outages_are_retried(mail_crm, account, smtp):
    with mail_crm.system() as work:
        bad = mail(work).send(to="ghost@nowhere.ru", subject="x", body="x").id
        later = mail(work).send(to="fine@example.ru", subject="y", body="y").id
    adapter = mail_crm.channels["mail"].adapter(mail_crm)
    smtp.refuse["ghost@"] = "550 5.1.1 no such user"
    with pytest.raises(PermanentFailure, match="550"):
        adapter.send(queued_message(mail_crm, bad))
    smtp.fail_data = "451 4.3.0 try again later"
    with pytest.raises(smtplib.SMTPDataError):
        adapter.send(queued_message(mail_crm, later))
    smtp.fail_data = None
    adapter.send(queued_message(mail_crm, later))
    assert [r.recipients for r in smtp.received] == [["fine@example.ru"]]


def test_a_mail_without_a_mailbox_fails_for_good(mail_crm):
    message = OutboundMessage(channel="mail", to="a@example.ru", body="x", idempotency_key="k1")
    with pytest.raises(PermanentFailure, match="no mailbox"):
        mail_crm.channels["mail"].adapter(mail_crm).send(message)


def test_passwords_are_sealed_at_rest(mail_crm, account, dovecot, imap_user, make_crm, certificate):
    with mail_crm.engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM mail_account")).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert dovecot.users[imap_user] not in stored and "smtp-secret-1" not in stored
    with mail_crm.system() as work:
        account_row = work.session.get(MailAccount, account)
        assert mail_crm.sealing.open(account_row.imap_password_sealed) == dovecot.users[imap_user]
    # another deployment (another key) cannot read them
    other = make_crm(settings={"secret_key": "another-deployment"})
    with pytest.raises(SecretUnreadable):
        other.sealing.open(row["imap_password_sealed"])


def test_the_writers_signature_goes_under_their_mail(mail_crm, account, smtp):
    maria = add_user(mail_crm, "maria", ["manager"])
    ivan = add_user(mail_crm, "ivan", ["manager"])
    with mail_crm.acting_as(maria) as work:
        stored = mail(work).signatures.set("Мария Иванова  \r\nОтдел продаж, +7 495 000-00-00\r\n")
        assert stored == "Мария Иванова\nОтдел продаж, +7 495 000-00-00"
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "boss@romashka.ru"}]
        )
        plain = mail(work).send(subject="Счёт", body="Счёт во вложении.\n", party_id=client.id)
        rich = work.channels.send(
            "mail", to="boss@romashka.ru", subject="Акт", body="Акт", party_id=client.id,
            html="<html><body><p>Акт</p></body></html>",
        )  # fmt: skip
        ids = [plain.id, rich.id]
    with mail_crm.acting_as(ivan) as work:
        ids.append(mail(work).send(subject="Б", body="Без подписи", party_id=client.id).id)
    with mail_crm.system() as work:
        ids.append(mail(work).send(subject="С", body="От системы", party_id=client.id).id)
    adapter = mail_crm.channels["mail"].adapter(mail_crm)
    for activity_id in ids:
        adapter.send(queued_message(mail_crm, activity_id))

    texts = [parse_message(r.raw) for r in smtp.received]
    assert texts[0].text.replace("\r\n", "\n") == (
        "Счёт во вложении.\n\n-- \nМария Иванова\nОтдел продаж, +7 495 000-00-00"
    )
    rich_html = texts[1].html.replace("\r\n", "\n")
    assert "-- <br>\nМария Иванова<br>\nОтдел продаж" in rich_html
    assert rich_html.index("Мария Иванова") < rich_html.index("</body>")
    assert [t.text.replace("\r\n", "\n") for t in texts[2:]] == ["Без подписи", "От системы"]
    with mail_crm.system() as work:
        entry = work.session.get(Activity, ids[0])
        assert entry.body.endswith("-- \nМария Иванова\nОтдел продаж, +7 495 000-00-00")
    # delivered again (a retry): the signature is not added twice
    adapter.send(queued_message(mail_crm, ids[0]))
    assert parse_message(smtp.received[-1].raw).text.count("Мария Иванова") == 1


def test_a_signature_is_checked_and_an_empty_one_removed(mail_crm):
    maria = add_user(mail_crm, "maria", ["manager"])
    with mail_crm.acting_as(maria) as work:
        with pytest.raises(ValidationFailed, match="signature"):
            mail(work).signatures.set("х" * 2001)
        mail(work).signatures.set("Мария")
        assert mail(work).signatures.get() == "Мария"
        assert mail(work).signatures.set("  \n ") == ""
        assert mail(work).signatures.get() == ""
    with mail_crm.system() as work:
        assert work.session.scalars(select(MailSignature)).all() == []


def test_copies_reach_everyone_named_and_a_refused_copy_is_noted(mail_crm, account, smtp):
    with mail_crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
        activity = mail(work).send(
            subject="Договор", body="Проект договора", party_id=client.id,
            cc=("Director@Client.ru", "director@client.ru", "ghost@client.ru"),
        )  # fmt: skip
        activity_id = activity.id
        assert activity.data["cc"] == ["Director@Client.ru", "ghost@client.ru"]
        with pytest.raises(ValidationFailed) as refused:
            mail(work).send(subject="x", body="x", party_id=client.id, cc=("директор",))
        assert [str(m) for m in refused.value.errors["cc"]] == [
            "'директор' is not a valid email address"
        ]
    smtp.refuse["ghost@"] = "550 5.1.1 no such user"

    receipt = (
        mail_crm.channels["mail"].adapter(mail_crm).send(queued_message(mail_crm, activity_id))
    )

    (received,) = smtp.received
    # one mail: the client and the copy that exists got it, the Cc header names both copies
    assert received.recipients == ["buyer@client.ru", "Director@Client.ru"]
    assert received.message["To"] == "buyer@client.ru"
    assert received.message["Cc"] == "Director@Client.ru, ghost@client.ru"
    assert receipt.detail["refused"] == {"ghost@client.ru": "550 5.1.1 no such user"}
    with mail_crm.system() as work:
        entry = work.session.get(Activity, activity_id)
        assert entry.data["refused"] == {"ghost@client.ru": "550 5.1.1 no such user"}


def test_a_reply_to_all_copies_the_others_but_not_our_own_mailboxes(
    mail_crm, account, smtp, dovecot, imap_user
):
    with mail_crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
        mail(work).accounts.create(name="support", address="Support@Firm.test")
    incoming = (
        f"From: Buyer <buyer@client.ru>\r\nTo: {imap_user}, Boss <boss@client.ru>\r\n"
        "Cc: support@firm.test, buyer@client.ru, Бухгалтерия <acc@client.ru>, typo@localhost\r\n"
        "Subject: Вопрос по счёту\r\nMessage-ID: <q1@client.ru>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nКогда отгрузка?\r\n"
    ).encode()
    append(dovecot.settings(imap_user), incoming)

    sync_account(mail_crm, account)

    with mail_crm.system() as work:
        question = work.session.scalar(
            select(Activity).where(Activity.external_id == "<q1@client.ru>")
        )
        assert question.party_id == client.id
        # everyone it went to, and those a reply to all copies: not the sender, not us, not
        # an address no reply could reach
        assert question.data["to"] == [
            imap_user, "boss@client.ru", "support@firm.test", "buyer@client.ru", "acc@client.ru",
            "typo@localhost",
        ]  # fmt: skip
        assert question.data["cc"] == ["boss@client.ru", "acc@client.ru"]
        answer = mail(work).send(reply_to=question.id, body="Завтра", reply_all=True).id
        only_to_the_sender = mail(work).send(reply_to=question.id, body="Лично вам").id
    adapter = mail_crm.channels["mail"].adapter(mail_crm)
    adapter.send(queued_message(mail_crm, answer))
    adapter.send(queued_message(mail_crm, only_to_the_sender))
    to_all, to_one = smtp.received
    assert to_all.recipients == ["buyer@client.ru", "boss@client.ru", "acc@client.ru"]
    assert to_all.message["Subject"] == "Re: Вопрос по счёту"
    assert to_one.recipients == ["buyer@client.ru"] and to_one.message["Cc"] is None


def sent_folder(dovecot, user, folder="Sent"):
    """``(Message-ID, flags)`` of every message in a mailbox's folder, read over IMAP."""
    with ImapMailbox(dovecot.settings(user, folder=folder)) as box:
        uids = box.uids_after(0)
        found = []
        for message in box.fetch(uids):
            _status, data = box.conn.uid("FETCH", str(message.uid), "(FLAGS)")
            found.append((parse_message(message.raw).message_id, data[0].decode()))
        return found


def test_a_copy_of_sent_mail_is_kept_in_the_sent_folder_once(
    mail_crm, account, smtp, dovecot, imap_user
):
    with mail_crm.system() as work:
        mail(work).accounts.update(account, sent_folder="Sent")  # Dovecot has none yet
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
        activity = mail(work).send(subject="КП", body="Наше предложение", party_id=client.id)
        activity_id, message_id = activity.id, activity.external_id
    deliver_outbox(mail_crm)  # the mail goes out and queues its copy
    deliver_outbox(mail_crm)  # the copy is stored

    (received,) = smtp.received
    ((copied_id, flags),) = sent_folder(dovecot, imap_user)
    assert copied_id == message_id == parse_message(received.raw).message_id
    assert "\\Seen" in flags
    with mail_crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem).where(OutboxItem.kind == KIND))
        assert item.status == "delivered" and item.result["folder"] == "Sent"
        key = item.payload["storage_key"]
    with pytest.raises(FileNotFoundError):  # the bytes kept for the copy are deleted
        mail_crm.storage.open(key)
    assert sent_folder(dovecot, imap_user, "INBOX") == []  # the inbox is left alone

    # a delivery retried after the mail went out, and a copy stored again: still one copy
    mail_crm.channels["mail"].adapter(mail_crm).send(queued_message(mail_crm, activity_id))
    with mail_crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem).where(OutboxItem.kind == KIND))
        item.status, item.next_attempt_at = "pending", item.created_at
    deliver_outbox(mail_crm)
    assert [m for m, _flags in sent_folder(dovecot, imap_user)] == [message_id]
    assert len(smtp.received) == 2  # (the retried delivery itself did send again)
    stored = {p.name for p in Path(mail_crm.storage.root).rglob("*") if p.is_file()}
    assert stored == set()  # the retry's bytes were not kept either


def test_a_copy_the_server_will_not_take_is_retried_then_shown_and_the_mail_stays_sent(
    mail_crm, account, smtp, dovecot, imap_user
):
    with mail_crm.system() as work:
        mail(work).accounts.update(account, sent_folder="Sent", imap_port=free_port())
        activity_id = mail(work).send(to="buyer@client.ru", subject="x", body="Текст").id
    deliver_outbox(mail_crm)
    for _attempt in range(8):
        make_due(mail_crm)
        deliver_outbox(mail_crm)
    with mail_crm.system() as work:
        assert work.session.get(Activity, activity_id).status == "sent"
        (dead,) = work.outbox.failed()
        assert dead.kind == KIND and dead.status == "dead" and "refused" in dead.last_error
        mail(work).accounts.update(account, imap_port=dovecot.tls_port)  # the admin mends it
        work.outbox.retry([dead.id])
    deliver_outbox(mail_crm)
    assert [m for m, _flags in sent_folder(dovecot, imap_user)] == [
        parse_message(smtp.received[0].raw).message_id
    ]
    assert len(smtp.received) == 1  # the mail itself was never sent again


def test_copies_of_sent_mail_need_an_imap_server_and_another_folder(mail_crm, account):
    with mail_crm.system() as work:
        with pytest.raises(ValidationFailed) as refused:
            mail(work).accounts.update(account, sent_folder="INBOX")
        assert refused.value.errors == {
            "sent_folder": ["'INBOX' is the folder mail is read from (imap_folder)"]
        }
        with pytest.raises(ValidationFailed) as refused:
            mail(work).accounts.create(name="out", address="out@firm.ru", sent_folder="Sent")
        assert refused.value.errors == {
            "sent_folder": ["copies of sent mail need an IMAP server (imap_host)"]
        }


def test_a_copy_that_cannot_be_kept_does_not_send_the_mail_again(
    mail_crm, account, smtp, monkeypatch
):
    with mail_crm.system() as work:
        mail(work).accounts.update(account, sent_folder="Sent")
        activity_id = mail(work).send(to="buyer@client.ru", subject="x", body="Текст").id

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mail_crm.storage, "save", disk_full)
    deliver_outbox(mail_crm)
    assert len(smtp.received) == 1
    with mail_crm.system() as work:
        entry = work.session.get(Activity, activity_id)
        assert entry.status == "sent"
        assert "No space left on device" in entry.data["sent_copy"]
        assert work.session.scalars(select(OutboxItem).where(OutboxItem.kind == KIND)).all() == []


def test_a_folder_with_a_russian_name_is_spelled_as_imap_servers_spell_it(
    mail_crm, account, smtp, dovecot, imap_user
):
    assert folder_name("Отправленные") == "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
    assert folder_name("R&D") == "R&-D"
    with mail_crm.system() as work:
        mail(work).accounts.update(account, sent_folder="Отправленные")
        message_id = mail(work).send(to="buyer@client.ru", subject="x", body="Текст").external_id
    deliver_outbox(mail_crm)
    deliver_outbox(mail_crm)
    with ImapMailbox(dovecot.settings(imap_user)) as box:
        _status, listed = box.conn.list('""', "*")
    assert any(line.endswith(b" &BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-") for line in listed)
    assert [m for m, _flags in sent_folder(dovecot, imap_user, "Отправленные")] == [message_id]


def sent_mail(imap_user, to, message_id, subject="Ответ", extra="", file=None):
    """A mail as a mail program stores it in Sent; ``file`` = (name, bytes) attaches one."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = imap_user, to, subject
    message["Message-ID"], message["Date"] = message_id, "Mon, 23 Nov 2026 10:00:00 +0300"
    for line in filter(None, extra.split("\r\n")):
        name, _, value = line.partition(": ")
        message[name] = value
    message.set_content("Написано в Thunderbird\n")
    if file is not None:
        message.add_attachment(file[1], maintype="application", subtype="pdf", filename=file[0])
    return message.as_bytes(policy=SMTP)


def test_mail_sent_from_a_mail_program_lands_on_the_clients_timeline_once(
    mail_crm, account, smtp, dovecot, imap_user, monkeypatch
):
    settings = dovecot.settings(imap_user)
    with ImapMailbox(settings) as box:
        box.conn.create("Sent")
    append(settings, sent_mail(imap_user, "old@client.ru", "<old@x>"), folder="Sent")
    manager = add_user(mail_crm, "mia", ["manager"])
    with mail_crm.system() as work:
        mail(work).accounts.update(account, sent_folder="Sent", owner_id=manager.id)
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
        deal = factories.deal(work, party_id=client.id)
        old_client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "old@client.ru"}]
        ).id
    with mail_crm.acting_as(manager) as work:
        ours_id = (
            mail(work)
            .send(subject="Счёт", body="Счёт", party_id=client.id, record=("deal", deal.id))
            .external_id
        )

    # the first reading starts at the folder's end: what it held is history, passed over
    assert sync_account(mail_crm, account).sent_recorded == 0
    deliver_outbox(mail_crm)  # the CRM's own mail and its copy in Sent
    deliver_outbox(mail_crm)
    append(settings, sent_mail(imap_user, "nobody@else.ru", "<n1@x>"), folder="Sent")
    append(
        settings,
        sent_mail(imap_user, "stranger@else.ru", "<t1@x>", subject="Re: Счёт",
                  extra=f"Cc: Buyer <buyer@client.ru>\r\nReferences: {ours_id}\r\n",
                  file=("Акт сверки.pdf", b"%PDF-1.4 act")),
        folder="Sent",
    )  # fmt: skip

    report = sync_account(mail_crm, account)
    assert report.sent_recorded == 1 and report.error is None
    assert sync_account(mail_crm, account).sent_recorded == 0  # read once
    with mail_crm.system() as work:
        sent = work.session.scalars(
            select(Activity).where(Activity.direction == "out").order_by(Activity.id)
        ).all()
        # the CRM's own mail once (its copy in Sent is not recorded again), and the one
        # written in the mail program, on the client's timeline, about the same deal
        assert [a.external_id for a in sent] == [ours_id, "<t1@x>"]
        written = sent[1]
        assert (written.party_id, written.status, written.subject) == (
            client.id,
            "sent",
            "Re: Счёт",
        )
        assert (written.record_entity, written.record_id) == ("deal", deal.id)
        assert written.actor_id == manager.id and written.body.strip() == "Написано в Thunderbird"
        assert written.data["to"] == "stranger@else.ru" and written.data["cc"] == [
            "buyer@client.ru"
        ]
        # its file is kept on the entry, as an incoming mail's would be
        (kept,) = work.attachments.for_record("activity", written.id)
        assert written.data["attachments"] == [kept.id] and kept.party_id == client.id
        assert kept.filename == "Акт сверки.pdf" and kept.content_type == "application/pdf"
        with work.attachments.open(kept.id)[1] as handle:
            assert handle.read() == b"%PDF-1.4 act"
        old = work.session.scalars(select(Activity).where(Activity.party_id == old_client)).all()
        assert old == []

    # a file the CRM cannot keep (a full disk) leaves the mail recorded, the file named
    append(
        settings,
        sent_mail(imap_user, "buyer@client.ru", "<t2@x>", file=("big.pdf", b"%PDF-1.4 big")),
        folder="Sent",
    )

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mail_crm.storage, "save", disk_full)
    assert sync_account(mail_crm, account).sent_recorded == 1
    with mail_crm.system() as work:
        entry = work.session.scalar(select(Activity).where(Activity.external_id == "<t2@x>"))
        assert entry.party_id == client.id and "attachments" not in entry.data
        assert entry.data["dropped_attachments"].startswith("big.pdf: ")
        assert "No space left on device" in entry.data["dropped_attachments"]
        assert work.attachments.for_record("activity", entry.id) == []


def test_a_colleagues_own_mailbox_is_not_sent_from(mail_crm, account, smtp):
    ivan = add_user(mail_crm, "ivan", ["agent"])
    mia = add_user(mail_crm, "mia", ["manager"])
    with mail_crm.system() as work:
        mail(work).accounts.update(account, owner_id=ivan.id)  # ivan's own mailbox
    with mail_crm.acting_as(mia) as work, pytest.raises(ValidationFailed) as refused:
        mail(work).send(to="buyer@client.ru", subject="x", body="x", account="sales")
    assert refused.value.errors == {"account": ["sales is a colleague's own mailbox"]}
    with mail_crm.acting_as(ivan) as work:  # its owner may
        mail(work).send(to="buyer@client.ru", subject="x", body="x", account="sales")
    deliver_outbox(mail_crm)
    assert len(smtp.received) == 1


def test_a_sent_mail_that_cannot_be_recorded_does_not_stop_the_sent_folder(
    mail_crm, account, dovecot, imap_user, monkeypatch
):
    from sqlalchemy.exc import DataError

    from crmkit.services.timeline import TimelineService

    settings = dovecot.settings(imap_user)
    with ImapMailbox(settings) as box:
        box.conn.create("Sent")
    with mail_crm.system() as work:
        mail(work).accounts.update(account, sent_folder="Sent")
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
    assert sync_account(mail_crm, account).sent_recorded == 0  # from the folder's end
    for n in (1, 2, 3):
        append(settings, sent_mail(imap_user, "buyer@client.ru", f"<s{n}@x>"), folder="Sent")
    add = TimelineService.add

    def rejects_the_second(self, kind, **values):
        if values.get("external_id") == "<s2@x>":
            raise DataError("INSERT INTO activity ...", {}, ValueError("value too long"))
        return add(self, kind, **values)

    monkeypatch.setattr(TimelineService, "add", rejects_the_second)

    report = sync_account(mail_crm, account)

    # the others are recorded, the refused one reported and passed, as for incoming mail
    assert (report.sent_recorded, report.error) == (2, None)
    assert len(report.failures) == 1 and report.failures[0].startswith("Sent UID 2: DataError")
    with mail_crm.system() as work:
        sent = work.session.scalars(
            select(Activity.external_id).where(Activity.party_id == client.id)
        ).all()
        assert sorted(sent) == ["<s1@x>", "<s3@x>"]
        stored = work.session.get(MailAccount, account)
        assert stored.sent_last_uid == 3 and "Sent UID 2" in stored.last_error
    monkeypatch.undo()
    assert sync_account(mail_crm, account).sent_recorded == 0  # not read again


def test_a_reply_from_the_contact_center_goes_out_from_the_mailbox_written_to(
    mail_crm, smtp, dovecot, imap_user
):
    agent = add_user(mail_crm, "agent", ["manager"])
    with mail_crm.system() as work:
        mailboxes = mail(work).accounts
        smtp_login = {
            "smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_security": "starttls",
            "smtp_username": "crm@example.test", "smtp_password": smtp.users["crm@example.test"],
        }  # fmt: skip
        mailboxes.create(  # the first shared mailbox: what a mail goes out from by default
            name="sales", address="sales@firm.test", imap_host="127.0.0.1", imap_port=1,
            imap_security="none", imap_username="x", imap_password="x", **smtp_login,
        )  # fmt: skip
        support = mailboxes.create(
            name="support", address=imap_user, imap_host=dovecot.host,
            imap_port=dovecot.tls_port, imap_security="tls", imap_username=imap_user,
            imap_password=dovecot.users[imap_user], import_days=None, **smtp_login,
        ).id  # fmt: skip
    # a client's mail program that sets no Message-ID
    append(
        dovecot.settings(imap_user),
        b"From: Olga <olga@client.ru>\r\nTo: support@firm.test\r\nSubject: broken invoice\r\n"
        b"\r\nThe invoice is wrong\r\n",
    )
    sync_account(mail_crm, support)
    with mail_crm.acting_as(agent) as work:
        (conversation,) = work.conversations.list("unassigned")
        assert conversation.account == "support"
        work.conversations.reply(conversation.id, body="We will fix it")
    deliver_outbox(mail_crm)
    answer = parse_message(smtp.received[-1].raw)
    assert answer.sender == imap_user  # not sales@, the first shared mailbox
    # the client's mail was recorded under a made-up id: no mail program knows it
    assert (answer.in_reply_to, answer.references) == (None, ())
    assert b"sha256:" not in smtp.received[-1].raw


def test_a_reply_to_a_subject_of_500_characters_is_cut_to_fit(mail_crm, account, smtp):
    """ "Re: " before a received subject its column held at full length no longer fit
    (PostgreSQL refused the reply, SQLite kept 504 characters): the subject is cut to 500."""
    with mail_crm.system() as work:
        client = factories.organisation(
            work, contact_points=[{"kind": "email", "value": "buyer@client.ru"}]
        )
        question = work.timeline.add(
            "mail", party_id=client.id, direction="in", channel="mail",
            subject="в" * 500, body="Когда отгрузка?", data={"from": "buyer@client.ru"},
        )  # fmt: skip
        work.flush()
        answer = mail(work).send(reply_to=question.id, body="Завтра")
        assert answer.subject == "Re: " + "в" * 496
    with mail_crm.system() as work:
        assert work.session.get(Activity, answer.id).subject == "Re: " + "в" * 496
