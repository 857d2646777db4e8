"""Funnels and time in stage from the move history, access-scoped."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import update

from crmkit.errors import ValidationFailed
from crmkit.model import Deal, StageMove
from crmkit.pipeline.reports import funnel, stage_counts, time_in_stage
from crmkit.testing import add_user, factories


@pytest.fixture
def crm(make_crm, request):
    """The core alone; parametrized indirectly with a zone, in that deployment time zone."""
    zone = getattr(request, "param", None)
    return make_crm(settings={"locale.timezone": zone} if zone else None)


@pytest.fixture
def history(crm):
    """Two agents' deals through the sales pipeline, with known durations."""
    ivan = add_user(crm, "ivan", ["agent"])
    maria = add_user(crm, "maria", ["agent"])
    boss = add_user(crm, "boss", ["manager"])
    paths = {
        ivan: [["qualified", "proposal", "won"], ["qualified"], [], ["lost"]],
        maria: [["qualified", "proposal"], ["lost"]],
    }
    for user, deals in paths.items():
        for stages in deals:
            with crm.acting_as(user) as work:
                deal = factories.deal(work, amount="1000")
                for stage in stages:
                    comment = "no budget" if stage == "lost" else None
                    work.moves.move(deal, stage, comment=comment)
    with crm.system() as work:  # every move out of "new" took exactly two hours
        work.session.execute(
            update(StageMove).where(StageMove.from_stage == "new").values(seconds_in_source=7200)
        )
    return ivan, maria, boss


def test_funnel_counts_and_conversions(crm, history):
    _, _, boss = history
    with crm.acting_as(boss) as work:
        steps = {s.stage: s for s in funnel(work, "sales")}
    assert [(s, steps[s].entered) for s in ("new", "qualified", "proposal", "won", "lost")] == [
        ("new", 6),
        ("qualified", 3),
        ("proposal", 2),
        ("won", 1),
        ("lost", 2),
    ]
    assert steps["qualified"].from_first == 0.5
    assert steps["proposal"].from_previous == Decimal("0.6667")  # a Decimal, half up
    assert steps["won"].from_previous == 0.5
    assert steps["lost"].from_previous is None


def test_agents_see_their_own_funnel_only(crm, history):
    ivan, maria, _ = history
    with crm.acting_as(maria) as work:
        entered = {s.stage: s.entered for s in funnel(work, "sales")}
    assert entered["new"] == 2 and entered["won"] == 0
    with crm.acting_as(ivan) as work:
        counts = {r["stage"]: r["count"] for r in stage_counts(work, "sales")}
    assert counts == {"won": 1, "qualified": 1, "new": 1, "lost": 1}


def test_period_filter(crm, history):
    _, _, boss = history
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with crm.acting_as(boss) as work:
        assert all(s.entered == 0 for s in funnel(work, "sales", since=future))


def test_time_in_stage(crm, history):
    _, _, boss = history
    with crm.acting_as(boss) as work:
        rows = {r["stage"]: r for r in time_in_stage(work, "sales")}
    assert rows["new"]["left"] == 5 and rows["new"]["average_seconds"] == 7200.0
    assert rows["qualified"]["left"] == 2  # two went on to proposal, one still waits


def test_registered_report_with_owner_split(crm, history):
    ivan, _, boss = history
    with crm.acting_as(boss) as work:
        report = crm.reports["pipeline_stage_counts"].build(
            work, {"pipeline": "sales", "by_owner": "true"}
        )
    assert {"stage": "won", "owner_id": ivan.id, "count": 1} in report.rows


@pytest.mark.parametrize("crm", ["Asia/Vladivostok"], indirect=True)
def test_report_period_without_offset_is_read_in_the_deployment_zone(crm, history):
    """A move at 06:00 on 2 March in Vladivostok (20:00 UTC on 1 March) is in a report for
    2 March typed as a plain date, and not in one for 1 March."""
    _, _, boss = history
    moment = dt.datetime(2025, 3, 1, 20, 0, tzinfo=dt.UTC)
    with crm.system() as work:
        work.session.execute(update(StageMove).values(at=moment))
    funnel_of = crm.reports["pipeline_funnel"].build
    with crm.acting_as(boss) as work:
        second = funnel_of(
            work, {"pipeline": "sales", "since": "2025-03-02", "until": "2025-03-03"}
        )
        first = funnel_of(work, {"pipeline": "sales", "since": "2025-03-01", "until": "2025-03-02"})
    assert {r["stage"]: r["entered"] for r in second.rows}["new"] == 6
    assert {r["stage"]: r["entered"] for r in first.rows}["new"] == 0


