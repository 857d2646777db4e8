"""A bulk move to a stage that requires fields asks for them once, on a form of its own,
and fills them on every checked record; each record still moves whole or not at all."""

from __future__ import annotations

import html
import re
from urllib.parse import unquote

import pytest

from crmkit import Pipeline, Stage, StageKind, Transition, hookimpl
from crmkit.services.custom_fields import StarterField
from crmkit.testing import factories

pytestmark = pytest.mark.anyio

REASONS = ("дорого", "ушли к конкуренту", "другое")

CLOSING = Pipeline(
    "closing",
    "deal",
    label="Closing",
    stages=[
        Stage("open", "Open"),
        Stage("won", "Won", kind=StageKind.SUCCESS),
        Stage("dropped", "Dropped", kind=StageKind.DEAD_END, requires_fields=("custom.why",)),
    ],
    transitions=[Transition("open", "won"), Transition("open", "dropped")],
)


class ClosingPlugin:
    crmkit_plugin_name = "closing"

    @hookimpl
    def crmkit_register_pipelines(self):
        return [CLOSING]

    @hookimpl
    def crmkit_register_custom_fields(self):
        return [StarterField("deal", "why", "Почему закрыта", kind="choice", choices=REASONS)]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[ClosingPlugin()])


def _deals(crm, user, count):
    with crm.acting_as(user) as work:
        return [
            factories.deal(work, title=f"Сделка Ольха {n}", pipeline="closing").id
            for n in range(count)
        ]


async def test_a_bulk_move_asks_once_for_the_required_field_and_fills_every_record(web, crm):
    manager = await web("manager")
    ids = _deals(crm, manager.user, 3)
    with crm.acting_as(manager.user) as work:  # one already says why: it keeps its reason
        work.deals.update(ids[2], {"custom": {"why": "другое"}})
    chosen = {"ids": [str(i) for i in ids], "action": "stage", "stage": "dropped"}
    chosen["back"] = "q=Ольха"

    form = await manager.post("/lists/deal/bulk", {**chosen, "comment": "квартал закрыт"})

    assert form.status_code == 200  # the form, not three refusals
    page = html.unescape(form.text)
    assert "заполните" not in page
    assert "Почему закрыта" in page
    select = form.text.split('name="field.custom.why"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r'<option value="([^"]+)"', select) == list(REASONS)
    assert 'action="/lists/deal/bulk"' in form.text
    for deal_id in ids:  # the same records, the same target, comment and way back
        assert f'name="ids" value="{deal_id}"' in form.text
    assert 'name="stage" value="dropped"' in form.text
    assert "квартал закрыт" in page and 'name="back" value="q=Ольха"' in page
    with crm.acting_as(manager.user) as work:
        assert {work.deals.get(i).stage for i in ids} == {"open"}  # nothing moved yet

    moved = await manager.post(
        "/lists/deal/bulk",
        {**chosen, "comment": "квартал закрыт", "asked": "1", "field.custom.why": "дорого"},
    )

    assert moved.status_code == 303
    assert unquote(moved.headers["location"]) == "/lists/deal?q=Ольха"
    page = await manager.get(moved.headers["location"])
    assert "Переведено: 3" in page.text
    with crm.acting_as(manager.user) as work:
        deals = [work.deals.get(i) for i in ids]
    assert [d.stage for d in deals] == ["dropped"] * 3
    assert [d.custom["why"] for d in deals] == ["дорого", "дорого", "другое"]


async def test_a_bulk_move_without_the_field_names_each_refused_record(web, crm):
    manager = await web("manager")
    ids = _deals(crm, manager.user, 2)
    chosen = {"ids": [str(i) for i in ids], "action": "stage", "stage": "dropped"}

    sent = await manager.post("/lists/deal/bulk", {**chosen, "asked": "1"})  # left empty

    page = html.unescape((await manager.get(sent.headers["location"])).text)
    assert "Переведено: 0" in page
    for n in range(2):
        assert f"Сделка Ольха {n}: заполните: Почему закрыта" in page
    wrong = await manager.post(
        "/lists/deal/bulk", {**chosen, "asked": "1", "field.custom.why": "надоели"}
    )
    page = html.unescape((await manager.get(wrong.headers["location"])).text)
    assert "Переведено: 0" in page and "Сделка Ольха 0:" in page
    with crm.acting_as(manager.user) as work:
        assert [work.deals.get(i).stage for i in ids] == ["open", "open"]
        assert [work.deals.get(i).custom.get("why") for i in ids] == [None, None]


async def test_a_stage_that_needs_nothing_moves_at_once(web, crm):
    manager = await web("manager")
    ids = _deals(crm, manager.user, 2)
    moved = await manager.post(
        "/lists/deal/bulk", {"ids": [str(i) for i in ids], "action": "stage", "stage": "won"}
    )
    assert moved.status_code == 303
    with crm.acting_as(manager.user) as work:
        assert [work.deals.get(i).stage for i in ids] == ["won", "won"]
