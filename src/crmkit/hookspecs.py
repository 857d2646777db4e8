"""Every hook a crmkit plugin can implement.  Nothing else lives here.

Implement a hook by defining a function of the same name in a module or class registered
as a plugin and decorating it with :data:`crmkit.hookimpl`.  An implementation may accept
fewer arguments than the spec names.  The core's own features are built-in plugins that
implement these same hooks (see :mod:`crmkit.builtins`).

Call semantics, stated on each spec:

* ``register_*`` hooks are *collecting*: every implementation is called and the lists
  they return are concatenated (plugins registered later come first, as pluggy orders
  them; order never carries meaning for registrations).
* ``firstresult`` hooks stop at the first implementation that returns something other
  than ``None``.
* ``wrapper`` hooks wrap an operation: ``result = yield`` runs the inner implementations.
* ``historic`` hooks are replayed for plugins registered after the call.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from crmkit.access.rules import Permission, Role
    from crmkit.app import CRM
    from crmkit.automation import Rule
    from crmkit.channels import CallEvent, Channel, InboundMessage
    from crmkit.config import Setting
    from crmkit.db import MigrationBranch
    from crmkit.demo import Demo
    from crmkit.entities import EntityType
    from crmkit.events import DomainEvent
    from crmkit.filters import FilterField
    from crmkit.jobs import Job, OutboxHandler, Schedule
    from crmkit.jobs.watchers import Watcher
    from crmkit.model import Activity, Party
    from crmkit.pipeline.definition import GuardResult, Pipeline
    from crmkit.pipeline.engine import MoveContext
    from crmkit.reports import Report
    from crmkit.services.custom_fields import StarterField
    from crmkit.services.message_templates import StarterTemplate
    from crmkit.services.timeline import TimelineKind
    from crmkit.services.unit import UnitOfWork
    from crmkit.web.contributions import CardPanel, ListColumn, MenuItem, Route, Screen

PROJECT = "crmkit"

hookspec = pluggy.HookspecMarker(PROJECT)


# ---------------------------------------------------------------------------------------
# Start-up
# ---------------------------------------------------------------------------------------


@hookspec(historic=True)
def crmkit_configure(crm: CRM) -> None:
    """The application is assembled: every plugin is registered and registries are filled.

    Historic: a plugin registered later still receives the call.  Use it to read settings,
    open clients to outside services lazily, or check that a plugin you need is present.
    Return value ignored; an exception stops start-up as a ``PluginError`` naming the plugin.
    """


@hookspec
def crmkit_register_settings() -> list[Setting]:
    """Configuration keys the plugin reads (name, type, default, description).

    Collecting.  Declared keys get type checking and ``CRMKIT_*`` environment overrides,
    and must appear in the plugin's docs.
    """
    return []


@hookspec
def crmkit_register_migrations() -> list[MigrationBranch]:
    """The plugin's Alembic branch: a label and the directory of its revision scripts.

    Collecting.  ``crmkit db upgrade`` applies every registered branch to its head.
    """
    return []


@hookspec
def crmkit_register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``crmkit`` command line.

    Every implementation is called with the root group; return value ignored.
    """


@hookspec
def crmkit_register_demos() -> list[Demo]:
    """Demo data generators offered by ``crmkit demo NAME``.

    Collecting.
    """
    return []


# ---------------------------------------------------------------------------------------
# Data model, pipelines and access
# ---------------------------------------------------------------------------------------


@hookspec
def crmkit_register_entities() -> list[EntityType]:
    """Entity types the plugin contributes (its models, schemas, scope columns).

    Collecting.  Two plugins may not register one entity name.
    """
    return []


@hookspec
def crmkit_register_filter_fields() -> list[FilterField]:
    """Computed fields that lists, smart groups and automation conditions may filter on.

    Collecting.  Each compiles ``(entity, op, value)`` to a SQL predicate (a client's
    total paid, days since the last visit...).  An automation condition on one is checked
    by running the predicate for the rule's record when the rule runs.
    """
    return []


@hookspec
def crmkit_register_pipelines() -> list[Pipeline]:
    """Pipelines (stages and transitions) over any registered entity.

    Collecting.  Pipeline names are unique in an application.
    """
    return []


@hookspec
def crmkit_register_roles() -> list[Role]:
    """Roles users can hold, with their labels and start screens.

    Collecting.  Roles are seeded into the ``role`` table by ``crmkit init`` and
    ``crmkit db upgrade`` (not when a process starts: run ``db upgrade`` after adding one);
    an admin's edits are kept.
    """
    return []


@hookspec
def crmkit_register_permissions() -> list[Permission]:
    """Cells of the role x entity x action permission table, each with a record scope.

    Collecting.  Seeded into the ``permission`` table by ``crmkit init`` and ``crmkit db
    upgrade`` (not when a process starts: run ``db upgrade`` after changing a cell) without
    overwriting cells an admin changed.
    """
    return []


