"""Signing in: sessions checked on every request, throttling, CSRF, blocking, sign-out."""

from __future__ import annotations

import logging
import re

import pytest

from crmkit.testing import DEMO_PASSWORD, add_user
from tests.web.conftest import Browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_sign_in_lands_on_the_roles_start_screen(web, crm):
    agent = await web("agent")
    assert (await agent.get("/")).headers["location"] == "/home"
    admin = await web("admin")
    assert (await admin.get("/")).headers["location"] == "/admin"
    page = await agent.get("/home")
    assert page.status_code == 200 and agent.user.username in page.text


async def test_wrong_password_opens_no_session_and_never_logs_the_password(crm, caplog):
    add_user(crm, "ivan", ["agent"])
    browser = Browser(_app(crm), crm)
    with caplog.at_level(logging.DEBUG):
        response = await browser.login("ivan", "secret-wrong-Пароль")
    assert response.status_code == 401
    assert "неверное имя пользователя или пароль" in response.text
    assert (await browser.get("/home")).status_code == 303
    assert not any("secret-wrong" in r.getMessage() for r in caplog.records)


async def test_a_nul_character_in_the_sign_in_form_is_refused_not_a_server_error(crm):
    """PostgreSQL cannot store it even in the failure counter (a 500 before)."""
    add_user(crm, "ivan", ["agent"])
    browser = Browser(_app(crm), crm)
    for username, password in (("iv\x00an", DEMO_PASSWORD), ("ivan", "x\x00")):
        response = await browser.login(username, password)
        assert response.status_code == 422
        assert "NUL" in response.text  # the field is named, in any language
    assert (await browser.get("/home")).status_code == 303  # no session
    assert (await browser.login("ivan")).status_code == 303  # nor counted against Иван


async def test_an_account_is_throttled_after_repeated_failures(make_crm):
    crm = make_crm(settings={"security.login_max_failures_account": 3})
    add_user(crm, "ivan", ["agent"])
    browser = Browser(_app(crm), crm)
    for _ in range(3):
        assert (await browser.login("ivan", "nope")).status_code == 401
    refused = await browser.login("ivan", DEMO_PASSWORD)  # even the right password
    assert refused.status_code == 429 and refused.headers["retry-after"]
    other = Browser(_app(crm), crm)  # another browser, same address: the account is locked
    assert (await other.login("ivan", DEMO_PASSWORD)).status_code == 429


async def test_an_address_is_throttled_across_accounts(make_crm):
    crm = make_crm(settings={"security.login_max_failures_address": 2})
    add_user(crm, "maria", ["agent"])
    browser = Browser(_app(crm), crm)
    await browser.login("nobody1", "x")
    await browser.login("nobody2", "x")
    assert (await browser.login("maria", DEMO_PASSWORD)).status_code == 429


async def test_redis_throttle_is_shared_by_applications(make_crm, redis_url):
    settings = {"queue.url": redis_url, "security.login_max_failures_account": 2}
    crm = make_crm(settings=settings)
    add_user(crm, "petr", ["agent"])
    first, second = Browser(_app(crm), crm), Browser(_app(crm), crm)
    assert (await first.login("petr", "bad")).status_code == 401
    assert (await second.login("petr", "bad")).status_code == 401
    assert (await first.login("petr", DEMO_PASSWORD)).status_code == 429
    crm.redis.delete(*crm.redis.keys(f"{crm.namespace}:*"))


async def test_blocking_ends_every_session_at_once(web, crm):
    agent = await web("agent")
    other_tab = Browser(agent.app, crm)
    await other_tab.login(agent.user.username)
    with crm.system() as work:
        work.users.block(agent.user.id)
    for browser in (agent, other_tab):
        response = await browser.get("/home")
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert (await agent.login(agent.user.username)).status_code == 401


async def test_changing_roles_ends_sessions(web, crm):
    agent = await web("agent")
    with crm.system() as work:
        work.users.update(agent.user.id, roles=["manager"])
    assert (await agent.get("/home")).status_code == 303


async def test_a_permission_change_applies_to_the_next_page_of_a_signed_in_user(web, crm):
    """Signed-in users' actors are kept between requests, but never past a change of access."""
    from crmkit.testing import add_user, factories

    agent = await web("agent")
    colleague = add_user(crm, "colleague", ["agent"])
    with crm.acting_as(colleague) as work:
        theirs = factories.organisation(work, name="Чужой клиент")
    assert (await agent.get(f"/clients/{theirs.id}")).status_code == 404
    assert (await agent.get(f"/clients/{theirs.id}")).status_code == 404  # kept actor
    with crm.system() as work:
        work.permissions.set("agent", "party", "read", "all")
    page = await agent.get(f"/clients/{theirs.id}")
    assert page.status_code == 200 and "Чужой клиент" in page.text
    with crm.system() as work:
        work.permissions.set("agent", "party", "read", "own")
    assert (await agent.get(f"/clients/{theirs.id}")).status_code == 404


async def test_sign_out_everywhere(web, crm):
    agent = await web("agent")
    phone = Browser(agent.app, crm)
    await phone.login(agent.user.username)
    response = await agent.post("/logout", {"everywhere": "1"})
    assert response.status_code == 303
    assert (await phone.get("/home")).status_code == 303


