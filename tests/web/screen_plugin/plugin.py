"""A plugin adding a screen for cashiers, a menu item, and overriding the workspace;
a screen and a client-card panel shown by permission (party ``delete``: managers, not
agents)."""

from crmkit import hookimpl
from crmkit.access.rules import Role, grant
from crmkit.web.contributions import CardPanel, MenuItem, Screen
from crmkit.web.pages import render, work


async def cashbox(request):
    with work(request) as unit:
        count = unit.parties.count()
    return render(request, "screen_plugin/cashbox.html", {"title": "Cashbox", "count": count})


async def purge(request):
    return render(request, "screen_plugin/cashbox.html", {"title": "Purge", "count": -1})


def people_panel(work, party):
    """Organisations show how many people work there; other parties show no panel."""
    if party.kind != "organisation":
        return None
    return {"people": len(work.parties.contacts_of(party.id))}


@hookimpl
def crmkit_register_card_panels():
    return [
        CardPanel(
            "people_count",
            "screen_plugin/people_panel.html",
            people_panel,
            permission=("party", "delete"),
        ),
        CardPanel(
            "deal_party",
            "screen_plugin/deal_panel.html",
            lambda work, deal: {"client": work.parties.get(deal.party_id).name},
            entity="deal",
        ),
    ]


def clients_by_kind(work, params):
    """Clients by kind, the current user's visible ones."""
    from crmkit.reports import Column, ReportResult

    kinds = {}
    for party in work.parties.list(limit=500):
        kinds[party.kind] = kinds.get(party.kind, 0) + 1
    if params.get("kind"):
        kinds = {k: v for k, v in kinds.items() if k == params["kind"]}
    rows = [{"kind": k, "count": v} for k, v in sorted(kinds.items())]
    return ReportResult(
        columns=[Column("kind", "Kind"), Column("count", "Clients", "number")],
        rows=rows,
        totals={"count": sum(kinds.values())},
        chart={
            "type": "bar",
            "data": {
                "labels": list(kinds),
                "datasets": [{"label": "Clients", "data": list(kinds.values())}],
            },
        },
    )


@hookimpl
def crmkit_register_reports():
    from crmkit.reports import Report

    return [
        Report(
            "demo.kinds",
            "Clients by kind",
            clients_by_kind,
            entity="party",
            roles=("manager",),
            params={"kind": ["organisation", "person"]},
        )
    ]


@hookimpl
def crmkit_register_roles():
    return [Role("cashier", "Cashier", start_screen="cashbox")]


@hookimpl
def crmkit_register_screens():
    return [
        Screen("cashbox", "/cashbox", "Cashbox", cashbox, roles=("cashier", "admin")),
        Screen("purge", "/purge", "Purge", purge, permission=("party", "delete")),
    ]


@hookimpl
def crmkit_register_menu_items():
    return [
        MenuItem("Cashbox", "cashbox", roles=("cashier",), order=5, icon="💰"),
        MenuItem("Purge", "purge", order=6),
    ]


@hookimpl
def crmkit_register_permissions():
    return grant("cashier", "party", "read", "all")
