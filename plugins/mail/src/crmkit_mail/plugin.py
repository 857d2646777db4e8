"""Hook implementations of the mail plugin (entry point ``crmkit: mail``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crmkit import (
    AddressKind,
    Capability,
    Channel,
    EntityType,
    Job,
    MigrationBranch,
    Schedule,
    Setting,
    TimelineKind,
    hookimpl,
)
from crmkit.access.rules import Permission, Scope, grant
from crmkit_mail.accounts import IgnoredSenders, MailAccountSchema, MailAccountService
from crmkit_mail.model import MailAccount, MailCampaign

crmkit_plugin_name = "mail"

MIGRATIONS = Path(__file__).parent / "migrations"

SETTINGS = (
    Setting(
        "mail.ca_file",
        str,
        "",
        "Extra CA certificates (PEM file) trusted for IMAP and SMTP servers, for a company "
        "CA or a self-signed server; empty trusts the system's CAs only.",
    ),
    Setting(
        "mail.timeout_seconds", int, 60, "Network timeout of IMAP and SMTP connections.", minimum=1
    ),
    Setting(
        "mail.batch_size", int, 200, "Messages fetched and recorded per transaction.", minimum=1
    ),
    Setting(
        "mail.idle_seconds",
        int,
        1500,
        "How long a mailbox's watcher (in a worker, or `crmkit mail watch`) waits in IMAP "
        "IDLE before it re-checks (servers end IDLE after 30 minutes).",
        minimum=1,
        maximum=29 * 60,
    ),
)


def _adapter(crm: Any) -> Any:
    from crmkit_mail.adapter import MailAdapter

    return MailAdapter(crm)


@hookimpl
def crmkit_register_settings() -> list[Setting]:
    return list(SETTINGS)


@hookimpl
def crmkit_register_channels() -> list[Channel]:
    return [
        Channel(
            "mail",
            AddressKind.EMAIL,
            {Capability.SEND, Capability.RECEIVE, Capability.COPIES},
            _adapter,
            label="Mail",
            activity_kind="mail",
            settings=SETTINGS,
            sender_rules=IgnoredSenders(),
        )
    ]


@hookimpl
def crmkit_register_timeline_kinds() -> list[TimelineKind]:
    # mail sent, received, and copies read back from the Sent folder (a core kind too)
    return [TimelineKind("mail")]


@hookimpl
def crmkit_register_entities() -> list[EntityType]:
    return [
        EntityType(
            "mail_account",
            MailAccount,
            schema=MailAccountSchema,
            service=MailAccountService,
            label="Mailbox",
            label_plural="Mailboxes",
            title_attr="name",
            search_attrs=("name", "address"),
            sort_attrs=("name",),
            default_sort=("name",),
            audited=False,
        ),
        EntityType(
            "mail_campaign",
            MailCampaign,
            label="Mailing",
            label_plural="Mailings",
            title_attr="name",
            search_attrs=("name",),
            filter_attrs=("status",),
            sort_attrs=("created_at",),
            default_sort=("-created_at",),
            audited=False,
        ),
    ]


@hookimpl
def crmkit_register_permissions() -> list[Permission]:
    return [
        *grant("manager", "mail_account", ("read",), Scope.ALL),
        *grant("agent", "mail_account", ("read",), Scope.ALL),
        *grant("manager", "mail_campaign", ("read", "create", "update"), Scope.ALL),
    ]


@hookimpl
def crmkit_register_migrations() -> list[MigrationBranch]:
    return [MigrationBranch("mail", MIGRATIONS)]


@hookimpl
def crmkit_register_jobs() -> list[Job]:
    from crmkit_mail.campaigns import run_campaign_job
    from crmkit_mail.sync import sync_all

    return [
        Job("mail.sync", sync_all, retries=0, description="Read every active mailbox once."),
        Job("mail.campaign", run_campaign_job, description="Send a mass mailing."),
    ]


@hookimpl
def crmkit_register_outbox_handlers() -> list[Any]:
    from crmkit_mail.sent_copies import HANDLER

    return [HANDLER]


@hookimpl
def crmkit_register_schedules() -> list[Schedule]:
    # a backstop: the mail.idle watcher (IMAP IDLE in a worker) records mail within seconds
    return [Schedule("mail.sync", job="mail.sync", every_seconds=120)]


@hookimpl
def crmkit_register_watchers() -> list[Any]:
    from crmkit_mail.watcher import WATCHER

    return [WATCHER]


@hookimpl
def crmkit_register_routes() -> list[Any]:
    from crmkit.web.contributions import Route
    from crmkit_mail.web import unsubscribe

    return [
        Route(
            "/mail/unsubscribe/{token}",
            unsubscribe,
            methods=("GET", "POST"),
            name="mail_unsubscribe",
            public=True,
        )
    ]


@hookimpl
def crmkit_register_commands(cli: Any) -> None:
    from crmkit_mail.cli import mail_group

    if "mail" not in cli.commands:
        cli.add_command(mail_group)


@hookimpl
def crmkit_register_screens() -> list[Any]:
    from crmkit_mail import compose, web

    return [*compose.SCREENS, *web.SCREENS]


@hookimpl
def crmkit_register_menu_items() -> list[Any]:
    from crmkit_mail.web import MENU

    return list(MENU)


@hookimpl
def crmkit_register_card_panels() -> list[Any]:
    from crmkit_mail.compose import PANELS

    return list(PANELS)
