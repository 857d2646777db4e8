"""The finance reports through the report screen: charts, tables, CSV/XLSX, per role."""

from __future__ import annotations

import io
import re
from decimal import Decimal

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
    csv = director.get("/reports/finance.stock/export.csv").content.decode("utf-8-sig")
    assert "Motor oil 5W-30" in csv and "3200.00" in csv  # 8 l left at 400.00


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
