"""Personal API tokens: create, list, revoke, and recognise one on a request.

A token's secret is ``crmkit_`` followed by 43 URL-safe characters (256 random bits).  It is
shown once, when created; the database keeps its SHA-256 digest and its first characters.
Anyone manages their own tokens; managing someone else's needs the ``update`` permission on
users (an admin).  A token of a blocked user stops working on the very next request, and a
revoked or expired one is refused for good.  Changing a user's password or signing them out
everywhere revokes their tokens; a token made with a token expires no later than it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from functools import cache
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Engine

from crmkit.access.cache import Stamp, stamp_columns
from crmkit.clock import utcnow
from crmkit.db import read_only_connection
from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import Moment, message
from crmkit.model import ApiToken, User

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

SECRET_PREFIX = "crmkit_"
#: Characters of the secret kept in clear to tell tokens apart (``crmkit_`` + 5).
SHOWN_CHARACTERS = 12
#: ``last_used_at`` is written at most this often per token (a write per request would cost).
LAST_USED_PRECISION = dt.timedelta(minutes=5)
#: How a refusal of ``expires_at`` names it to a reader: the token's (the bare word is a
#: cashback's expiry in the finance plugin's catalog).
TOKEN_EXPIRY = {"expires_at": message("token expiry")}


def digest(secret: str) -> str:
    """The stored form of a token secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@attrs.frozen
class IssuedToken:
    """A token just created: its row and the secret, which is never shown again."""

    token: ApiToken
    secret: str


@attrs.frozen
class TokenOwner:
    """Who a valid bearer token acts as (``user_id``), and which token it was."""

    token_id: int
    user_id: int
    stamp: Stamp
    needs_touch: bool = False
    #: when the token expires (``None``: never); a token it makes expires no later
    expires_at: dt.datetime | None = None


