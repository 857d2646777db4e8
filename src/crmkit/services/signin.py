"""Signing in and out: password checks with throttling, server-side sessions, sign-out everywhere.

A session is a row in ``signin_session`` keyed by the SHA-256 of a random token; the browser
holds the token in a signed cookie.  Every request resumes the session with one query that
also checks the user: a blocked user, or one whose ``session_epoch`` moved on (roles or
password changed, "sign out everywhere"), has no session any more, in every process at once.

Failed sign-ins are counted per account and per address, in the database or in Redis when
``queue.url`` names a Redis server; never in process memory, so several web processes
throttle together.  Passwords are never logged, stored or put in an error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
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
    """A live session: its id, the CSRF token of its forms, its user and their actor."""

    session_id: int
    csrf_token: str
    user: User
    actor: Actor


class DatabaseThrottle:
    """Failed sign-ins counted in the ``login_failure`` table."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def failures(self, key: str, since: dt.datetime) -> int:
        """Failures recorded for ``key`` since a time."""
        return int(
            self.work.session.scalar(
                select(func.count())
                .select_from(LoginFailure)
                .where(LoginFailure.key == key, LoginFailure.at >= since)
            )
            or 0
        )

    def record(self, keys: list[str], window: dt.timedelta) -> None:
        """Count one failure for each key (and forget failures older than the window)."""
        now = utcnow()
        for key in keys:
            self.work.session.add(LoginFailure(key=key, at=now))
        self.work.session.execute(delete(LoginFailure).where(LoginFailure.at < now - window * 2))

    def clear(self, key: str) -> None:
        """Forget the failures of ``key`` (after a successful sign-in)."""
        self.work.session.execute(delete(LoginFailure).where(LoginFailure.key == key))


class RedisThrottle:
    """Failed sign-ins counted in Redis: one counter per key, expiring with the window."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    def _name(self, key: str) -> str:
        return f"{self.namespace}:login-failures:{key}"

    def failures(self, key: str, since: dt.datetime) -> int:
        """Failures counted for ``key`` in the current window."""
        return int(self.client.get(self._name(key)) or 0)

    def record(self, keys: list[str], window: dt.timedelta) -> None:
        """Count one failure for each key; a counter lives one window after its last failure."""
        pipe = self.client.pipeline()
        for key in keys:
            pipe.incr(self._name(key))
            pipe.expire(self._name(key), int(window.total_seconds()))
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
        """Where failures are counted: Redis when the deployment has one, else the database."""
        client = self.work.crm.redis
        if client is not None:
            return RedisThrottle(client, self.work.crm.namespace)
        return DatabaseThrottle(self.work)

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
        throttle = self.throttle
        name = (username or "").strip()
        account_key = f"account:{name.casefold()}"
        address_key = f"address:{address or '-'}"
        since = utcnow() - self.window
        minutes = int(self.window.total_seconds() // 60)
        if (
            throttle.failures(account_key, since) >= self.max_account
            or throttle.failures(address_key, since) >= self.max_address
        ):
            raise SignInRefused(
                "too many failed sign-in attempts; try again later", retry_after=minutes * 60
            )
        user = self.work.users.authenticate(name, password or "")
        if user is None:
            self._record_failure([account_key, address_key])
            raise SignInRefused("wrong username or password")
        throttle.clear(account_key)
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

    def _record_failure(self, keys: list[str]) -> None:
        # in a transaction of its own: the refusal rolls this unit of work back, the count stays
        if self.work.crm.redis is not None:
            self.throttle.record(keys, self.window)
            return
        with self.work.crm.system() as other:
            DatabaseThrottle(other).record(keys, self.window)

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
        if now - session.last_seen_at > TOUCH_EVERY:
            session.last_seen_at = now
            session.expires_at = now + self.lifetime
        # the actor kept by this process, unless anything shaping access changed since
        # (the stamp is read in this very query: no change is ever missed)
        stamp = Stamp(user.session_epoch, user.updated_at, generation)
        actor = self.work.crm.actors.actor(user.id, stamp)
        return ResumedSession(session.id, session.csrf_token, user, actor)

    def end(self, token: str) -> None:
        """Sign out this browser."""
        self.work.session.execute(
            delete(SignInSession).where(SignInSession.token_hash == token_hash(token))
        )

    def end_everywhere(self, user_id: int) -> None:
        """Sign a user out of every browser, in every process (bumps ``session_epoch``)."""
        user = self.work.users.get(user_id)
        user.session_epoch += 1
        self.work.session.execute(delete(SignInSession).where(SignInSession.user_id == user_id))
        self.work.audit("user", user_id, "sign_out_everywhere", {})

    def sessions_of(self, user_id: int) -> list[SignInSession]:
        """A user's open sessions, newest first."""
        return list(
            self.work.session.scalars(
                select(SignInSession)
                .where(SignInSession.user_id == user_id, SignInSession.expires_at > utcnow())
                .order_by(SignInSession.last_seen_at.desc())
            )
        )
