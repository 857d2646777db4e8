"""Personal API tokens: bearer credentials a user creates for scripts and integrations.

Only a SHA-256 digest of the secret is stored (the secret is shown once, when created).
Tokens carry 256 bits of randomness, so a fast digest is enough: nothing can be guessed
from it, and looking a token up on every request stays one indexed point query.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.model.base import Base, IdMixin, IdType


class ApiToken(IdMixin, Base):
    """A bearer token acting as its user; revoked tokens are kept for the record.

    ``prefix`` is the first characters of the secret, shown in lists so that a user can
    tell tokens apart without the secret being stored.  A token of a blocked user is
    refused on every request, without being revoked (unblocking brings it back).
    """

    __table_args__ = (Index("ix_api_token_user", "user_id", "id"),)

    user_id: Mapped[int] = mapped_column(IdType, ForeignKey("user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, info={"private": True})
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    created_by_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="SET NULL")
    )
