"""A mailing's report names its recipients the reader may read, and shows no id of one
they may not (it was ``#<id>``, linked to a card they could not open)."""

from __future__ import annotations

import pytest
from crmkit_mail import mail
from test_mail_screens import mixed_clients, signed_in, smtp_mailbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_mailing_report_shows_no_id_of_a_client_the_reader_may_not_read(mail_crm, smtp):
    smtp_mailbox(mail_crm, smtp)
    template, group, ids = mixed_clients(mail_crm)
    with mail_crm.system() as work:
        campaign = mail(work).campaigns.create(
            "Шины", template_id=template, group_id=group, rate_per_minute=0
        )
        mail(work).campaigns.start(campaign.id)
    manager = await signed_in(mail_crm, "manager", ["manager"])
    path = f"/mail/mailings/{campaign.id}"
    report = await manager.get(path)
    assert f'<a href="/clients/{ids["Hans"]}">Hans</a>' in report.text
    with mail_crm.system() as work:  # the manager now reads their own clients only
        work.permissions.set("manager", "party", "read", "own")
    report = await manager.get(path)
    assert report.status_code == 200
    for name, party_id in ids.items():
        assert f'href="/clients/{party_id}"' not in report.text, name
        assert f">#{party_id}<" not in report.text, name
