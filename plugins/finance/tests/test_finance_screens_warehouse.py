"""The warehouse head's screens over HTTP: catalogue, receipts with cost, stock per location,
write-offs, counts, low stock, purchases."""

from __future__ import annotations

import re
from decimal import Decimal

from crmkit_finance import finance
from crmkit_finance.model import FinanceStockLevel
from crmkit_finance.services.stock import StockService
from sqlalchemy import select, update


def _level(shop, item_id):
    with shop.crm.acting_as(shop.warehouse) as work:
        rows = finance(work).stock.levels(location_id=shop.branch.id)
    return next(r for r in rows if r["item_id"] == item_id)


def test_receipt_write_off_count_and_low_stock(shop, signed_in):
    head = signed_in("warehouse")
    page = head.get("/finance/stock")
    row = page.text.split(f'id="stock-{shop.oil.id}-{shop.branch.id}"', 1)[1].split("</tr>")[0]
    assert "10" in row and "4\xa0000,00" in row  # 10 l at 400.00
    common = {"item_id": shop.oil.id, "location_id": shop.branch.id}
    # 10 more litres at 500.00: the average becomes 450.00
    head.submit("/finance/stock/receive", {**common, "qty": "10", "unit_cost": "500"})
    level = _level(shop, shop.oil.id)
    assert level["qty"] == Decimal("20") and level["average_cost"] == Decimal("450.00")
    head.submit("/finance/stock/write_off", {**common, "qty": "2", "reason": "spilled"})
    counted = head.submit("/finance/stock/count", {**common, "qty": "17"})
    level = _level(shop, shop.oil.id)
    assert level["qty"] == Decimal("17") and level["value"] == Decimal("7650.00")
    assert re.search(r'id="stock-value">7\xa0650,00', counted.text)
    refused = head.refused("/finance/stock/write_off", {**common, "qty": "1", "reason": ""})
    assert 'class="flash error"' in refused.text and _level(shop, shop.oil.id)["qty"] == 17
    head.submit("/finance/stock/minimum", {**common, "min_qty": "20"})
    low = head.get("/finance/stock?low=1")
    assert f'id="stock-{shop.oil.id}-{shop.branch.id}"' in low.text and "chip" in low.text


def test_new_goods_and_a_purchase_order_received_with_its_cost(shop, signed_in):
    head = signed_in("warehouse")
    head.submit("/finance/stock/categories", {"name": "Filters", "kind": "goods"})
    head.submit(
        "/finance/stock/items",
        {
            "name": "Oil filter",
            "kind": "goods",
            "price": "650",
            "unit": "pcs",
            "track_stock": "1",
        },
    )
    head.submit("/finance/suppliers", {"name": "ООО «Запчасти»", "payment_days": "14"})
    with shop.crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        item = next(i for i in fin.catalogue.items(kind="goods") if i.name == "Oil filter")
        supplier = next(iter(work.records("finance_supplier").list(limit=5)))
    page = head.submit(
        "/finance/purchases",
        {
            "supplier_id": supplier.id,
            "location_id": shop.branch.id,
            "item_id": [item.id, ""],
            "qty": ["6", ""],
            "unit_cost": ["300", ""],
        },
    )
    assert "Oil filter" in page.text and "ООО «Запчасти»" in page.text
    with shop.crm.acting_as(shop.warehouse) as work:
        purchase = next(iter(work.records("finance_purchase_order").list(limit=5)))
    head.submit(f"/finance/purchases/{purchase.id}/receive")
    level = _level(shop, item.id)
    assert level["qty"] == Decimal("6") and level["value"] == Decimal("1800.00")
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).purchases.owed_to(supplier.id) == Decimal("1800.00")


def test_warehouse_screens_are_hidden_from_the_cashier(shop, signed_in):
    cashier = signed_in("cashier")
    for url in ("/finance/stock", "/finance/purchases"):
        assert cashier.get(url).status_code == 404, url
    assert (
        cashier.post(
            "/finance/stock/receive",
            {
                "item_id": shop.oil.id,
                "location_id": shop.branch.id,
                "qty": "5",
                "unit_cost": "1",
            },
        ).status_code
        == 404
    )
    assert _level(shop, shop.oil.id)["qty"] == Decimal("10")
    # the director and the accountant read stock but have no warehouse forms
    for who in ("director", "accountant"):
        page = signed_in(who).get("/finance/stock")
        assert page.status_code == 200 and 'id="receive"' not in page.text