@hookspec
def crmkit_register_message_templates() -> list[StarterTemplate]:
    """Message templates a deployment starts with (a first offer, a request for papers).

    Collecting.  Seeded with the roles and permissions (``crmkit init``, ``crmkit db
    upgrade``): a template whose name, channel and language exist already is left as it
    is, so an admin's edits are kept.
    """
    return []


@hookspec
def crmkit_register_custom_fields() -> list[StarterField]:
    """Custom fields a deployment's code relies on (a refusal reason its pipeline asks for).

    Collecting.  Seeded with the roles and permissions (``crmkit init``, ``crmkit db
    upgrade``): a field missing on its entity is created; an existing one keeps its label,
    position and help as an admin left them, and its kind and choices follow the
    declaration (the code reads them).
    """
    return []


# ---------------------------------------------------------------------------------------
# Stage moves
# ---------------------------------------------------------------------------------------


@hookspec
def crmkit_before_stage_move(move: MoveContext) -> GuardResult | None:
    """Veto a stage move: return ``GuardResult.refuse(reason)`` to stop it.

    Every implementation is called only after the pipeline's own checks passed (required
    fields, documents and comment, then the transition's guards ran): the record has what
    the target stage requires.  All refusals are collected and shown together.  Return
    ``None`` (or an ok result) to allow.  An implementation that raises refuses the move
    with "the plugin NAME failed while checking this move" (the exception is logged).
    """


@hookspec(firstresult=True)
def crmkit_stage_move(move: MoveContext) -> Any:
    """Apply a stage move; a wrapper around the write itself.

    The core's implementation updates the record (with optimistic locking), records the
    history row, the audit entry, the timeline entry and the ``stage.moved`` event.
    Implement it with ``@hookimpl(wrapper=True)`` and ``result = yield`` to run code around
    the move inside its transaction (a raised exception aborts the move); stops at the first
    non-``None`` result.
    """


@hookspec
def crmkit_after_stage_move(move: MoveContext) -> None:
    """A stage move was applied (same transaction, not yet committed).

    Every implementation is called; return value ignored.  Raise to abort the move.
    """


# ---------------------------------------------------------------------------------------
# Events and parties
# ---------------------------------------------------------------------------------------


@hookspec
def crmkit_handle_event(event: DomainEvent, work: UnitOfWork) -> None:
    """React to a domain event inside the transaction that raised it.

    Every implementation is called, before commit; writes made through ``work`` commit with
    the change.  Anything that leaves the process must go to the outbox
    (``work.outbox.add``) rather than be done here.
    """


@hookspec(firstresult=True)
def crmkit_resolve_party(work: UnitOfWork, kind: str, key: str) -> int | None:
    """Which party owns this address?  ``kind`` is ``phone``, ``email`` or ``messenger``;
    ``key`` is the normalized value (E.164 phone, lower-case email, ``service:handle``).

    Stops at the first non-``None`` party id.  The core's implementation, which runs last,
    looks the key up among contact points.
    """


@hookspec
def crmkit_party_merged(work: UnitOfWork, survivor: Party, merged: Party) -> None:
    """Two parties were merged; move the plugin's own rows from ``merged`` to ``survivor``.

    Every implementation is called inside the merge's transaction, after the merge moved
    every row pointing at ``merged`` except those in the columns named by
    :func:`crmkit_register_party_merge_columns`.
    """


@hookspec
def crmkit_register_party_merge_columns() -> list[Any]:
    """Columns referencing ``party.id`` that the plugin merges itself (or keeps on purpose).

    Collecting.  Each item is a mapped attribute (``FinanceAccount.party_id``) or a table
    column.  A merge moves every other row pointing at the merged party to the survivor;
    rows in these columns are left for the plugin's :func:`crmkit_party_merged`.  The
    ``record_id`` of a table with a loose link (``record_entity``/``record_id``) may be
    named too: its links to the merged party are then left alone (append-only history).
    """
    return []


# ---------------------------------------------------------------------------------------
# Channels (mail, messengers, telephony)
# ---------------------------------------------------------------------------------------


@hookspec
def crmkit_register_channels() -> list[Channel]:
    """Channels the plugin provides: capabilities, address kind, settings, adapter factory.

    Collecting.  See :mod:`crmkit.channels` for the contract an adapter must keep.
    """
    return []


@hookspec
def crmkit_register_timeline_kinds() -> list[TimelineKind]:
    """Kinds of timeline entries the plugin writes (``booking``, ``visit_report``...).

    Collecting.  The API's ``kind`` filter accepts the declared kinds only (the core's,
    these, and each channel's ``activity_kind``) and the client card offers them as
    filters, showing each ``label`` translated.  A kind declared twice must carry the same
    label.
    """
    return []


