"""The sign-in throttle under parallel attempts, in the database and in Redis."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from crmkit.services.signin import SignInRefused
from crmkit.services.users import UserService
from crmkit.testing import DEMO_PASSWORD, add_user

LIMIT = 5
PARALLEL = 12


def _parallel_wrong_passwords(crm, username, monkeypatch):
    """``PARALLEL`` wrong passwords at once, each its own request; the refusals, and how
    many times a password was actually checked."""
    checked = []
    authenticate = UserService.authenticate

    def counted(self, name, password):
        checked.append(name)
        return authenticate(self, name, password)

    monkeypatch.setattr(UserService, "authenticate", counted)
    start = threading.Barrier(PARALLEL)

    def attempt(n):
        start.wait()
        try:
            with crm.system() as work:
                work.signin.sign_in(username, f"wrong-{n}", address="10.0.0.7")
        except SignInRefused as refused:
            return refused.reason
        return "signed in"

    with ThreadPoolExecutor(PARALLEL) as pool:
        reasons = list(pool.map(attempt, range(PARALLEL)))
    monkeypatch.setattr(UserService, "authenticate", authenticate)
    return reasons, len(checked)


@pytest.mark.parametrize("where", ["database", "redis"])
def test_parallel_wrong_passwords_are_checked_no_more_often_than_the_limit(
    make_crm, request, monkeypatch, where
):
    settings = {"security.login_max_failures_account": LIMIT}
    if where == "redis":
        settings["queue.url"] = request.getfixturevalue("redis_url")
    crm = make_crm(settings=settings)
    add_user(crm, "ivan", ["agent"])
    try:
        reasons, checked = _parallel_wrong_passwords(crm, "ivan", monkeypatch)
        wrong = reasons.count("wrong username or password")
        too_many = reasons.count("too many failed sign-in attempts; try again later")
        assert wrong + too_many == PARALLEL
        assert checked <= LIMIT and checked == wrong
        # every checked failure counts: the limit is reached once all of them are in
        with crm.system() as work:
            for _ in range(LIMIT - wrong):
                with pytest.raises(SignInRefused, match="wrong"):
                    work.signin.sign_in("ivan", "wrong-again", address="10.0.0.8")
        with crm.system() as work, pytest.raises(SignInRefused, match="too many"):
            work.signin.sign_in("ivan", DEMO_PASSWORD, address="10.0.0.9")
    finally:
        if crm.redis is not None:
            crm.redis.delete(*crm.redis.keys(f"{crm.namespace}:*"))


def test_a_success_forgets_the_accounts_failures_and_is_not_held_against_the_address(
    make_crm,
):
    crm = make_crm(
        settings={
            "security.login_max_failures_account": 2,
            "security.login_max_failures_address": 3,
        }
    )
    add_user(crm, "ivan", ["agent"])
    for _ in range(2):  # a failure, then a success: the account starts afresh
        with crm.system() as work, pytest.raises(SignInRefused, match="wrong"):
            work.signin.sign_in("ivan", "nope", address="10.0.0.7")
        with crm.system() as work:
            work.signin.sign_in("ivan", DEMO_PASSWORD, address="10.0.0.7")
    with crm.system() as work, pytest.raises(SignInRefused, match="wrong"):
        work.signin.sign_in("ivan", "nope", address="10.0.0.7")
    # the address's failures stay (3), its successes were not counted
    with crm.system() as work, pytest.raises(SignInRefused, match="too many"):
        work.signin.sign_in("ivan", DEMO_PASSWORD, address="10.0.0.7")
