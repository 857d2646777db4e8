"""Menu items pointing at an entity's list show only to users who may read that entity,
and a move posted from a plugin's screen comes back to it (a local ``next`` only)."""

from __future__ import annotations

import re

import pytest

from crmkit import hookimpl
from crmkit.access.rules import Role, grant
from crmkit.testing import add_user, factories
from crmkit.testing.web import WebClient
from crmkit.web.contributions import MenuItem

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Clerk:
    """A role that reads tasks and nothing about clients."""

    @hookimpl
    def crmkit_register_roles(self):
        return [Role("clerk", "Clerk")]

    @hookimpl
    def crmkit_register_permissions(self):
        return grant("clerk", "task", ("read",), "own")


def test_a_list_target_needs_read_on_its_entity():
    assert MenuItem("Clients", "/lists/party").required_permission() == ("party", "read")
    assert MenuItem("Deals", "/lists/deal?stage=new").required_permission() == ("deal", "read")
    named = MenuItem("Pay", "/lists/party", permission=("finance_payment", "read"))
    assert named.required_permission() == ("finance_payment", "read")
    assert MenuItem("Tasks", "tasks").required_permission() is None


async def menu_of(crm, username):
    client = WebClient.for_crm(crm)
    assert (await client.login(username)).status_code == 303
    page = await client.get("/tasks")
    return re.search(r"<nav.*?</nav>", page.text, re.S).group(0), client


async def test_the_menu_hides_lists_a_role_cannot_read(make_crm):
    crm = make_crm(plugins=[Clerk()])
    add_user(crm, "clerk", ["clerk"])
    add_user(crm, "agent", ["agent"])
    clerk_menu, _ = await menu_of(crm, "clerk")
    agent_menu, _ = await menu_of(crm, "agent")
    assert "/lists/party" in agent_menu and "/lists/deal" in agent_menu
    assert "/lists/party" not in clerk_menu and "/lists/deal" not in clerk_menu
    assert "/tasks" in clerk_menu and "/calendar" not in clerk_menu


async def test_a_move_returns_to_a_local_next_path_only(crm):
    add_user(crm, "agent", ["agent"])
    with crm.acting_as("agent") as work:
        deal = factories.deal(work, amount="1000")
    _, client = await menu_of(crm, "agent")
    moved = await client.post(
        f"/records/deal/{deal.id}/move", {"to": "qualified", "next": "/boards/sales"}
    )
    assert moved.status_code == 303 and moved.headers["location"] == "/boards/sales"
    away = await client.post(
        f"/records/deal/{deal.id}/move", {"to": "proposal", "next": "https://evil.example/"}
    )
    assert away.headers["location"] == f"/records/deal/{deal.id}"
