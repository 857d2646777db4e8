"""Resources (specialists, bays, rooms) that events and bookings hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from crmkit.clock import utcnow
from crmkit.db import lock_row
from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit.model import CalendarEvent, Resource
from crmkit.services.records import EntityService


class ResourceService(EntityService):
    """A resource holding upcoming events is not deleted.

    An event's ``resource_id`` is ``SET NULL`` when its resource goes, which would unlink
    the bookings still to come silently: the clients booked for next week would vanish
    from the journal and still arrive.  Deleting is refused while any live (not
    cancelled) event of the resource has not ended; past ones keep their times without
    it.
    """

    def delete(self, record: Any) -> None:
        resource = self.get(record, action="delete")
        # held like a booking holds it: a booking made meanwhile is counted, or waits
        lock_row(self.session, Resource, resource.id)
        upcoming = self.session.scalar(
            select(func.count())
            .select_from(CalendarEvent)
            .where(
                CalendarEvent.resource_id == resource.id,
                CalendarEvent.status != "cancelled",
                CalendarEvent.ends_at > utcnow(),
            )
        )
        if upcoming:
            raise ValidationFailed(
                {
                    "_schema": [
                        message(
                            "{resource} holds {count} upcoming events: move or cancel them first",
                            resource=resource.name,
                            count=upcoming,
                        )
                    ]
                },
                entity="resource",
            )
        super().delete(resource)


__all__ = ["ResourceService"]
