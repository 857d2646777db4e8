"""The accountant's screens over HTTP: pay schemes, accrual, payout, payslip, cashback,
a client's transactions, expenses."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from crmkit_finance import finance
from finance_fixtures import previous_month

from crmkit.clock import frozen_at, utcnow
from crmkit.errors import ValidationFailed


def _done_order(shop, worker, *items, at=None):
    with frozen_at(at or utcnow()), shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work, assignee_id=worker.id)
        for item in items:
            finance(work).orders.add_line(order, item.id)
        work.moves.move(order, "done", entity="finance_order")
        return order


def test_pay_scheme_accrual_payout_and_payslip(shop, signed_in):
    accountant = signed_in("accountant")
    month = previous_month(shop.crm)  # a month is accrued once it is over
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
    in_month = dt.datetime.combine(month.replace(day=15), dt.time(12), shop.crm.config.zone)
    _done_order(shop, shop.manager, shop.oil_change, shop.diagnostics, at=in_month)  # 2500
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
    month = previous_month(shop.crm)
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
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
    month = previous_month(shop.crm)
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
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


def test_cashback_given_and_taken_back_shows_zero_without_a_minus(shop, signed_in):
    accountant = signed_in("accountant")
    accountant.submit("/finance/cashback/program", {"percent": "5", "expiry_days": "90"})
    page = accountant.get(f"/finance/cashback?client={shop.client.id}")
    assert re.search(r'id="cashback-balance">0,00\xa0₽<', page.text)  # nothing booked yet
    adjust = f"/finance/cashback/{shop.client.id}/adjust"
    accountant.submit(adjust, {"amount": "300", "reason": "birthday"})
    page = accountant.submit(adjust, {"amount": "-300", "reason": "a mistake"})
    assert re.search(r'id="cashback-balance">0,00\xa0₽<', page.text)
    assert "-0,00" not in page.text


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
    # an account that is not there (a stale or tampered choice): the form again, saying so
    mistyped = accountant.post(
        "/finance/expenses",
        {"kind": "expense", "category": "expense:insurance", "amount": "5", "account": "bank:x"},
    )
    assert mistyped.status_code == 303
    again = accountant.get(mistyped.headers["location"])
    assert 'class="flash error"' in again.text and "bank:x" in again.text
    with shop.crm.acting_as(shop.accountant) as work:
        ledger = finance(work).ledger
        assert ledger.balance(ledger.get_account("expense:insurance"), "RUB") == Decimal("12000.00")
    assert signed_in("cashier").get("/finance/expenses").status_code == 404


def _payroll_row(page, user):
    """The texts of an employee's cells on the salaries page (any space as a plain one)."""
    row = page.text.split(f'id="employee-{user.id}"', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip() for c in cells]


def _payout_picker(page):
    return page.text.split('id="pay-salary"', 1)[1].split("</select>", 1)[0]


def test_a_blocked_employee_is_listed_while_the_month_has_their_payslip_or_they_are_owed(
    shop, signed_in
):
    from crmkit.testing import add_user

    leaver, gone = add_user(shop.crm, "leaver", ["manager"]), add_user(shop.crm, "gone", ["agent"])
    month = previous_month(shop.crm)
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.payroll.set_scheme(leaver.id, fixed_amount="30000.00", valid_from=month)
        fin.payroll.accrue(month)
    with shop.crm.acting_as(shop.admin) as work:
        work.users.block(leaver.id, reason="left")
        work.users.block(gone.id, reason="left")
    accountant = signed_in("accountant")
    page = accountant.get(f"/finance/payroll?month={month:%Y-%m}")
    employee, _scheme, fixed, _commission, total, state, owed = _payroll_row(page, leaver)
    assert employee == "leaver заблокирован" and state == "начислено"
    assert fixed == total == owed == "30 000,00 ₽"
    assert f'value="{leaver.id}"' in _payout_picker(page)  # still to be paid out
    scheme_form = page.text.split('id="set-scheme"', 1)[1].split("</select>", 1)[0]
    assert f'value="{leaver.id}"' not in scheme_form  # no new scheme for who has left
    assert f'id="employee-{gone.id}"' not in page.text  # never paid, nothing owed
    # this month has no payslip of theirs, but they are still owed: listed too
    assert f'id="employee-{leaver.id}"' in accountant.get("/finance/payroll").text
    accountant.submit("/finance/payroll/pay", {"user_id": leaver.id, "amount": "30000"})
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).payroll.owed(leaver.id) == 0
    # paid off; this month's accrual still pays the fixed part of its days up to the
    # blocking, and the preview says so
    with shop.crm.acting_as(shop.accountant) as work:
        this_month = finance(work).payroll.calculate(leaver.id, utcnow().date())
    assert 0 < this_month["fixed_amount"] <= 30000
    shown = f"{this_month['fixed_amount']:,.2f}".replace(",", " ").replace(".", ",") + " ₽"
    page = accountant.get("/finance/payroll")
    assert _payroll_row(page, leaver)[2] == shown
    assert f'id="employee-{gone.id}"' not in page.text  # no scheme: nothing to accrue
    assert (
        f'id="employee-{leaver.id}"' in accountant.get(f"/finance/payroll?month={month:%Y-%m}").text
    )


