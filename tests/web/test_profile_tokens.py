"""Personal API tokens on the profile (and an admin's page of a user): made with the secret
shown once, listed without it, revoked one by one, and never someone else's."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from crmkit.model import ApiToken
from crmkit.services import tokens
from crmkit.testing import add_user
from tests.web.conftest import Browser

pytestmark = pytest.mark.anyio

SECRET = re.compile(r"crmkit_[A-Za-z0-9_-]{43}")


async def api_me(web_browser: Browser, secret: str) -> int:
    """The status of ``GET /api/v1/me`` with ``secret`` as bearer, from a fresh client."""
    client = Browser(web_browser.app, web_browser.crm)
    try:
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        return response.status_code
    finally:
        await client.close()


def stored_tokens(crm, user_id):
    with crm.engine.connect() as connection:
        return connection.execute(
            sa.select(ApiToken.id, ApiToken.name, ApiToken.expires_at, ApiToken.revoked_at)
            .where(ApiToken.user_id == user_id)
            .order_by(ApiToken.id)
        ).all()


def row_of(page: str, token_id: int) -> str:
    found = re.search(rf'<tr id="api-token-{token_id}">(.*?)</tr>', page, re.S)
    return found.group(1) if found else ""


async def test_a_user_makes_sees_and_revokes_api_tokens_on_the_profile(web, crm):
    ann = await web("agent", locale="en", timezone="Europe/Moscow")
    empty = await ann.get("/profile")
    assert empty.status_code == 200 and "No API tokens." in empty.text

    made = await ann.post("/profile/tokens", {"name": "1C sync", "expires_on": ""})
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    (secret,) = set(SECRET.findall(made.text))
    assert "Copy its secret now: it is shown only this once." in made.text
    [(token_id, name, expires_at, revoked_at)] = stored_tokens(crm, ann.user.id)
    assert (name, expires_at, revoked_at) == ("1C sync", None, None)
    assert await api_me(ann, secret) == 200  # the secret works, and is now "last used"

    page = await ann.get("/profile")
    row = row_of(page.text, token_id)
    assert "1C sync" in row and secret[: tokens.SHOWN_CHARACTERS] + "…" in row
    assert "never" in row and "—" not in row  # no expiry; used a moment ago
    assert not SECRET.search(page.text) and tokens.digest(secret) not in page.text

    # valid through a day in the user's zone: it ends at the next Moscow midnight
    day = dt.date.today() + dt.timedelta(days=30)
    dated = await ann.post("/profile/tokens", {"name": "till then", "expires_on": day.isoformat()})
    assert dated.status_code == 200
    next_day = day + dt.timedelta(days=1)
    moscow_midnight = dt.datetime.combine(next_day, dt.time(), ZoneInfo("Europe/Moscow"))
    assert stored_tokens(crm, ann.user.id)[-1].expires_at == moscow_midnight

    # refused forms make nothing
    past = await ann.post("/profile/tokens", {"name": "late", "expires_on": "2020-01-01"})
    assert past.status_code == 422 and "must be today or later" in past.text
    nameless = await ann.post("/profile/tokens", {"name": "  "})
    assert nameless.status_code == 422 and "give the token a name" in nameless.text
    assert len(stored_tokens(crm, ann.user.id)) == 2

    # a revoke without the form's CSRF token does nothing
    forged = await ann.client.post(f"/profile/tokens/{token_id}/revoke", data={})
    assert forged.status_code == 403
    assert await api_me(ann, secret) == 200

    revoked = await ann.post(f"/profile/tokens/{token_id}/revoke")
    assert revoked.status_code == 303 and revoked.headers["location"] == "/profile"
    assert await api_me(ann, secret) == 401  # refused by the API from now on
    assert stored_tokens(crm, ann.user.id)[0].revoked_at is not None
    after = await ann.get("/profile")
    assert "Token revoked." in after.text and "1C sync" not in after.text
    assert "till then" in after.text


async def test_no_one_revokes_anothers_token_by_posting_its_id(web, crm):
    ann = await web("agent", locale="en")
    bob = add_user(crm, "bob", ["agent"])
    with crm.acting_as(bob) as work:
        bobs = work.api_tokens.create("bob's script")
    bobs_id, bobs_secret = bobs.token.id, bobs.secret
    with crm.acting_as(ann.user) as work:
        own = work.api_tokens.create("mine").token.id
    assert (await ann.post(f"/profile/tokens/{own}/revoke")).status_code == 303  # her own: yes

    refused = await ann.post(f"/profile/tokens/{bobs_id}/revoke")
    assert refused.status_code == 404
    assert bobs_secret not in (await ann.get("/profile")).text
    # even an admin's profile revokes only the admin's own tokens
    admin = await web("admin", locale="en")
    assert (await admin.post(f"/profile/tokens/{bobs_id}/revoke")).status_code == 404
    assert await api_me(ann, bobs_secret) == 200
    assert stored_tokens(crm, bob.id)[0].revoked_at is None


async def test_an_admin_sees_and_revokes_a_users_tokens_on_their_page(web, crm):
    admin = await web("admin", locale="en")
    bob = add_user(crm, "bob", ["agent"])
    carl = add_user(crm, "carl", ["agent"])
    with crm.acting_as(bob) as work:
        bobs = work.api_tokens.create("bob's script")
    with crm.acting_as(carl) as work:
        carls = work.api_tokens.create("carl's script")

    page = await admin.get(f"/admin/users/{bob.id}")
    assert page.status_code == 200
    row = row_of(page.text, bobs.token.id)
    assert "bob's script" in row.replace("&#39;", "'") and bobs.token.prefix in row
    assert not SECRET.search(page.text) and "carl's script" not in page.text.replace("&#39;", "'")

    # bob's page revokes bob's tokens only, whatever id is posted to it
    wrong = await admin.post(
        f"/admin/users/{bob.id}", {"action": "revoke_token", "token_id": str(carls.token.id)}
    )
    assert wrong.status_code == 404
    assert await api_me(admin, carls.secret) == 200

    done = await admin.post(
        f"/admin/users/{bob.id}", {"action": "revoke_token", "token_id": str(bobs.token.id)}
    )
    assert done.status_code == 303
    assert await api_me(admin, bobs.secret) == 401
    assert "bob's script" not in (await admin.get(f"/admin/users/{bob.id}")).text

    # other roles have no such page
    agent = await web("agent")
    assert (await agent.get(f"/admin/users/{carl.id}")).status_code == 404
    denied = await agent.post(
        f"/admin/users/{carl.id}", {"action": "revoke_token", "token_id": str(carls.token.id)}
    )
    assert denied.status_code == 404
    assert await api_me(admin, carls.secret) == 200
