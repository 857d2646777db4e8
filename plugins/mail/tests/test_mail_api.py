"""Mailboxes through the REST API: written as on the screen (passwords sealed, rules checked)."""

from __future__ import annotations

import httpx
import pytest
from crmkit_mail.model import MailAccount
from sqlalchemy import select

from crmkit.testing import add_user
from crmkit.web.app import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def api(crm, username, roles):
    user = add_user(crm, username, roles)
    with crm.acting_as(user) as work:
        secret = work.api_tokens.create("test").secret
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(crm)),
        base_url="http://testserver/api/v1/",
        headers={"Authorization": f"Bearer {secret}"},
    )


async def test_an_admin_manages_mailboxes_through_the_api(mail_crm):
    async with api(mail_crm, "admin", ["admin"]) as admin:
        created = await admin.post(
            "mail_account",
            json={
                "name": "sales", "address": "Sales@Example.test", "imap_host": "imap.example.test",
                "imap_password": "s3cret-imap", "import_days": 30,
                "ignore_senders": "GitHub.com\nmailer-daemon@",
            },
        )  # fmt: skip
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["address"] == "sales@example.test" and body["import_days"] == 30
        assert body["ignore_senders"] == "github.com\nmailer-daemon@*"
        assert "s3cret" not in created.text and "imap_password_sealed" not in body
        with mail_crm.system() as work:
            sealed = work.session.get(MailAccount, body["id"]).imap_password_sealed
            assert mail_crm.sealing.open(sealed) == "s3cret-imap"

        bad = await admin.patch(f"mail_account/{body['id']}", json={"ignore_senders": "a b"})
        assert bad.status_code == 422
        assert "line 1: 'a b' is not an address" in bad.text
        twice = await admin.post("mail_account", json={"name": "sales", "address": "x@x.test"})
        assert twice.status_code == 422 and "exists" in twice.text
        nobody = await admin.post(
            "mail_account", json={"name": "own", "address": "o@x.test", "owner_id": 303}
        )
        assert nobody.status_code == 422 and "no user 303" in nobody.text
        moved = await admin.patch(f"mail_account/{body['id']}", json={"imap_folder": "Support"})
        assert moved.status_code == 200 and moved.json()["imap_folder"] == "Support"
        assert (await admin.delete(f"mail_account/{body['id']}")).status_code == 204
    with mail_crm.system() as work:
        assert work.session.scalars(select(MailAccount)).all() == []


async def test_a_manager_reads_mailboxes_but_cannot_add_one(mail_crm):
    async with api(mail_crm, "manager", ["manager"]) as manager:
        listed = await manager.get("mail_account")
        assert listed.status_code == 200 and listed.json()["items"] == []
        refused = await manager.post("mail_account", json={"name": "x", "address": "x@x.test"})
        assert refused.status_code == 403
