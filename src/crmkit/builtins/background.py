"""Built-in plugin: background work (outbox handlers, worker settings, ``crmkit worker``
and ``crmkit jobs``)."""

from __future__ import annotations

from typing import Any

from crmkit.config import Setting
from crmkit.jobs import Job, OutboxHandler, Schedule
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
            minimum=0,
        ),
        Setting(
            "queue.tick_seconds",
            float,
            0.25,
            "How often each worker's ticker checks schedules and due reminders.",
            above=0,
        ),
        Setting(
            "queue.watchers",
            bool,
            True,
            "Run the plugins' watchers (long-lived connections such as a mailbox's IMAP "
            "IDLE) in every worker; each is run by one worker at a time.",
        ),
        Setting(
            "queue.watcher_lease_seconds",
            float,
            30.0,
            "How long a worker holds a watcher's lease without renewing it (every third of "
            "this); the watchers of a killed worker start elsewhere after this.",
            above=0,
        ),
        Setting(
            "queue.watcher_retry_max_seconds",
            float,
            300.0,
            "Longest wait before a failing watcher is started again (the wait starts at "
            "one second and doubles after each failure).",
            above=0,
        ),
        Setting(
            "outbox.lease_seconds",
            float,
            60.0,
            "How long a worker holds a claimed outbox item; a killed worker's item is "
            "delivered again after this.",
            above=0,
        ),
        Setting(
            "outbox.retry_base_seconds",
            float,
            10.0,
            "Delay after the first failed delivery; doubled after each further failure "
            "(with jitter); at most outbox.retry_max_seconds.",
            minimum=0,
            at_most="outbox.retry_max_seconds",
        ),
        Setting(
            "outbox.retry_max_seconds",
            float,
            3600.0,
            "Longest delay between two delivery attempts.",
            minimum=0,
        ),
        Setting(
            "outbox.sweep_seconds",
            int,
            5,
            "How often (across all workers) the outbox is swept for items whose wake-up was lost.",
            minimum=1,
        ),
        Setting(
            "reminders.escalate_after_minutes",
            float,
            60.0,
            "Minutes after which an overdue task, or a fired reminder nobody dealt with, is "
            "raised to the responsible person's manager.",
            above=0,
        ),
        Setting(
            "webhook.timeout_seconds",
            float,
            10.0,
            "Timeout of one webhook call (connect and read).",
            above=0,
        ),
    ]


@hookimpl
def crmkit_register_outbox_handlers() -> list[OutboxHandler]:
    from crmkit.automation.engine import KIND, run_queued
    from crmkit.jobs.handlers import CORE_HANDLERS

    return [
        *CORE_HANDLERS,
        OutboxHandler(KIND, run_queued, "Run an automation rule as the assistant."),
    ]


@hookimpl
def crmkit_register_commands(cli: Any) -> None:
    from crmkit.jobs.cli import jobs, worker

    cli.add_command(worker)
    cli.add_command(jobs)


@hookimpl
def crmkit_register_jobs() -> list[Job]:
    from crmkit.automation.engine import scan_clock
    from crmkit.jobs.reminders import raise_overdue

    return [
        Job(
            "crmkit.overdue",
            raise_overdue,
            description="Tell assignees about overdue tasks; raise late ones to managers.",
        ),
        Job(
            "crmkit.automation.clock",
            scan_clock,
            description="Queue automation rules due by time (before bookings, idle clients).",
        ),
    ]


@hookimpl
def crmkit_register_schedules() -> list[Schedule]:
    return [
        Schedule("crmkit.overdue", "crmkit.overdue", every_seconds=30, lease_seconds=300),
        Schedule(
            "crmkit.automation.clock",
            "crmkit.automation.clock",
            every_seconds=60,
            lease_seconds=300,
        ),
    ]


@hookimpl
def crmkit_handle_event(event: Any, work: Any) -> None:
    from crmkit.automation.engine import on_event

    on_event(event, work)


@hookimpl
def crmkit_configure(crm: Any) -> None:
    from crmkit.jobs.reminders import fire_due_reminders

    crm.tickers.append(fire_due_reminders)


@hookimpl
def crmkit_register_screens() -> list[Any]:
    from crmkit.web.contributions import Screen
    from crmkit.web.screens import background

    return [
        Screen(
            "admin_dead_letters",
            "/admin/dead-letters",
            "Failed deliveries",
            background.dead_letters,
            permission=("outbox_item", "read"),
            methods=("GET", "POST"),
        ),
        Screen(
            "admin_automation",
            "/admin/automation",
            "Automation",
            background.rules,
            permission=("automation_rule", "read"),
            methods=("GET", "POST"),
        ),
    ]


@hookimpl
def crmkit_register_menu_items() -> list[Any]:
    from crmkit.web.contributions import MenuItem

    return [
        MenuItem("Automation", "admin_automation", order=91, icon="🤖"),
        MenuItem("Failed deliveries", "admin_dead_letters", order=92, icon="⚠"),
    ]
