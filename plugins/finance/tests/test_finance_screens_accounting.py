"""The accountant's screens over HTTP: pay schemes, accrual, payout, payslip, cashback,
a client's transactions, expenses."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from crmkit_finance import finance
from finance_web import clients

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed


@pytest.fixture
def signed_in(shop):
    return clients(shop.crm)


def _done_order(shop, worker, *items):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work, assignee_id=worker.id)
        for item in items:
            finance(work).orders.add_line(order, item.id)
        work.moves.move(order, "done", entity="finance_order")
        return order


def test_pay_scheme_accrual_payout_and_payslip(shop, signed_in):
    accountant = signed_in("accountant")
    with shop.crm.acting_as(shop.accountant) as work:
        month = finance(work).business_date(utcnow()).replace(day=1)
    saved = accountant.submit(
        "/finance/payroll/schemes",
        {
            "user_id": shop.manager.id,
            "fixed_amount": "10 000",
            "percent": "10",
            "basis": "orders",
            "valid_from": month.isoformat(),
            f"rate.{shop.engine.id}": "20",
        },
    )
    assert 'class="flash error"' not in saved.text
    _done_order(shop, shop.manager, shop.oil_change, shop.diagnostics)  # 2500 of engine work
    page = accountant.get(f"/finance/payroll?month={month:%Y-%m}")
    row = page.text.split(f'id="employee-{shop.manager.id}"', 1)[1].split("</tr>", 1)[0]
    # 10 000 fixed + 20 % of 2 500 (the engine category's own rate) = 10 500
    assert re.search(r"10\xa0500,00", row)
    accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    accountant.submit("/finance/payroll/pay", {"user_id": shop.manager.id, "amount": "4000"})
    slip = accountant.get(f"/finance/payroll/{shop.manager.id}?month={month:%Y-%m}")
    totals = slip.text.split('id="payslip-totals"', 1)[1].split("</dl>", 1)[0]
    assert re.search(r"10\xa0500,00", totals) and re.search(r"6\xa0500,00", totals)  # owed
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).payroll.owed(shop.manager.id) == Decimal("6500.00")
    # accruing the same month again is refused and changes nothing
    again = accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).payroll.owed(shop.manager.id) == Decimal("6500.00")
    assert again.status_code == 200


def test_after_reversing_one_payslip_the_month_is_accrued_again_from_the_screen(shop, signed_in):
    accountant = signed_in("accountant")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        month = fin.business_date(utcnow()).replace(day=1)
        fin.payroll.set_scheme(shop.manager.id, fixed_amount="10000.00", valid_from=month)
        fin.payroll.set_scheme(shop.cashier.id, fixed_amount="8000.00", valid_from=month)
    accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        manager_slip = fin.payroll.payslip(shop.manager.id, month)["payslip_id"]
        # the fixed part was wrong: reverse the manager's payslip and correct the scheme
        fin.payroll.reverse(manager_slip, reason="wrong fixed amount")
        fin.payroll.set_scheme(shop.manager.id, fixed_amount="12000.00", valid_from=month)
    page = accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    assert 'class="flash error"' not in page.text
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.payroll.owed(shop.manager.id) == Decimal("12000.00")
        assert fin.payroll.owed(shop.cashier.id) == Decimal("8000.00")  # not accrued twice
    # with everyone accrued, the run is refused, naming them (not by id)
    again = accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    refusal = again.text.split('class="flash error"', 1)[1].split("</", 1)[0]
    assert "уже начислена" in refusal and shop.manager.label in refusal  # in Russian
    with (
        pytest.raises(ValidationFailed, match=f"{shop.cashier.label} is accrued"),
        shop.crm.acting_as(shop.accountant) as work,
    ):
        finance(work).payroll.accrue(month, [shop.cashier.id])


def test_a_payout_form_sent_twice_pays_once(shop, signed_in):
    accountant = signed_in("accountant")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        month = fin.business_date(utcnow()).replace(day=1)
        fin.payroll.set_scheme(shop.manager.id, fixed_amount="10000.00", valid_from=month)
        fin.payroll.accrue(month)
    page = accountant.get("/finance/payroll")
    form = page.text.split('action="/finance/payroll/pay"', 1)[1].split("</form>", 1)[0]
    token = re.search(r'name="form_token" value="([^"]+)"', form).group(1)
    payout = {"user_id": shop.manager.id, "amount": "4000", "form_token": token}
    accountant.submit("/finance/payroll/pay", payout)
    again = accountant.submit("/finance/payroll/pay", payout)  # a double click
    assert 'class="flash error"' not in again.text
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).payroll.owed(shop.manager.id) == Decimal("6000.00")


def test_cashier_and_warehouse_head_cannot_touch_salaries(shop, signed_in):
    for who in ("cashier", "warehouse"):
        user = signed_in(who)
        assert user.get("/finance/payroll").status_code == 404
        refused = user.post(
            "/finance/payroll/schemes",
            {
                "user_id": shop.cashier.id,
                "fixed_amount": "999999",
                "valid_from": "2026-01-01",
            },
        )
        assert refused.status_code == 404
        assert "/finance/payroll" not in user.menu()
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).payroll.scheme_for(shop.cashier.id, dt.date(2030, 1, 1)) is None
    # the director reads salaries but may not change a scheme
    director = signed_in("director")
    page = director.get("/finance/payroll")
    assert page.status_code == 200 and 'id="set-scheme"' not in page.text
    assert (
        director.post("/finance/payroll/schemes", {"user_id": shop.cashier.id}).status_code == 404
    )


def test_cashback_program_adjustment_and_client_transactions(shop, signed_in):
    accountant = signed_in("accountant")
    accountant.submit("/finance/cashback/program", {"percent": "5", "expiry_days": "90"})
    page = accountant.get(f"/finance/cashback?q={shop.client.name.split()[0]}")
    assert f"/finance/cashback?client={shop.client.id}" in page.text
    adjusted = accountant.submit(
        f"/finance/cashback/{shop.client.id}/adjust", {"amount": "300", "reason": "birthday"}
    )
    assert re.search(r'id="cashback-balance">300,00', adjusted.text)
    refused = accountant.submit(
        f"/finance/cashback/{shop.client.id}/adjust", {"amount": "-500", "reason": "oops"}
    )
    assert 'class="flash error"' in refused.text
    assert re.search(r'id="cashback-balance">300,00', refused.text)
    moves = accountant.get(f"/finance/clients/{shop.client.id}")
    table = moves.text.split('id="client-transactions"', 1)[1]
    assert "birthday" in table and "300,00" in table
    with shop.crm.acting_as(shop.accountant) as work:
        program = finance(work).cashback.program()
        assert program.percent == Decimal("5.00") and program.expiry_days == 90


def test_expenses_by_category(shop, signed_in):
    accountant = signed_in("accountant")
    accountant.submit("/finance/expenses/categories", {"kind": "expense", "name": "Insurance"})
    page = accountant.get("/finance/expenses")
    assert "expense:insurance" in page.text
    booked = accountant.submit(
        "/finance/expenses",
        {
            "kind": "expense",
            "category": "expense:insurance",
            "amount": "12 000",
            "account": "bank:main",
            "note": "policy 2027",
        },
    )
    bookings = booked.text.split('id="bookings"', 1)[1]
    assert "policy 2027" in bookings and "12\xa0000,00" in bookings
    wrong = accountant.submit(
        "/finance/expenses",
        {
            "kind": "income",
            "category": "expense:insurance",
            "amount": "5",
            "account": "bank:main",
        },
    )
    assert 'class="flash error"' in wrong.text
    with shop.crm.acting_as(shop.accountant) as work:
        ledger = finance(work).ledger
        assert ledger.balance(ledger.get_account("expense:insurance"), "RUB") == Decimal("12000.00")
    assert signed_in("cashier").get("/finance/expenses").status_code == 404


def test_expense_and_cashback_forms_sent_twice_book_once(shop, signed_in):
    accountant = signed_in("accountant")

    def token(page, action):
        form = page.text.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
        return re.search(r'name="form_token" value="([^"]+)"', form).group(1)

    expenses = accountant.get("/finance/expenses")
    cashback = accountant.get(f"/finance/cashback?client={shop.client.id}")
    adjust = f"/finance/cashback/{shop.client.id}/adjust"
    sent = (
        (
            "/finance/expenses",
            {
                "kind": "expense",
                "category": "expense:rent",
                "amount": "700",
                "account": "bank:main",
                "form_token": token(expenses, "/finance/expenses"),
            },
        ),
        (adjust, {"amount": "300", "reason": "birthday", "form_token": token(cashback, adjust)}),
    )
    for action, data in sent:
        first = accountant.submit(action, data)
        again = accountant.submit(action, data)  # a reload, a double click
        assert 'class="flash error"' not in first.text + again.text
        assert "Эта форма уже отправлена" in again.text or "already sent" in again.text
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.ledger.balance(fin.ledger.get_account("expense:rent"), "RUB") == Decimal("700")
        assert fin.cashback.balance(shop.client.id) == Decimal("300.00")
