"""Mass mailings (filled in below)."""

from __future__ import annotations

from typing import Any


class Campaigns:
    def __init__(self, work: Any) -> None:
        self.work = work


def run_campaign_job(crm: Any, campaign_id: int) -> None:
    raise NotImplementedError
