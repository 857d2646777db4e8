"""crmkit-booking: the booking journal (entry point ``crmkit: booking``)."""

from crmkit_booking.services import BOOKING_CANCELLED, BOOKING_MADE, booking

__all__ = ["BOOKING_CANCELLED", "BOOKING_MADE", "booking"]
