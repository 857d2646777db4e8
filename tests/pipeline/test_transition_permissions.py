"""Transitions limited by a permission cell (``Transition(permission=...)``), not role names.

The admin hands a move to any role by editing the permission table: a role that a plugin
registered without the cell cannot take the move, the same role granted the cell can, and
the cell's scope must reach the record.  ``roles=`` keeps working as the simple form.
"""

from __future__ import annotations

import pytest

from crmkit import Pipeline, Stage, StageKind, Transition, hookimpl
from crmkit.access import Role
from crmkit.errors import MoveRefused
from crmkit.testing import add_user, factories

APPROVAL = Pipeline(
    "approval",
    "deal",
    label="Approvals",
    stages=[
        Stage("draft", "Draft"),
        Stage("approved", "Approved", kind=StageKind.SUCCESS),
        Stage("rejected", "Rejected", kind=StageKind.DEAD_END),
    ],
    transitions=[
        Transition("draft", "approved", permission="approve"),
        Transition("draft", "rejected", requires_comment=True),
        Transition("rejected", "draft", backward=True, roles=("manager",)),
    ],
)


class ApprovalPlugin:
    """The pipeline, and a role of the deployment's own that nothing seeds ``approve`` for."""

    crmkit_plugin_name = "approval"

    @hookimpl
    def crmkit_register_pipelines(self):
        return [APPROVAL]

    @hookimpl
    def crmkit_register_roles(self):
        return [Role("senior", "Senior agent")]

    @hookimpl
    def crmkit_register_permissions(self):
        from crmkit.access import grant

        return grant("senior", ("party", "deal"), ("read", "create", "update", "move"), "own")


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[ApprovalPlugin()])


def draft(crm, user):
    with crm.acting_as(user) as work:
        return factories.deal(work, pipeline="approval").id


def test_the_permission_must_be_an_action_and_not_come_with_roles():
    with pytest.raises(ValueError, match="permission 'order pay' is not an action name"):
        Transition("a", "b", permission="order pay")
    with pytest.raises(ValueError, match="give roles or a permission, not both"):
        Transition("a", "b", permission="pay", roles=("cashier",))
    assert APPROVAL.permissions() == ["approve"]
    assert "draft -> approved  (permission: deal approve)" in APPROVAL.to_text()
    # the admin's drawing of the pipeline marks the edge with its permission or roles
    from crmkit.web.stage_graph import stage_graph

    labels = [edge.label for edge in stage_graph(APPROVAL).edges]
    assert labels == ["⚿ approve", "comment", "manager"]


def test_a_role_without_the_cell_is_refused_naming_the_move_and_the_permission(crm):
    senior = add_user(crm, "sam", ["senior"])
    deal = draft(crm, senior)
    with crm.acting_as(senior) as work:
        with pytest.raises(MoveRefused) as refused:
            work.moves.move(deal, "approved", entity="deal")
        assert refused.value.reasons == [
            "moving from “Draft” to “Approved” takes the permission “approve” on Deals"
        ]
        options = {o.stage.name: o.allowed for o in work.moves.options(deal, entity="deal")}
        assert options == {"approved": False, "rejected": True}
        assert work.deals.get(deal).stage == "draft"


def test_the_cell_given_by_the_admin_lets_the_role_move_within_its_scope(crm):
    admin = add_user(crm, "root", ["admin"])
    senior = add_user(crm, "sam", ["senior"])
    colleague = add_user(crm, "kate", ["senior"])
    mine, theirs = draft(crm, senior), draft(crm, colleague)
    with crm.acting_as(admin) as work:
        work.permissions.set("senior", "deal", "approve", "own")
        for action in ("read", "move"):  # reads and moves every deal, approves its own
            work.permissions.set("senior", "deal", action, "all")
    with crm.acting_as(senior) as work:
        options = {o.stage.name: o.allowed for o in work.moves.options(mine, entity="deal")}
        assert options == {"approved": True, "rejected": True}
        work.moves.move(mine, "approved", entity="deal")
        assert work.deals.get(mine).stage == "approved"
        # ``move`` reaches the colleague's deal, ``approve`` (own) does not
        with pytest.raises(MoveRefused) as refused:
            work.moves.move(theirs, "approved", entity="deal")
        assert refused.value.reasons == [
            "moving from “Draft” to “Approved” takes the permission “approve” on Deals, "
            "and yours does not reach this record"
        ]
        options = {o.stage.name: o.allowed for o in work.moves.options(theirs, entity="deal")}
        assert options["approved"] is False
    with crm.acting_as(admin) as work:
        work.moves.move(theirs, "approved", entity="deal")
        assert work.deals.get(theirs).stage == "approved"


def test_the_permission_is_an_action_of_the_entity_on_the_admin_screen(crm):
    admin = add_user(crm, "root", ["admin"])
    assert "approve" in crm.actions_of("deal")
    with crm.acting_as(admin) as work:
        table = work.permissions.effective("senior")
        assert table[("deal", "approve")][0].label == "none"
        work.permissions.set("senior", "deal", "approve", "team")
        assert work.permissions.effective("senior")[("deal", "approve")][0].label == "team"


def test_roles_stay_the_simple_form(crm):
    agent = add_user(crm, "agent", ["agent"])
    manager = add_user(crm, "boss", ["manager"])
    deal = draft(crm, agent)
    with crm.acting_as(agent) as work:
        work.moves.move(deal, "rejected", entity="deal", comment="no budget")
        with pytest.raises(MoveRefused, match="only Manager may move to “Draft”"):
            work.moves.move(deal, "draft", entity="deal")
    with crm.acting_as(manager) as work:
        work.moves.move(deal, "draft", entity="deal")