def test_a_receipt_form_sent_twice_receives_the_goods_once(shop, signed_in):
    head = signed_in("warehouse")
    page = head.get("/finance/stock")
    form = page.text.split('action="/finance/stock/receive"', 1)[1].split("</form>", 1)[0]
    token = re.search(r'name="form_token" value="([^"]+)"', form).group(1)
    sent = {
        "item_id": shop.oil.id,
        "location_id": shop.branch.id,
        "qty": "10",
        "unit_cost": "500",
        "form_token": token,
    }
    first = head.submit("/finance/stock/receive", sent)
    again = head.submit("/finance/stock/receive", sent)  # a double click, a reload
    flash = " ".join(re.findall(r'<p class="flash [^"]*"[^>]*>([^<]*)</p>', again.text))
    assert "flash error" not in first.text + again.text
    assert "This form was already sent" in flash or "Эта форма уже отправлена" in flash
    level = _level(shop, shop.oil.id)
    assert level["qty"] == Decimal("20") and level["value"] == Decimal("9000.00")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        moves = fin.stock.moves(shop.oil.id, shop.branch.id)
        assert [m.kind for m in moves].count("receipt") == 2  # the fixture's and this one
        assert fin.ledger.balance(fin.ledger.account("inventory:stock"), "RUB") == Decimal(
            "9000.00"
        )
    # the next page's form is a new receipt
    page = head.get("/finance/stock")
    assert token not in page.text


def _stock_form(page, action):
    form = page.text.split(f'action="/finance/stock/{action}"', 1)[1].split("</form>", 1)[0]
    return re.search(r'name="form_token" value="([^"]+)"', form).group(1)


def _flashes(page):
    return " ".join(re.findall(r'<p class="flash [^"]*"[^>]*>([^<]*)</p>', page.text))


def test_write_off_and_transfer_forms_sent_twice_take_effect_once(shop, signed_in):
    with shop.crm.acting_as(shop.warehouse) as work:
        store = work.records("finance_location").create(name="Store")
    head = signed_in("warehouse")
    page = head.get("/finance/stock")
    common = {"item_id": shop.oil.id, "location_id": shop.branch.id}
    write_off = {
        **common,
        "qty": "2",
        "reason": "spilled",
        "form_token": _stock_form(page, "write_off"),
    }
    first = head.submit("/finance/stock/write_off", write_off)
    again = head.submit("/finance/stock/write_off", write_off)  # back and send again
    assert "flash error" not in first.text + again.text
    assert "уже отправлена" not in _flashes(first)
    assert "Эта форма уже отправлена: повторно ничего не сделано." in _flashes(again)
    transfer = {
        **common,
        "to_location_id": store.id,
        "qty": "3",
        "form_token": _stock_form(page, "transfer"),
    }
    first = head.submit("/finance/stock/transfer", transfer)
    again = head.submit("/finance/stock/transfer", transfer)  # a double click
    assert "flash error" not in first.text + again.text
    assert "Эта форма уже отправлена: повторно ничего не сделано." in _flashes(again)
    # 10 l at 400.00: 2 written off once, 3 moved once
    assert _level(shop, shop.oil.id)["qty"] == Decimal("5")
    with shop.crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        at_store = next(
            r for r in fin.stock.levels(location_id=store.id) if r["item_id"] == shop.oil.id
        )
        assert at_store["qty"] == Decimal("3") and at_store["value"] == Decimal("1200.00")
        kinds = [m.kind for m in fin.stock.moves(shop.oil.id)]
        assert kinds.count("write_off") == 1 and kinds.count("transfer") == 2
        shrinkage = fin.ledger.account("expense:shrinkage")
        assert fin.ledger.balance(shrinkage, "RUB") == Decimal("800.00")
    # a new page has new forms: the same write-off again is a second one
    page = head.get("/finance/stock")
    assert write_off["form_token"] not in page.text and transfer["form_token"] not in page.text
    head.submit(
        "/finance/stock/write_off", {**write_off, "form_token": _stock_form(page, "write_off")}
    )
    assert _level(shop, shop.oil.id)["qty"] == Decimal("3")


