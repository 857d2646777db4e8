"""The contact center's main flow in headless Chromium, with real mail servers behind it.

A mail from an unknown sender arrives in Dovecot, is synced, shows in the contact center;
the agent makes the sender a lead, takes the conversation and replies; the outbox worker
hands the reply to aiosmtpd, threaded on the client's mail.
"""

from __future__ import annotations

import pytest
from crmkit_mail import mail
from crmkit_mail import plugin as mail_plugin
from crmkit_mail.imap import append
from crmkit_mail.parsing import parse_message
from crmkit_mail.sync import sync_all

from crmkit.jobs.delivery import deliver_due
from crmkit.testing import add_user, make_crm
from crmkit.testing.web import chromium, sign_in
from crmkit.testing.web import served as served_over_http

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path, certificate, dovecot, imap_user, smtp):
    from crmkit.web.app import create_app

    crm = make_crm(
        [mail_plugin], directory=tmp_path / "e2e", settings={"mail.ca_file": str(certificate[0])}
    )
    with crm.system() as work:
        mail(work).accounts.create(
            name="sales", address=imap_user, imap_host=dovecot.host, imap_port=dovecot.port,
            imap_security="none", imap_password=dovecot.users[imap_user],
            smtp_host=smtp.host, smtp_port=smtp.port, smtp_username="crm@example.test",
            smtp_password=smtp.users["crm@example.test"],
        )  # fmt: skip
    try:
        with served_over_http(create_app(crm)) as base:
            yield crm, base
    finally:
        crm.close()


def test_answer_an_unknown_sender_from_the_contact_center(served, dovecot, imap_user, smtp):
    crm, base = served
    add_user(crm, "olga", ["agent"], display_name="Ольга")
    raw = (
        "From: =?utf-8?b?0J/QtdGC0YAg0KHQuNC00L7RgNC+0LI=?= <petr@stroy.ru>\r\n"
        f"To: {imap_user}\r\nCc: buh@stroy.ru\r\n"
        "Subject: =?utf-8?b?0J3Rg9C20L3RiyDRiNC40L3Riw==?=\r\n"
        "Message-ID: <ask-1@stroy.ru>\r\nContent-Type: text/plain; charset=windows-1251\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "Нужны зимние шины на 4 машины.".encode("cp1251")
    append(dovecot.settings(imap_user), raw)
    sync_all(crm)

    with chromium() as browser:
        phone = browser.new_context(viewport={"width": 390, "height": 844})
        page = sign_in(phone, base, "olga")
        page.goto(f"{base}/inbox")
        page.click("text=Петр Сидоров")
        assert page.is_visible("text=Нужны зимние шины на 4 машины.")
        page.click('[data-action="lead"]')  # one click: the name is filled in from the mail
        page.wait_for_load_state()
        assert page.is_visible('[data-party-link]:has-text("Петр Сидоров")')
        # a reply to all: the accountant the client copied is proposed; a file goes along
        assert page.input_value('input[name="cc"]') == "buh@stroy.ru"
        page.fill('textarea[name="body"]', "Добрый день! Шины есть, счёт во вложении.")
        page.set_input_files(
            'input[name="files"]',
            files=[{"name": "Счёт 17.pdf", "mimeType": "application/pdf", "buffer": b"%PDF 17"}],
        )
        page.click('[data-action="reply"]')
        page.wait_for_load_state()
        page.goto(f"{base}/inbox?view=mine")
        assert page.is_visible("text=Петр Сидоров")

    assert deliver_due(crm) == {"delivered": 1}
    (sent,) = smtp.received
    reply = parse_message(sent.raw)
    assert sent.recipients == ["petr@stroy.ru", "buh@stroy.ru"]
    assert reply.subject == "Re: Нужны шины" and reply.in_reply_to == "<ask-1@stroy.ru>"
    assert reply.text.startswith("Добрый день! Шины есть")
    assert [(a.filename, a.data) for a in reply.attachments] == [("Счёт 17.pdf", b"%PDF 17")]
