"""Where records live in the UI: one place that knows the URL of a party, a record, a board."""

from __future__ import annotations

from typing import Any


def party_url(party_id: int) -> str:
    """The client card."""
    return f"/clients/{party_id}"


def record_url(entity: str, record_id: int) -> str:
    """The page of any record (the client card for parties)."""
    if entity == "party":
        return party_url(record_id)
    return f"/records/{entity}/{record_id}"


def notification_url(notification: Any) -> str:
    """Where clicking a notification leads: the record, else its client, else the list."""
    if notification.record_entity and notification.record_id:
        if notification.record_entity == "activity" and notification.party_id:
            return party_url(notification.party_id) + f"#activity-{notification.record_id}"
        return record_url(notification.record_entity, notification.record_id)
    if notification.party_id:
        return party_url(notification.party_id)
    return "/notifications"