class ApiTokenService:
    """Managing personal API tokens inside a unit of work."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    @property
    def session(self) -> Any:
        return self.work.session

    def _owner(self, user: int | str | User | None) -> User:
        """The user whose tokens are managed: the actor unless ``user`` names another one."""
        actor_id = self.work.actor.user_id
        if user is None:
            if actor_id is None:
                raise ValidationFailed(
                    {"user": [message("the system has no tokens of its own; name a user")]}
                )
            return self.work.users.get(actor_id)
        target = self.work.users.get(user)
        if target.id != actor_id:
            self.work.access.require("user", "update")
        return target

    def create(
        self,
        name: str,
        *,
        user: int | str | User | None = None,
        expires_at: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedToken:
        """A new token for ``user`` (default: the actor), named so its owner recognises it.

        ``not_after`` caps its life: a token made through the API with a bearer token
        expires no later than that token (without ``expires_at`` it takes that expiry, and
        a later one is refused), so a short-lived token cannot make a lasting one.
        """
        owner = self._owner(user)
        label = (name or "").strip()
        if not label:
            raise ValidationFailed({"name": [message("give the token a name (what is it for?)")]})
        if len(label) > 200:
            raise ValidationFailed({"name": [message("at most 200 characters")]})
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise ValidationFailed(
                    {"expires_at": [message("give a time with its time zone")]},
                    labels=TOKEN_EXPIRY,
                )
            if expires_at <= utcnow():
                refusal = {"expires_at": [message("must be in the future")]}
                raise ValidationFailed(refusal, labels=TOKEN_EXPIRY)
        if not_after is not None:
            if expires_at is None:
                expires_at = not_after
            elif expires_at > not_after:
                # the limit is a moment: a reader sees it at their own hours
                limit = Moment(not_after)
                refused = message("at most {limit}, when the token making it expires", limit=limit)
                raise ValidationFailed(
                    {"expires_at": [refused]},
                    labels=TOKEN_EXPIRY,
                )
        if owner.blocked:
            raise ValidationFailed(
                {"user": [message("user {user} is blocked", user=owner.username)]}
            )
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(
            user_id=owner.id,
            name=label,
            prefix=secret[:SHOWN_CHARACTERS],
            secret_hash=digest(secret),
            created_at=utcnow(),
            expires_at=expires_at,
            created_by_id=self.work.actor.user_id,
        )
        self.session.add(token)
        self.work.flush()
        self.work.audit(
            "api_token", token.id, "create", {"name": [None, label], "user_id": [None, owner.id]}
        )
        return IssuedToken(token, secret)

    def list(
        self, *, user: int | str | User | None = None, include_revoked: bool = False
    ) -> list[ApiToken]:
        """A user's tokens (default: the actor's), newest first."""
        owner = self._owner(user)
        statement = select(ApiToken).where(ApiToken.user_id == owner.id)
        if not include_revoked:
            statement = statement.where(ApiToken.revoked_at.is_(None))
        return list(self.session.scalars(statement.order_by(ApiToken.id.desc())))

    def get(self, token_id: int, *, owner_id: int | None = None) -> ApiToken:
        """One token the actor may manage (others' tokens are not found unless admin).

        With ``owner_id`` only a token of that user is found: a screen listing one user's
        tokens revokes no one else's, whatever id is posted to it.
        """
        token = self.session.get(ApiToken, token_id)
        if token is None:
            raise NotFound("api_token", token_id)
        if owner_id is not None and token.user_id != owner_id:
            raise NotFound("api_token", token_id)
        if token.user_id != self.work.actor.user_id and not self.work.access.can("user", "update"):
            raise NotFound("api_token", token_id)
        return token

    def revoke(self, token_id: int, *, owner_id: int | None = None) -> ApiToken:
        """Revoke a token for good; requests bearing it are refused from now on.

        ``owner_id``: only a token of that user (see :meth:`get`)."""
        token = self.get(token_id, owner_id=owner_id)
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            self.work.audit("api_token", token.id, "revoke", {"revoked_at": [None, "now"]})
        return token

    def revoke_all(self, *, user: int | str | User | None = None) -> int:
        """Revoke every live token of a user; returns how many.

        Done by a password change and by "sign out everywhere" (see
        :meth:`~crmkit.services.users.UserService.set_password`)."""
        tokens = self.list(user=user)
        for token in tokens:
            self.revoke(token.id)
        return len(tokens)


@cache
def _lookup() -> Any:
    """The token look-up, built once (constructing a statement costs more than running it)."""
    return (
        select(
            ApiToken.id,
            ApiToken.user_id,
            ApiToken.expires_at,
            ApiToken.revoked_at,
            ApiToken.last_used_at,
            User.blocked,
            *stamp_columns(),
        )
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.secret_hash == bindparam("digest"))
    )


def authenticate(
    engine: Engine, secret: str, *, now: dt.datetime | None = None
) -> TokenOwner | None:
    """The owner of a bearer token secret, or ``None`` when it is unknown or no longer valid.

    One indexed query (the token joined with its user): a blocked user, a revoked or an
    expired token all answer ``None``, so blocking takes effect on the very next request.
    The same query reads the user's access :class:`~crmkit.access.cache.Stamp`, which says
    whether an actor kept from an earlier request is still exact.
    """
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    moment = now or utcnow()
    # one statement, no transaction around it (no BEGIN/ROLLBACK round trips)
    with read_only_connection(engine) as connection:
        row = connection.execute(_lookup(), {"digest": digest(secret)}).first()
    if row is None or row.revoked_at is not None or row.blocked:
        return None
    if row.expires_at is not None and row.expires_at <= moment:
        return None
    stale = row.last_used_at is None or moment - row.last_used_at > LAST_USED_PRECISION
    stamp = Stamp(row.session_epoch, row.updated_at, row.generation)
    return TokenOwner(row.id, row.user_id, stamp, needs_touch=stale, expires_at=row.expires_at)


def touch(engine: Engine, token_id: int, *, now: dt.datetime | None = None) -> None:
    """Record that a token was used (callers do it only when ``needs_touch`` says so).

    ``last_used_at`` is kept to a few minutes' precision so that reading through the API
    does not turn every request into a write.
    """
    with engine.begin() as connection:
        connection.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now or utcnow())
        )