@hookspec
def crmkit_message_received(work: UnitOfWork, message: InboundMessage, activity: Activity) -> None:
    """An inbound message was recorded on the timeline (once; repeats are not reported).

    Every implementation is called in the ingest transaction; ``activity.party_id`` is
    ``None`` when the sender is unknown and the message waits in triage.
    """


@hookspec
def crmkit_call_event(work: UnitOfWork, call: CallEvent, activity: Activity) -> None:
    """A phone call changed phase (ringing, answered, ended, missed).

    Every implementation is called in the transaction that recorded the call; the web UI
    uses ``ringing`` to pop up the caller's card.
    """


# ---------------------------------------------------------------------------------------
# Web UI, reports, background work
# ---------------------------------------------------------------------------------------


@hookspec
def crmkit_register_routes() -> list[Route]:
    """HTTP routes (pages, API endpoints, webhooks) the plugin serves.

    Collecting.
    """
    return []


@hookspec
def crmkit_register_screens() -> list[Screen]:
    """Screens of the UI (a page with a title, limited to some roles).

    Collecting.
    """
    return []


@hookspec
def crmkit_register_menu_items() -> list[MenuItem]:
    """Entries of the role menus.

    Collecting; items are ordered by their ``order`` and filtered by the user's roles.
    """
    return []


@hookspec
def crmkit_register_card_panels() -> list[CardPanel]:
    """Blocks the plugin adds to the client card or to a record's page (a balance, an
    order's lines...).

    Collecting; panels are ordered by their ``order``.  Each ``CardPanel.context(work,
    record)`` runs in the page's unit of work acting as the viewer and returns the panel
    template's variables, or ``None`` to show nothing.
    """
    return []


@hookspec
def crmkit_register_list_columns() -> list[ListColumn]:
    """Columns the plugin adds to an entity's lists (an order's car...).

    Collecting; shown after the list's own default columns.  Each
    ``ListColumn.cells(work, rows)`` runs in the page's unit of work acting as the reader
    and returns the text of each row by id.
    """
    return []


@hookspec
def crmkit_register_reports() -> list[Report]:
    """Reports (tables and charts) the plugin offers.

    Collecting.
    """
    return []


@hookspec
def crmkit_register_jobs() -> list[Job]:
    """Functions the task queue may run (outbox handlers, imports, syncs).

    Collecting.  Job names are unique in an application.
    """
    return []


@hookspec
def crmkit_register_schedules() -> list[Schedule]:
    """Periodic runs of registered jobs (every N seconds or by cron).

    Collecting.
    """
    return []


@hookspec
def crmkit_register_outbox_handlers() -> list[OutboxHandler]:
    """Handlers that deliver outbox items of a kind (``channel.send``, ``webhook``...).

    Collecting.  Kinds are unique in an application.  A worker claims an item, calls the
    handler's ``deliver(crm, delivery)`` outside any transaction, and retries with backoff
    on an exception (at once to the dead-letter list on ``PermanentFailure``; an item the
    handler finds must not go out any more raises ``crmkit.jobs.Cancelled``).  The handler
    must hand ``delivery.idempotency_key`` to the peer so that a retry is never done twice.
    """
    return []


@hookspec
def crmkit_register_watchers() -> list[Watcher]:
    """Long-lived connections the workers keep running: IMAP IDLE, long polling, a PBX feed.

    Collecting.  Watcher names are unique in an application.  Every worker (``crmkit
    worker``, and the one inside ``crmkit serve``) calls each watcher's ``keys(crm)`` every
    few seconds and, for each key, ``run(crm, key, stop)`` in a thread of its own, holding
    a lease in the database so that of all workers exactly one runs each key; another
    worker takes over when that one dies.  ``run`` blocks until the ``stop`` event is set
    (a worker shutting down, a key no longer listed) and should then return within a
    second or two; when it raises, the error is recorded and the run started again after
    a backoff.  ``queue.watchers = false`` turns them all off.
    """
    return []


@hookspec
def crmkit_register_automations() -> list[Rule]:
    """Automation rules defined in code: "when EVENT and CONDITIONS then ACTIONS".

    Collecting.  Rule names are unique in an application (admins' rules stored as data
    may not reuse them).  A matching change queues the rule in its own transaction; a
    worker runs it afterwards as the assistant, so a failing rule never blocks the change.
    See :mod:`crmkit.automation` for triggers, conditions and actions.
    """
    return []


def iter_specs() -> Generator[str, None, None]:
    """Names of every hook spec, in the order they are declared (for docs and tests)."""
    for name, value in globals().items():
        if name.startswith("crmkit_") and callable(value):
            yield name
