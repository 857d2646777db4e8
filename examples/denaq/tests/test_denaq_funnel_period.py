"""The dealers' funnel by stage over a period, as the core's funnel: on its report page, on
the statistics page and in its downloads; a date that is no date is refused naming it."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
from zoneinfo import ZoneInfo

import pytest
from crmkit_denaq.distribution import distribution
from crmkit_denaq.pipeline import DEALERS
from denaq_fixtures import add_person, new_lead
from denaq_web import Client

from crmkit.clock import frozen_at
from crmkit.web import i18n
from crmkit.web.app import create_app

MOSCOW = ZoneInfo("Europe/Moscow")
NOVEMBER = "since=2026-11-01&until=2026-12-01"
#: The moments leads are entered at and the moments some of them are made firms: October,
#: November (the first minutes of 1 November in Moscow are still October in UTC), December.
ENTERED = [
    dt.datetime(2026, 10, 20, 12, 0, tzinfo=MOSCOW),
    dt.datetime(2026, 10, 31, 23, 50, tzinfo=MOSCOW),
    dt.datetime(2026, 11, 1, 0, 10, tzinfo=MOSCOW),
    dt.datetime(2026, 11, 15, 12, 0, tzinfo=MOSCOW),
    dt.datetime(2026, 12, 1, 0, 5, tzinfo=MOSCOW),
]
#: (index of the lead in ENTERED, when it became a firm)
MADE_FIRMS = [
    (0, dt.datetime(2026, 10, 25, 12, 0, tzinfo=MOSCOW)),
    (1, dt.datetime(2026, 11, 2, 12, 0, tzinfo=MOSCOW)),
    (2, dt.datetime(2026, 11, 30, 23, 59, tzinfo=MOSCOW)),
    (3, dt.datetime(2026, 12, 1, 0, 1, tzinfo=MOSCOW)),
]


def _in_november(moment: dt.datetime) -> bool:
    return (
        dt.datetime(2026, 11, 1, tzinfo=MOSCOW) <= moment < dt.datetime(2026, 12, 1, tzinfo=MOSCOW)
    )


def _expected() -> list[int]:
    """What the funnel of November counts in each dealer stage, from the fixture's moments."""
    counts = dict.fromkeys(DEALERS.stage_names(), 0)
    counts["lead"] = sum(_in_november(at) for at in ENTERED)
    counts["firm"] = sum(_in_november(at) for _, at in MADE_FIRMS)
    return list(counts.values())


@pytest.fixture
def signed_in(denaq, staff):
    app = create_app(denaq)
    return lambda username: Client(app, username)


@pytest.fixture
def history(denaq, staff):
    ids = []
    for n, at in enumerate(ENTERED):
        with frozen_at(at):
            ids.append(new_lead(denaq, staff.finder, name=f"ООО «Фирма {n}»"))
    with denaq.acting_as(staff.admin) as work:
        distribution(work).assign(ids, staff.anna.id)
    for index, at in MADE_FIRMS:
        add_person(denaq, staff.anna, ids[index])
        with frozen_at(at), denaq.acting_as(staff.anna) as work:
            work.moves.move(ids[index], "firm", entity="party")
    return ids


def _entered_on_page(page: str) -> list[int]:
    table = page.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [int(re.findall(r"<td[^>]*>([^<]*)</td>", row)[1]) for row in rows]


def _funnel_chart(page: str) -> dict:
    section = page.split('id="report-denaq_funnel"', 1)[1].split("</section>", 1)[0]
    return json.loads(html.unescape(re.search(r'data-chart="([^"]*)"', section)[1]))


def test_the_dealers_funnel_counts_the_chosen_period(denaq, staff, history, signed_in):
    expected = _expected()
    assert expected[:2] == [2, 2]  # the fixture moves records into and out of November
    admin = signed_in("boss")
    page = admin.get(f"/reports/denaq_funnel?{NOVEMBER}")
    assert page.status_code == 200
    assert 'name="since" value="2026-11-01"' in page.text
    assert 'name="until" value="2026-12-01"' in page.text
    assert _entered_on_page(page.text) == expected
    # without a period, every move counts
    assert _entered_on_page(admin.get("/reports/denaq_funnel").text)[:2] == [
        len(ENTERED),
        len(MADE_FIRMS),
    ]

    stats = admin.get(f"/denaq/stats?{NOVEMBER}&weeks=3")
    assert stats.status_code == 200
    assert _funnel_chart(stats.text)["data"]["datasets"][0]["data"] == expected
    section = stats.text.split('id="report-denaq_funnel"', 1)[1].split("</section>", 1)[0]
    assert 'name="since" value="2026-11-01"' in section
    assert 'type="hidden" name="weeks" value="3"' in section  # the other report's kept
    assert f"/reports/denaq_funnel?{NOVEMBER}" in html.unescape(section)  # its own page
    assert _funnel_chart(admin.get("/denaq/stats").text)["data"]["datasets"][0]["data"][:2] == [
        len(ENTERED),
        len(MADE_FIRMS),
    ]

    for fmt in ("csv", "xlsx"):
        download = admin.get(f"/reports/denaq_funnel/export.{fmt}?{NOVEMBER}")
        assert download.status_code == 200, fmt
    text = admin.get(f"/reports/denaq_funnel/export.csv?{NOVEMBER}").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert [int(row[1]) for row in rows] == expected