def test_an_accrued_row_shows_what_was_accrued_not_the_scheme_changed_since(shop, signed_in):
    month = previous_month(shop.crm)
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.payroll.set_scheme(shop.manager.id, fixed_amount="30000.00", valid_from=month)
        fin.payroll.accrue(month)
        fin.payroll.set_scheme(shop.manager.id, fixed_amount="45000.00", valid_from=month)
    page = signed_in("accountant").get(f"/finance/payroll?month={month:%Y-%m}")
    _employee, scheme, fixed, _commission, total, state, owed = _payroll_row(page, shop.manager)
    assert scheme.startswith("45 000,00 ₽")  # the scheme as it is now
    assert state == "начислено" and fixed == total == owed == "30 000,00 ₽"  # as accrued


def test_accruing_a_month_not_over_yet_is_refused_saying_when_it_can_be(shop, signed_in):
    accountant = signed_in("accountant")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        month = fin.business_date(utcnow()).replace(day=1)
        fin.payroll.set_scheme(shop.manager.id, fixed_amount="30000.00", valid_from=month)
    page = accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    flash = " ".join(re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page.text))
    following = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    assert "ещё не закончился" in flash, flash  # its words: the test below
    assert f"{month:%Y-%m}" not in flash and following.isoformat() not in flash
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.payroll.payslips(month) == [] and fin.payroll.owed(shop.manager.id) == 0


def test_a_month_not_over_is_refused_naming_the_month_and_day_the_russian_way(shop, signed_in):
    """«ноябрь 2026 ещё не закончился: … с 1 дек. 2026 г.», as the salaries page writes
    them, not «2026-11 … 2026-12-01»."""
    accountant = signed_in("accountant")
    mid_november = dt.datetime(2026, 11, 15, 12, tzinfo=shop.crm.config.zone)
    with frozen_at(mid_november):
        with shop.crm.acting_as(shop.accountant) as work:
            finance(work).payroll.set_scheme(
                shop.manager.id, fixed_amount="30000.00", valid_from=dt.date(2026, 11, 1)
            )
        page = accountant.submit("/finance/payroll/accrue", {"month": "2026-11"})
        later = accountant.get("/finance/payroll?month=2026-11").text
    (flash,) = re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page.text)
    flash = re.sub("[\xa0\u202f]", " ", flash)
    assert flash.startswith("месяц: ноябрь 2026 ещё не закончился"), flash
    assert flash.endswith("с 1 дек. 2026 г."), flash
    # the words the page says of the month it shows
    later = re.sub("[\xa0\u202f]", " ", later)
    assert "ноябрь 2026" in later and "с 1 дек. 2026 г." in later


def test_payroll_forms_with_unknown_ids_say_so(shop, signed_in):
    accountant = signed_in("accountant")

    def refusal(url, data):
        page = accountant.submit(url, data)
        return " ".join(re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page.text))

    assert "99999" in refusal("/finance/payroll/pay", {"user_id": "99999", "amount": "10"})
    assert "99999" in refusal(
        "/finance/payroll/schemes",
        {"user_id": shop.manager.id, "percent": "10", "rate.99999": "5"},
    )
    assert accountant.get("/finance/payroll/99999").status_code == 404


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


