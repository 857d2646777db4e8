"""A plugin adding a screen for cashiers, a menu item, and overriding the workspace."""

from crmkit import hookimpl
from crmkit.access.rules import Role, grant
from crmkit.web.contributions import MenuItem, Screen
from crmkit.web.pages import render, work


async def cashbox(request):
    with work(request) as unit:
        count = unit.parties.count()
    return render(request, "screen_plugin/cashbox.html", {"title": "Cashbox", "count": count})


@hookimpl
def crmkit_register_roles():
    return [Role("cashier", "Cashier", start_screen="cashbox")]


@hookimpl
def crmkit_register_screens():
    return [Screen("cashbox", "/cashbox", "Cashbox", cashbox, roles=("cashier", "admin"))]


@hookimpl
def crmkit_register_menu_items():
    return [MenuItem("Cashbox", "cashbox", roles=("cashier",), order=5, icon="💰")]


@hookimpl
def crmkit_register_permissions():
    return grant("cashier", "party", "read", "all")
