"""The mail channel runs the shared channel contract against Dovecot and aiosmtpd."""

from __future__ import annotations

import time

import pytest
from crmkit_mail import mail
from crmkit_mail import plugin as mail_plugin
from crmkit_mail.imap import append
from crmkit_mail.parsing import parse_message
from crmkit_mail.sync import sync_all

from crmkit.testing.channel_contract import ChannelContract


class MailPeer:
    """The far side of the mail channel: a Dovecot mailbox in, an aiosmtpd server out."""

    channel = "mail"

    def __init__(self, dovecot, user, smtp):
        self.dovecot, self.user, self.smtp = dovecot, user, smtp

    def address(self, n):
        return f"client{n}@example.ru"

    def deliver_inbound(self, sender, body, *, sender_name=None):
        display = f'"{sender_name}" <{sender}>' if sender_name else sender
        raw = (
            f"From: {display}\r\nTo: {self.user}\r\nSubject: contract\r\n"
            f"Message-ID: <{time.monotonic_ns()}@example.ru>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        )
        append(self.dovecot.settings(self.user), raw.encode())

    def receive(self, crm):
        sync_all(crm)

    def sent(self):
        return [
            (recipient, parse_message(r.raw).text)
            for r in self.smtp.received
            for recipient in r.recipients
        ]

    def fail_sending(self, mode):
        self.smtp.fail_data = "451 4.3.0 try again later" if mode == "temporary" else None
        self.smtp.refuse = {"@": "550 5.1.1 no such user"} if mode == "permanent" else {}


class TestMailChannelContract(ChannelContract):
    @pytest.fixture
    def channel_peer(self, dovecot, imap_user, smtp):
        return MailPeer(dovecot, imap_user, smtp)

    @pytest.fixture
    def channel_app(self, make_crm, certificate, dovecot, imap_user, smtp):
        def build(settings):
            crm = make_crm(
                plugins=[mail_plugin],
                settings={"mail.ca_file": str(certificate[0]), **settings},
            )
            with crm.system() as work:
                mail(work).accounts.create(
                    name="shared", address=imap_user,
                    imap_host=dovecot.host, imap_port=dovecot.port, imap_security="none",
                    imap_password=dovecot.users[imap_user],
                    smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="starttls",
                    smtp_username="crm@example.test", smtp_password=smtp.users["crm@example.test"],
                )  # fmt: skip
            return crm

        return build
