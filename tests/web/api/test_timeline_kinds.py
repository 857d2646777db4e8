"""Timeline kinds are declared (the core's, each plugin's through
``crmkit_register_timeline_kinds``, each channel's): the API's ``kind`` filter accepts
exactly those and refuses any other naming ``kind``, without asking the database."""

from __future__ import annotations

import pytest

from crmkit import TimelineKind, hookimpl
from crmkit.errors import PluginError
from crmkit.testing import add_user, factories
from tests.web.api.conftest import problem
from tests.web.conftest import statements


class VisitReports:
    """A plugin whose agents file visit reports on the client's timeline."""

    crmkit_plugin_name = "test_visits"

    @hookimpl
    def crmkit_register_timeline_kinds(self):
        return [TimelineKind("visit_report", "Visit report"), "site_survey"]


def _client_with_entries(crm, *kinds):
    agent = add_user(crm, "ann", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="ООО «Визит»").id
        work.timeline.add_note(party_id=party, body="заметка")
        for kind in kinds:
            work.timeline.add(kind, party_id=party, subject=f"запись {kind}")
    return agent, party


def test_a_kind_a_plugin_declares_is_a_filter(make_crm, client_for_crm):
    crm = make_crm(plugins=[VisitReports()])
    agent, party = _client_with_entries(crm, "visit_report", "site_survey")
    api = client_for_crm(crm, agent)

    visits = api.get(f"party/{party}/timeline", params={"kind": "visit_report"})

    assert visits.status_code == 200, visits.text
    assert [e["subject"] for e in visits.json()["items"]] == ["запись visit_report"]
    both = api.get(f"party/{party}/timeline", params={"kind": "note,site_survey"}).json()
    assert sorted(e["kind"] for e in both["items"]) == ["note", "site_survey"]
    assert crm.timeline_kinds["visit_report"].label == "Visit report"
    assert crm.timeline_kinds["site_survey"].label == "site_survey"


def test_an_undeclared_kind_is_refused_naming_kind_without_a_query(crm, client_for):
    """Entries of a kind no plugin declares may exist (written before, or by a plugin
    that forgot): asking for that kind is still refused, as it is decided by the
    declarations and not by a look at the rows."""
    agent, party = _client_with_entries(crm, "visit_report")
    api = client_for(agent)

    with statements(crm.engine) as seen:
        refused = api.get(f"party/{party}/timeline", params={"kind": "note,visit_report"})

    body = problem(refused, 422)
    assert list(body["errors"]) == ["kind"]
    [why] = body["errors"]["kind"]
    assert "'visit_report'" in why
    for known in ("call", "note", "stage_move", "automation"):
        assert known in why, why
    assert not [s for s in seen if "FROM activity" in s], seen
    typo = problem(api.get(f"party/{party}/timeline", params={"kind": "nte"}), 422)
    assert "'nte'" in typo["errors"]["kind"][0]
    notes = api.get(f"party/{party}/timeline", params={"kind": "note"})
    assert [e["kind"] for e in notes.json()["items"]] == ["note"]


def test_an_entry_the_core_writes_can_be_asked_for_by_its_kind(crm, client_for):
    """``automation`` (what the assistant did for a rule) is the core's own kind."""
    agent, party = _client_with_entries(crm, "automation")
    ran = client_for(agent).get(f"party/{party}/timeline", params={"kind": "automation"})
    assert ran.status_code == 200, ran.text
    assert [e["kind"] for e in ran.json()["items"]] == ["automation"]


class OtherVisits:
    crmkit_plugin_name = "test_other_visits"

    @hookimpl
    def crmkit_register_timeline_kinds(self):
        return [TimelineKind("visit_report", "Report of a visit")]


class SameVisits:
    crmkit_plugin_name = "test_same_visits"

    @hookimpl
    def crmkit_register_timeline_kinds(self):
        return [TimelineKind("visit_report", "Visit report"), TimelineKind("note")]


class CommaKind:
    crmkit_plugin_name = "test_comma_kind"

    @hookimpl
    def crmkit_register_timeline_kinds(self):
        return ["visit,report"]


def test_a_kind_declared_twice_needs_the_same_label(make_crm):
    crm = make_crm(plugins=[VisitReports(), SameVisits()])  # the core's note, too
    assert crm.timeline_kinds["visit_report"].label == "Visit report"
    with pytest.raises(PluginError, match="timeline kind 'visit_report'"):
        make_crm(plugins=[VisitReports(), OtherVisits()])
    with pytest.raises(PluginError, match="test_comma_kind.*no commas"):
        make_crm(plugins=[CommaKind()])
