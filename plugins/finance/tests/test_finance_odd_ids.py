"""Ids typed or sent into the finance forms: "²" (a digit to ``str.isdigit`` that ``int``
refuses) and a number past what an id column holds are refused naming the field, never a
500, and nothing is written."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from crmkit_finance import finance
from crmkit_finance.model import FinanceInvoice
from finance_web import Client

from crmkit.testing import add_user
from crmkit.testing.web import id_paths, int_paths
from crmkit.web.app import create_app

ODD = ["²", "9" * 25]


def _refused(response, *names: str) -> bool:
    """The page says the value is not an id, naming the field (by its name or label)."""
    text = html.unescape(response.text)
    return "2^63-1" in text and any(f"{name}: " in text for name in names)


@pytest.mark.parametrize("odd", ODD)
def test_an_odd_client_id_on_the_invoices_page_is_refused(shop, signed_in, odd):
    page = signed_in("accountant").get("/finance/invoices", params={"client": odd})
    assert page.status_code == 422 and _refused(page, "client", "клиент")


@pytest.mark.parametrize("odd", ODD)
def test_odd_order_ids_issue_no_invoice(shop, signed_in, odd):
    accountant = signed_in("accountant")
    page = accountant.submit("/finance/invoices", {"order_id": [odd]})
    assert 'class="flash error"' in page.text
    assert _refused(page, "order_id", "заказ")
    with shop.crm.system() as work:
        assert work.session.query(FinanceInvoice).count() == 0


@pytest.mark.parametrize("odd", ODD)
def test_an_odd_category_rate_saves_no_pay_scheme(shop, signed_in, odd):
    accountant = signed_in("accountant")
    page = accountant.submit(
        "/finance/payroll/schemes",
        {"user_id": shop.manager.id, "fixed_amount": "10000", f"rate.{odd}": "20"},
    )
    assert 'class="flash error"' in page.text
    assert _refused(page, f"rate.{odd}")
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).payroll.scheme_for(shop.manager.id, dt.date(2100, 1, 1)) is None


@pytest.mark.parametrize("odd", ODD)
def test_the_finance_forms_share_the_cores_id_refusal(shop, signed_in, odd):
    """The finance forms' own id fields (a payment's order, a payout's employee) refuse like
    every core form, naming the field."""
    cashier = signed_in("cashier")
    paid = cashier.post("/finance/payments", {"order_id": odd, "amount": "100", "method": "cash"})
    assert paid.status_code == 422 and "2^63-1" in html.unescape(paid.text)
    assert "order_id" in paid.text or "заказ" in paid.text
    accountant = signed_in("accountant")
    payout = accountant.submit("/finance/payroll/pay", {"user_id": odd, "amount": "100"})
    assert _refused(payout, "user_id", "пользователь")


def test_a_path_id_past_an_id_column_is_a_404_on_every_finance_page(shop):
    """The finance routes take their ids with the core's ``id`` convertor: a 25-digit id
    (which Starlette's ``int`` passed on to fail in the database) is a 404."""
    add_user(shop.crm, "root", ["admin"])
    app = create_app(shop.crm)
    admin = Client(app, "root")
    assert not int_paths(app)
    paths = [(method, path) for method, path in id_paths(app) if path.startswith("/finance/")]
    assert ("GET", "/finance/invoices/" + "9" * 25) in paths and len(paths) >= 15
    for method, path in paths:
        answer = admin.get(path) if method == "GET" else admin.post(path, {"amount": "1"})
        assert answer.status_code == 404, (method, path)


@pytest.mark.parametrize("typed", ["abc", "1.5", "²", "9" * 25])
def test_a_suppliers_payment_days_that_are_no_number_are_named(shop, signed_in, typed):
    """The supplier form's days used to go through ``int()`` (a 500 on "abc"); the
    schema's refusal names the field now, and neither the supplier nor its client is kept."""
    head = signed_in("warehouse")
    page = head.submit("/finance/suppliers", {"name": "ООО «Запчасти»", "payment_days": typed})
    assert 'class="flash error"' in page.text
    assert any(
        f"{name}: " in html.unescape(page.text) for name in ("payment_days", "отсрочка, дней")
    )
    with shop.crm.system() as work:
        assert list(work.records("finance_supplier").list(limit=5)) == []
        assert list(work.parties.list(search="Запчасти", limit=5)) == []
    head.submit("/finance/suppliers", {"name": "ООО «Запчасти»", "payment_days": "14"})
    with shop.crm.system() as work:
        assert [s.payment_days for s in work.records("finance_supplier").list(limit=5)] == [14]
