"""The mail plugin's API endpoints (mailboxes, mailings) under fuzzing: no 5xx, and every
answer as the OpenAPI document describes it (``CRMKIT_FUZZ_EXAMPLES`` for a deeper run)."""

from __future__ import annotations

import pytest
from crmkit_mail import plugin as mail_plugin

from crmkit.testing import add_user
from crmkit.testing.fuzz import api_schema, check, fuzz_settings
from crmkit.web.app import create_app

schema, CURRENT = api_schema([mail_plugin], path_regex="^/mail_")


@pytest.fixture
def fuzzed(mail_crm, smtp):
    """The mail plugin's web app with an admin's token and a mailbox for ids to land on."""
    from crmkit_mail import mail

    admin = add_user(mail_crm, "root", ["admin"])
    with mail_crm.acting_as(admin) as work:
        mail(work).accounts.create(name="sales", address="sales@example.test", smtp_host=smtp.host)
        secret = work.api_tokens.create("fuzzing").secret
    with CURRENT.serving(create_app(mail_crm)):
        yield secret


@schema.parametrize()
@fuzz_settings()
def test_no_generated_request_breaks_the_mail_api(case, fuzzed):
    check(case, fuzzed)
