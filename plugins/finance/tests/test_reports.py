"""Reports: figures equal those computed directly, each role sees only its reports, exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest
from crmkit_finance import finance
from crmkit_finance.export import to_csv, to_xlsx
from crmkit_finance.reports import run_report
from finance_fixtures import after_month, money

from crmkit.access.rules import Scope
from crmkit.errors import PermissionDenied
from crmkit.testing import add_user


def trade(shop, orders=12, seed=3):
    """A few orders with random lines, completed and paid; returns what was sold."""
    rng = random.Random(seed)
    crm = shop.crm
    mechanic = add_user(crm, "mechanic", ["agent"])
    sold = []
    with crm.acting_as(shop.cashier) as work:
        finance(work).cashdesk.open_shift(shop.desk.id, counted="0")
    for _ in range(orders):
        with crm.acting_as(shop.manager) as work:
            fin = finance(work)
            order = shop.order(
                work, assignee_id=mechanic.id, discount_percent=str(rng.choice([0, 5]))
            )
            fin.orders.add_line(order, shop.oil_change.id, main=True)
            if rng.random() < 0.6:
                fin.orders.add_line(order, shop.diagnostics.id)
            if rng.random() < 0.4:
                fin.orders.add_line(order, shop.oil.id, qty="0.5")
            work.moves.move(order, "done")
            sold.append(order)
        with crm.acting_as(shop.cashier) as work:
            fin = finance(work)
            fin.payments.take(
                order_id=order.id,
                amount=order.total,
                method=rng.choice(["cash", "card"]),
                desk_id=shop.desk.id,
            )
    return sold, mechanic


def share(part, whole):
    """A percent column's value: the fraction (0.7576 for 75.76 %), four places, half up."""
    return (part / whole).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def test_director_report_equals_the_orders(shop):
    orders, _ = trade(shop)
    with shop.crm.acting_as(shop.director) as work:
        fin = finance(work)
        result = run_report(work, "finance.director", {})
        by_category = defaultdict(Decimal)
        revenue = cost = Decimal(0)
        for order in orders:
            for line in fin.orders.lines(order.id):
                by_category[line.category_id] += line.amount
                revenue += line.amount
                cost += line.cost
    month = orders[0].completed_on.strftime("%Y-%m")
    [row] = [r for r in result.rows if r["month"] == month]
    assert row["revenue"] == revenue == result.totals["revenue"]
    assert row["orders"] == len(orders)
    assert row["cost"] == cost and row["margin"] == revenue - cost
    assert row["margin_percent"] == share(revenue - cost, revenue)
    assert result.totals["margin_percent"] == share(revenue - cost, revenue)
    assert row["average_check"] == (revenue / len(orders)).quantize(Decimal("0.01"))
    assert row[f"category_{shop.engine.id}"] == by_category[shop.engine.id]
    assert row[f"category_{shop.parts.id}"] == by_category[shop.parts.id]
    assert result.chart["type"] == "bar" and result.chart["data"]["labels"][-1] == month


def test_ledger_reports_agree_with_the_orders(shop):
    orders, mechanic = trade(shop, orders=6)
    # read once the month is over: its salaries are accrued then
    with after_month(shop.crm, orders[0].completed_on), shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.expenses.expense("expense:rent", "1000.00")
        fin.payroll.set_scheme(mechanic.id, percent="10", valid_from=dt.date(2020, 1, 1))
        fin.payroll.accrue(orders[0].completed_on)
        fin.plans.set(orders[0].completed_on, "revenue", "10000.00")
        pnl = run_report(work, "finance.profit_loss", {})
        revenue = sum((o.total for o in orders), Decimal(0))
        cost = sum((ln.cost for o in orders for ln in fin.orders.lines(o.id)), Decimal(0))
        salary = fin.payroll.payslip(mechanic.id, orders[0].completed_on)["total"]
        assert pnl.totals["income"] == revenue
        assert pnl.totals["expenses"] == cost + Decimal("1000.00") + salary
        assert pnl.totals["profit"] == revenue - cost - Decimal("1000.00") - salary
        flow = run_report(work, "finance.cash_flow", {})
        assert flow.totals["inflow"] == revenue
        assert flow.totals["outflow"] == money("1000.00")
        [plan] = run_report(work, "finance.plan_fact", {}).rows
        assert plan["fact"] == revenue and plan["difference"] == revenue - Decimal("10000.00")
        assert plan["done_percent"] == share(revenue, Decimal("10000.00"))
        salaries = run_report(
            work, "finance.salaries", {"month": orders[0].completed_on.isoformat()}
        )
        assert [r["total"] for r in salaries.rows] == [salary]
        margin = run_report(work, "finance.service_margin", {})
        assert sum((r["revenue"] for r in margin.rows), Decimal(0)) == revenue
        # every margin is the same kind of share as the director's and the funnel's
        for row in [*margin.rows, *run_report(work, "finance.order_margin", {}).rows]:
            assert row["margin_percent"] == share(row["margin"], row["revenue"])
        per_order = run_report(work, "finance.order_margin", {})
        assert {r["order_id"]: r["revenue"] for r in per_order.rows} == {
            o.id: o.total for o in orders
        }