def test_count_and_minimum_forms_sent_again_after_goods_moved_change_nothing(shop, signed_in):
    """A count or a minimum sets a level: sent again after the stock moved, a count would book
    the difference once more and a minimum would undo the one set since."""
    head = signed_in("warehouse")
    common = {"item_id": shop.oil.id, "location_id": shop.branch.id}
    page = head.get("/finance/stock")
    count = {**common, "qty": "8", "form_token": _stock_form(page, "count")}
    minimum = {**common, "min_qty": "5", "form_token": _stock_form(page, "minimum")}
    first = head.submit("/finance/stock/count", count)  # 10 l found 8: 2 short
    assert "flash error" not in first.text and "уже отправлена" not in _flashes(first)
    assert _level(shop, shop.oil.id)["qty"] == Decimal("8")
    head.submit("/finance/stock/minimum", minimum)
    with shop.crm.acting_as(shop.warehouse) as work:
        finance(work).stock.write_off(shop.oil.id, shop.branch.id, "1", reason="spilled")
    later = head.get("/finance/stock")  # a second minimum, from a page shown later
    head.submit(
        "/finance/stock/minimum",
        {**common, "min_qty": "3", "form_token": _stock_form(later, "minimum")},
    )
    again = head.submit("/finance/stock/count", count)  # the back button and send again
    assert "flash error" not in again.text
    assert "Эта форма уже отправлена: повторно ничего не сделано." in _flashes(again)
    again = head.submit("/finance/stock/minimum", minimum)
    assert "Эта форма уже отправлена: повторно ничего не сделано." in _flashes(again)
    level = _level(shop, shop.oil.id)
    assert level["qty"] == Decimal("7") and level["value"] == Decimal("2800.00")
    assert level["min_qty"] == Decimal("3")
    # a count that found the stock as booked moved nothing, and its repeat moves nothing
    nothing = {**common, "qty": "7", "form_token": _stock_form(later, "count")}
    head.submit("/finance/stock/count", nothing)
    with shop.crm.acting_as(shop.warehouse) as work:
        finance(work).stock.write_off(shop.oil.id, shop.branch.id, "2", reason="spilled")
    again = head.submit("/finance/stock/count", nothing)
    assert "Эта форма уже отправлена: повторно ничего не сделано." in _flashes(again)
    assert _level(shop, shop.oil.id)["qty"] == Decimal("5")
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        assert [m.kind for m in fin.stock.moves(shop.oil.id)].count("count") == 1
        shrinkage = fin.ledger.account("expense:shrinkage")
        assert fin.ledger.balance(shrinkage, "RUB") == Decimal("2000.00")  # 5 l at 400.00
    # the next page's forms are new ones
    page = head.get("/finance/stock")
    assert count["form_token"] not in page.text and minimum["form_token"] not in page.text


