"""Record pages and lists name the records a record refers to (a calendar event's
resource, a subtask's parent task, a team) instead of showing their ids."""

from __future__ import annotations

import html
import re

import pytest

from crmkit.model import Resource

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _details(page) -> dict[str, str]:
    block = page.text.split('<dl class="details">', 1)[1].split("</dl>", 1)[0]
    pairs = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block, re.S)
    return {label.strip(): value.strip() for label, value in pairs}


async def test_an_event_page_names_its_resource(web, crm):
    agent = await web("agent")
    with crm.system() as work:
        bay = Resource(name="Пост 1", kind="bay")
        work.session.add(bay)
        work.flush()
        bay_id = bay.id
    with crm.acting_as(agent.user) as work:
        event = work.calendar.create(
            title="ТО",
            resource_id=bay_id,
            starts_at="2026-11-25T10:00:00+00:00",
            ends_at="2026-11-25T11:00:00+00:00",
        )
    page = await agent.get(f"/records/calendar_event/{event.id}")
    assert page.status_code == 200
    fields = _details(page)
    shown = fields.get("resource_id") or fields.get("ресурс")
    assert shown == f'<a href="/records/resource/{bay_id}">Пост 1</a>', fields


async def test_the_task_list_names_a_subtasks_parent(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        parent = work.tasks.create(title="Подготовить договор", assignee_id=agent.user.id)
        child = work.tasks.create(
            title="Согласовать цену", parent_id=parent.id, assignee_id=agent.user.id
        )
    page = await agent.get("/lists/task?cols=title,parent_id")
    assert page.status_code == 200
    row = next(r for r in page.text.split("<tbody", 1)[1].split("<tr") if child.title in r)
    assert f'<a href="/records/task/{parent.id}">Подготовить договор</a>' in row


async def test_a_deal_page_names_its_pipeline_by_title(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        client = work.parties.create(name="ООО «Ромашка»")
        deal = work.deals.create(title="Поставка", party_id=client.id)
    pipeline = crm.pipelines.get(deal.pipeline)
    assert pipeline.title != pipeline.name
    page = await agent.get(f"/records/deal/{deal.id}")
    # the stage line is labelled with it; the field block does not repeat it
    fields = _details(page)
    assert not {"pipeline", "воронка", "stage", "стадия"} & set(fields), fields
    line = re.search(r'<ol class="stage-line" aria-label="([^"]*)"', page.text)
    assert line is not None and line.group(1) != pipeline.name, page.text
    assert html.unescape(line.group(1)) in (pipeline.title, _russian(crm, pipeline.title))


def _russian(crm, text):
    from crmkit.web import i18n

    return i18n.catalogs_of(crm)["ru"].gettext(text)
