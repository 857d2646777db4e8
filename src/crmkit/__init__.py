"""crmkit: a Python framework for building CRMs.

The public API is re-exported here, so plugins and deployments write
``from crmkit import CRM, hookimpl, Pipeline, Stage, Transition``.
"""

from crmkit.access.rules import Permission, Role, Scope, grant
from crmkit.app import CRM, Actor
from crmkit.channels import (
    AddressKind,
    CallEvent,
    CallPhase,
    Capability,
    Channel,
    ChannelAdapter,
    DeliveryReceipt,
    InboundMessage,
    OutboundCall,
    OutboundMessage,
    PermanentFailure,
    PollResult,
)
from crmkit.config import Config, Setting
from crmkit.db import MigrationBranch
from crmkit.demo import Demo
from crmkit.entities import EntityType
from crmkit.errors import (
    Conflict,
    CrmkitError,
    DuplicatesFound,
    MoveRefused,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from crmkit.events import DomainEvent
from crmkit.filters import FilterField
from crmkit.jobs import Job, Schedule
from crmkit.jobs.watchers import Watcher
from crmkit.pipeline.definition import GuardResult, Pipeline, Stage, StageKind, Transition
from crmkit.pipeline.engine import MoveContext
from crmkit.plugins import hookimpl
from crmkit.reports import Column, Report, ReportResult
from crmkit.services.timeline import TimelineKind
from crmkit.web.contributions import MenuItem, Route, Screen

__version__ = "0.1.0"

__all__ = [
    "CRM",
    "Actor",
    "AddressKind",
    "CallEvent",
    "CallPhase",
    "Capability",
    "Channel",
    "ChannelAdapter",
    "Column",
    "Config",
    "Conflict",
    "CrmkitError",
    "DeliveryReceipt",
    "Demo",
    "DomainEvent",
    "DuplicatesFound",
    "EntityType",
    "FilterField",
    "GuardResult",
    "InboundMessage",
    "Job",
    "MenuItem",
    "MigrationBranch",
    "MoveContext",
    "MoveRefused",
    "NotFound",
    "OutboundCall",
    "OutboundMessage",
    "PermanentFailure",
    "Permission",
    "PermissionDenied",
    "Pipeline",
    "PollResult",
    "Report",
    "ReportResult",
    "Role",
    "Route",
    "Schedule",
    "Scope",
    "Screen",
    "Setting",
    "Stage",
    "StageKind",
    "TimelineKind",
    "Transition",
    "ValidationFailed",
    "Watcher",
    "grant",
    "hookimpl",
]
