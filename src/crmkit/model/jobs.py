"""Tables of background work: the state of periodic schedules.

Outbox items live in :mod:`crmkit.model.system`; this module holds what the workers need
to agree on among themselves, kept in the database so that no process memory matters.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.model.base import Base


class JobSchedule(Base):
    """Where one periodic schedule stands: its last run slot and who is running it now.

    ``last_slot`` is the start (epoch seconds) of the last slot a run was started for.  A
    worker starts a run only by one conditional ``UPDATE`` that moves ``last_slot``
    forward while nobody holds an unexpired lease (``lease_until``), so two workers never
    run one schedule at once and a run killed midway frees the schedule when its lease ends.
    """

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_slot: Mapped[int] = mapped_column(BigInteger, default=0)
    holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column()
    last_started_at: Mapped[dt.datetime | None] = mapped_column()
    last_finished_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
