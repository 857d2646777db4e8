"""Where records live in the UI: one place that knows the URL of a party, a record, a board."""

from __future__ import annotations

from collections.abc import Container
from typing import Any


def party_url(party_id: int) -> str:
    """The client card."""
    return f"/clients/{party_id}"


def record_url(entity: str, record_id: int) -> str:
    """The page of any record (the client card for parties)."""
    if entity == "party":
        return party_url(record_id)
    return f"/records/{entity}/{record_id}"


def notification_url(notification: Any, clients: Container[int]) -> str:
    """Where clicking a notification leads: the record, else its client, else the list.

    ``clients`` are the clients the reader may read (``work.parties.find_many``): a
    notification about one they may not (a colleague's note they are mentioned in, a
    reminder they are a recipient of) leads to its record alone, never to that client's
    card, whose address would tell the client's id.
    """
    party_id = notification.party_id if notification.party_id in clients else None
    if notification.record_entity and notification.record_id:
        if notification.record_entity == "activity" and party_id:
            return party_url(party_id) + f"#activity-{notification.record_id}"
        return record_url(notification.record_entity, notification.record_id)
    if party_id:
        return party_url(party_id)
    if notification.record_entity:  # many records given at once: the user's own ones
        return f"/lists/{notification.record_entity}?owner_id={notification.user_id}"
    return "/notifications"


def notification_text(notification: Any) -> str:
    """A notification's text in the current language (:func:`crmkit.web.i18n.activate`):
    its message translated when it has one, else the text as written."""
    from crmkit.i18n import Message
    from crmkit.web import i18n

    if not notification.message:
        return str(notification.text)
    locale = i18n.current()
    return Message.from_json(notification.message).translate(
        i18n.gettext, locale.zone if locale else None
    )