async def test_the_current_password_of_the_change_form_is_throttled_like_a_sign_in(make_crm):
    crm = make_crm(settings={"security.login_max_failures_account": 3})
    add_user(crm, "ivan", ["agent"], locale="en")
    browser = Browser(_app(crm), crm)
    assert (await browser.login("ivan")).status_code == 303  # a stolen session, say

    async def change(current):
        return await browser.post(
            "/profile/password",
            {"current": current, "new": "new-password-1", "repeat": "new-password-1"},
        )

    for guess in ("guess-1", "guess-2", "guess-3"):
        wrong = await change(guess)
        assert wrong.status_code == 422 and "the current password is wrong" in wrong.text
    refused = await change(DEMO_PASSWORD)  # even the right one: no more guessing
    assert refused.status_code == 422
    assert "too many failed sign-in attempts; try again later" in refused.text
    other = Browser(_app(crm), crm)  # the same counter as the sign-in form's
    assert (await other.login("ivan", DEMO_PASSWORD)).status_code == 429
    with crm.system() as work:  # the password is unchanged
        assert work.users.authenticate("ivan", DEMO_PASSWORD) is not None


async def test_using_a_session_extends_its_cookie_as_well(make_crm):
    import datetime as dt

    import sqlalchemy as sa

    from crmkit.model import SignInSession

    crm = make_crm(settings={"security.session_days": 14})
    add_user(crm, "ivan", ["agent"])
    browser = Browser(_app(crm), crm)
    signed_in = await browser.login("ivan")
    assert "max-age=1209600" in signed_in.headers["set-cookie"].lower()
    quiet = await browser.get("/home")  # used moments ago: nothing to extend
    assert "crmkit_session=" not in quiet.headers.get("set-cookie", "")

    # ten days later, still at work: the server moves the session on, and the cookie too
    ten_days = dt.timedelta(days=10)
    ten_days_ago = dt.datetime.now(dt.UTC) - ten_days
    with crm.engine.begin() as connection:
        connection.execute(
            sa.update(SignInSession).values(
                created_at=ten_days_ago,
                last_seen_at=ten_days_ago + dt.timedelta(minutes=10),
                expires_at=ten_days_ago + dt.timedelta(days=14),
            )
        )
    page = await browser.get("/home")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("crmkit_session=") and "max-age=1209600" in cookie.lower()
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert browser.client.cookies["crmkit_session"] in cookie  # the same session, kept
    with crm.system() as work:
        [session] = work.session.scalars(sa.select(SignInSession)).all()
        left = session.expires_at.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)
        assert left > dt.timedelta(days=13, hours=23)
    with crm.engine.begin() as connection:  # a while later, signing out: the cookie goes
        connection.execute(
            sa.update(SignInSession).values(last_seen_at=dt.datetime.now(dt.UTC) - ten_days)
        )
    signed_out = await browser.post("/logout")
    [deleted] = signed_out.headers.get_list("set-cookie")
    assert deleted.startswith('crmkit_session=""') and "max-age=0" in deleted.lower()


async def test_state_changing_requests_need_the_csrf_token(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        party = work.parties.create(name="ООО Ромашка")
    forged = await agent.client.post(f"/clients/{party.id}/notes", data={"body": "forged"})
    assert forged.status_code == 403
    with crm.acting_as(agent.user) as work:
        assert len(work.timeline.list(party.id, kinds=["note"])) == 0
    ok = await agent.post(f"/clients/{party.id}/notes", {"body": "real"})
    assert ok.status_code == 303


async def test_login_form_itself_needs_its_csrf_token(crm):
    add_user(crm, "ivan", ["agent"])
    browser = Browser(_app(crm), crm)
    response = await browser.client.post(
        "/login", data={"username": "ivan", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 403


async def test_next_parameter_never_leaves_the_site(crm):
    add_user(crm, "ivan", ["agent"])
    browser = Browser(_app(crm), crm)
    page = await browser.get("/login?next=//evil.example/x")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = await browser.client.post(
        "/login",
        data={
            "username": "ivan",
            "password": DEMO_PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/x",
        },
    )
    assert response.headers["location"] == "/"


def _app(crm):
    from crmkit.web.app import create_app

    return create_app(crm)


async def test_a_blocked_users_page_says_so_in_russian_and_leads_back_to_the_users(web, crm):
    from crmkit.web.i18n import catalogs_of

    said = "User blocked: their sessions ended and their API tokens stopped working."
    russian = "Пользователь заблокирован: сеансы завершены, API-токены больше не действуют."
    catalogs_of(crm)["ru"]._catalog[said] = russian  # as the catalog will say it
    admin = await web("admin")
    ivan = add_user(crm, "ivan", ["agent"])
    done = await admin.post(f"/admin/users/{ivan.id}", {"action": "block", "reason": "уволен"})
    page = await admin.get(done.headers["location"])
    flash = re.search(r'<p class="flash ok"[^>]*>([^<]*)</p>', page.text).group(1)
    assert flash == russian
    heading = page.text.split('role="status">', 1)[-1].split("<h1", 1)[0]
    assert 'href="/admin/users"' in heading and "Пользователи" in heading