def test_only_one_who_may_pay_is_offered_to_pay_a_receipt_at_once(shop, signed_in):
    def receipt_form(page):
        return page.text.split('action="/finance/stock/receive"', 1)[1].split("</form>", 1)[0]

    head, admin = signed_in("warehouse"), signed_in("admin")
    assert 'name="paid_from"' not in receipt_form(head.get("/finance/stock"))
    assert 'name="paid_from"' in receipt_form(admin.get("/finance/stock"))
    common = {"item_id": shop.oil.id, "location_id": shop.branch.id, "qty": "1"}
    # a hand-made form paying from a client's cashback account is refused, nothing booked
    refused = head.refused(
        "/finance/stock/receive",
        {**common, "unit_cost": "500", "paid_from": f"cashback:party:{shop.client.id}"},
    )
    flash = " ".join(re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', refused.text))
    assert "платежи" in flash, flash
    refused = admin.refused(
        "/finance/stock/receive",
        {**common, "unit_cost": "500", "paid_from": f"cashback:party:{shop.client.id}"},
    )
    flash = " ".join(re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', refused.text))
    assert "кассы или с банковского счёта" in flash, flash
    assert _level(shop, shop.oil.id)["qty"] == Decimal("10")
    with shop.crm.acting_as(shop.accountant) as work:
        assert finance(work).cashback.balance(shop.client.id) == 0


def test_a_stale_write_met_on_the_way_is_the_changed_meanwhile_page(shop, signed_in, monkeypatch):
    """A row changed under the form's change, found by a flush the service did not start
    itself (a query's autoflush), is the page's conflict (409), not a server error."""

    def set_minimum(self, item_id, location_id, min_qty, form_token=None):
        level = self.level(item_id, location_id)
        level.min_qty = Decimal(min_qty)
        # the row's version moves on behind the loaded level (as another writer's would)
        self.session.connection().execute(
            update(FinanceStockLevel)
            .where(FinanceStockLevel.id == level.id)
            .values(version=FinanceStockLevel.version + 1)
        )
        self.session.scalar(select(FinanceStockLevel.id).limit(1))  # flushes on its way
        return level

    monkeypatch.setattr(StockService, "set_minimum", set_minimum)
    head = signed_in("warehouse")
    common = {"item_id": shop.oil.id, "location_id": shop.branch.id}
    answer = head.post("/finance/stock/minimum", {**common, "min_qty": "20"})
    assert answer.status_code == 409 and "Изменено другим" in answer.text
    assert _level(shop, shop.oil.id)["min_qty"] == 0  # nothing of it saved


def test_a_nul_character_in_a_purchase_order_is_refused_naming_the_field(shop, signed_in):
    """The purchase form reads its own lines: a NUL in the note reached PostgreSQL (a 500)
    and was kept by SQLite; it is refused naming the field, and no order is made."""
    head = signed_in("warehouse")
    head.submit("/finance/suppliers", {"name": "ООО «Запчасти»", "payment_days": "14"})
    with shop.crm.acting_as(shop.warehouse) as work:
        supplier = next(iter(work.records("finance_supplier").list(limit=5)))
    page = head.submit(
        "/finance/purchases",
        {
            "supplier_id": supplier.id,
            "location_id": shop.branch.id,
            "item_id": [shop.oil.id],
            "qty": ["6"],
            "unit_cost": ["300"],
            "note": "срочно\x00",
        },
    )
    assert 'class="flash error"' in page.text
    assert '"flash error" role="status">заметка: содержит символ NUL<' in page.text
    with shop.crm.acting_as(shop.warehouse) as work:
        assert list(work.records("finance_purchase_order").list(limit=5)) == []


def test_a_receipts_note_and_a_write_offs_reason_are_capped(shop, signed_in):
    """The warehouse forms reached the stock service without a schema and kept a note or
    a reason of any length: refused naming the field, the stock unmoved; 20000 kept."""
    head = signed_in("warehouse")
    common = {"item_id": shop.oil.id, "location_id": shop.branch.id}
    receipt = {**common, "qty": "10", "unit_cost": "500"}
    with shop.crm.acting_as(shop.warehouse) as work:
        before = len(finance(work).stock.moves(shop.oil.id))

    received = head.refused("/finance/stock/receive", {**receipt, "note": "д" * 20001})
    assert "заметка: длиннее 20000 символов" in received.text
    written_off = head.refused(
        "/finance/stock/write_off", {**common, "qty": "2", "reason": "д" * 20001}
    )
    assert "причина: длиннее 20000 символов" in written_off.text
    assert _level(shop, shop.oil.id)["qty"] == Decimal("10")
    with shop.crm.acting_as(shop.warehouse) as work:
        assert len(finance(work).stock.moves(shop.oil.id)) == before

    head.submit("/finance/stock/receive", {**receipt, "note": "д" * 20000})
    head.submit("/finance/stock/write_off", {**common, "qty": "2", "reason": "д" * 20000})
    assert _level(shop, shop.oil.id)["qty"] == Decimal("18")
    with shop.crm.acting_as(shop.warehouse) as work:
        moves = finance(work).stock.moves(shop.oil.id)
        assert len(moves) == before + 2
        assert sorted(len(m.note) for m in moves)[-2:] == [20000, 20000]


def test_with_no_supplier_the_purchase_form_says_to_add_one_and_its_button_places_the_order(
    shop, signed_in
):
    head = signed_in("warehouse")
    page = head.get("/finance/purchases").text
    new_purchase = page.split('id="new-purchase"', 1)[1].split("</section>", 1)[0]
    assert 'name="supplier_id"' not in new_purchase  # no form to fail on an empty choice
    assert 'id="no-suppliers"' in new_purchase
    head.submit("/finance/suppliers", {"name": "ООО «Запчасти»", "payment_days": "14"})
    page = head.get("/finance/purchases").text
    new_purchase = page.split('id="new-purchase"', 1)[1].split("</section>", 1)[0]
    assert 'name="supplier_id"' in new_purchase and 'id="no-suppliers"' not in new_purchase
    button = re.search(r'<button type="submit">([^<]*)</button>', new_purchase).group(1)
    assert button in ("Place the order", "Заказать")  # a verb, not the noun «Заказ»


def test_writing_off_more_than_there_is_says_both_quantities_with_a_decimal_comma(shop, signed_in):
    head = signed_in("warehouse")
    common = {"item_id": shop.oil.id, "location_id": shop.branch.id}
    head.submit("/finance/stock/receive", {**common, "qty": "0,5", "unit_cost": "400"})
    page = head.refused("/finance/stock/write_off", {**common, "qty": "20,25", "reason": "spilled"})
    flash = " ".join(re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page.text))
    assert "10,5" in flash and "20,25" in flash, flash
    assert "10.5" not in flash and "20.25" not in flash
    assert _level(shop, shop.oil.id)["qty"] == Decimal("10.5")  # nothing written off


def _form(page, form_id):
    return page.text.split(f'id="{form_id}"', 1)[1].split("</form>", 1)[0]


def test_a_refused_stock_form_keeps_what_was_typed_and_says_why_beside_it(shop, signed_in):
    """A write-off of more than is on hand, a count or a receipt with a mistyped number:
    the page comes back with that form filled in as it was sent (the good, the place, the
    quantity, the reason), the reason for the refusal inside it and the page opening on
    it (a phone shows the top of the page far from the form); nothing moved."""
    with shop.crm.acting_as(shop.admin) as work:
        store = work.records("finance_location").create(name="Склад 2")
        finance(work).stock.receive(shop.oil.id, store.id, "3", "400.00")
    head = signed_in("warehouse")
    place = {"item_id": shop.oil.id, "location_id": store.id}
    refused = head.post("/finance/stock/write_off", {**place, "qty": "5", "reason": "пролили"})
    assert refused.status_code == 422
    form = _form(refused, "write-off")
    assert re.search(r'name="qty"[^>]*value="5"', form)
    assert re.search(r'name="reason"[^>]*value="пролили"', form)
    assert f'<option value="{store.id}" selected>' in form
    assert 'class="flash error"' in form and "autofocus" in form
    # the other forms stay empty, and the refusal is said once, by its form
    assert 'value="5"' not in _form(refused, "count")
    assert refused.text.count('class="flash error"') == 1

    refused = head.post("/finance/stock/count", {**place, "qty": "2,5,"})
    assert refused.status_code == 422
    form = _form(refused, "count")
    assert re.search(r'name="qty"[^>]*value="2,5,"', form) and 'class="flash error"' in form
    assert "2,5," in form.split('class="flash error"', 1)[1]

    receipt = {**place, "qty": "4", "unit_cost": "4OO"}
    refused = head.post("/finance/stock/receive", receipt)
    assert refused.status_code == 422
    form = _form(refused, "receive")
    assert re.search(r'name="qty"[^>]*value="4"', form)
    assert re.search(r'name="unit_cost"[^>]*value="4OO"', form)
    assert 'class="flash error"' in form
    with shop.crm.acting_as(shop.warehouse) as work:
        rows = finance(work).stock.levels(location_id=store.id)
    assert [r["qty"] for r in rows if r["item_id"] == shop.oil.id] == [Decimal("3")]
