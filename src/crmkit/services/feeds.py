"""Secret addresses of users' read-only iCalendar feeds.

Only the SHA-256 of a feed token is stored: the address is shown once, when it is made, and
making a new one retires the old.  Reading a feed acts as its user, so it shows exactly the
events the user may see.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import select

from crmkit.clock import utcnow
from crmkit.model import CalendarFeed, User
from crmkit.services.signin import token_hash

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


class CalendarFeedService:
    """Creating feed tokens and finding whose feed a token opens."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def renew(self) -> str:
        """A new feed token for the actor (the previous one stops working)."""
        user_id = self.work.actor.user_id
        if user_id is None:
            raise LookupError("the system actor has no calendar feed")
        token = secrets.token_urlsafe(32)
        feed = self.work.session.get(CalendarFeed, user_id)
        if feed is None:
            feed = CalendarFeed(user_id=user_id)
            self.work.session.add(feed)
        feed.token_hash = token_hash(token)
        feed.created_at = utcnow()
        self.work.audit("user", user_id, "calendar_feed", {"feed": [None, "renewed"]})
        return token

    def created_at(self) -> dt.datetime | None:
        """When the actor's current feed address was made (``None``: there is none)."""
        feed = self.work.session.get(CalendarFeed, self.work.actor.user_id)
        return feed.created_at if feed else None

    def owner_of(self, token: str) -> int | None:
        """The (unblocked) user whose feed ``token`` opens, if any."""
        if not token:
            return None
        return self.work.session.scalar(
            select(User.id)
            .join(CalendarFeed, CalendarFeed.user_id == User.id)
            .where(CalendarFeed.token_hash == token_hash(token), User.blocked.is_(False))
        )
