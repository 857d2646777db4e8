"""Finance forms in Russian: the payroll's per-category percent and a new item's unit.

Their Russian comes with the catalog entries listed in the branch's report (``Percent for
%(category)s`` → «%(category)s, %%», ``pcs`` → «шт.»)."""

from __future__ import annotations

import html

import pytest
from finance_web import clients


@pytest.fixture
def signed_in(shop):
    return clients(shop.crm)


def test_the_pay_scheme_names_each_categorys_percent_grammatically(shop, signed_in):
    page = html.unescape(signed_in("accountant").get("/finance/payroll").text)
    assert "Процент за" not in page
    assert "Engine, %<input" in page


def test_a_new_item_is_counted_in_pieces_in_the_readers_words(shop, signed_in):
    warehouse = signed_in("warehouse")
    page = warehouse.get("/finance/stock")
    assert '<input name="unit" value="шт.">' in page.text
    warehouse.submit(
        "/finance/stock/items", {"name": "Свеча зажигания", "kind": "goods", "price": "300"}
    )
    with shop.crm.acting_as(shop.warehouse) as work:
        (item,) = work.records("finance_item").list(filters={"name": "Свеча зажигания"})
    assert item.unit == "шт."
