"""The finance reports through the report screen: charts, tables, CSV/XLSX, per role."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from decimal import ROUND_HALF_UP, Decimal

from crmkit_finance import finance
from finance_web import clients
from openpyxl import load_workbook


def _sell(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id)  # 1500.00 service
        finance(work).orders.add_line(order, shop.oil.id, qty="2")  # 1800.00 goods, cost 800
        work.moves.move(order, "done", entity="finance_order")
    return order


def test_the_director_sees_the_dashboard_chart_and_downloads_it(shop):
    _sell(shop)
    director = clients(shop.crm)("director")
    listed = director.get("/reports").text
    for name in ("finance.director", "finance.profit_loss", "finance.stock", "finance.salaries"):
        assert f'href="/reports/{name}"' in listed
    page = director.get("/reports/finance.director")
    assert page.status_code == 200 and 'id="report-chart"' in page.text
    total = page.text.split('id="report-table"', 1)[1].split("<tfoot>", 1)[1].split("</tfoot>")[0]
    assert "3\xa0300,00" in total  # revenue
    assert "2\xa0500,00" in total  # margin: 3300 - 800
    xlsx = director.get("/reports/finance.director/export.xlsx")
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    header = [cell.value for cell in sheet[1]]
    revenue_column = header.index("Выручка") + 1
    last = sheet.max_row
    assert Decimal(str(sheet.cell(row=last, column=revenue_column).value)) == Decimal("3300")
    stock = director.get("/reports/finance.stock/export.csv").content.decode("utf-8-sig")
    assert "Motor oil 5W-30" in stock and "3200.00" in stock  # 8 l left at 400.00


def _table(page, part):
    """The cells of the report table's ``thead``, ``tbody`` or ``tfoot``."""
    table = page.text.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    section = table.split(f"<{part}>", 1)[1].split(f"</{part}>", 1)[0]
    return [html.unescape(c) for c in re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", section)]


def test_the_margin_share_reads_as_a_percent_on_the_page_and_in_the_files(shop):
    """One order of the fixture's oil change and two litres of oil: the director reads its
    margin as a percent of the revenue ("75,8 %" in Russian, not "7 580 %"); the XLSX cell
    holds the fraction with a percent format, and the CSV writes the fraction."""
    with shop.crm.acting_as(shop.warehouse) as work:
        stock = finance(work).stock
        unit_cost = stock.average_cost(stock.level(shop.oil.id, shop.branch.id))
    _sell(shop)
    revenue = shop.oil_change.price + 2 * shop.oil.price
    share = (revenue - 2 * unit_cost) / revenue
    shown = (share * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    expected = f"{shown}".replace(".", ",") + "\xa0%"  # 2500 of 3300: 75,8 %
    director = clients(shop.crm)("director")
    page = director.get("/reports/finance.director")
    column = _table(page, "thead").index("Маржа, %")
    assert _table(page, "tfoot")[column] == expected
    width = len(_table(page, "thead"))
    months = _table(page, "tbody")[column::width]
    assert months[-1] == expected and not any(months[:-1])  # this month's order, none before
    sheet = load_workbook(
        io.BytesIO(director.get("/reports/finance.director/export.xlsx").content)
    ).active
    cell = sheet.cell(row=sheet.max_row, column=column + 1)  # the totals row
    assert abs(Decimal(str(cell.value)) - share) < Decimal("0.00005")
    assert cell.number_format == "0.0%"
    rows = list(
        csv.reader(
            io.StringIO(
                director.get("/reports/finance.director/export.csv").content.decode("utf-8-sig")
            )
        )
    )
    assert Decimal(rows[-1][column]) == share.quantize(Decimal("0.0001"), ROUND_HALF_UP)


def test_each_role_sees_only_its_reports(shop):
    signed_in = clients(shop.crm)
    head = signed_in("warehouse")
    listed = set(re.findall(r'href="/reports/(finance\.[a-z_]+)"', head.get("/reports").text))
    assert listed == {"finance.stock"}
    assert head.get("/reports/finance.profit_loss").status_code == 404
    cashier = signed_in("cashier")
    listed = set(re.findall(r'href="/reports/(finance\.[a-z_]+)"', cashier.get("/reports").text))
    assert listed == {"finance.shift", "finance.receivables"}
    page = cashier.get("/reports/finance.receivables")
    assert page.status_code == 200 and "export.csv" not in page.text  # no export permission
    assert cashier.get("/reports/finance.receivables/export.csv").status_code == 404
    assert cashier.get("/reports/finance.director").status_code == 404


def _chart(page):
    found = re.search(r'data-chart="([^"]*)"', page.text)
    return json.loads(html.unescape(found.group(1)))


def _cells(page):
    table = page.text.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    return [html.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", table)]


def test_a_russian_reader_reads_the_reports_texts_in_russian(shop):
    # waits on the catalogs: the account names and report texts marked with Label()
    _sell(shop)
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).expenses.expense("expense:rent", "100.00")
    director = clients(shop.crm)("director")
    page = director.get("/reports/finance.profit_loss")
    cells = _cells(page)
    for text in ("Выручка от товаров", "Выручка от услуг", "Аренда", "Прибыль", "прибыль"):
        assert text in cells, (text, cells)
    assert not {"Goods revenue", "Rent", "Profit", "profit"} & set(cells)
    labels = [d["label"] for d in _chart(page)["data"]["datasets"]]
    assert labels == ["Доходы", "Расходы", "Прибыль"]
    rows = list(
        csv.reader(
            io.StringIO(
                director.get("/reports/finance.profit_loss/export.csv").content.decode("utf-8-sig")
            )
        )
    )
    assert rows[[r[0] for r in rows].index("Аренда")][:2] == ["Аренда", "расход"]
    assert rows[-1][:2] == ["Прибыль", "прибыль"]
    stock = director.get("/reports/finance.stock/export.csv").content.decode("utf-8-sig")
    assert stock.splitlines()[-1].startswith("Итого,")  # the totals row's own label
    sheet = load_workbook(
        io.BytesIO(director.get("/reports/finance.profit_loss/export.xlsx").content)
    ).active
    assert "Выручка от услуг" in [row[0].value for row in sheet.iter_rows()]
    worker = director.get("/reports/finance.revenue?by=worker")
    head = worker.text.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert "Исполнитель" in head and "Worker" not in head
    flow = [
        d["label"] for d in _chart(director.get("/reports/finance.cash_flow"))["data"]["datasets"]
    ]
    assert flow == ["Чистый денежный поток"]


def test_a_report_parameter_that_is_no_id_is_refused_naming_it(shop):
    director = clients(shop.crm)("director")
    for url, field in (
        ("/reports/finance.stock?location_id=abc", "филиал"),
        ("/reports/finance.shift?shift_id=abc", None),
    ):
        page = director.get(url)
        assert page.status_code == 422, url
        error = html.unescape(page.text)
        assert "не номер записи (целое число от 1 до 2^63-1)" in error, url
        assert field is None or f"{field}: не номер записи" in error


def _body_rows(page) -> int:
    table = page.text.split('id="report-table"', 1)[1].split("<tbody>", 1)[1]
    return table.split("</tbody>", 1)[0].count("<tr>")


def test_the_order_margin_screen_offers_and_checks_its_limit(shop):
    _sell(shop)
    _sell(shop)
    director = clients(shop.crm)("director")
    page = director.get("/reports/finance.order_margin")
    assert page.status_code == 200
    assert '<input type="number" name="limit" value="">' in page.text
    assert _body_rows(page) == 2
    page = director.get("/reports/finance.order_margin?limit=1")
    assert page.status_code == 200
    assert '<input type="number" name="limit" value="1">' in page.text
    assert _body_rows(page) == 1
    page = director.get("/reports/finance.order_margin?limit=0")
    assert page.status_code == 422
    assert "число заказов: '0' — не целое число от 1 до 5000" in html.unescape(page.text)


def test_the_reports_list_describes_each_report_in_words_not_its_parameter_names(shop):
    listed = clients(shop.crm)("director").get("/reports").text
    assert "finance.revenue" in listed and "finance.salaries" in listed
    assert "``" not in listed
    for name in ("grain", "shift_id"):
        assert name not in re.sub(r"<[^>]+>", " ", listed)
