"""The mail plugin's API endpoints (mailboxes, mailings) under fuzzing: no 5xx, and every
answer as the OpenAPI document describes it (``CRMKIT_FUZZ_EXAMPLES`` for a deeper run)."""

from __future__ import annotations

import pytest
from crmkit_mail import plugin as mail_plugin

from crmkit.testing import add_user
from crmkit.testing.fuzz import api_schema, check, fuzz_settings
from crmkit.web.app import create_app

LOOPBACK = "127.0.0.1"  # where the test servers listen

schema, CURRENT = api_schema([mail_plugin], path_regex="^/mail_")


def fuzzed_mail(crm):
    """The mail plugin's web app and an admin with a mailbox for ids to land on (its SMTP
    host is the loopback the test servers listen on)."""
    from crmkit_mail import mail

    admin = add_user(crm, "root", ["admin"])
    with crm.acting_as(admin) as work:
        mail(work).accounts.create(name="sales", address="sales@example.test", smtp_host=LOOPBACK)
    return create_app(crm), admin


@pytest.fixture
def fuzzed(module_crm, mail_crm_settings):
    """The app built once per module and backend (the check holds whatever earlier requests
    left: no 5xx, documented answers) and a token of the admin's own."""
    crm, (app, admin) = module_crm(fuzzed_mail, plugins=[mail_plugin], settings=mail_crm_settings)
    with crm.acting_as(admin) as work:
        secret = work.api_tokens.create("fuzzing").secret
    with CURRENT.serving(app):
        yield secret


@schema.parametrize()
@fuzz_settings()
def test_no_generated_request_breaks_the_mail_api(case, fuzzed):
    check(case, fuzzed)
