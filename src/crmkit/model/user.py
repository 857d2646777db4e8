"""Staff: users, their roles and teams, and the permission table that access rules read."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crmkit.model.base import Base, IdMixin, IdType, TimestampMixin, user_fk


class User(IdMixin, TimestampMixin, Base):
    """A person who signs in.  Blocking bumps ``session_epoch``, which ends every session."""

    username: Mapped[str] = mapped_column(String(150), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str | None] = mapped_column(String(255), info={"private": True})
    locale: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, info={"private": True})
    manager_id: Mapped[int | None] = user_fk()
    last_login_at: Mapped[dt.datetime | None] = mapped_column()

    roles: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )

    @property
    def role_names(self) -> frozenset[str]:
        """Names of the roles this user holds."""
        return frozenset(r.role for r in self.roles)

    @property
    def label(self) -> str:
        """How the user is shown: the display name, else the username."""
        return self.display_name or self.username


class UserRole(Base):
    """A role held by a user (a user may hold several; the widest scope wins)."""

    user_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Team(IdMixin, Base):
    """A group of users; the ``team`` scope shows a member what any member owns."""

    name: Mapped[str] = mapped_column(String(200), unique=True)
    lead_id: Mapped[int | None] = user_fk()


class TeamMember(Base):
    """Membership of a user in a team."""

    team_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("team.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class RoleDefinition(Base):
    """A role as stored: seeded from ``crmkit_register_roles``, editable by an admin."""

    __tablename__ = "role"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    start_screen: Mapped[str | None] = mapped_column(String(200))


class PermissionRule(IdMixin, Base):
    """One cell of the role x entity x action table, with the record scope it grants.

    ``source`` is ``plugin`` for rows seeded from hooks and ``admin`` once an admin edited
    them; seeding never overwrites an admin's choice.
    """

    __tablename__ = "permission"
    __table_args__ = (UniqueConstraint("role", "entity", "action"),)

    role: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default="plugin")


class GroupGrant(IdMixin, Base):
    """Opens the ``group`` scope of a user or role to a group's parties (subgroups included)."""

    __table_args__ = (Index("ix_group_grant_user_role", "user_id", "role"),)

    group_id: Mapped[int] = mapped_column(IdType, ForeignKey("party_group.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("user.id", ondelete="CASCADE"))
    role: Mapped[str | None] = mapped_column(String(64))


class SignInSession(IdMixin, Base):
    """A signed-in browser: the server side of a session cookie.

    The cookie carries a random token (signed); only its SHA-256 is stored, so a leaked
    table cannot be replayed.  A session is valid while its ``epoch`` equals the user's
    ``session_epoch``: blocking the user, changing their roles or password bumps the epoch
    and ends every session at once, in every process.
    """

    __tablename__ = "signin_session"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    epoch: Mapped[int] = mapped_column(Integer)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column()
    last_seen_at: Mapped[dt.datetime] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class LoginFailure(IdMixin, Base):
    """A sign-in attempt (failed, or being checked), counted per account and per address by
    the login throttle."""

    __table_args__ = (Index("ix_login_failure_key_at", "key", "at"),)

    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column()


class CalendarFeed(Base):
    """The secret token of a user's read-only iCalendar feed (only its hash is kept)."""

    user_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column()
