"""Hook implementations of the denaq deployment (entry point ``crmkit: denaq``).

A deployment plugin: it takes over the CRM (the organisations' pipeline, the roles and
their screens), so it loads only where ``plugins.allow`` names it.
"""

from __future__ import annotations

from crmkit import Demo, MenuItem, Permission, Pipeline, Report, Role, Scope, Screen, hookimpl
from crmkit.access.rules import grant
from crmkit.pipeline.engine import MoveContext
from crmkit.services.custom_fields import StarterField
from crmkit.services.message_templates import StarterTemplate
from crmkit_denaq import screens
from crmkit_denaq.mail import STAGE_TEMPLATES
from crmkit_denaq.pipeline import DEALERS, REASON_FIELD, REFUSAL_FIELD
from crmkit_denaq.stats import STATS

crmkit_plugin_name = "denaq"
crmkit_deployment = True

LEAD_CREATOR = "lead_creator"
#: The admin's screens are powers, cells of the permission table rather than the role's name
#: (a deployment may hand them to a supervisor): dealing leads is giving clients to agents,
#: the statistics page is running reports beyond one's roles.
DISTRIBUTE = ("party", "assign")
STATISTICS = ("party", "report")


@hookimpl
def crmkit_register_pipelines() -> list[Pipeline]:
    return [DEALERS]


@hookimpl
def crmkit_register_custom_fields() -> list[StarterField]:
    return [REFUSAL_FIELD]


@hookimpl
def crmkit_after_stage_move(move: MoveContext) -> None:
    """A refused dealer moved on (reopened) no longer holds the reason of its refusal: it is
    cleared, with its audit entry, so that the next refusal asks for one again."""
    if move.pipeline.name != DEALERS.name or move.source != "refused":
        return
    if not (move.record.custom or {}).get(REASON_FIELD):
        return
    service = move.work.records("party")
    service.record_update(
        move.record, service.stage_changes(move.record, {"custom": {REASON_FIELD: None}})
    )


@hookimpl
def crmkit_register_roles() -> list[Role]:
    return [
        Role(
            LEAD_CREATOR,
            "Lead creator",
            "Finds companies worth offering the product to and enters them as leads.",
            start_screen="denaq_leads",
        )
    ]


@hookimpl
def crmkit_register_permissions() -> list[Permission]:
    # Agents keep the core's "own" scope on clients, their contacts, files, notes, tasks
    # and meetings: they see their own firms and accounts only, everywhere.  Deals are not
    # used by this company.
    return [
        *grant(LEAD_CREATOR, "party", ("read", "create", "update"), Scope.OWN),
        *grant(LEAD_CREATOR, ("contact_point", "activity"), ("read", "create"), Scope.OWN),
        *grant(LEAD_CREATOR, ("task", "reminder", "calendar_event"), ("read", "create"), Scope.OWN),
        *grant(LEAD_CREATOR, "user", "read", Scope.ALL),
        *grant("agent", "deal", ("read", "create", "update", "move", "export"), Scope.NONE),
    ]


@hookimpl
def crmkit_register_screens() -> list[Screen]:
    return [
        Screen(
            "denaq_leads",
            "/denaq/leads",
            "Leads",
            screens.leads,
            roles=(LEAD_CREATOR, "admin"),
        ),
        # the core's new client form, titled as the lead creators' button that leads there
        Screen(
            "denaq_new_lead",
            "/denaq/leads/new",
            "New lead",
            screens.new_lead,
            permission=("party", "create"),
            methods=("GET", "POST"),
        ),
        Screen(
            "denaq_distribution",
            "/denaq/distribution",
            "Distribution",
            screens.distribution_page,
            permission=DISTRIBUTE,
            methods=("GET", "POST"),
        ),
        Screen(
            "denaq_stats", "/denaq/stats", "Statistics", screens.statistics, permission=STATISTICS
        ),
    ]


@hookimpl
def crmkit_register_menu_items() -> list[MenuItem]:
    return [
        MenuItem("My leads", "denaq_leads", roles=(LEAD_CREATOR,), order=5, icon="🔎"),
        MenuItem("New lead", "denaq_new_lead", roles=(LEAD_CREATOR,), order=6, icon="➕"),
        # the board is where dealers are moved on: for whoever may move them
        MenuItem(
            "Dealers board", "/boards/dealer", order=15, icon="▦", permission=("party", "move")
        ),
        MenuItem("Mail templates", "templates", roles=("agent",), order=70, icon="✉"),
        MenuItem("Distribution", "denaq_distribution", order=16, icon="🎯"),
        MenuItem("Statistics", "denaq_stats", order=17, icon="📈"),
    ]


@hookimpl
def crmkit_register_message_templates() -> list[StarterTemplate]:
    return list(STAGE_TEMPLATES)


@hookimpl
def crmkit_register_reports() -> list[Report]:
    return list(STATS)


@hookimpl
def crmkit_register_demos() -> list[Demo]:
    from crmkit_denaq.demo import generate

    return [
        Demo(
            "denaq",
            "Dealer acquisition: lead creators, agents, an admin and thousands of leads.",
            generate,
            default_size=3000,
        )
    ]
