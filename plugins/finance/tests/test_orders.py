"""Orders: lines, discounts, totals, prices per client group, completion through the pipeline."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance
from finance_fixtures import money

from crmkit.errors import NotFound, ValidationFailed


def test_order_lines_discount_and_totals(shop):
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work, discount_percent="10")
        main = fin.orders.add_line(order, shop.oil_change.id, main=True)
        oil = fin.orders.add_line(order, shop.oil.id, qty="4.5")
        extra = fin.orders.add_line(order, shop.diagnostics.id, discount="0")
        totals = fin.orders.totals(order)
    assert main.amount == money("1350.00")  # 1500 - 10 %
    assert oil.amount == money("3645.00")  # 4.5 x 900 = 4050 - 405
    assert oil.cost == money("1800.00")  # 4.5 l at the average cost of 400
    assert extra.amount == money("1000.00")  # a line's own discount replaces the percent
    assert totals.total == money("5995.00")
    assert totals.subtotal == money("6550.00")
    assert totals.discount == money("555.00")
    assert totals.charged == 0 and totals.due == money("5995.00")
    assert order.number and order.stage == "new"


def test_editing_a_line_keeps_its_own_discount(shop):
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work, discount_percent="10")
        line = fin.orders.add_line(order, shop.oil_change.id, discount="300.00")
        fin.orders.update_line(line, description="Oil change, synthetic")
        fin.orders.update_line(line, performer_id=shop.manager.id)
        assert (line.discount, line.amount) == (money("300.00"), money("1200.00"))
        assert fin.orders.totals(order).total == money("1200.00")
        # a new quantity is a new sum: the order's percent applies to it
        fin.orders.update_line(line, qty="3")
        assert (line.discount, line.amount) == (money("450.00"), money("4050.00"))
        fin.orders.update_line(line, discount="500.00")
        assert (line.discount, line.amount) == (money("500.00"), money("4000.00"))
        assert fin.orders.totals(order).total == money("4000.00")


def test_lines_added_at_once_give_the_same_books_as_one_by_one(shop):
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        one_by_one = shop.order(work, discount_percent="10")
        fin.orders.add_line(one_by_one, shop.oil_change.id, main=True)
        fin.orders.add_line(one_by_one, shop.oil.id, qty="2")
        at_once = shop.order(work, discount_percent="10")
        lines = fin.orders.add_lines(
            at_once,
            [
                {"item_id": shop.oil_change.id, "main": True},
                {"item_id": shop.oil.id, "qty": "2"},
            ],
        )
        assert [line.position for line in lines] == [1, 2]
        assert fin.orders.totals(at_once) == fin.orders.totals(one_by_one)
        assert [(x.amount, x.cost) for x in lines] == [
            (x.amount, x.cost) for x in fin.orders.lines(one_by_one)
        ]
        assert fin.stock.level(shop.oil.id, shop.branch.id).qty == 6  # 10 - 2 - 2
        work.moves.move(at_once, "in_work")
        work.moves.move(at_once, "done")
        # on a completed order, lines added at once are recognized at once
        [extra] = fin.orders.add_lines(at_once, [{"item_id": shop.diagnostics.id}])
        assert extra.recognized_on == at_once.completed_on and extra.position == 3


def test_a_refused_line_among_many_writes_none_of_them(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
    with (
        pytest.raises(ValidationFailed, match="only 10 l"),
        shop.crm.acting_as(shop.manager) as work,
    ):
        finance(work).orders.add_lines(
            order.id,
            [{"item_id": shop.oil_change.id}, {"item_id": shop.oil.id, "qty": "11"}],
        )
    with (
        pytest.raises(ValidationFailed, match=r"lines\[2\]"),
        shop.crm.acting_as(shop.manager) as work,
    ):
        finance(work).orders.add_lines(order.id, [{"item_id": shop.oil.id}, {"qty": "1"}])
    with shop.crm.acting_as(shop.manager) as work:
        assert finance(work).orders.lines(order.id) == []
        assert finance(work).stock.level(shop.oil.id, shop.branch.id).qty == 10


def test_goods_cannot_exceed_stock_and_nothing_is_written(shop):
    with shop.crm.acting_as(shop.manager) as work:
        order = shop.order(work)
    with (
        pytest.raises(ValidationFailed, match="only 10 l of “Motor oil 5W-30” at Branch 1"),
        shop.crm.acting_as(shop.manager) as work,
    ):
        finance(work).orders.add_line(order.id, shop.oil.id, qty="11")
    with shop.crm.acting_as(shop.manager) as work:
        assert finance(work).orders.lines(order.id) == []
        assert finance(work).stock.level(shop.oil.id, shop.branch.id).qty == 10


def test_price_level_of_a_client_group(shop):
    crm = shop.crm
    with crm.acting_as(shop.admin) as work:
        fin = finance(work)
        vip = work.groups.create(name="VIP", price_level="vip")
        work.groups.add_members(vip.id, [shop.client.id])
        vip_list = work.records("finance_price_list").create(name="VIP prices", price_level="vip")
        fin.catalogue.set_price(vip_list.id, shop.oil_change.id, "1200.00")
        default_list = work.records("finance_price_list").create(name="Retail")
        fin.catalogue.set_price(default_list.id, shop.oil_change.id, "1600.00")
        other = work.parties.create(kind="person", first_name="Пётр", last_name="Другой")
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        vip_order = shop.order(work)
        other_order = shop.order(work, party_id=other.id)
        assert fin.orders.add_line(vip_order, shop.oil_change.id).unit_price == money("1200.00")
        assert fin.orders.add_line(other_order, shop.oil_change.id).unit_price == money("1600.00")
        # an item in no list keeps its own price
        assert fin.orders.add_line(other_order, shop.diagnostics.id).unit_price == money("1000.00")


def test_a_price_levels_latest_list_replaces_its_older_ones_the_cheapest_level_wins(shop):
    crm = shop.crm
    with crm.acting_as(shop.admin) as work:
        fin = finance(work)
        lists = work.records("finance_price_list")
        for group, level in (("VIP", "vip"), ("Partners", "partner")):
            made = work.groups.create(name=group, price_level=level)
            work.groups.add_members(made.id, [shop.client.id])
        vip_2024 = lists.create(name="VIP 2024", price_level="vip", valid_from="2024-01-01")
        vip_2025 = lists.create(name="VIP 2025", price_level="vip", valid_from="2025-01-01")
        partner = lists.create(name="Partners", price_level="partner", valid_from="2024-06-01")
        fin.catalogue.set_price(vip_2024.id, shop.diagnostics.id, "800.00")
        fin.catalogue.set_price(vip_2025.id, shop.diagnostics.id, "900.00")  # dearer, newer
        fin.catalogue.set_price(partner.id, shop.diagnostics.id, "950.00")
        fin.catalogue.set_price(vip_2024.id, shop.oil_change.id, "1300.00")  # not in 2025's
        quote = fin.catalogue.quote

        def vip(item, day):
            return quote(item, currency="RUB", price_level="vip", on_date=day)

        assert vip(shop.diagnostics, dt.date(2025, 3, 1)).price == money("900.00")
        assert vip(shop.diagnostics, dt.date(2025, 3, 1)).price_list_id == vip_2025.id
        assert vip(shop.diagnostics, dt.date(2024, 3, 1)).price == money("800.00")  # before
        assert vip(shop.oil_change, dt.date(2025, 3, 1)).price == money("1300.00")
        # the client has both levels: the cheaper level's current price wins
        both = quote(shop.diagnostics, currency="RUB", party_id=shop.client.id)
        assert (both.price, both.price_level) == (money("900.00"), "vip")
        fin.catalogue.set_price(partner.id, shop.diagnostics.id, "850.00")
        both = quote(shop.diagnostics, currency="RUB", party_id=shop.client.id)
        assert (both.price, both.price_level) == (money("850.00"), "partner")
    with crm.acting_as(shop.manager) as work:
        line = finance(work).orders.add_line(shop.order(work), shop.diagnostics.id)
        assert line.unit_price == money("850.00")


def test_completion_recognizes_revenue_and_extra_service_after_it(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil_change.id, main=True)
        fin.orders.add_line(order, shop.oil.id, qty="4")
        work.moves.move(order, "in_work")
        work.moves.move(order, "done")
        assert order.completed_at is not None
        extra = fin.orders.add_line(order, shop.diagnostics.id)
        assert extra.recognized_on == order.completed_on
        totals = fin.orders.totals(order)
        ledger = fin.ledger
        assert ledger.balance(ledger.receivable(shop.client.id), "RUB") == money("6100.00")
        assert ledger.balance(ledger.account("income:services"), "RUB") == money("2500.00")
        assert ledger.balance(ledger.account("income:goods"), "RUB") == money("3600.00")
        assert ledger.balance(ledger.account("expense:cogs"), "RUB") == money("1600.00")
        assert ledger.balance(ledger.account("wip:orders"), "RUB") == 0
    assert totals.charged == totals.total == money("6100.00")
    assert order.base_total == money("6100.00")


def test_removing_a_recognized_line_appends_a_negative_one(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil_change.id)
        oil = fin.orders.add_line(order, shop.oil.id, qty="2")
        work.moves.move(order, "done")
        negative = fin.orders.remove_line(oil, reason="client brought own oil")
        lines = fin.orders.lines(order)
        stock = fin.stock.level(shop.oil.id, shop.branch.id)
        with pytest.raises(ValidationFailed, match="already removed"):
            fin.orders.remove_line(oil)
    assert negative.amount == money("-1800.00") and negative.reverses_line_id == oil.id
    assert len(lines) == 3 and oil in lines
    assert order.total == money("1500.00") and order.base_total == money("1500.00")
    assert stock.qty == 10 and stock.value == money("4000.00")


def test_reopen_and_cancel_follow_the_stage_kind(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil_change.id)
        fin.orders.add_line(order, shop.oil.id, qty="3")
        work.moves.move(order, "done")
        work.moves.move(order, "in_work", comment="noise again")
        assert order.completed_at is None
        assert fin.orders.totals(order).charged == 0
        assert fin.stock.level(shop.oil.id, shop.branch.id).qty == 7  # still with the order
        work.moves.move(order, "cancelled", comment="client left")
        assert fin.stock.level(shop.oil.id, shop.branch.id).qty == 10
        ledger = fin.ledger
        assert ledger.balance(ledger.receivable(shop.client.id), "RUB") == 0
        assert ledger.balance(ledger.account("income:services"), "RUB") == 0
        assert ledger.balance(ledger.account("expense:cogs"), "RUB") == 0
        with pytest.raises(ValidationFailed, match="cancelled"):
            fin.orders.add_line(order, shop.diagnostics.id)
        work.moves.move(order, "new")  # restored: the goods are issued again
        assert fin.stock.level(shop.oil.id, shop.branch.id).qty == 7
        from crmkit_finance.integrity import problems

        assert problems(work) == []


def test_an_order_left_in_a_removed_stage_moves_out_and_completes(shop):
    import sqlalchemy as sa
    from crmkit_finance.model import FinanceOrder

    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil_change.id)
        order_id = order.id
    with crm.system() as work:  # as if a release removed the stage the order was in
        work.session.execute(
            sa.update(FinanceOrder).where(FinanceOrder.id == order_id).values(stage="parts")
        )
    with crm.acting_as(shop.manager) as work:
        order = work.records("finance_order").get(order_id)
        work.moves.move(order, "done")
        assert order.stage == "done" and order.completed_at is not None


def test_goods_that_cost_nothing_come_back_to_stock(shop):
    """Goods received at no cost (samples, a supplier's gift) leave stock with an order and
    come back when it is cancelled or their line removed, recognized or not."""
    crm = shop.crm
    with crm.acting_as(shop.warehouse) as work:
        fin = finance(work)
        sample = work.records("finance_item").create(
            name="Additive sample", kind="goods", price="100.00", unit="pcs", track_stock=True
        )
        fin.stock.receive(sample.id, shop.branch.id, "5", "0")

    def on_hand(fin):
        return fin.stock.level(sample.id, shop.branch.id).qty

    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        cancelled = shop.order(work)
        fin.orders.add_line(cancelled, sample.id, qty="2")
        fin.orders.add_line(cancelled, shop.oil.id, qty="1")
        assert on_hand(fin) == 3
        work.moves.move(cancelled, "cancelled", comment="client left")
        assert on_hand(fin) == 5  # both sample units are back
        assert fin.stock.level(shop.oil.id, shop.branch.id).qty == 10
        work.moves.move(cancelled, "new")  # restored: issued again
        assert on_hand(fin) == 3
        work.moves.move(cancelled, "cancelled", comment="client left again")
        assert on_hand(fin) == 5
        order = shop.order(work)
        line = fin.orders.add_line(order, sample.id, qty="2")
        fin.orders.update_line(line, qty="3")
        assert on_hand(fin) == 2
        fin.orders.remove_line(line.id)  # an open line
        assert on_hand(fin) == 5
        sold = fin.orders.add_line(order, sample.id, qty="1")
        work.moves.move(order, "done")
        assert on_hand(fin) == 4
        fin.orders.remove_line(sold, reason="not used")  # a recognized line
        assert on_hand(fin) == 5
        reopened = shop.order(work)
        fin.orders.add_line(reopened, sample.id, qty="4")
        work.moves.move(reopened, "done")
        work.moves.move(reopened, "in_work", comment="one more thing")
        work.moves.move(reopened, "cancelled", comment="client left")
        assert on_hand(fin) == 5
        level = fin.stock.level(sample.id, shop.branch.id)
        assert level.value == 0
        from crmkit_finance.integrity import problems

        assert problems(work) == []


def test_an_order_moved_to_another_client_never_keeps_the_first_clients_contract(shop):
    crm = shop.crm
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        taxi = work.parties.create(kind="organisation", name="ООО «Такси»")
        bus = work.parties.create(kind="organisation", name="ООО «Автобус»")
        taxi_terms = work.records("finance_contract").create(
            party_id=taxi.id, number="Д-17", payment_days=30, signed_on="2020-01-01"
        )
        bus_terms = work.records("finance_contract").create(
            party_id=bus.id, number="Д-18", payment_days=10, signed_on="2020-01-01"
        )
        order = shop.order(work, party_id=taxi.id)
        assert order.contract_id == taxi_terms.id
        # another client's contract, named with or without a change of client: refused
        for values in (
            {"contract_id": bus_terms.id},
            {"party_id": shop.client.id, "contract_id": bus_terms.id},
        ):
            with pytest.raises(ValidationFailed, match="not a contract of this client") as no:
                fin.orders.update(order, **values)
            assert set(no.value.errors) == {"contract_id"}
            assert (order.party_id, order.contract_id) == (taxi.id, taxi_terms.id)
        # a client without a contract: the order pays as theirs, on the spot
        fin.orders.update(order, party_id=shop.client.id)
        assert order.contract_id is None
        # a client with one: the order takes their contract in force, as a new order does
        fin.orders.update(order, party_id=bus.id)
        assert order.contract_id == bus_terms.id
        # a form sending every field back (the contract as it was) with a new client
        fin.orders.update(order, party_id=taxi.id, contract_id=bus_terms.id)
        assert order.contract_id == taxi_terms.id
        fin.orders.update(order, party_id=shop.client.id, contract_id=None)
        assert order.contract_id is None
        fin.orders.add_line(order, shop.oil_change.id)
        work.moves.move(order, "done")
        assert order.due_on == order.completed_on  # no 30 days of the taxi's terms


def test_a_completed_order_keeps_its_currency_and_client(shop):
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil_change.id)
        fin.orders.complete(order)
        with pytest.raises(ValidationFailed, match="completed"):
            fin.orders.update(order, discount_percent="5")


def test_cashier_cannot_create_orders_and_worker_sees_only_theirs(shop, make_crm):
    from crmkit import Role, grant, hookimpl
    from crmkit.errors import PermissionDenied
    from crmkit.testing import add_user

    crm = shop.crm
    with crm.acting_as(shop.cashier) as work, pytest.raises(PermissionDenied):
        shop.order(work)

    class WorkerRole:
        crmkit_plugin_name = "workers"

        @hookimpl
        def crmkit_register_roles(self):
            return [Role("worker", "Worker")]

        @hookimpl
        def crmkit_register_permissions(self):
            return grant("worker", "finance_order", ("read", "move"), "own")

    from crmkit_finance import plugin as finance_plugin

    crm2 = make_crm(plugins=[finance_plugin, WorkerRole()])
    from finance_fixtures import build_shop

    shop2 = build_shop(crm2)
    ivan = add_user(crm2, "ivan", ["worker"])
    olga = add_user(crm2, "olga", ["worker"])
    with crm2.acting_as(shop2.manager) as work:
        mine = shop2.order(work, assignee_id=ivan.id)
        theirs = shop2.order(work, assignee_id=olga.id)
    with crm2.acting_as(ivan) as work:
        visible = [o.id for o in work.records("finance_order").list().items]
        assert visible == [mine.id]
        with pytest.raises(NotFound):
            finance(work).orders.get(theirs.id)
        work.moves.move(mine.id, "in_work", entity="finance_order")
        with pytest.raises(PermissionDenied):
            finance(work).payments.take(order_id=mine.id, amount="1", method="transfer")


def test_only_an_empty_order_can_be_deleted(shop):
    with shop.crm.acting_as(shop.admin) as work:
        fin = finance(work)
        empty = shop.order(work)
        used = shop.order(work)
        fin.orders.add_line(used, shop.oil.id, qty="1")
        fin.orders.delete(empty)
        with pytest.raises(ValidationFailed, match="cancel it instead"):
            fin.orders.delete(used)
        with pytest.raises(NotFound):
            fin.orders.get(empty.id)


def test_a_client_with_orders_is_not_deleted(shop):
    with shop.crm.acting_as(shop.admin) as work:
        shop.order(work)
    with shop.crm.acting_as(shop.admin) as work:
        with pytest.raises(ValidationFailed, match="still referenced by other records"):
            work.parties.delete(shop.client.id)
        assert work.parties.get(shop.client.id).id == shop.client.id


def test_amounts_the_columns_cannot_keep_are_refused_naming_the_field(shop):
    with shop.crm.system() as work:
        items = work.records("finance_item")
        for price, reason in (("10.555", "at most 2 decimal places"), (3.5e-35, "at most 2"),
                              ("1e30", "too large")):  # fmt: skip
            with pytest.raises(ValidationFailed, match=f"price.*{reason}"):
                items.create(name="Polish", kind="service", price=price)
        assert items.create(name="Polish", kind="service", price="10.50").price == money("10.50")


def test_a_refusal_over_the_api_reads_in_english(shop):
    """A service's refusal is a message with parameters; the API answers 422 with its
    English text (a JSON client has no catalog), field by field."""
    from finance_web import TestClient

    from crmkit.web.app import create_app

    with shop.crm.acting_as(shop.manager) as work:
        secret = work.api_tokens.create("test").secret
        party_id = shop.order(work).party_id
    api = TestClient(create_app(shop.crm))
    refused = api.post(
        "/api/v1/finance_order",
        json={"party_id": party_id, "lines": [{"item_id": 987654}]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == {"item_id": ["no item 987654"]}
    assert "no item 987654" in refused.json()["detail"]


def test_a_discount_given_with_a_move_reprices_the_total(shop):
    """A discount staged by a move (its fields are set before the move is checked, with
    autoflush off) leaves a total that is the sum of the repriced lines, and completion
    charges what the lines say."""
    with shop.crm.acting_as(shop.manager) as work:
        fin = finance(work)
        order = shop.order(work)
        fin.orders.add_line(order, shop.oil_change.id, main=True)
        fin.orders.add_line(order, shop.diagnostics.id)
        work.moves.move(order, "in_work")
        work.moves.move(order, "done", fields={"discount_percent": "10"})
        order_id = order.id
    with shop.crm.acting_as(shop.accountant) as work:
        fin = finance(work)
        lines = fin.orders.lines(order_id)
        totals = fin.orders.totals(order_id)
    assert [line.amount for line in lines] == [money("1350.00"), money("900.00")]
    assert totals.total == sum(line.amount for line in lines) == money("2250.00")
    assert totals.discount == money("250.00") and totals.subtotal == money("2500.00")
    assert totals.charged == totals.total and totals.due == money("2250.00")


def test_an_open_orders_branch_and_client_stay_with_its_goods_and_money(shop):
    crm = shop.crm
    with crm.acting_as(shop.warehouse) as work:
        second_branch = work.records("finance_location").create(name="Branch 2")
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        other = work.parties.create(kind="person", first_name="Пётр", last_name="Другой")
        order = shop.order(work)
        line = fin.orders.add_line(order, shop.oil.id, qty="4")
        with pytest.raises(ValidationFailed, match="issued from Branch 1") as refused:
            fin.orders.update(order, location_id=second_branch.id)
        assert set(refused.value.errors) == {"location_id"}
        fin.orders.remove_line(line.id)  # the goods go back where they came from
        assert fin.stock.level(shop.oil.id, shop.branch.id).qty == 10
        fin.orders.update(order, location_id=second_branch.id)  # no goods: another branch
        fin.orders.add_line(order, shop.diagnostics.id)
    with crm.acting_as(shop.cashier) as work:
        prepaid = finance(work).payments.take(
            order_id=order.id, amount="1000.00", method="transfer"
        )
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        with pytest.raises(ValidationFailed, match="1000.00 RUB was paid") as refused:
            fin.orders.update(order, party_id=other.id)
        assert set(refused.value.errors) == {"party_id"}
    with crm.acting_as(shop.cashier) as work:
        finance(work).payments.refund(prepaid.id)
    with crm.acting_as(shop.manager) as work:
        fin = finance(work)
        fin.orders.update(order, party_id=other.id)  # refunded: nothing sits with the first
        assert fin.orders.get(order.id).party_id == other.id
        from crmkit_finance.integrity import problems

        assert problems(work) == []


def test_an_over_long_line_description_is_refused_naming_it_not_cut(shop):
    """A line's text is kept whole or refused: cutting it at 300 characters lost the end
    of what was typed (the column holds 300).  Each attempt is its own unit of work, as a
    request is: a refusal writes nothing."""
    long_text = "Замена масла, " + "к" * 300
    with shop.crm.acting_as(shop.manager) as work:
        order_id = shop.order(work).id
    with pytest.raises(ValidationFailed) as one, shop.crm.acting_as(shop.manager) as work:
        finance(work).orders.add_line(order_id, shop.oil_change.id, description=long_text)
    assert [str(m) for m in one.value.errors["description"]] == ["longer than 300 characters"]
    with pytest.raises(ValidationFailed) as several, shop.crm.acting_as(shop.manager) as work:
        finance(work).orders.add_lines(
            order_id,
            [{"item_id": shop.oil_change.id}, {"item_id": shop.oil.id, "description": long_text}],
        )
    assert [str(m) for m in several.value.errors["lines[2].description"]] == [
        "longer than 300 characters"
    ]
    with shop.crm.acting_as(shop.manager) as work:
        line_id = (
            finance(work).orders.add_line(order_id, shop.oil_change.id, description="к" * 300).id
        )
    with pytest.raises(ValidationFailed) as edited, shop.crm.acting_as(shop.manager) as work:
        finance(work).orders.update_line(line_id, description=long_text)
    assert [str(m) for m in edited.value.errors["description"]] == ["longer than 300 characters"]
    with shop.crm.system() as work:
        lines = finance(work).orders.lines(order_id)
        assert [line.description for line in lines] == ["к" * 300]