def test_corporate_income_and_average_check(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        company = work.parties.create(
            kind="organisation", name="ООО «Флот»", customer_type="corporate"
        )
        order = shop.order(work, party_id=company.id)
        fin.orders.add_line(order, shop.oil_change.id)
        work.moves.move(order, "done")
    with crm.acting_as(shop.cashier) as work:
        finance(work).payments.take(order_id=order.id, amount="1500.00", method="transfer")
    trade(shop, orders=2)
    with crm.acting_as(shop.director) as work:
        result = run_report(work, "finance.corporate_income", {})
        assert [(r["client"], r["received"]) for r in result.rows] == [
            ("ООО «Флот»", money("1500.00"))
        ]
        check = run_report(work, "finance.average_check", {})
        assert check.totals["orders"] == 3


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("cashier", {"finance.shift", "finance.receivables"}),
        ("warehouse_head", {"finance.stock"}),
        ("accountant", "all"),
        ("director", "all"),
        ("admin", "all"),
        ("manager", set()),
    ],
)
def test_each_role_sees_only_its_reports(shop, role, allowed):
    crm = shop.crm
    user = shop.cashier if role == "cashier" else add_user(crm, f"user_{role}", [role])
    with crm.acting_as(shop.cashier) as work:
        shift = finance(work).cashdesk.open_shift(shop.desk.id, counted="0")
    reached = set()
    for name in crm.reports:
        if not name.startswith("finance."):
            continue
        params = {"shift_id": shift.id} if name == "finance.shift" else {}
        with crm.acting_as(user) as work:
            try:
                run_report(work, name, params)
            except PermissionDenied:
                continue
            reached.add(name)
    expected = {n for n in crm.reports if n.startswith("finance.")} if allowed == "all" else allowed
    assert reached == expected


def test_the_report_permission_hands_finance_reports_to_another_role(shop):
    """Running the reports beyond their roles is the ``report`` cell of their entity (the
    admin's, seeded), not the role's name: managers granted it on orders run the order
    reports, and still not the salaries."""
    from crmkit_finance.access import REPORTED

    crm = shop.crm
    trade(shop, orders=2)
    with crm.system() as work:
        assert {r.entity for r in crm.reports.values() if r.name.startswith("finance.")} <= set(
            REPORTED
        )
        cells = work.permissions.effective("admin")
        assert all(cells[(entity, "report")][0] is Scope.ALL for entity in REPORTED)
    with crm.acting_as(shop.manager) as work, pytest.raises(PermissionDenied):
        run_report(work, "finance.revenue", {})
    with crm.system() as work:
        work.permissions.set("manager", "finance_order", "report", "all")
    with crm.acting_as(shop.manager) as work:
        assert run_report(work, "finance.director", {}).totals["orders"] == 2
        run_report(work, "finance.revenue", {})
    with crm.acting_as(shop.manager) as work, pytest.raises(PermissionDenied) as refused:
        run_report(work, "finance.salaries", {})
    assert refused.value.entity == "finance_payroll" and "salaries" in str(refused.value)


def test_exports_are_readable(shop):
    trade(shop, orders=3)
    with shop.crm.acting_as(shop.director) as work:
        result = run_report(work, "finance.director", {})
    rows = list(csv.reader(io.StringIO(to_csv(result).decode("utf-8-sig"))))
    assert rows[0][:3] == ["Month", "Orders", "Revenue"]
    assert rows[-1][0] == "Total" and Decimal(rows[-1][2]) == result.totals["revenue"]
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(to_xlsx(result, "Director"))).active
    assert sheet["A1"].value == "Month"
    assert sheet.cell(row=sheet.max_row, column=3).value == float(result.totals["revenue"])
    assert sheet.cell(row=2, column=3).number_format == "#,##0.00"


