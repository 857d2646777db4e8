"""Expenses by category, assets with straight-line amortization, plans."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance
from finance_fixtures import money

from crmkit.errors import ValidationFailed


def test_expenses_by_category(shop):
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        insurance = fin.ledger.add_category("expense", "Страховка")
        fin.expenses.expense("expense:rent", "50000.00", note="November rent")
        fin.expenses.expense(insurance.code, "1200.50")
        fin.expenses.income("income:other", "300.00", note="scrap metal")
        with pytest.raises(ValidationFailed, match="not an expense category"):
            fin.expenses.expense("income:other", "1.00")
        assert fin.ledger.balance(fin.ledger.account("bank:main"), "RUB") == money("-50900.50")
        names = [a.name for a in fin.ledger.categories("expense")]
        assert "Страховка" in names and "Rent" in names
        mistake = fin.expenses.expense("expense:other", "10.00")
        fin.ledger.reverse(mistake, memo="entered twice")
        with pytest.raises(ValidationFailed, match="is reversed"):
            fin.ledger.reverse(mistake)
        assert fin.ledger.balance(fin.ledger.account("expense:other"), "RUB") == 0


def test_straight_line_amortization_adds_up_exactly(shop):
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        lift = fin.assets.acquire(
            "Подъёмник", "100000.00", useful_life_months=7, acquired_on=dt.date(2024, 1, 15)
        )
        schedule = fin.assets.schedule(lift)
        assert schedule[0] == (dt.date(2024, 2, 1), money("14285.71"))
        assert schedule[-1] == (dt.date(2024, 8, 1), money("14285.74"))
        assert sum(a for _, a in schedule) == money("100000.00")
        assert fin.assets.amortize(dt.date(2024, 1, 31)) == 0
        assert fin.assets.amortize(dt.date(2024, 2, 10)) == money("14285.71")
        assert fin.assets.amortize(dt.date(2024, 2, 20)) == 0  # once per month
        assert fin.assets.book_value(lift.id) == money("85714.29")


@pytest.mark.parametrize("months", ["abc", "²", 0, 1201, "9" * 25])
def test_an_odd_useful_life_is_refused_naming_it_and_nothing_is_booked(shop, months):
    """A lifetime that is no number, or longer than a hundred years (a schedule of
    billions of months, dates past the year 9999, a number no column holds), is refused
    naming the field before anything is paid."""
    with pytest.raises(ValidationFailed) as refused, shop.crm.acting_as(shop.accountant) as work:
        finance(work).assets.acquire(
            "Подъёмник", "100000.00", useful_life_months=months, acquired_on=dt.date(2024, 1, 15)
        )
    assert list(refused.value.errors) == ["useful_life_months"]
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert fin.ledger.balance(fin.ledger.account("bank:main"), "RUB") == 0


def test_cashier_cannot_record_expenses(shop):
    from crmkit.errors import PermissionDenied

    with shop.crm.acting_as(shop.cashier) as work, pytest.raises(PermissionDenied):
        finance(work).expenses.expense("expense:rent", "1.00")


def test_an_unknown_account_or_category_is_refused_naming_its_field(shop):
    """A mistyped account is the caller's mistake (422 naming the field), not a missing
    page; nothing is booked."""
    with shop.crm.acting_as(shop.warehouse) as work:
        vendor = work.parties.create(kind="organisation", name="ООО «Масла»")
        supplier = work.records("finance_supplier").create(party_id=vendor.id)
    refused = (
        (
            lambda fin: fin.expenses.expense("expense:rent", "1.00", paid_from="bank:nope"),
            "account",
        ),
        (lambda fin: fin.expenses.income("income:other", "1.00", received_into="9999"), "account"),
        (lambda fin: fin.expenses.expense("expense:nope", "1.00"), "category"),
        (lambda fin: fin.purchases.pay(supplier.id, "1.00", paid_from="bank:nope"), "paid_from"),
    )
    for book, field in refused:
        with (
            pytest.raises(ValidationFailed) as caught,
            shop.crm.acting_as(shop.accountant) as work,
        ):
            book(finance(work))
        assert list(caught.value.errors) == [field]
    assert "no account bank:nope" in str(caught.value)
    with shop.crm.acting_as(shop.accountant) as work:
        ledger = finance(work).ledger
        assert ledger.balance(ledger.account("bank:main"), "RUB") == 0
