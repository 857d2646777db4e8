"""Fixtures of the mail plugin's tests: a real Dovecot and aiosmtpd on loopback, an app."""

from __future__ import annotations

import itertools

import pytest
from crmkit_mail import mail
from crmkit_mail import plugin as mail_plugin
from crmkit_mail.testing import (
    dovecot_available,
    dovecot_server,
    self_signed_certificate,
    smtp_server,
)

from crmkit.testing import require

_users = itertools.count(1)
PUBLIC_ADDRESS = "https://crm.example.test"


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """One self-signed certificate for every test server (the apps trust it)."""
    return self_signed_certificate(tmp_path_factory.mktemp("cert"))


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory, certificate):
    """A Dovecot for the session, with a pool of users: each test takes an empty mailbox."""
    require(dovecot_available(), "Dovecot (Debian dovecot-imapd)")
    users = {f"box{i}@example.test": f"imap-pass-{i}" for i in range(1, 301)}
    with dovecot_server(tmp_path_factory.mktemp("dovecot"), users, certificate) as server:
        yield server


@pytest.fixture
def imap_user(dovecot):
    """A mailbox user nobody else uses in this session."""
    return f"box{next(_users)}@example.test"


@pytest.fixture
def smtp(tmp_path, certificate):
    """An aiosmtpd server with STARTTLS and login (``crm@example.test``)."""
    with smtp_server(tmp_path / "smtp", certificate=certificate) as server:
        yield server


@pytest.fixture
def mail_settings():
    """Further settings of ``mail_crm`` (a test parametrizes it to change one)."""
    return {}


@pytest.fixture
def mail_crm_settings(certificate, mail_settings):
    """The settings of ``mail_crm``: trust the test servers' certificate, a public address
    (mailings' unsubscribe links need one), and ``mail_settings``."""
    return {
        "mail.ca_file": str(certificate[0]),
        "mail.timeout_seconds": 10,
        "web.base_url": PUBLIC_ADDRESS,
        **mail_settings,
    }


@pytest.fixture
def mail_crm(make_crm, mail_crm_settings):
    """A fresh application with the mail plugin and ``mail_crm_settings``."""
    return make_crm(plugins=[mail_plugin], settings=mail_crm_settings)


@pytest.fixture
def account(mail_crm, dovecot, imap_user, smtp):
    """A shared mailbox on the test servers: IMAP over TLS, SMTP with STARTTLS and login."""
    with mail_crm.system() as work:
        created = mail(work).accounts.create(
            name="sales",
            address=imap_user,
            display_name="Отдел продаж",
            imap_host=dovecot.host,
            imap_port=dovecot.tls_port,
            imap_security="tls",
            imap_username=imap_user,
            imap_password=dovecot.users[imap_user],
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_security="starttls",
            smtp_username="crm@example.test",
            smtp_password=smtp.users["crm@example.test"],
        )
        return created.id
