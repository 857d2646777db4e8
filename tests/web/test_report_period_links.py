"""A report's page offers its period as shortcuts (today, this week, this month, last
month, this quarter, this year): links filling its period fields with the days of the
deployment's time zone, whose weeks start on the reader's first weekday."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from crmkit.clock import frozen_at
from crmkit.testing import factories

pytestmark = pytest.mark.anyio

#: 00:30 on Sunday 1 March 2026 in Moscow, still Saturday 28 February in UTC.
NOW = dt.datetime(2026, 2, 28, 21, 30, tzinfo=dt.UTC)
FUNNEL = "/reports/pipeline_funnel?pipeline=sales"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def shortcuts(page):
    """``{label: query}`` of the period links on a report's page."""
    nav = page.text.split('class="period-shortcuts"', 1)[1].split("</nav>", 1)[0]
    return {
        html.unescape(label): html.unescape(href)
        for href, label in re.findall(r'<a href="([^"]*)"[^>]*>([^<]*)</a>', nav)
    }


def qualified(page):
    table = page.text.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table)
    return cells[cells.index("Квалифицирована") + 1]


async def test_the_funnels_shortcuts_are_the_moscow_days_and_the_report_honours_them(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        # qualified on 10 February, and at 00:10 on 1 March in Moscow (28 February in UTC)
        for moment in (dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC), NOW - dt.timedelta(minutes=20)):
            with frozen_at(moment):
                work.moves.move(factories.deal(work), "qualified")
    with frozen_at(NOW):
        page = await agent.get(FUNNEL)
    links = shortcuts(page)
    # (in English until the catalog has them: "Сегодня", "Эта неделя", …)
    assert len(links) == 6
    today, week, month, last_month, quarter, year = links.values()
    # the pipeline asked for is kept; the until of the core's period is exclusive
    assert today == "?pipeline=sales&since=2026-03-01&until=2026-03-02"
    assert week == "?pipeline=sales&since=2026-02-23&until=2026-03-02"  # from Monday
    assert month == "?pipeline=sales&since=2026-03-01&until=2026-04-01"
    assert last_month == "?pipeline=sales&since=2026-02-01&until=2026-03-01"
    assert quarter == "?pipeline=sales&since=2026-01-01&until=2026-04-01"
    assert year == "?pipeline=sales&since=2026-01-01&until=2027-01-01"
    with frozen_at(NOW):
        assert qualified(await agent.get("/reports/pipeline_funnel" + today)) == "1"
        assert qualified(await agent.get("/reports/pipeline_funnel" + week)) == "1"
        assert qualified(await agent.get("/reports/pipeline_funnel" + last_month)) == "1"
        assert qualified(await agent.get("/reports/pipeline_funnel" + year)) == "2"
        chosen = await agent.get("/reports/pipeline_funnel" + last_month)
    # the period chosen is marked among the shortcuts, and its fields hold it
    assert re.search(r'aria-current="true">[^<]*</a>', chosen.text)
    assert 'name="since" value="2026-02-01"' in chosen.text
    assert 'name="until" value="2026-03-01"' in chosen.text


async def test_the_week_starts_on_the_readers_first_weekday(web, crm, monkeypatch):
    """Babel's first weekday of the reader's language: Monday in Russian (and in "en",
    the world's English); a language whose weeks start on Sunday starts them on 1 March."""
    from crmkit.web import i18n

    agent = await web("agent")
    with frozen_at(NOW):
        assert list(shortcuts(await agent.get(FUNNEL)).values())[1].endswith(
            "since=2026-02-23&until=2026-03-02"
        )
        monkeypatch.setattr(i18n.Locale, "first_weekday", property(lambda self: 6))
        links = shortcuts(await agent.get(FUNNEL))
    assert list(links.values())[1] == "?pipeline=sales&since=2026-03-01&until=2026-03-08"


async def test_a_report_without_a_period_has_no_shortcuts(web, crm):
    agent = await web("agent")
    page = await agent.get("/reports/pipeline_stage_counts?pipeline=sales")
    assert page.status_code == 200 and "period-shortcuts" not in page.text
