"""Staff accounts: creation, roles, teams, passwords and blocking.

Passwords are hashed with argon2 and never stored, logged or returned.  Blocking a user
bumps their ``session_epoch``: every session signed with the old epoch stops working at
once, in every process, because sessions are checked against the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from marshmallow import ValidationError
from sqlalchemy import delete, select

from crmkit.errors import ConfigError, NotFound, ValidationFailed
from crmkit.model import Team, TeamMember, User, UserRole
from crmkit.schemas import UserSchema

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


def password_hasher(profile: str) -> PasswordHasher:
    """An argon2id hasher with the parameters of ``profile`` (a name in ``argon2.profiles``)."""
    parameters = getattr(profiles, profile.upper(), None)
    if parameters is None:
        raise ConfigError(f"security.argon2_profile: unknown argon2 profile {profile!r}")
    return PasswordHasher.from_parameters(parameters)


def verify_password(hasher: PasswordHasher, stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (``False`` for a user without a password)."""
    if not stored_hash:
        # spend the same time as a real check so that timing does not reveal the account
        hasher.hash(password)
        return False
    try:
        return hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class UserService:
    """Managing users (the ``user`` entity's permissions apply)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    @property
    def session(self) -> Any:
        return self.work.session

    @property
    def hasher(self) -> PasswordHasher:
        return self.work.crm.password_hasher

    def get(self, user: int | str | User) -> User:
        """A user by id, username or instance (any staff member may look colleagues up)."""
        if isinstance(user, User):
            user = user.id
        if isinstance(user, int):
            found = self.session.get(User, user)
        else:
            found = self.session.scalar(select(User).where(User.username == user))
        if found is None:
            raise NotFound("user", user)
        return found

    def list(
        self, *, role: str | None = None, team: str | None = None, include_blocked: bool = True
    ) -> list[User]:
        """Users ordered by username, optionally only those holding ``role`` or in the team
        named ``team`` (and not blocked, without ``include_blocked``)."""
        statement = select(User)
        if role:
            statement = statement.join(UserRole, UserRole.user_id == User.id).where(
                UserRole.role == role
            )
        if team:
            statement = (
                statement.join(TeamMember, TeamMember.user_id == User.id)
                .join(Team, Team.id == TeamMember.team_id)
                .where(Team.name == team)
            )
        if not include_blocked:
            statement = statement.where(User.blocked.is_(False))
        return list(self.session.scalars(statement.order_by(User.username)))

    def create(self, data: dict[str, Any] | None = None, **values: Any) -> User:
        """Add a user with roles and (optionally) a password."""
        self.work.access.require("user", "create")
        try:
            loaded = UserSchema().load({**(data or {}), **values})
        except ValidationError as exc:
            raise ValidationFailed(exc.messages, entity="user") from None  # type: ignore[arg-type]
        if self.session.scalar(select(User.id).where(User.username == loaded["username"])):
            raise ValidationFailed({"username": [f"{loaded['username']} is taken"]})
        roles = loaded.pop("roles", [])
        self._check_roles(roles)
        password = loaded.pop("password", None)
        user = User(**loaded)
        if password:
            user.password_hash = self.hasher.hash(password)
        user.roles = [UserRole(role=r) for r in dict.fromkeys(roles)]
        self.session.add(user)
        self.work.flush()
        self.work.audit(
            "user",
            user.id,
            "create",
            {"username": [None, user.username], "roles": [None, sorted(roles)]},
        )
        return user

    def _check_roles(self, roles: Iterable[str]) -> None:
        known = self.work.crm.roles
        unknown = [r for r in roles if r not in known]
        if unknown:
            raise ValidationFailed(
                {"roles": [f"unknown role {unknown[0]!r} (known: {', '.join(sorted(known))})"]}
            )

    def update(self, user: int | str | User, **values: Any) -> User:
        """Change a user's profile fields (not the password, see :meth:`set_password`)."""
        target = self.get(user)
        own_profile = target.id == self.work.actor.user_id and set(values) <= {
            "display_name",
            "email",
            "phone",
            "locale",
            "timezone",
        }
        if not own_profile:
            self.work.access.require("user", "update")
        values.pop("username", None)
        try:
            loaded = UserSchema(partial=True).load(values)
        except ValidationError as exc:
            raise ValidationFailed(exc.messages, entity="user") from None  # type: ignore[arg-type]
        changes: dict[str, Any] = {}
        roles = loaded.pop("roles", None)
        if "password" in loaded:
            raise ValidationFailed({"password": ["use set_password"]})
        for key, new in loaded.items():
            old = getattr(target, key)
            if old != new:
                changes[key] = [old, new]
                setattr(target, key, new)
        if roles is not None:
            self.work.access.require("user", "update")
            self._check_roles(roles)
            before = sorted(target.role_names)
            if before != sorted(set(roles)):
                target.roles = [UserRole(role=r) for r in dict.fromkeys(roles)]
                target.session_epoch += 1  # new rights take effect everywhere at once
                changes["roles"] = [before, sorted(set(roles))]
        if changes:
            self.work.flush()
            self.work.audit("user", target.id, "update", changes)
        return target

    def set_password(self, user: int | str | User, password: str) -> User:
        """Set a new password; every session of the user ends and their API tokens are
        revoked (whoever knew the old password may have made one)."""
        target = self.get(user)
        if target.id != self.work.actor.user_id:
            self.work.access.require("user", "update")
        if len(password) < 8:
            raise ValidationFailed({"password": ["at least 8 characters"]})
        target.password_hash = self.hasher.hash(password)
        target.session_epoch += 1
        self.work.audit("user", target.id, "password", {"password": ["***", "***"]})
        self.work.api_tokens.revoke_all(user=target)
        return target

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches and the account is not blocked, else ``None``."""
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None:
            verify_password(self.hasher, None, password)
            return None
        if not verify_password(self.hasher, user.password_hash, password) or user.blocked:
            return None
        if self.hasher.check_needs_rehash(user.password_hash or ""):
            user.password_hash = self.hasher.hash(password)
        return user

    def block(self, user: int | str | User, reason: str = "") -> User:
        """Block a user: they cannot sign in and lose every open session at once."""
        self.work.access.require("user", "block")
        target = self.get(user)
        if target.id == self.work.actor.user_id:
            raise ValidationFailed({"user": ["you cannot block yourself"]})
        if not target.blocked:
            target.blocked = True
            target.session_epoch += 1
            self.work.audit(
                "user",
                target.id,
                "block",
                {"blocked": [False, True], "reason": [None, reason or None]},
            )
        return target

    def unblock(self, user: int | str | User) -> User:
        """Let a blocked user sign in again."""
        self.work.access.require("user", "block")
        target = self.get(user)
        if target.blocked:
            target.blocked = False
            self.work.audit("user", target.id, "unblock", {"blocked": [True, False]})
        return target

    # -- teams -------------------------------------------------------------------------

    def create_team(
        self, name: str, members: Sequence[int] = (), lead_id: int | None = None
    ) -> Team:
        """A team with its members."""
        self.work.access.require("team", "create")
        if not name.strip():
            raise ValidationFailed({"name": ["a team needs a name"]})
        if self.session.scalar(select(Team.id).where(Team.name == name.strip())):
            raise ValidationFailed({"name": [f"team {name} exists"]})
        team = Team(name=name.strip(), lead_id=lead_id)
        self.session.add(team)
        self.work.flush()
        for user_id in dict.fromkeys(members):
            self.get(user_id)
            self.session.add(TeamMember(team_id=team.id, user_id=user_id))
        self.work.audit(
            "team", team.id, "create", {"name": [None, team.name], "members": [None, list(members)]}
        )
        return team

    def set_team_members(self, team_id: int, members: Sequence[int]) -> None:
        """Replace a team's members."""
        self.work.access.require("team", "update")
        team = self.session.get(Team, team_id)
        if team is None:
            raise NotFound("team", team_id)
        before = sorted(
            self.session.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team_id))
        )
        self.session.execute(delete(TeamMember).where(TeamMember.team_id == team_id))
        for user_id in dict.fromkeys(members):
            self.get(user_id)
            self.session.add(TeamMember(team_id=team_id, user_id=user_id))
        self.work.audit("team", team_id, "update", {"members": [before, sorted(set(members))]})

    def teams(self) -> list[Team]:
        """Every team, by name."""
        return list(self.session.scalars(select(Team).order_by(Team.name)))

    def team_members(self, team_id: int) -> list[User]:
        """Users in a team."""
        return list(
            self.session.scalars(
                select(User)
                .join(TeamMember, TeamMember.user_id == User.id)
                .where(TeamMember.team_id == team_id)
                .order_by(User.username)
            )
        )