def test_a_blocked_employee_is_previewed_as_accrued_and_earns_no_fixed_pay_after_leaving(
    shop, signed_in
):
    """The salaries page shows a blocked employee exactly as the month's accrual pays them:
    in the month they left, the fixed part of its days up to the blocking and their percent
    of the revenue; in the months after, nothing (so no row and no payslip)."""
    from crmkit.testing import add_user

    worker = add_user(shop.crm, "worker", ["agent"])
    september, october = dt.date(2025, 9, 1), dt.date(2025, 10, 1)  # 30 days, 31 days
    zone = shop.crm.config.zone
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            worker.id, fixed_amount="30000.00", percent="10", valid_from=dt.date(2020, 1, 1)
        )
    _done_order(shop, worker, shop.oil_change, at=dt.datetime(2025, 9, 10, 12, tzinfo=zone))
    left = dt.datetime(2025, 9, 15, 18, tzinfo=zone)
    with frozen_at(left), shop.crm.acting_as(shop.admin) as work:
        work.users.block(worker.id, reason="left")
    accountant = signed_in("accountant")
    page = accountant.get(f"/finance/payroll?month={september:%Y-%m}")
    employee, _scheme, fixed, commission, total, *_ = _payroll_row(page, worker)
    assert employee == "worker заблокирован"
    # 15 of September's 30 days, and 10 % of the 1500 of the order done before leaving
    assert (fixed, commission, total) == ("15 000,00 ₽", "150,00 ₽", "15 150,00 ₽")
    page = accountant.get(f"/finance/payroll?month={october:%Y-%m}")
    assert f'id="employee-{worker.id}"' not in page.text  # nothing to accrue
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        with frozen_at(dt.datetime(2025, 10, 1, 9, tzinfo=zone)):
            [slip] = [s for s in fin.payroll.accrue(september) if s.user_id == worker.id]
        assert slip.fixed_amount == Decimal("15000.00") and slip.total == Decimal("15150.00")
        with frozen_at(dt.datetime(2025, 11, 1, 9, tzinfo=zone)):
            assert fin.payroll.calculate(worker.id, october)["total"] == 0
            assert fin.payroll.accrue(october) == []  # no fixed pay for a month after
        assert fin.payroll.owed(worker.id) == Decimal("15150.00")


def test_a_refused_cashback_program_names_the_field_by_its_label(shop, signed_in):
    """The refusal of a lifetime that is no number of days names the form's field as the
    form shows it (Сгорает через, дней), not by its name (expiry_days)."""
    accountant = signed_in("accountant")
    refused = accountant.submit("/finance/cashback/program", {"percent": "5", "expiry_days": "x"})
    assert "Сгорает через, дней: нужно число дней" in refused.text
    assert "expiry_days:" not in refused.text
    zero = accountant.submit("/finance/cashback/program", {"percent": "5", "expiry_days": "0"})
    assert "Сгорает через, дней:" in zero.text and "expiry_days:" not in zero.text


@pytest.mark.parametrize("days", ["²", "9" * 25, "-5"])
def test_a_cashback_lifetime_of_odd_digits_is_refused_and_the_program_unchanged(
    shop, signed_in, days
):
    """ "²" is a digit to ``str.isdigit`` that ``int`` refuses (it was a 500); a number
    past the longest lifetime is refused like any other."""
    accountant = signed_in("accountant")
    refused = accountant.submit("/finance/cashback/program", {"percent": "5", "expiry_days": days})
    assert "Сгорает через, дней:" in refused.text
    with shop.crm.system() as work:
        assert finance(work).cashback.program() is None


def test_an_employee_blocked_and_unblocked_is_previewed_and_accrued_for_the_days_active(
    shop, signed_in
):
    """Blocked on 10 September 2025 in the evening, back on the 20th: the salaries page
    shows 21 of September's 30 days of the fixed part, the accrual pays exactly that, and
    the payslip says how many days were paid; October, back at work, is paid whole."""
    from crmkit.testing import add_user

    worker = add_user(shop.crm, "worker", ["agent"])
    september, october = dt.date(2025, 9, 1), dt.date(2025, 10, 1)
    zone = shop.crm.config.zone
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            worker.id, fixed_amount="30000.00", valid_from=dt.date(2020, 1, 1)
        )
    with (
        frozen_at(dt.datetime(2025, 9, 10, 18, tzinfo=zone)),
        shop.crm.acting_as(shop.admin) as work,
    ):
        work.users.block(worker.id, reason="leave")
    with (
        frozen_at(dt.datetime(2025, 9, 20, 9, tzinfo=zone)),
        shop.crm.acting_as(shop.admin) as work,
    ):
        work.users.unblock(worker.id)
    accountant = signed_in("accountant")
    page = accountant.get(f"/finance/payroll?month={september:%Y-%m}")
    employee, _scheme, fixed, _commission, total, *_ = _payroll_row(page, worker)
    assert employee == "worker" and fixed == total == "21 000,00 ₽"
    page = accountant.get(f"/finance/payroll?month={october:%Y-%m}")
    assert _payroll_row(page, worker)[2] == "30 000,00 ₽"
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        with frozen_at(dt.datetime(2025, 10, 1, 9, tzinfo=zone)):
            [slip] = fin.payroll.accrue(september, [worker.id])
        assert slip.fixed_amount == slip.total == Decimal("21000.00")
    payslip = accountant.get(f"/finance/payroll/{worker.id}?month={september:%Y-%m}")
    totals = payslip.text.split('id="payslip-totals"', 1)[1].split("</dl>", 1)[0]
    assert re.search(r"21\xa0000,00", totals)
    assert re.search(r'id="payslip-days">\s*21 / 30\s*<', totals)


