"""A report parameter the report refuses (``since=30.11.2026``, not a date it reads) keeps
the reader on the report's page: the reason above the form, the form holding what was
typed, a 422 — also when it was the download (CSV, XLSX) that was asked for, which
answered an error page whose only way on was the home screen."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin, urlsplit

import pytest

pytestmark = pytest.mark.anyio
QUERY = "pipeline=sales&since=30.11.2026"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _main(page):
    return html.unescape(page.text.split("<main", 1)[1].split("</main>", 1)[0])


def _kept_on_the_report(page, url):
    main = _main(page)
    assert page.status_code == 422
    assert "error-page" not in main
    alert = main.split('role="alert">', 1)[1].split("</p>", 1)[0]
    assert alert.startswith("с: ")  # the field named, as the form labels it
    # the reason comes before the form, whose fields keep what was typed
    form = main.split('class="listbar report-params"', 1)
    assert 'role="alert"' in form[0]
    assert re.search(r'<form method="get" action="/reports/pipeline_funnel"', main)
    assert '<input type="text" name="since" value="30.11.2026">' in form[1]
    assert '<input type="text" name="pipeline" value="sales">' in form[1]
    # the period shortcuts lead to the report's page, not to a download
    nav = main.split('class="period-shortcuts"', 1)[1].split("</nav>", 1)[0]
    hrefs = re.findall(r'href="([^"]*)"', nav)
    assert hrefs and all(
        urlsplit(urljoin(url, h)).path == "/reports/pipeline_funnel" for h in hrefs
    )
    # nothing to download until the parameters are right
    assert "export.csv" not in main and "export.xlsx" not in main


async def test_a_refused_parameter_is_said_above_the_report_form(web):
    admin = await web("admin")
    url = f"http://testserver/reports/pipeline_funnel?{QUERY}"
    _kept_on_the_report(await admin.get(url), url)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_a_download_with_a_refused_parameter_shows_the_report_page(web, fmt):
    admin = await web("admin")
    url = f"http://testserver/reports/pipeline_funnel/export.{fmt}?{QUERY}"
    _kept_on_the_report(await admin.get(url), url)
    # with the date put right, the same download is a file
    fixed = await admin.get(
        f"/reports/pipeline_funnel/export.{fmt}?pipeline=sales&since=2026-11-30"
    )
    assert fixed.status_code == 200 and "attachment" in fixed.headers["content-disposition"]
