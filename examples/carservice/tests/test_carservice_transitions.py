"""Who moves a service order where is a permission on the order, not a list of role names.

The seeded cells give today's roles the powers their names gave (a worker repairs their own
orders, the cashier and the accountant hand a done order over as paid, the office does
everything); a role of the deployment's own gets a move when the admin grants its cell.
"""

from __future__ import annotations

import re

import pytest
from crmkit_carservice.pipeline import ACTIONS
from crmkit_finance import finance
from service_fixtures import PLUGINS, build_station

from crmkit import hookimpl
from crmkit.access import Role, grant
from crmkit.errors import MoveRefused
from crmkit.testing import add_user
from crmkit.testing.web import WebClient


def done_and_paid(station, worker="ivan"):
    """An order its worker took to ``done``, paid in full at the desk."""
    order = station.order(worker)
    with station.crm.acting_as(station.users[worker]) as work:
        for stage in ("in_work", "done"):
            work.moves.move(order.id, stage, entity="finance_order")
    with station.crm.acting_as(station.cashier) as work:
        fin = finance(work)
        if fin.cashdesk.current_shift(station.desk.id) is None:
            fin.cashdesk.open_shift(station.desk.id, counted="0.00")
        fin.payments.take(
            order_id=order.id, amount="1500.00", method="cash", desk_id=station.desk.id
        )
    return order.id


def allowed(work, order_id):
    return {o.stage.name: o.allowed for o in work.moves.options(order_id, entity="finance_order")}


def test_a_cashier_hands_a_paid_order_over_and_its_worker_may_not(station):
    order = done_and_paid(station)
    with station.crm.acting_as(station.ivan) as work:
        assert allowed(work, order)["paid"] is False
        with pytest.raises(MoveRefused) as refused:
            work.moves.move(order, "paid", entity="finance_order")
        assert refused.value.reasons == [
            "moving from “Done” to “Paid” takes the permission “pay” on Orders"
        ]
    with station.crm.acting_as(station.cashier) as work:
        assert allowed(work, order) == {"in_work": False, "paid": True}
        work.moves.move(order, "paid", entity="finance_order")
        assert work.records("finance_order").get(order).stage == "paid"


def test_the_seeded_cells_give_each_role_the_moves_its_name_gave():
    """The pipeline's actions per role, as ``crmkit db upgrade`` seeds them."""
    from crmkit_carservice import access

    cells = {}
    for cell in access.permissions():
        if cell.entity == "finance_order" and cell.action in ACTIONS:
            cells.setdefault(cell.role, {})[cell.action] = cell.scope.label
    office = dict.fromkeys(ACTIONS, "all")
    assert cells == {
        "worker": {"repair": "own"},
        "cashier": {"pay": "all"},
        "accountant": {"pay": "all"},
        "manager": office,
        "admin": office,
    }


class Foreman:
    """A role the deployment adds later: reads and moves every order, no transition cell."""

    crmkit_plugin_name = "foreman"

    @hookimpl
    def crmkit_register_roles(self):
        return [Role("foreman", "Foreman")]

    @hookimpl
    def crmkit_register_permissions(self):
        return grant("foreman", "finance_order", ("read", "move"), "all")


@pytest.fixture
def foreman_station(make_crm):
    crm = make_crm(plugins=[*PLUGINS, Foreman()])
    station = build_station(crm)
    station.users["foreman"] = add_user(crm, "foreman", ["foreman"])
    return station


def test_a_new_role_pays_once_the_admin_gives_it_the_cell(foreman_station):
    station = foreman_station
    order = done_and_paid(station)
    with station.crm.acting_as(station.foreman) as work:
        assert allowed(work, order)["paid"] is False
        with pytest.raises(MoveRefused, match="takes the permission “pay” on Orders"):
            work.moves.move(order, "paid", entity="finance_order")
    with station.crm.acting_as(station.admin) as work:
        work.permissions.set("foreman", "finance_order", "pay", "all")
    with station.crm.acting_as(station.foreman) as work:
        assert allowed(work, order)["paid"] is True
        work.moves.move(order, "paid", entity="finance_order")
        # only the move it was given: closing is still the office's
        with pytest.raises(MoveRefused, match="takes the permission “close” on Orders"):
            work.moves.move(order, "closed", entity="finance_order")
        assert work.records("finance_order").get(order).stage == "paid"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_order_page_offers_paid_only_to_who_may_pay(station, anyio_backend):
    order = done_and_paid(station)
    button = '<input type="hidden" name="to" value="paid">'
    for username, offered in (("ivan", False), ("cashier", True), ("manager", True)):
        client = WebClient.for_crm(station.crm)
        assert (await client.login(username)).status_code == 303
        page = await client.get(f"/records/finance_order/{order}")
        assert page.status_code == 200, username
        assert (button in page.text) is offered, username
    # the admin sees the pipeline's actions as cells of Orders on Roles and permissions
    client = WebClient.for_crm(station.crm)
    assert (await client.login("admin")).status_code == 303
    screen = await client.get("/admin/permissions", params={"role": "cashier"})
    assert 'aria-label="finance_order pay"' in screen.text
    assert 'aria-label="finance_order repair"' in screen.text


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_board_lets_a_card_go_only_where_its_user_may_move_it(station, anyio_backend):
    order = done_and_paid(station)
    card = re.compile(rf'data-id="{order}" data-version="\d+" data-targets="([^"]*)"')
    for username, targets in (("ivan", ""), ("cashier", "paid"), ("manager", "in_work paid")):
        client = WebClient.for_crm(station.crm)
        assert (await client.login(username)).status_code == 303
        board = await client.get("/boards/carservice_order")
        assert board.status_code == 200, username
        assert card.findall(board.text) == [targets], username


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_pipelines_screen_names_each_moves_permission(station, anyio_backend):
    client = WebClient.for_crm(station.crm)
    assert (await client.login("admin")).status_code == 303
    page = await client.get("/admin/pipelines")
    assert page.status_code == 200
    named = re.findall(r'data-permission="([^"]+)"', page.text)
    assert set(named) == {f"finance_order {action}" for action in ACTIONS}
    assert "⚿ pay" in page.text  # on the drawn edge Done -> Paid
