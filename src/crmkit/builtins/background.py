"""Built-in plugin: background work (outbox handlers, worker settings, ``crmkit worker``
and ``crmkit jobs``)."""

from __future__ import annotations

from typing import Any

from crmkit.config import Setting
from crmkit.jobs import OutboxHandler
from crmkit.plugins import hookimpl


@hookimpl
def crmkit_register_settings() -> list[Setting]:
    return [
        Setting(
            "queue.embedded_workers",
            int,
            2,
            "Worker threads `crmkit serve` runs in the web process (0: none; run "
            "`crmkit worker` processes instead).",
        ),
        Setting(
            "queue.tick_seconds",
            float,
            0.25,
            "How often each worker's ticker checks schedules and due reminders.",
        ),
        Setting(
            "outbox.lease_seconds",
            float,
            60.0,
            "How long a worker holds a claimed outbox item; a killed worker's item is "
            "delivered again after this.",
        ),
        Setting(
            "outbox.retry_base_seconds",
            float,
            10.0,
            "Delay after the first failed delivery; doubled after each further failure "
            "(with jitter).",
        ),
        Setting(
            "outbox.retry_max_seconds",
            float,
            3600.0,
            "Longest delay between two delivery attempts.",
        ),
        Setting(
            "outbox.sweep_seconds",
            int,
            5,
            "How often (across all workers) the outbox is swept for items whose wake-up was lost.",
        ),
        Setting(
            "webhook.timeout_seconds",
            float,
            10.0,
            "Timeout of one webhook call (connect and read).",
        ),
    ]


@hookimpl
def crmkit_register_outbox_handlers() -> list[OutboxHandler]:
    from crmkit.jobs.handlers import CORE_HANDLERS

    return list(CORE_HANDLERS)


@hookimpl
def crmkit_register_commands(cli: Any) -> None:
    from crmkit.jobs.cli import jobs, worker

    cli.add_command(worker)
    cli.add_command(jobs)