def test_an_expenses_note_a_categorys_name_and_a_cashback_reason_are_capped(shop, signed_in):
    """The accountant's forms reached the ledger, expense and cashback services without a
    schema: a note or reason of any length was kept, a category's name over its 200
    characters failed on PostgreSQL and was kept by SQLite.  Each is refused naming the
    field, nothing booked; the limit itself is accepted."""
    accountant = signed_in("accountant")
    category = {"kind": "expense", "name": "я" * 201}
    named = accountant.submit("/finance/expenses/categories", category)
    assert "название: длиннее 200 символов" in named.text
    expense = {"kind": "expense", "category": "expense:rent", "amount": "700"}
    noted = accountant.submit(
        "/finance/expenses", {**expense, "account": "bank:main", "note": "д" * 20001}
    )
    assert "заметка: длиннее 20000 символов" in noted.text
    adjust = f"/finance/cashback/{shop.client.id}/adjust"
    reasoned = accountant.submit(adjust, {"amount": "300", "reason": "д" * 20001})
    assert "причина: длиннее 20000 символов" in reasoned.text
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.ledger.balance(fin.ledger.get_account("expense:rent"), "RUB") == 0
        assert fin.cashback.balance(shop.client.id) == 0
        assert [a.name for a in fin.ledger.categories("expense") if len(a.name) > 100] == []

    accountant.submit("/finance/expenses/categories", {**category, "name": "я" * 200})
    accountant.submit("/finance/expenses", {**expense, "account": "bank:main", "note": "д" * 20000})
    accountant.submit(adjust, {"amount": "300", "reason": "д" * 20000})
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.ledger.balance(fin.ledger.get_account("expense:rent"), "RUB") == 700
        assert fin.cashback.balance(shop.client.id) == 300
        assert [len(a.name) for a in fin.ledger.categories("expense") if len(a.name) > 100] == [200]


def test_with_nobody_owed_the_payout_says_so_instead_of_an_empty_list(shop, signed_in):
    """Before the month is accrued nobody is owed a salary: the payout block says so and
    what to do, rather than offering an empty list of employees and a "Pay" button."""
    accountant = signed_in("accountant")
    page = accountant.get("/finance/payroll")
    assert page.status_code == 200
    block = page.text.split('id="pay-salary"', 1)[1].split("</section>", 1)[0]
    assert 'name="user_id"' not in block, block
    assert 'id="nobody-owed"' in block, block


def _catalog_says(crm, **texts):
    """Russian for the given catalog texts, as the catalog will say them: the page shows
    a text from the catalog only if it asks the catalog for that very text."""
    from crmkit.web.i18n import catalogs_of

    catalog = catalogs_of(crm)["ru"]
    for text, russian in texts.items():
        catalog._catalog[text] = russian