def test_total_paid_filters_a_smart_group(shop):
    trade(shop, orders=2)
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        other = work.parties.create(kind="person", first_name="Нина", last_name="Нулева")
        small = work.parties.create(kind="person", first_name="Пётр", last_name="Малов")
    with crm.acting_as(shop.cashier) as work:
        finance(work).payments.take(party_id=small.id, amount="500.00", method="transfer")
    with crm.acting_as(shop.manager) as work:
        paid = finance(work).payments.total_paid(shop.client.id)
        rich = work.parties.list(where={"field": "total_paid", "op": "gte", "value": "1000"}).items
        poor = work.parties.list(where={"field": "total_paid", "op": "lt", "value": "1000"}).items
        exact = work.parties.list(where={"field": "total_paid", "op": "eq", "value": 500}).items
    assert paid > 1000
    # compared in rubles, though stored in kopecks (500 ₽ is 50000)
    assert [p.id for p in rich] == [shop.client.id]
    assert {other.id, small.id} <= {p.id for p in poor}
    assert [p.id for p in exact] == [small.id]


@pytest.mark.sqlite_only
def test_director_report_reads_only_covering_indexes(shop):
    """SQLite's planner must keep using the covering indexes (it may change after ANALYZE)."""
    import sqlalchemy as sa
    from crmkit_finance.reports import orders_by_day, revenue_by_day_and_category

    trade(shop, orders=3)
    with shop.crm.engine.connect() as connection:
        connection.execute(sa.text("ANALYZE"))
        connection.commit()
    captured = []
    with shop.crm.acting_as(shop.director) as work:
        session = work.session

        def capture(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().startswith("SELECT"):
                captured.append((statement, parameters))

        sa.event.listen(shop.crm.engine, "before_cursor_execute", capture)
        try:
            start, end = dt.date(2000, 1, 1), dt.date(2100, 1, 1)
            revenue_by_day_and_category(work, start, end)
            orders_by_day(work, start, end)
        finally:
            sa.event.remove(shop.crm.engine, "before_cursor_execute", capture)
        plans = [
            " ".join(str(row[-1]) for row in session.execute(sa.text("EXPLAIN QUERY PLAN " + s), p))
            if isinstance(p, dict)
            else " ".join(
                str(row[-1])
                for row in session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + s, p)
            )
            for s, p in captured
        ]
    assert "COVERING INDEX ix_finance_order_line_recognized" in plans[0]
    assert "COVERING INDEX ix_finance_order_completion_day" in plans[1]
    assert not any("TEMP B-TREE" in plan for plan in plans)  # streamed, never sorted


@pytest.mark.sqlite_only
def test_the_order_list_filtered_by_completion_day_searches_its_index(shop):
    """No report reads ``ix_finance_order_completed`` since the completions have their own
    table, but the order list and the API filter by ``completed_on`` through it."""
    import sqlalchemy as sa

    trade(shop, orders=3)
    captured = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT") and "completed_on >=" in statement:
            captured.append((statement, parameters))

    with shop.crm.acting_as(shop.director) as work:
        sa.event.listen(shop.crm.engine, "before_cursor_execute", capture)
        try:
            where = {"field": "completed_on", "op": "gte", "value": "2099-01-01"}
            assert finance(work).orders.list(where=where).items == []
        finally:
            sa.event.remove(shop.crm.engine, "before_cursor_execute", capture)
        [(statement, parameters)] = captured
        plan = " ".join(
            str(row[-1])
            for row in work.session.connection().exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters
            )
        )
    assert "USING INDEX ix_finance_order_completed (completed_on>?)" in plan


def test_reports_honour_a_narrower_scope(shop):
    """A director whose order scope an admin narrowed to "own" counts only their orders."""
    from sqlalchemy import update

    from crmkit.model import PermissionRule

    trade(shop, orders=3)
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        mine = shop.order(work, assignee_id=shop.director.id)
        fin.orders.add_line(mine, shop.diagnostics.id)
        work.moves.move(mine, "done")
    with shop.crm.system() as work:
        work.session.execute(
            update(PermissionRule)
            .where(PermissionRule.role == "director", PermissionRule.entity == "finance_order")
            .values(scope="own", source="admin")
        )
    with shop.crm.acting_as(shop.director) as work:
        result = run_report(work, "finance.director", {})
        revenue = run_report(work, "finance.revenue", {})
    assert result.totals["orders"] == 1
    assert result.totals["revenue"] == mine.total == revenue.totals["revenue"]


def test_salaries_report_shows_what_was_paid_out_as_a_positive_sum(shop):
    mechanic = add_user(shop.crm, "mechanic", ["agent"])
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        month = fin.business_date(dt.datetime.now(dt.UTC)).replace(day=1)
        fin.payroll.set_scheme(mechanic.id, fixed_amount="30000.00", valid_from=month)
        with after_month(shop.crm, month):
            fin.payroll.accrue(month)
        fin.payroll.pay(mechanic.id, "20000.00")
        [row] = run_report(work, "finance.salaries", {"month": month.isoformat()}).rows
    assert row["total"] == money("30000.00")
    assert row["paid"] == money("20000.00")
    assert row["owed"] == money("10000.00")