def test_funnel_owner_filter_counts_the_records_the_user_owns_now(crm, history):
    """Ivan's won deal handed to Maria is in Maria's funnel, with its whole history."""
    ivan, maria, boss = history
    with crm.acting_as(boss) as work:
        won = work.session.scalars(work.records("deal").query().where(Deal.stage == "won")).one()
        work.records("deal").assign([won.id], maria.id)
    funnel_of = crm.reports["pipeline_funnel"].build
    with crm.acting_as(boss) as work:
        marias = funnel_of(work, {"pipeline": "sales", "owner_id": str(maria.id)})
        ivans = funnel_of(work, {"pipeline": "sales", "owner_id": str(ivan.id)})
    marias_entered = {r["stage"]: r["entered"] for r in marias.rows}
    ivans_entered = {r["stage"]: r["entered"] for r in ivans.rows}
    assert (marias_entered["new"], marias_entered["won"]) == (3, 1)
    assert (ivans_entered["new"], ivans_entered["won"]) == (3, 0)


def test_a_record_moved_forward_back_and_forward_again_entered_each_stage_once(crm):
    """A deal taken back from Proposal to Qualified and from Qualified to New, then forward
    again, entered each stage once and came back twice: the funnel shows it so, and its
    conversions are not inflated by the second entries."""
    agent = add_user(crm, "ivan", ["agent"])
    with crm.acting_as(agent) as work:
        deal = factories.deal(work, amount="1000")
        for stage in ("qualified", "new", "qualified", "proposal", "qualified", "proposal"):
            work.moves.move(deal, stage)
        history = [(m.from_stage, m.to_stage, m.backward) for m in work.moves.history(deal)]
    assert history == [
        (None, "new", False),
        ("new", "qualified", False),
        ("qualified", "new", True),
        ("new", "qualified", False),
        ("qualified", "proposal", False),
        ("proposal", "qualified", True),
        ("qualified", "proposal", False),
    ]
    with crm.acting_as(agent) as work:
        steps = {s.stage: s for s in funnel(work, "sales")}
        report = crm.reports["pipeline_funnel"].build(work, {"pipeline": "sales"})
    assert {s: (steps[s].entered, steps[s].moved_back) for s in steps} == {
        "new": (1, 1),
        "qualified": (1, 1),
        "proposal": (1, 0),
        "won": (0, 0),
        "lost": (0, 0),
    }
    assert steps["qualified"].from_previous == 1.0 and steps["proposal"].from_first == 1.0
    assert [c.key for c in report.columns][:3] == ["label", "entered", "moved_back"]
    assert report.chart["datasets"][1] == {"label": "Moved back", "data": [1, 1, 0, 0, 0]}


def test_a_move_back_alone_is_not_an_entry(crm, history):
    """Reopening a lost deal in the period counts it apart in New, not as a new entry."""
    _, _, boss = history
    with crm.acting_as(boss) as work:
        lost = work.session.scalars(work.records("deal").query().where(Deal.stage == "lost"))
        for deal in lost:
            work.moves.move(deal, "new")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with crm.system() as work:  # the earlier history happened long before the period
        work.session.execute(
            update(StageMove)
            .where(StageMove.backward.is_(False))
            .values(at=since - dt.timedelta(days=30))
        )
    with crm.acting_as(boss) as work:
        steps = {s.stage: s for s in funnel(work, "sales", since=since)}
    assert (steps["new"].entered, steps["new"].moved_back) == (0, 2)
    assert steps["new"].from_first is None


@pytest.mark.parametrize("owner", ["abc", "²", "1.5", "-1", "0", "99999999999999999999999"])
def test_funnel_refuses_an_owner_that_is_no_id_naming_owner_id(crm, history, owner):
    """``owner_id=abc`` (a typed or cut URL) crashed the report page with a 500."""
    _, _, boss = history
    with crm.acting_as(boss) as work, pytest.raises(ValidationFailed) as refused:
        crm.reports["pipeline_funnel"].build(work, {"pipeline": "sales", "owner_id": owner})
    assert list(refused.value.errors) == ["owner_id"]


def test_the_funnels_conversion_is_rounded_half_up(crm):
    """One deal of 32 qualified: 0.03125 of them, which is 0.0313 by hand (rounded half
    up), as every report's share is (crmkit.reports.share)."""
    boss = add_user(crm, "boss", ["manager"])
    with crm.acting_as(boss) as work:
        deals = [factories.deal(work) for _ in range(32)]
        work.moves.move(deals[0], "qualified")
        steps = {s.stage: s for s in funnel(work, "sales")}
    assert steps["qualified"].from_first == Decimal("0.0313")
    assert steps["qualified"].from_previous == Decimal("0.0313")
    assert steps["new"].from_first == Decimal("1.0000")
