"""The finance reports' period shortcuts: links filling ``start`` and ``end`` (the end day
counted) with the business's days, and the reports honouring them."""

from __future__ import annotations

import datetime as dt
import html
import re

from crmkit_finance import finance
from finance_web import clients

from crmkit.clock import frozen_at

#: 00:30 on Sunday 1 March 2026 in Moscow, still 28 February in UTC.
NOW = dt.datetime(2026, 2, 28, 21, 30, tzinfo=dt.UTC)


def _sell(shop, at):
    with frozen_at(at), shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id)  # 1500.00 service
        work.moves.move(order, "done", entity="finance_order")


def _shortcuts(page):
    nav = page.text.split('class="period-shortcuts"', 1)[1].split("</nav>", 1)[0]
    return [html.unescape(href) for href in re.findall(r'<a href="([^"]*)"', nav)]


def _months(page):
    """``{month: revenue}`` of the director's table."""
    table = page.text.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    cells = [[html.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", r)] for r in rows]
    return {row[0]: row[2] for row in cells}


def test_the_directors_shortcuts_fill_start_and_end_and_the_report_honours_them(shop):
    _sell(shop, dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC))
    _sell(shop, NOW - dt.timedelta(minutes=20))  # 00:10 on 1 March in Moscow
    director = clients(shop.crm)("director")
    with frozen_at(NOW):
        page = director.get("/reports/finance.director")
        today, week, month, last_month, quarter, year = _shortcuts(page)
        assert today == "?start=2026-03-01&end=2026-03-01"
        assert week == "?start=2026-02-23&end=2026-03-01"  # Monday to Sunday
        assert month == "?start=2026-03-01&end=2026-03-31"
        assert last_month == "?start=2026-02-01&end=2026-02-28"
        assert quarter == "?start=2026-01-01&end=2026-03-31"
        assert year == "?start=2026-01-01&end=2026-12-31"
        february = director.get("/reports/finance.director" + last_month)
        march = director.get("/reports/finance.director" + month)
        whole_year = director.get("/reports/finance.director" + year)
    assert _months(february) == {"2026-02": "1\xa0500,00"}
    assert _months(march) == {"2026-03": "1\xa0500,00"}
    assert _months(whole_year)["2026-02"] == _months(whole_year)["2026-03"] == "1\xa0500,00"


def test_the_revenue_reports_shortcuts_keep_its_other_parameters(shop):
    director = clients(shop.crm)("director")
    with frozen_at(NOW):
        page = director.get("/reports/finance.revenue?grain=day&by=item")
    assert _shortcuts(page)[0] == "?grain=day&by=item&start=2026-03-01&end=2026-03-01"


def test_reports_without_a_period_offer_no_shortcuts(shop):
    director = clients(shop.crm)("director")
    for name in ("finance.salaries", "finance.stock", "finance.receivables"):
        page = director.get(f"/reports/{name}")
        assert page.status_code == 200 and "period-shortcuts" not in page.text, name
