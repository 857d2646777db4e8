"""Signing in and out: password checks with throttling, server-side sessions, sign-out everywhere.

A session is a row in ``signin_session`` keyed by the SHA-256 of a random token; the browser
holds the token in a signed cookie.  Every request resumes the session with one query that
also checks the user: a blocked user, or one whose ``session_epoch`` moved on (roles or
password changed, "sign out everywhere"), has no session any more, in every process at once.

Sign-in attempts are counted per account and per address, in the database or in Redis when
``queue.url`` names a Redis server; never in process memory, so several web processes
throttle together.  An attempt is counted before its password is checked, so parallel
attempts cannot slip past the limit together.  Passwords are never logged, stored or put
in an error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import delete, func, select

from crmkit.clock import utcnow
from crmkit.errors import CrmkitError
from crmkit.model import LoginFailure, SignInSession, User

if TYPE_CHECKING:
    from crmkit.app import Actor
    from crmkit.services.unit import UnitOfWork

#: A session's last-seen time is written at most this often (a write per request is waste).
TOUCH_EVERY = dt.timedelta(minutes=5)


def token_hash(token: str) -> str:
    """The stored form of a session or feed token."""
    return hashlib.sha256(token.encode()).hexdigest()


class SignInRefused(CrmkitError):
    """Sign-in failed: wrong credentials, a blocked account, or too many failed attempts.

    The message never tells which of username or password was wrong.
    """

    def __init__(self, reason: str, retry_after: int | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


@attrs.frozen
class ResumedSession:
    """A live session: its id, the CSRF token of its forms, its user and their actor;
    ``extended`` when this use moved its expiry on (the browser's cookie should follow)."""

    session_id: int
    csrf_token: str
    user: User
    actor: Actor
    extended: bool = False


@attrs.frozen
class Attempt:
    """A password check counted before it is made: ``counts`` has, per throttle key, the
    attempts in the window with this one included; ``rows`` is how the database throttle
    finds this attempt again to withdraw it."""

    counts: dict[str, int]
    rows: dict[str, int] = attrs.field(factory=dict)


class DatabaseThrottle:
    """Sign-in attempts counted in the ``login_failure`` table.

    Each step runs in a transaction of its own: an attempt is committed before it is counted
    (so that parallel attempts see each other), and a refusal, which rolls back the caller's
    unit of work, leaves the count in place.
    """

    def __init__(self, crm: Any) -> None:
        self.crm = crm

    def attempt(self, keys: list[str], window: dt.timedelta) -> Attempt:
        """Count one attempt for each key, then how many each has in the window."""
        now = utcnow()
        with self.crm.system() as work:
            rows = {key: LoginFailure(key=key, at=now) for key in keys}
            work.session.add_all(rows.values())
            work.session.execute(delete(LoginFailure).where(LoginFailure.at < now - window * 2))
            work.flush()
            ids = {key: row.id for key, row in rows.items()}
        with self.crm.system() as work:  # after the commit: every committed attempt counts
            counts = dict(
                work.session.execute(
                    select(LoginFailure.key, func.count())
                    .where(LoginFailure.key.in_(keys), LoginFailure.at >= now - window)
                    .group_by(LoginFailure.key)
                ).all()
            )
        return Attempt({key: int(counts.get(key, 0)) for key in keys}, ids)

    def withdraw(self, attempt: Attempt, keys: list[str]) -> None:
        """Stop counting ``attempt`` for ``keys`` (it was refused unchecked, or succeeded)."""
        ids = [attempt.rows[key] for key in keys if key in attempt.rows]
        with self.crm.system() as work:
            work.session.execute(delete(LoginFailure).where(LoginFailure.id.in_(ids)))

    def clear(self, key: str) -> None:
        """Forget the failures of ``key`` (after a successful sign-in)."""
        with self.crm.system() as work:
            work.session.execute(delete(LoginFailure).where(LoginFailure.key == key))


class RedisThrottle:
    """Sign-in attempts counted in Redis: one counter per key, expiring with the window."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    def _name(self, key: str) -> str:
        return f"{self.namespace}:login-failures:{key}"

    def attempt(self, keys: list[str], window: dt.timedelta) -> Attempt:
        """Count one attempt for each key (``INCR``: atomic, so parallel attempts each get
        their own number); a counter lives one window after its last attempt."""
        pipe = self.client.pipeline()
        for key in keys:
            pipe.incr(self._name(key))
            pipe.expire(self._name(key), int(window.total_seconds()))
        results = pipe.execute()
        return Attempt({key: int(results[2 * i]) for i, key in enumerate(keys)})

    def withdraw(self, attempt: Attempt, keys: list[str]) -> None:
        """Stop counting ``attempt`` for ``keys``."""
        pipe = self.client.pipeline()
        for key in keys:
            pipe.decr(self._name(key))
        pipe.execute()

    def clear(self, key: str) -> None:
        """Forget the failures of ``key``."""
        self.client.delete(self._name(key))


class SignInService:
    """Sessions of the web UI (run as the system actor: nobody is signed in yet)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work
        config = work.crm.config
        self.window = dt.timedelta(minutes=int(config["security.login_window_minutes"]))
        self.max_account = int(config["security.login_max_failures_account"])
        self.max_address = int(config["security.login_max_failures_address"])
        self.lifetime = dt.timedelta(days=int(config["security.session_days"]))

    @property
    def throttle(self) -> DatabaseThrottle | RedisThrottle:
        """Where attempts are counted: Redis when the deployment has one, else the database."""
        client = self.work.crm.redis
        if client is not None:
            return RedisThrottle(client, self.work.crm.namespace)
        return DatabaseThrottle(self.work.crm)

    def sign_in(
        self,
        username: str,
        password: str,
        *,
        address: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[User, str]:
        """Check the password and open a session; returns the user and the session token.

        Raises :class:`SignInRefused` for wrong credentials, a blocked user, or when the
        account or the address has failed too often within ``security.login_window_minutes``
        (the password is then not even checked).
        """
        name = (username or "").strip()
        user = self._throttled(
            name, address, lambda: self.work.users.authenticate(name, password or "")
        )
        token = secrets.token_urlsafe(32)
        now = utcnow()
        self.work.session.add(
            SignInSession(
                token_hash=token_hash(token),
                user_id=user.id,
                epoch=user.session_epoch,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
                expires_at=now + self.lifetime,
                address=(address or None) and address[:64],
                user_agent=(user_agent or None) and user_agent[:300],
            )
        )
        user.last_login_at = now
        self.work.audit("user", user.id, "sign_in", {"address": [None, address]})
        return user, token

    def check_password(self, user: User, password: str, *, address: str | None = None) -> None:
        """Check a signed-in user's password again (before changing it, say), throttled and
        counted exactly like a sign-in; raises :class:`SignInRefused` when it is wrong or
        when there were too many failures."""
        name = user.username
        self._throttled(name, address, lambda: self.work.users.authenticate(name, password or ""))

    def _throttled(self, name: str, address: str | None, check: Callable[[], User | None]) -> User:
        """Run ``check`` (a password check) unless the account or the address failed too often.

        The attempt is counted *before* the check, so parallel attempts cannot all pass the
        limit together; it stays counted when the check fails, and is withdrawn when it is
        refused unchecked or succeeds (success also forgets the account's failures).
        """
        throttle = self.throttle
        account_key = f"account:{name.casefold()}"
        address_key = f"address:{address or '-'}"
        keys = [account_key, address_key]
        attempt = throttle.attempt(keys, self.window)
        if (
            attempt.counts[account_key] > self.max_account
            or attempt.counts[address_key] > self.max_address
        ):
            throttle.withdraw(attempt, keys)
            minutes = int(self.window.total_seconds() // 60)
            raise SignInRefused(
                "too many failed sign-in attempts; try again later", retry_after=minutes * 60
            )
        try:
            user = check()
        except BaseException:
            throttle.withdraw(attempt, keys)  # not a failed password: an error on the way
            raise
        if user is None:
            raise SignInRefused("wrong username or password")
        throttle.withdraw(attempt, [address_key])
        throttle.clear(account_key)
        return user

    def resume(self, token: str) -> ResumedSession | None:
        """The live session of a token, or ``None`` (unknown, expired, ended, user blocked)."""
        from crmkit.access.cache import Stamp, generation_column

        if not token:
            return None
        now = utcnow()
        row = self.work.session.execute(
            select(SignInSession, User, generation_column().label("generation"))
            .join(User, User.id == SignInSession.user_id)
            .where(
                SignInSession.token_hash == token_hash(token),
                SignInSession.expires_at > now,
                SignInSession.epoch == User.session_epoch,
                User.blocked.is_(False),
            )
        ).first()
        if row is None:
            return None
        session, user, generation = row
        extended = now - session.last_seen_at > TOUCH_EVERY
        if extended:
            session.last_seen_at = now
            session.expires_at = now + self.lifetime
        # the actor kept by this process, unless anything shaping access changed since
        # (the stamp is read in this very query: no change is ever missed)
        stamp = Stamp(user.session_epoch, user.updated_at, generation)
        actor = self.work.crm.actors.actor(user.id, stamp)
        return ResumedSession(session.id, session.csrf_token, user, actor, extended)

    def end(self, token: str) -> None:
        """Sign out this browser."""
        self.work.session.execute(
            delete(SignInSession).where(SignInSession.token_hash == token_hash(token))
        )

    def end_everywhere(self, user_id: int) -> None:
        """Sign a user out of every browser, in every process (bumps ``session_epoch``), and
        revoke their API tokens: nothing signed in as them is left."""
        user = self.work.users.get(user_id)
        user.session_epoch += 1
        self.work.session.execute(delete(SignInSession).where(SignInSession.user_id == user_id))
        self.work.audit("user", user_id, "sign_out_everywhere", {})
        self.work.api_tokens.revoke_all(user=user)

    def sessions_of(self, user_id: int) -> list[SignInSession]:
        """A user's open sessions, newest first."""
        return list(
            self.work.session.scalars(
                select(SignInSession)
                .where(SignInSession.user_id == user_id, SignInSession.expires_at > utcnow())
                .order_by(SignInSession.last_seen_at.desc())
            )
        )