def test_the_dealers_funnel_xlsx_honours_the_period(denaq, staff, history, signed_in):
    openpyxl = pytest.importorskip("openpyxl")
    admin = signed_in("boss")
    content = admin.get(f"/reports/denaq_funnel/export.xlsx?{NOVEMBER}").content
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    values = [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert values[: len(_expected())] == _expected()


@pytest.mark.parametrize("url", ["/reports/denaq_funnel", "/denaq/stats"])
def test_a_period_that_is_no_date_is_refused_naming_the_field(denaq, staff, signed_in, url):
    admin = signed_in("boss")
    with denaq.system() as work:
        reader = i18n.locale_of(denaq, work.users.get(staff.admin.id))
    with i18n.activate(reader):
        named = i18n.gettext("until") + ": "  # the field as the page names it
    page = admin.get(f"{url}?since=2026-11-01&until=30.11.2026")
    assert page.status_code == 422, url
    assert named in html.unescape(page.text), url


#: 00:30 on 1 December 2026 in Moscow, still 30 November in UTC.
FIRST_OF_DECEMBER = dt.datetime(2026, 12, 1, 0, 30, tzinfo=MOSCOW)


def _section(page: str, name: str) -> str:
    return page.split(f'id="report-{name}"', 1)[1].split("</section>", 1)[0]


def _shortcuts(section: str) -> list[str]:
    nav = section.split('class="period-shortcuts"', 1)[1].split("</nav>", 1)[0]
    return [html.unescape(href) for href in re.findall(r'<a href="([^"]*)"', nav)]


def test_the_statistics_funnel_offers_period_shortcuts_of_moscow_days(
    denaq, staff, history, signed_in
):
    """On 1 December at 00:30 in Moscow (30 November in UTC), "last month" is November
    and "today" 1 December there; each link keeps the other report's weeks and leads back
    to the funnel's chart, which counts that period."""
    admin = signed_in("boss")
    with frozen_at(FIRST_OF_DECEMBER):
        stats = admin.get("/denaq/stats?weeks=3")
        links = _shortcuts(_section(stats.text, "denaq_funnel"))
        today, week, month, last_month, quarter, year = links
        assert month == "?weeks=3&since=2026-12-01&until=2027-01-01#report-denaq_funnel"
        assert year == "?weeks=3&since=2026-01-01&until=2027-01-01#report-denaq_funnel"
        assert last_month == f"?weeks=3&{NOVEMBER}#report-denaq_funnel"
        assert today == "?weeks=3&since=2026-12-01&until=2026-12-02#report-denaq_funnel"
        assert week == "?weeks=3&since=2026-11-30&until=2026-12-07#report-denaq_funnel"
        assert quarter == "?weeks=3&since=2026-10-01&until=2027-01-01#report-denaq_funnel"
        november = admin.get("/denaq/stats" + last_month.split("#")[0])
        first_day = admin.get("/denaq/stats" + today.split("#")[0])
        page = admin.get("/reports/denaq_funnel")
    assert _funnel_chart(november.text)["data"]["datasets"][0]["data"] == _expected()
    # on 1 December: the lead entered at 00:05 and the firm made at 00:01
    assert _funnel_chart(first_day.text)["data"]["datasets"][0]["data"][:2] == [1, 1]
    # the report's own page offers the same, without the statistics' other parameters
    assert _shortcuts(page.text)[3] == f"?{NOVEMBER}"
    # a report without a period has none
    assert "period-shortcuts" not in _section(stats.text, "denaq_activity")


def _left_on_page(page: str) -> list[int]:
    """The time in stage's "left the stage" column, stage by stage."""
    return _entered_on_page(page)  # the same place: the second cell of each row


def test_the_time_in_stage_counts_the_chosen_period(denaq, staff, history, signed_in):
    """Leads made firms in November (at 12:00 on the 2nd, at 23:59 on the 30th in Moscow)
    left the lead stage in November; those of October and of the first minute of December
    are left out, on the report's page, on the statistics page and in the download."""
    in_november = sum(_in_november(at) for _, at in MADE_FIRMS)
    assert 0 < in_november < len(MADE_FIRMS)
    admin = signed_in("boss")
    page = admin.get(f"/reports/denaq_time_in_stage?{NOVEMBER}")
    assert page.status_code == 200
    assert 'name="since" value="2026-11-01"' in page.text
    assert 'name="until" value="2026-12-01"' in page.text
    assert _left_on_page(page.text)[0] == in_november
    assert _left_on_page(admin.get("/reports/denaq_time_in_stage").text)[0] == len(MADE_FIRMS)
    stats = admin.get(f"/denaq/stats?{NOVEMBER}")
    section = _section(stats.text, "denaq_time_in_stage")
    assert 'name="since" value="2026-11-01"' in section and "period-shortcuts" in section
    text = admin.get(f"/reports/denaq_time_in_stage/export.csv?{NOVEMBER}")
    rows = list(csv.reader(io.StringIO(text.content.decode("utf-8-sig"))))[1:]
    assert int(rows[0][1]) == in_november


def test_a_refused_period_is_shown_by_its_chart_with_the_form_to_correct_it(
    denaq, staff, history, signed_in
):
    """A date typed as the admin writes it (30.11.2026) is refused next to the funnel's
    form, which keeps what was typed; the other charts are still drawn, and the page is the
    statistics with its menu, not an error page to go back from."""
    admin = signed_in("boss")
    with denaq.system() as work:
        reader = i18n.locale_of(denaq, work.users.get(staff.admin.id))
    with i18n.activate(reader):
        named = i18n.gettext("until") + ": "  # the field as the page names it
    page = admin.get("/denaq/stats?since=2026-11-01&until=30.11.2026&weeks=3")
    assert page.status_code == 422
    text = html.unescape(page.text)
    funnel = _section(text, "denaq_funnel")
    assert 'role="alert"' in funnel and named in funnel
    assert 'name="until" value="30.11.2026"' in funnel
    assert "<canvas" not in funnel
    assert "<canvas" in _section(text, "denaq_funnel_by_agent")
    assert 'name="weeks" value="3"' in _section(text, "denaq_activity")
    assert "/denaq/distribution" in text  # the menu is there
    # the period is chosen with the browser's date field, the weeks with a number field
    assert re.search(r'<input type="date" name="since" value="2026-11-01"', funnel)
    assert re.search(r'<input type="number" name="weeks" value="3" min="1" max="52"', text)


def test_a_period_with_nothing_in_it_says_so_instead_of_an_empty_chart(
    denaq, staff, history, signed_in
):
    """January 2027 has no moves: the funnel and the time in stage say there is nothing for
    this period rather than drawing bars of zero; the reports without a period still draw."""
    admin = signed_in("boss")
    page = admin.get("/denaq/stats?since=2027-01-01&until=2027-02-01")
    assert page.status_code == 200
    with denaq.system() as work:
        reader = i18n.locale_of(denaq, work.users.get(staff.admin.id))
    with i18n.activate(reader):
        nothing = i18n.gettext("Nothing for this period.")
    for name in ("denaq_funnel", "denaq_time_in_stage"):
        section = html.unescape(_section(page.text, name))
        assert "<canvas" not in section and nothing in section, name
    assert "<canvas" in _section(page.text, "denaq_leads_by_source")


def test_leads_found_nowhere_in_particular_are_named_so_in_the_sources_pie(denaq, staff, signed_in):
    """A lead entered without a source is counted under words, not a lone dash the pie's
    legend and the table show as if it were a source called "—"."""
    new_lead(denaq, staff.finder, name="ООО «Без источника»")
    new_lead(denaq, staff.finder, name="ООО «С выставки»", source="выставка")
    with denaq.system() as work:
        reader = i18n.locale_of(denaq, work.users.get(staff.admin.id))
    with i18n.activate(reader):
        unnamed = i18n.gettext("no source given")
    admin = signed_in("boss")
    stats = admin.get("/denaq/stats")
    section = _section(stats.text, "denaq_leads_by_source")
    chart = json.loads(html.unescape(re.search(r'data-chart="([^"]*)"', section)[1]))
    assert sorted(chart["data"]["labels"]) == sorted(["выставка", unnamed])
    table = html.unescape(admin.get("/reports/denaq_leads_by_source").text)
    assert unnamed in table.split("<tbody>", 1)[1].split("</tbody>", 1)[0]


def test_leads_nobody_entered_are_named_so_in_the_creators_pie(denaq, staff, signed_in):
    """A lead with no creator (imported, made by the system) is counted under words in
    «Leads by creator», as the sources' pie does, not under a lone dash."""
    new_lead(denaq, staff.finder, name="ООО «От Ксении»")
    with denaq.system() as work:
        work.parties.create(name="ООО «Из импорта»", confirm_duplicates=True)
        reader = i18n.locale_of(denaq, work.users.get(staff.admin.id))
    with i18n.activate(reader):
        unnamed = i18n.gettext("no creator given")
    admin = signed_in("boss")
    stats = admin.get("/denaq/stats")
    section = _section(stats.text, "denaq_leads_by_creator")
    chart = json.loads(html.unescape(re.search(r'data-chart="([^"]*)"', section)[1]))
    assert sorted(chart["data"]["labels"]) == sorted([staff.finder.label, unnamed])
    table = html.unescape(admin.get("/reports/denaq_leads_by_creator").text)
    body = table.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert unnamed in body and "—" not in body
