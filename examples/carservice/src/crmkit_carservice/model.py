"""The car service's own tables: clients' cars, and which car an order is for.

They join the core ``party`` and the finance plugin's ``finance_order`` by foreign key.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.model import Base, IdMixin, IdType, TimestampMixin


class CarserviceCar(IdMixin, TimestampMixin, Base):
    """A client's car.  ``plate_key`` is the plate folded by :func:`crmkit.identity.plate_key`
    (Cyrillic and Latin look-alikes, spaces and case), what the plate search looks up; it is
    unique: a plate is one car."""

    __table_args__ = (Index("ix_carservice_car_plate_key", "plate_key", unique=True),)

    party_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("party.id", ondelete="CASCADE"), index=True
    )
    plate: Mapped[str] = mapped_column(String(20))
    plate_key: Mapped[str] = mapped_column(String(20))
    make: Mapped[str] = mapped_column(String(100), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    vin: Mapped[str | None] = mapped_column(String(17))
    year: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")


class CarserviceOrderCar(IdMixin, Base):
    """The car an order is for (at most one per order), with the mileage on intake."""

    order_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("finance_order.id", ondelete="CASCADE"), unique=True
    )
    car_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("carservice_car.id", ondelete="CASCADE"), index=True
    )
    mileage: Mapped[int | None] = mapped_column(Integer)
