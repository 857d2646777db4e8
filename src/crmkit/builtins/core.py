"""Built-in plugin: the core entities, roles and permissions, the contact-point resolver,
the stage-move writer and the core migration branch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crmkit.access.rules import Permission, Role, Scope, grant
from crmkit.db import CORE_MIGRATIONS, MigrationBranch
from crmkit.entities import EntityType
from crmkit.model import (
    Activity,
    Attachment,
    AuditEntry,
    CalendarEvent,
    ContactPoint,
    Conversation,
    Deal,
    FieldDefinition,
    OutboxItem,
    Party,
    PartyGroup,
    PermissionRule,
    Reminder,
    Resource,
    Task,
    Team,
    User,
)
from crmkit.pipeline.engine import MoveContext, apply_move
from crmkit.pipeline.reports import (
    PERIOD_PARAMS,
    funnel_report,
    stage_counts_report,
    time_in_stage_report,
)
from crmkit.plugins import hookimpl
from crmkit.reports import Report
from crmkit.schemas import (
    CalendarEventSchema,
    DealSchema,
    PartySchema,
    ReminderSchema,
    TaskSchema,
)
from crmkit.services.parties import PartyService
from crmkit.services.resources import ResourceService
from crmkit.services.tasks import CalendarService, ReminderService, TaskService
from crmkit.services.timeline import ACTIVITY_KINDS, TimelineKind

#: Business entities most roles work with.
BUSINESS = (
    "party",
    "contact_point",
    "deal",
    "activity",
    "task",
    "reminder",
    "calendar_event",
    "attachment",
)
ALL_ACTIONS = ("read", "create", "update", "delete", "move", "assign", "export")
#: Granted to the admin role only by default (through its ``*`` cell): creating a record in a
#: later stage of its pipeline; for parties also every user's import runs.
DEAL_ACTIONS = (*ALL_ACTIONS, "place")
PARTY_ACTIONS = (*DEAL_ACTIONS, "import")


@hookimpl
def crmkit_register_entities() -> list[EntityType]:
    return [
        EntityType(
            "party",
            Party,
            label="Client",
            label_plural="Clients",
            schema=PartySchema,
            service=PartyService,
            owner_attrs=("owner_id",),
            team_attr="team_id",
            party_attr="id",
            title_attr="name",
            search_attrs=("name_key",),
            filter_attrs=(
                "kind",
                "customer_type",
                "owner_id",
                "team_id",
                "pipeline",
                "stage",
                "source",
                "created_at",
                "last_activity_at",
                "organisation_id",
                "name",
                "created_by_id",
            ),
            sort_attrs=("name", "created_at", "last_activity_at", "stage", "updated_at", "source"),
            default_sort=("-last_activity_at",),
            custom_fields=True,
            actions=PARTY_ACTIONS,
        ),
        EntityType(
            "contact_point",
            ContactPoint,
            label="Contact",
            label_plural="Contacts",
            party_attr="party_id",
            scope_through_party=True,
            title_attr="value",
            filter_attrs=("kind", "key", "valid"),
            audited=False,
        ),
        EntityType(
            "deal",
            Deal,
            label="Deal",
            label_plural="Deals",
            schema=DealSchema,
            owner_attrs=("owner_id",),
            team_attr="team_id",
            party_attr="party_id",
            title_attr="title",
            search_attrs=("title",),
            filter_attrs=(
                "owner_id",
                "team_id",
                "pipeline",
                "stage",
                "party_id",
                "currency",
                "created_at",
                "closed_at",
            ),
            sort_attrs=("title", "amount", "created_at", "updated_at", "stage"),
            default_sort=("-updated_at",),
            custom_fields=True,
            actions=DEAL_ACTIONS,
        ),
        EntityType(
            "activity",
            Activity,
            label="Activity",
            label_plural="Timeline",
            party_attr="party_id",
            scope_through_party=True,
            title_attr="subject",
            search_attrs=("subject", "body"),
            filter_attrs=(
                "kind",
                "party_id",
                "actor_id",
                "channel",
                "direction",
                "status",
                "pinned",
                "record_entity",
                "record_id",
            ),
            sort_attrs=("occurred_at",),
            default_sort=("-occurred_at",),
            audited=False,
        ),
        EntityType(
            "task",
            Task,
            label="Task",
            label_plural="Tasks",
            schema=TaskSchema,
            service=TaskService,
            owner_attrs=("assignee_id", "created_by_id"),
            team_attr="team_id",
            party_attr="party_id",
            scope_through_party=True,
            title_attr="title",
            search_attrs=("title", "description"),
            filter_attrs=(
                "status",
                "assignee_id",
                "created_by_id",
                "party_id",
                "deadline",
                "priority",
                "parent_id",
                "team_id",
                "record_entity",
                "record_id",
            ),
            sort_attrs=("deadline", "created_at", "priority", "title", "updated_at"),
            default_sort=("deadline",),
            custom_fields=True,
            actions=("read", "create", "update", "delete", "assign"),
        ),
        EntityType(
            "reminder",
            Reminder,
            label="Reminder",
            label_plural="Reminders",
            schema=ReminderSchema,
            service=ReminderService,
            owner_attrs=("created_by_id",),
            party_attr="party_id",
            scope_through_party=True,
            title_attr="text",
            filter_attrs=("status", "remind_at", "party_id", "record_entity", "record_id"),
            sort_attrs=("remind_at",),
            default_sort=("remind_at",),
        ),
        EntityType(
            "calendar_event",
            CalendarEvent,
            label="Event",
            label_plural="Calendar",
            schema=CalendarEventSchema,
            service=CalendarService,
            owner_attrs=("owner_id", "created_by_id"),
            party_attr="party_id",
            scope_through_party=True,
            title_attr="title",
            search_attrs=("title",),
            filter_attrs=("owner_id", "resource_id", "party_id", "kind", "status", "starts_at"),
            sort_attrs=("starts_at",),
            default_sort=("starts_at",),
        ),
        EntityType(
            "attachment",
            Attachment,
            label="File",
            label_plural="Files",
            party_attr="party_id",
            scope_through_party=True,
            title_attr="filename",
            filter_attrs=("document_type", "party_id", "record_entity", "record_id"),
            sort_attrs=("created_at",),
        ),
        EntityType(
            "user",
            User,
            label="User",
            label_plural="Users",
            title_attr="username",
            actions=("read", "create", "update", "block"),
        ),
        EntityType("team", Team, label="Team", label_plural="Teams", title_attr="name"),
        EntityType(
            "party_group", PartyGroup, label="Group", label_plural="Groups", title_attr="name"
        ),
        EntityType(
            "resource",
            Resource,
            label="Resource",
            label_plural="Resources",
            title_attr="name",
            service=ResourceService,
        ),
        EntityType(
            "permission",
            PermissionRule,
            label="Permission",
            audited=True,
            actions=("read", "update"),
        ),
        EntityType("field_definition", FieldDefinition, label="Custom field", title_attr="label"),
        EntityType("audit_log", AuditEntry, label="Audit log", actions=("read",), audited=False),
        EntityType(
            "conversation",
            Conversation,
            label="Conversation",
            label_plural="Conversations",
            title_attr="subject",
            # visible where its client is, and to everyone while in triage (no client yet);
            # being assigned one does not show a client the assignee may not see; one that
            # came to a personal mailbox is its owner's, its client's owner's and the scope
            # "all"'s only (its owner reads its messages without reading the client)
            party_attr="party_id",
            scope_through_party=True,
            shared_without_party=True,
            # matched to a deal or task by its thread, it stays its client's conversation
            follows_linked_record=False,
            personal_attr="owner_id",
            filter_attrs=("party_id", "channel", "status", "assignee_id"),
            sort_attrs=("last_message_at",),
            default_sort=("-last_message_at",),
            actions=("read", "update"),
            audited=False,
        ),
        EntityType(
            "outbox_item", OutboxItem, label="Outbox", actions=("read", "update"), audited=False
        ),
    ]


@hookimpl
def crmkit_register_roles() -> list[Role]:
    return [
        Role(
            "admin",
            "Administrator",
            "Manages users, roles, settings; sees everything.",
            start_screen="admin",
        ),
        Role("manager", "Manager", "Sees and assigns all clients and deals.", start_screen="home"),
        Role("agent", "Agent", "Works with own clients, deals and tasks.", start_screen="home"),
    ]


@hookimpl
def crmkit_register_permissions() -> list[Permission]:
    own = Scope.OWN
    return [
        Permission("admin", "*", "*", Scope.ALL),
        *grant("manager", BUSINESS, ALL_ACTIONS, Scope.ALL),
        *grant("manager", ("party_group", "resource", "team", "user"), ("read",), Scope.ALL),
        *grant("manager", ("party_group",), ("create", "update"), Scope.ALL),
        # the import screens; scope own: the runs the manager started (all: everyone's)
        *grant("manager", "party", ("import",), own),
        *grant("agent", ("party", "deal"), ("read", "create", "update", "move", "export"), own),
        *grant("agent", ("contact_point", "activity", "attachment"), ("read", "create"), own),
        *grant("agent", ("task", "reminder", "calendar_event"), ("read", "create", "update"), own),
        *grant("agent", ("party_group", "resource", "team", "user"), ("read",), Scope.ALL),
        *grant("manager", "conversation", ("read", "update"), Scope.ALL),
        *grant("agent", "conversation", ("read", "update"), own),
    ]


@hookimpl
def crmkit_register_timeline_kinds() -> list[TimelineKind]:
    return [TimelineKind(kind) for kind in ACTIVITY_KINDS]


@hookimpl
def crmkit_register_reports() -> list[Report]:
    pipeline_param = {"pipeline": "the pipeline's name"}
    period = PERIOD_PARAMS
    return [
        Report(
            "pipeline_funnel",
            "Funnel",
            funnel_report,
            description="Records that entered each stage in a period, with conversion.",
            params={**pipeline_param, **period, "owner_id": "only the records this user owns now"},
        ),
        Report(
            "pipeline_time_in_stage",
            "Time in stage",
            time_in_stage_report,
            description="How long records stayed in each stage before moving on.",
            params={**pipeline_param, **period},
        ),
        Report(
            "pipeline_stage_counts",
            "Records by stage",
            stage_counts_report,
            description="Records in each stage now, optionally per owner.",
            params={**pipeline_param, "by_owner": "true to split by owner"},
        ),
    ]


@hookimpl(trylast=True)
def crmkit_resolve_party(work: Any, kind: str, key: str) -> int | None:
    """The most recently active party that has this contact point (merged ones excluded)."""
    return work.session.scalar(
        select(ContactPoint.party_id)
        .join(Party, Party.id == ContactPoint.party_id)
        .where(ContactPoint.kind == kind, ContactPoint.key == key, Party.merged_into_id.is_(None))
        .order_by(Party.last_activity_at.desc(), Party.id.desc())
        .limit(1)
    )


@hookimpl
def crmkit_stage_move(move: MoveContext) -> Any:
    return apply_move(move)


@hookimpl
def crmkit_register_migrations() -> list[MigrationBranch]:
    return [MigrationBranch("crmkit", CORE_MIGRATIONS / "versions")]
