"""A pipeline guard or a ``crmkit_before_stage_move`` veto with a bug (it raises, or returns
what no guard returns) refuses the move naming itself, as a broken veto does: no 500, and
a bulk move goes on with the other records."""

from __future__ import annotations

import logging

import pytest

from crmkit import hookimpl
from crmkit.errors import MoveRefused
from crmkit.testing import add_user, factories
from tests.plain_plugin import plugin as plain

WHEN = "2026-11-20T10:00:00+03:00"
FAILED = "the guard outcome_written failed while checking this move"


@pytest.fixture
def guard():
    yield plain.GUARD
    plain.GUARD["behaviour"] = None


def _visits(crm, user, outcomes):
    with crm.acting_as(user) as work:
        party = factories.organisation(work)
        return [
            work.records("plain_visit").create(party_id=party.id, visited_at=WHEN, outcome=o).id
            for o in outcomes
        ]


@pytest.mark.parametrize("behaviour", ["raise", "wrong type"])
def test_a_broken_guard_refuses_naming_itself_and_bulk_moves_go_on(
    make_crm, guard, behaviour, caplog
):
    crm = make_crm(plugins=[plain])
    manager = add_user(crm, "manager1", ["manager"])
    first, second = _visits(crm, manager, ["met", "met"])
    guard["behaviour"] = behaviour
    with crm.acting_as(manager) as work, caplog.at_level(logging.ERROR):
        with pytest.raises(MoveRefused) as info:
            work.moves.move(first, "done", entity="plain_visit")
        assert info.value.reasons == [FAILED]
        records = [work.records("plain_visit").get(i) for i in (first, second)]
        result = work.moves.move_many(records, "done")
        assert result.moved == [] and result.refused == {first: FAILED, second: FAILED}
        cancelled = work.moves.move_many(records, "cancelled")  # no guard there
        assert cancelled.moved == [first, second]
    assert "outcome_written" in caplog.text  # the bug is logged with its traceback


def test_a_broken_guard_is_a_refusal_in_the_api_not_a_500(make_crm, client_for_crm, guard):
    crm = make_crm(plugins=[plain])
    manager = add_user(crm, "manager1", ["manager"])
    [visit] = _visits(crm, manager, ["met"])
    guard["behaviour"] = "raise"
    response = client_for_crm(crm, manager).post(f"plain_visit/{visit}/move", json={"to": "done"})
    assert response.status_code == 409, response.text
    assert FAILED in response.text
    with crm.acting_as(manager) as work:
        assert work.records("plain_visit").get(visit).stage == "planned"


class ZeroVeto:
    crmkit_plugin_name = "zero_veto"

    @hookimpl
    def crmkit_before_stage_move(self, move):
        return 0  # no veto returns that: a bug, refused naming the plugin


def test_a_veto_returning_what_no_veto_returns_refuses_naming_its_plugin(make_crm):
    crm = make_crm(plugins=[plain, ZeroVeto()])
    manager = add_user(crm, "manager1", ["manager"])
    first, second = _visits(crm, manager, ["met", "met"])
    with crm.acting_as(manager) as work:
        records = [work.records("plain_visit").get(i) for i in (first, second)]
        with pytest.raises(MoveRefused) as info:
            work.moves.move(records[0], "done")
        refusal = "the plugin zero_veto failed while checking this move"
        assert info.value.reasons == [refusal]
        result = work.moves.move_many(records, "done")
        assert result.refused == {first: refusal, second: refusal}