def test_a_clients_transactions_show_the_plugins_memos_and_the_system_in_russian(shop, signed_in):
    accountant = signed_in("accountant")
    crm = shop.crm
    with crm.acting_as(shop.accountant) as work:
        finance(work).cashback.set_program("5", 30, valid_from=dt.date(2020, 1, 1))
    with crm.acting_as(shop.manager) as work:
        order = shop.order(work)
        finance(work).orders.add_line(order, shop.oil_change.id)
        work.moves.move(order, "done")
    with crm.acting_as(shop.cashier) as work:
        finance(work).payments.take(order_id=order.id, amount="1500.00", method="transfer")
    with crm.system() as work:  # a month on, the daily job expires the lot
        finance(work).cashback.expire(utcnow() + dt.timedelta(days=31))
    with crm.acting_as(shop.accountant) as work:
        lot = finance(work).cashback.lots(shop.client.id)[0]
    _catalog_says(
        crm,
        **{
            "order %(number)s": "заказ %(number)s",
            "%(method)s payment for order %(number)s": "оплата заказа %(number)s: %(method)s",
            "cashback for order %(number)s": "кешбэк за заказ %(number)s",
            "cashback lot %(lot)s expired": "сгорел кешбэк (партия %(lot)s)",
        },
    )
    table = accountant.get(f"/finance/clients/{shop.client.id}").text
    table = table.split('id="client-transactions"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<td>([^<]*)</td>", table)
    assert f"заказ {order.number}" in cells
    assert f"оплата заказа {order.number}: перевод" in cells
    assert f"кешбэк за заказ {order.number}" in cells
    assert f"сгорел кешбэк (партия {lot.id})" in cells
    assert "система" in cells and "system" not in cells
    assert not [cell for cell in cells if "order" in cell or "cashback" in cell]


def test_the_salaries_list_totals_its_money_columns_and_a_payslip_shows_russian_percents(
    shop, signed_in
):
    month = previous_month(shop.crm)
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.payroll.set_scheme(
            shop.manager.id, fixed_amount="10000.00", percent="12.5", valid_from=month
        )
        fin.payroll.set_scheme(shop.cashier.id, fixed_amount="8000.50", valid_from=month)
    in_month = dt.datetime.combine(month.replace(day=15), dt.time(12), shop.crm.config.zone)
    _done_order(shop, shop.manager, shop.oil_change, at=in_month)  # 1 500: 187,50 commission
    accountant = signed_in("accountant")
    accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    accountant.submit("/finance/payroll/pay", {"user_id": shop.cashier.id, "amount": "3000"})
    page = accountant.get(f"/finance/payroll?month={month:%Y-%m}")
    footer = page.text.split('id="payroll-totals"', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", footer, re.S)
    cells = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip() for c in cells]
    # fixed 18 000,50, commission 187,50, total 18 188,00, owed 10 187,50 + 5 000,50
    assert cells[0] == "Итого"
    assert cells[2:5] == ["18 000,50 ₽", "187,50 ₽", "18 188,00 ₽"]
    assert cells[6] == "15 188,00 ₽"
    slip = accountant.get(f"/finance/payroll/{shop.manager.id}?month={month:%Y-%m}").text
    groups = slip.split('id="payslip-groups"', 1)[1].split("</table>", 1)[0]
    assert "12,5 %" in groups and "12.50" not in groups


def test_a_schemes_and_a_programs_start_date_is_not_labelled_like_the_account_paid_from(
    shop, signed_in
):
    accountant = signed_in("accountant")
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            shop.cashier.id, fixed_amount="100.00", valid_from=previous_month(shop.crm)
        )
    for path in ("/finance/payroll", "/finance/cashback"):
        page = accountant.get(path).text
        label = re.search(r"<label>([^<]*)<input type=\"date\" name=\"valid_from\"", page)
        assert label and label.group(1) in ("In force from", "Действует с"), path


def test_the_accrual_button_shows_only_while_accruing_can_do_something(shop, signed_in):
    accountant = signed_in("accountant")
    month = previous_month(shop.crm)
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.payroll.set_scheme(shop.manager.id, fixed_amount="30000.00", valid_from=month)
        this_month = fin.business_date(utcnow()).replace(day=1)
    # this month is not over: no button to be refused, the day it can be done instead
    page = accountant.get(f"/finance/payroll?month={this_month:%Y-%m}").text
    assert 'id="accrue"' not in page
    following = (this_month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    later = page.split('id="accrue-later">', 1)[1].split("</p>", 1)[0]
    assert f"{following.day}\xa0" in later or f"{following.day} " in later
    assert following.isoformat() not in later and str(following.year) in later
    # last month: the button, until it is accrued
    page = accountant.get(f"/finance/payroll?month={month:%Y-%m}").text
    assert 'id="accrue"' in page and 'id="accrue-done"' not in page
    accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    page = accountant.get(f"/finance/payroll?month={month:%Y-%m}").text
    assert 'id="accrue"' not in page and 'id="accrue-done"' in page
    # a reversed payslip is to be accrued again: the button is back
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        fin.payroll.reverse(fin.payroll.payslip(shop.manager.id, month)["payslip_id"], reason="x")
    page = accountant.get(f"/finance/payroll?month={month:%Y-%m}").text
    assert 'id="accrue"' in page


def test_withdrawing_more_cashback_than_there_is_says_how_much_there_is_in_russian_money(
    shop, signed_in
):
    accountant = signed_in("accountant")
    adjust = f"/finance/cashback/{shop.client.id}/adjust"
    accountant.submit(adjust, {"amount": "1 300,5", "reason": "birthday"})
    page = accountant.submit(adjust, {"amount": "-5000", "reason": "a mistake"})
    flash = " ".join(re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page.text))
    assert "1\xa0300,50\xa0₽" in flash and "RUB" not in flash, flash
    assert re.search(r'id="cashback-balance">1\xa0300,50', page.text)