def test_a_parameter_the_report_does_not_declare_is_refused_naming_it(shop):
    """A misspelt key (`grian` for `grain`) is not a report with the defaults: the refusal
    names the key and the report's parameters."""
    from crmkit.errors import ValidationFailed

    with shop.crm.system() as work, pytest.raises(ValidationFailed) as refused:
        run_report(work, "finance.revenue", {"start": "2026-01-01", "grian": "day"})
    assert str(refused.value) == (
        "grian: not a parameter of finance.revenue; its parameters: start, end, grain, by"
    )
    with shop.crm.system() as work:
        assert run_report(work, "finance.revenue", {"grain": "day"}).rows is not None


def test_the_order_margin_report_shows_as_many_orders_as_its_limit_says(shop):
    """`limit` is a declared parameter of the margin report: it cuts the list (largest
    margin first) and a value that is no whole number from 1 to 5000 is refused by name."""
    from crmkit.errors import ValidationFailed

    trade(shop, orders=3)
    with shop.crm.acting_as(shop.director) as work:
        every = run_report(work, "finance.order_margin", {}).rows
        assert len(every) == 3
        for limit in ("2", 2, " 1 "):
            rows = run_report(work, "finance.order_margin", {"limit": limit}).rows
            assert rows == every[: int(limit)]
        assert run_report(work, "finance.order_margin", {"limit": ""}).rows == every
        for bad in ("0", "-1", "5001", "ten", "1.5"):
            with pytest.raises(ValidationFailed) as refused:
                run_report(work, "finance.order_margin", {"limit": bad})
            assert str(refused.value) == f"limit: {bad!r} is not a whole number from 1 to 5000"


def test_the_order_margin_report_names_only_clients_its_reader_may_read(shop):
    """A role reading its own orders (the worker's) and handed the order reports names no
    client it may not read in the margin report, on the screen or in its export: the cell
    is blank, as the API gives the order's ``party_id`` as ``null``. The director, who
    reads every client, reads the name."""
    crm = shop.crm
    orders, mechanic = trade(shop, orders=2)
    with crm.system() as work:
        work.permissions.set("agent", "finance_order", "read", "own")
        work.permissions.set("agent", "finance_order", "report", "own")
        name = work.parties.get(shop.client.id).name
    with crm.acting_as(mechanic) as work:
        assert work.parties.find(shop.client.id) is None
        result = run_report(work, "finance.order_margin", {})
    assert {r["order_id"] for r in result.rows} == {o.id for o in orders}
    assert {r["client"] for r in result.rows} == {""}
    assert name not in to_csv(result).decode("utf-8-sig")
    with crm.acting_as(shop.director) as work:
        shown = run_report(work, "finance.order_margin", {})
    assert {r["client"] for r in shown.rows} == {name}


def test_corporate_income_keeps_to_the_payments_and_clients_its_reader_reads(shop):
    """A role handed the payment reports reads the income of the payments it may read
    (an agent with its own payments only: none here), and a client it may not read is
    blank (the agent reading every payment, and its own clients only); the director reads
    every payment and every name."""
    crm = shop.crm
    mechanic = add_user(crm, "mechanic", ["agent"])
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        orders = []
        for name in ("ООО «Флот»", "ООО «Парк»"):
            company = work.parties.create(kind="organisation", name=name, customer_type="corporate")
            order = shop.order(work, party_id=company.id)
            fin.orders.add_line(order, shop.oil_change.id)
            work.moves.move(order, "done")
            orders.append(order)
    with crm.acting_as(shop.cashier) as work:
        for order in orders:
            finance(work).payments.take(order_id=order.id, amount="1500.00", method="transfer")
    with crm.system() as work:
        work.permissions.set("agent", "finance_payment", "read", "own")
        work.permissions.set("agent", "finance_payment", "report", "own")
    with crm.acting_as(mechanic) as work:
        result = run_report(work, "finance.corporate_income", {})
    assert result.rows == [] and result.totals["received"] == 0
    with crm.system() as work:
        work.permissions.set("agent", "finance_payment", "read", "all")
    with crm.acting_as(mechanic) as work:
        result = run_report(work, "finance.corporate_income", {})
    assert [(r["client"], r["received"]) for r in result.rows] == [("", money("1500.00"))] * 2
    assert "ООО" not in to_csv(result).decode("utf-8-sig")
    with crm.acting_as(shop.director) as work:
        shown = run_report(work, "finance.corporate_income", {})
    assert sorted(r["client"] for r in shown.rows) == ["ООО «Парк»", "ООО «Флот»"]