def test_with_everything_accrued_paid_out_the_payout_does_not_say_to_accrue_first(shop, signed_in):
    accountant = signed_in("accountant")
    month = previous_month(shop.crm)
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(shop.manager.id, fixed_amount="1000", valid_from=month)
    before = accountant.get(f"/finance/payroll?month={month:%Y-%m}").text
    block = before.split('id="nobody-owed"', 1)[1].split("</p>", 1)[0]
    assert "начислите" in block  # the month is to be accrued: the advice stands
    accountant.submit("/finance/payroll/accrue", {"month": f"{month:%Y-%m}"})
    accountant.submit("/finance/payroll/pay", {"user_id": shop.manager.id, "amount": "1000"})
    for path in (f"/finance/payroll?month={month:%Y-%m}", "/finance/payroll"):
        block = accountant.get(path).text.split('id="nobody-owed"', 1)[1].split("</p>", 1)[0]
        assert "начислите" not in block and ("paid out" in block or "выплачено" in block), path


def _scheme_form(page):
    return page.text.split('id="set-scheme"', 1)[1].split("</form>", 1)[0]


def _value(form, name):
    return re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', form).group(1)


def test_the_pay_scheme_form_shows_the_chosen_employees_current_scheme(shop, signed_in):
    """Opened for an employee (choosing one in the form opens it so), the scheme form holds
    what they are paid now, to change rather than type again; one without a scheme, zeros."""
    month = previous_month(shop.crm)
    with shop.crm.acting_as(shop.accountant) as work:
        finance(work).payroll.set_scheme(
            shop.manager.id,
            fixed_amount="30000.00",
            percent="12.5",
            basis="orders",
            include_goods=True,
            rates={shop.engine.id: "20"},
            valid_from=month,
        )
    accountant = signed_in("accountant")
    form = _scheme_form(accountant.get(f"/finance/payroll?employee={shop.manager.id}"))
    assert f'<option value="{shop.manager.id}" selected>' in form
    assert _value(form, "fixed_amount") == "30\xa0000,00"
    assert _value(form, "percent") == "12,5"
    assert '<option value="orders" selected>' in form
    assert re.search(r'name="include_goods"[^>]*checked', form)
    assert _value(form, f"rate.{shop.engine.id}") == "20"
    assert _value(form, f"rate.{shop.parts.id}") == ""
    # choosing another employee opens the page for them
    assert "employee=" in form.split('name="user_id"', 1)[1].split(">", 1)[0]

    form = _scheme_form(accountant.get(f"/finance/payroll?employee={shop.cashier.id}"))
    assert f'<option value="{shop.cashier.id}" selected>' in form
    assert _value(form, "fixed_amount") == "0" and _value(form, "percent") == "0"
    assert not re.search(r'name="include_goods"[^>]*checked', form)
    assert _value(form, f"rate.{shop.engine.id}") == ""

    # saved as shown, the scheme is the same
    sent = {
        "user_id": shop.manager.id,
        "fixed_amount": "30\xa0000,00",
        "percent": "12,5",
        "basis": "orders",
        "include_goods": "1",
        "valid_from": month.isoformat(),
        f"rate.{shop.engine.id}": "20",
    }
    saved = accountant.submit("/finance/payroll/schemes", {**sent, "percent": "15"})
    assert 'class="flash error"' not in saved.text
    assert _value(_scheme_form(saved), "percent") == "15"  # back on the form, for the same one
    assert 'class="flash error"' not in accountant.submit("/finance/payroll/schemes", sent).text
    with shop.crm.acting_as(shop.accountant) as work:
        scheme = finance(work).payroll.scheme_for(shop.manager.id, month)
        assert (scheme.fixed_amount, scheme.percent) == (Decimal("30000.00"), Decimal("12.5"))
