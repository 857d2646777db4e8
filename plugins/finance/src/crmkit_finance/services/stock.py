"""Stock and purchases: what is where, what it is worth, and how it got there.

**Valuation: moving weighted average cost, per item and location.**  A receipt adds its
cost to the value on hand; anything leaving (an issue to an order, a write-off, a return to
the supplier, a shortage found by a count) takes ``qty x (value on hand / qty on hand)``,
rounded half up to the kopeck, except that the last units on hand take exactly the value
left, so no residue of rounding ever stays in stock.  Goods coming back (a line removed
from an order) return at the value they left with.

Every change of stock is an append-only stock move and, where it changes what the goods are
worth, a ledger transaction in the same database transaction: the inventory account's
balance always equals the sum of the stock levels' values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from crmkit.clock import utcnow
from crmkit.db import lock_row
from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import Label, Number, message
from crmkit.model import Reminder, User, UserRole
from crmkit.services.limits import refuse_long_texts
from crmkit_finance.ledger import credit, debit
from crmkit_finance.model import (
    FinanceCashDesk,
    FinanceItem,
    FinanceLocation,
    FinancePurchaseLine,
    FinancePurchaseOrder,
    FinanceStockLevel,
    FinanceStockMove,
    FinanceSupplier,
    FinanceTransaction,
)
from crmkit_finance.money import exact_money, line_total, quantity, round_money
from crmkit_finance.services import forms

if TYPE_CHECKING:
    from crmkit_finance.services import Finance


def _count(qty: Decimal) -> Number:
    """A quantity in a refusal: ``2.5`` plain, ``2,5`` to a Russian reader (no ``2.500``,
    no ``1E+1``)."""
    return Number(Decimal(f"{qty.normalize():f}"))


class StockService:
    """Stock levels, moves and their value.  Reached as ``finance(work).stock``."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    # -- reading -----------------------------------------------------------------------

    def level(self, item_id: int, location_id: int) -> FinanceStockLevel:
        """The stock level row of an item at a location (created empty on first use)."""
        found = self.session.scalar(
            select(FinanceStockLevel).where(
                FinanceStockLevel.item_id == item_id, FinanceStockLevel.location_id == location_id
            )
        )
        if found is not None:
            return found
        dialect = self.session.get_bind().dialect.name
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(FinanceStockLevel)
        self.session.execute(
            insert.values(
                item_id=item_id,
                location_id=location_id,
                qty=Decimal(0),
                value=Decimal(0),
                min_qty=Decimal(0),
                version=1,
            ).on_conflict_do_nothing(index_elements=["item_id", "location_id"])
        )
        return self.session.scalar(
            select(FinanceStockLevel).where(
                FinanceStockLevel.item_id == item_id, FinanceStockLevel.location_id == location_id
            )
        )

    def on_hand(self, item_id: int, location_id: int) -> Decimal:
        """Quantity of an item at a location."""
        self.finance.require("finance_stock", "read")
        return self.level(item_id, location_id).qty

    def _held_level(self, item_id: int, location_id: int) -> FinanceStockLevel:
        """The level row, held until the transaction ends and read afresh: of two moves of
        the last units at once the second waits, then sees what the first took (and is
        refused if nothing is left) instead of failing on a stale write."""
        level = self.level(item_id, location_id)
        self.work.flush()
        lock_row(self.session, FinanceStockLevel, level.id)
        self.session.refresh(level)
        return level

    def levels(
        self, *, location_id: int | None = None, category_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Stock on hand with its value (moving average), by location and item name."""
        self.finance.require("finance_stock", "read")
        statement = (
            select(
                FinanceStockLevel,
                FinanceItem.name,
                FinanceItem.sku,
                FinanceItem.category_id,
                FinanceItem.unit,
                FinanceLocation.name,
            )
            .join(FinanceItem, FinanceItem.id == FinanceStockLevel.item_id)
            .join(FinanceLocation, FinanceLocation.id == FinanceStockLevel.location_id)
            .order_by(FinanceLocation.name, FinanceItem.name)
        )
        if location_id is not None:
            statement = statement.where(FinanceStockLevel.location_id == location_id)
        if category_id is not None:
            statement = statement.where(FinanceItem.category_id == category_id)
        rows = []
        for level, name, sku, category, unit, location in self.session.execute(statement):
            rows.append(
                {
                    "item_id": level.item_id,
                    "item": name,
                    "sku": sku,
                    "category_id": category,
                    "unit": unit,
                    "location_id": level.location_id,
                    "location": location,
                    "qty": level.qty,
                    "value": level.value,
                    "average_cost": self.average_cost(level),
                    "min_qty": level.min_qty,
                    "low": level.min_qty > 0 and level.qty < level.min_qty,
                }
            )
        return rows

    def average_cost(self, level: FinanceStockLevel) -> Decimal:
        """The moving average unit cost (value / qty), rounded half up to the kopeck."""
        if level.qty <= 0:
            return Decimal("0.00")
        return round_money(level.value / level.qty, self.finance.base_currency)

    def total_value(self) -> Decimal:
        """What every stock on hand is worth (equals the inventory account's balance)."""
        value = self.session.scalar(select(func.coalesce(func.sum(FinanceStockLevel.value), 0)))
        return Decimal(value).quantize(Decimal("0.01"))

    def moves(self, item_id: int, location_id: int | None = None, limit: int = 200) -> list[Any]:
        """An item's latest stock moves, newest first."""
        self.finance.require("finance_stock", "read")
        statement = select(FinanceStockMove).where(FinanceStockMove.item_id == item_id)
        if location_id is not None:
            statement = statement.where(FinanceStockMove.location_id == location_id)
        return list(
            self.session.scalars(statement.order_by(FinanceStockMove.id.desc()).limit(limit))
        )

    # -- the one place stock changes --------------------------------------------------

    def _move(
        self,
        kind: str,
        item: FinanceItem,
        location_id: int,
        qty: Decimal,
        value: Decimal | None,
        *,
        counter_account: str | None,
        inbound_value: bool = False,
        order: Any = None,
        line: Any = None,
        purchase_order: Any = None,
        supplier: FinanceSupplier | None = None,
        note: str = "",
        shift: Any = None,
    ) -> FinanceStockMove:
        """Change the level by ``qty`` (negative: out) and post the value against
        ``counter_account``.  Outgoing value is the moving average unless given.
        ``shift``: the cash desk shift whose drawer the value is paid from."""
        if not item.track_stock:
            raise ValidationFailed(
                {"item_id": [message("{item} is not kept in stock", item=item.name)]}
            )
        location = self.session.get(FinanceLocation, location_id)
        if location is None:
            raise ValidationFailed(
                {"location_id": [message("no location {location}", location=location_id)]}
            )
        level = self._held_level(item.id, location_id)
        if qty < 0:
            taking = -qty
            if taking > level.qty:
                raise ValidationFailed(
                    {
                        "qty": [
                            message(
                                "only {available} {unit} of “{item}” at {location}, "
                                "{needed} needed",
                                available=_count(level.qty),
                                unit=item.unit,
                                item=item.name,
                                location=location.name,
                                needed=_count(taking),
                            )
                        ]
                    }
                )
            if value is None:
                value = (
                    level.value
                    if taking == level.qty
                    else round_money(level.value * taking / level.qty, self.finance.base_currency)
                )
            signed_value = -value
        else:
            if value is None:
                raise ValueError("incoming goods need a value")
            signed_value = value
        level.qty += qty
        level.value += signed_value
        if level.qty == 0 and level.value != 0 and not inbound_value:
            # can only happen if goods came back at a value they never left with
            raise ValidationFailed(
                {"value": [message("stock would keep a value with nothing on hand")]}
            )
        transaction_id = None
        if counter_account is not None and signed_value != 0:
            ledger = self.finance.ledger
            base = self.finance.base_currency
            inventory = ledger.account("inventory:stock")
            counter = (
                ledger.payable(supplier.party_id)
                if counter_account == "payable" and supplier is not None
                else ledger.account(counter_account)
            )
            transaction = ledger.post(
                f"stock_{kind}",
                [debit(inventory, signed_value, base), credit(counter, signed_value, base)],
                memo=f"{item.name}: {qty.normalize():f} {item.unit}",
                record=("finance_stock", level.id),
                party_id=supplier.party_id if supplier is not None else None,
                shift=shift,
            )
            transaction_id = transaction.id
        move = FinanceStockMove(
            at=utcnow(),
            on_date=self.finance.business_date(utcnow()),
            kind=kind,
            item_id=item.id,
            location_id=location_id,
            qty=qty,
            value=signed_value,
            order_id=order.id if order is not None else None,
            order_line_id=line.id if line is not None else None,
            purchase_order_id=purchase_order.id if purchase_order is not None else None,
            supplier_id=supplier.id if supplier is not None else None,
            transaction_id=transaction_id,
            actor_id=self.work.actor.user_id,
            note=note,
        )
        self.session.add(move)
        self.work.flush()
        if qty < 0:
            self._watch_level(level, item, location)
        return move

    # -- operations --------------------------------------------------------------------

    def issue(
        self, *, item: FinanceItem, location_id: int, qty: Decimal, order: Any, line: Any
    ) -> Decimal:
        """Goods leave stock for an order line; returns their value (moving average)."""
        move = self._move(
            "issue",
            item,
            location_id,
            -qty,
            None,
            counter_account="wip:orders",
            order=order,
            line=line,
        )
        return -move.value

    def take_back(
        self,
        *,
        item: FinanceItem,
        location_id: int,
        qty: Decimal,
        value: Decimal,
        order: Any,
        line: Any,
        from_account: str,
    ) -> FinanceStockMove:
        """Goods come back from an order at the value they left with."""
        return self._move(
            "return",
            item,
            location_id,
            abs(qty),
            abs(value),
            counter_account=from_account,
            inbound_value=True,
            order=order,
            line=line,
        )

    def receive(
        self,
        item_id: int,
        location_id: int,
        qty: Any,
        unit_cost: Any,
        *,
        supplier_id: int | None = None,
        purchase_order: FinancePurchaseOrder | None = None,
        paid_from: str | None = None,
        note: str = "",
        form_token: str | None = None,
    ) -> FinanceStockMove:
        """Goods arrive: stock grows by ``qty`` at ``unit_cost`` each (value rounded half up).

        The value is owed to the supplier (their payable), or paid at once from
        ``paid_from`` (a cash drawer or a bank account: ``cash:desk:1``, ``bank:main``), or,
        with neither, booked as opening stock.  Paying at once is a payment: it needs the
        permission to post to the ledger (``finance_ledger``, ``create``), as paying a
        supplier does, and a drawer pays only during its desk's open shift and only what it
        holds.  ``form_token``: the receipt form's one-time
        token; the same form sent again receives nothing more and returns the first
        receipt's move (see :mod:`crmkit_finance.services.forms`).
        """
        self.finance.require("finance_stock", "create")
        refuse_long_texts(note=note)
        earlier = forms.claim(self.finance, form_token, "stock_receipt")
        if earlier:
            return self.session.get(FinanceStockMove, earlier[0])
        item = self._item(item_id)
        amount = quantity(qty)
        if amount <= 0:
            raise ValidationFailed({"qty": [message("a received quantity is positive")]})
        base = self.finance.base_currency
        cost = exact_money(unit_cost, base, "unit_cost")
        if cost < 0:
            raise ValidationFailed({"unit_cost": [message("a cost is not negative")]})
        supplier = self.session.get(FinanceSupplier, supplier_id) if supplier_id else None
        if supplier_id and supplier is None:
            raise ValidationFailed(
                {"supplier_id": [message("no supplier {supplier}", supplier=supplier_id)]}
            )
        value = line_total(amount, cost, base)
        counter = paid_from or ("payable" if supplier else "equity:opening")
        shift = self._paid_from(paid_from, value) if paid_from else None
        move = self._move(
            "receipt",
            item,
            location_id,
            amount,
            value,
            counter_account=counter,
            inbound_value=True,
            purchase_order=purchase_order,
            supplier=supplier,
            note=note,
            shift=shift,
        )
        self.work.audit(
            "finance_stock",
            move.id,
            "receive",
            {"qty": [None, str(amount)], "cost": [None, str(cost)]},
        )
        forms.remember(self.finance, form_token, [move.id])
        return move

    def _paid_from(self, code: str, value: Decimal) -> Any:
        """Check a receipt paid at once from ``code``; the drawer's open shift, if a drawer.

        Only a cash drawer or a bank account pays (never a client's or an employee's
        account), and only for a user who may post payments to the ledger."""
        if not self.finance.can("finance_ledger", "create"):
            raise ValidationFailed(
                {
                    "paid_from": [
                        message(
                            "paying at once is for those who may make payments; "
                            "leave it empty and the goods are owed to the supplier"
                        )
                    ]
                }
            )
        ledger = self.finance.ledger
        try:
            source = ledger.get_account(code)
        except NotFound:  # a desk's drawer has no account before its first cash
            desk_id = code.removeprefix("cash:desk:")
            desk = (
                self.session.get(FinanceCashDesk, int(desk_id))
                if code.startswith("cash:desk:") and desk_id.isdigit()
                else None
            )
            source = ledger.desk_account(desk.id, "cash") if desk is not None else None
        if source is None or source.kind not in ("cash", "bank"):
            raise ValidationFailed(
                {"paid_from": [message("pay from a cash drawer or a bank account")]}
            )
        return self.finance.cashdesk.drawer_shift(source, value, "paid_from")

    def write_off(
        self,
        item_id: int,
        location_id: int,
        qty: Any,
        *,
        reason: str,
        form_token: str | None = None,
    ) -> FinanceStockMove:
        """Goods lost, broken or used in-house: out of stock, into shortages and write-offs.

        ``form_token``: the write-off form's one-time token; the same form sent again
        writes nothing more off and returns the first write-off's move."""
        self.finance.require("finance_stock", "create")
        refuse_long_texts(reason=reason)
        earlier = forms.claim(self.finance, form_token, "stock_write_off")
        if earlier:
            return self.session.get(FinanceStockMove, earlier[0])
        if not (reason or "").strip():
            raise ValidationFailed({"reason": [message("say why the goods are written off")]})
        item = self._item(item_id)
        amount = quantity(qty)
        if amount <= 0:
            raise ValidationFailed({"qty": [message("a quantity is positive")]})
        move = self._move(
            "write_off",
            item,
            location_id,
            -amount,
            None,
            counter_account="expense:shrinkage",
            note=reason,
        )
        self.work.audit(
            "finance_stock", move.id, "write_off", {"qty": [None, str(amount)], "reason": reason}
        )
        forms.remember(self.finance, form_token, [move.id])
        return move

    def return_to_supplier(
        self, item_id: int, location_id: int, qty: Any, *, supplier_id: int, note: str = ""
    ) -> FinanceStockMove:
        """Goods sent back to the supplier at their average cost, which they owe us back."""
        self.finance.require("finance_stock", "create")
        item = self._item(item_id)
        supplier = self.session.get(FinanceSupplier, supplier_id)
        if supplier is None:
            raise ValidationFailed(
                {"supplier_id": [message("no supplier {supplier}", supplier=supplier_id)]}
            )
        amount = quantity(qty)
        if amount <= 0:
            raise ValidationFailed({"qty": [message("a quantity is positive")]})
        return self._move(
            "supplier_return",
            item,
            location_id,
            -amount,
            None,
            counter_account="payable",
            supplier=supplier,
            note=note,
        )

    def transfer(
        self,
        item_id: int,
        from_location_id: int,
        to_location_id: int,
        qty: Any,
        *,
        form_token: str | None = None,
    ) -> tuple[FinanceStockMove, FinanceStockMove]:
        """Move goods between locations at their average cost (the total value is unchanged).

        ``form_token``: the transfer form's one-time token; the same form sent again moves
        nothing more and returns the first transfer's two moves."""
        self.finance.require("finance_stock", "create")
        earlier = forms.claim(self.finance, form_token, "stock_transfer")
        if earlier:
            out_id, into_id = earlier
            return (
                self.session.get(FinanceStockMove, out_id),
                self.session.get(FinanceStockMove, into_id),
            )
        if from_location_id == to_location_id:
            raise ValidationFailed({"to_location_id": [message("choose another location")]})
        item = self._item(item_id)
        amount = quantity(qty)
        if amount <= 0:
            raise ValidationFailed({"qty": [message("a quantity is positive")]})
        out = self._move("transfer", item, from_location_id, -amount, None, counter_account=None)
        into = self._move(
            "transfer",
            item,
            to_location_id,
            amount,
            -out.value,
            counter_account=None,
            inbound_value=True,
        )
        forms.remember(self.finance, form_token, [out.id, into.id])
        return out, into

    def count(
        self,
        location_id: int,
        counted: Mapping[int, Any],
        *,
        note: str = "",
        form_token: str | None = None,
    ) -> list[Any]:
        """An inventory count: bring each counted item's level to what was found.

        A shortage leaves at the average cost; a surplus enters at the average cost (or the
        last receipt's cost when nothing was on hand).  Both go to "stock shortages and
        write-offs".  Returns the adjusting moves.  ``form_token``: the count form's
        one-time token; the same form sent again (after goods moved, it would book the
        difference once more) adjusts nothing and returns the first count's moves.
        """
        self.finance.require("finance_stock", "create")
        refuse_long_texts(note=note)
        earlier = forms.claim(self.finance, form_token, "stock_count")
        if earlier is not None:  # a count that found nothing to adjust wrote no move
            return [self.session.get(FinanceStockMove, move_id) for move_id in earlier]
        moves = []
        for item_id, found_qty in counted.items():
            item = self._item(int(item_id))
            actual = quantity(found_qty, f"counted[{item_id}]")
            if actual < 0:
                raise ValidationFailed(
                    {f"counted[{item_id}]": [message("a count is not negative")]}
                )
            level = self._held_level(item.id, location_id)
            difference = actual - level.qty
            if difference == 0:
                continue
            if difference < 0:
                moves.append(
                    self._move(
                        "count",
                        item,
                        location_id,
                        difference,
                        None,
                        counter_account="expense:shrinkage",
                        note=note,
                    )
                )
            else:
                unit = self.average_cost(level) if level.qty > 0 else self._last_cost(item.id)
                value = round_money(difference * unit, self.finance.base_currency)
                moves.append(
                    self._move(
                        "count",
                        item,
                        location_id,
                        difference,
                        value,
                        counter_account="expense:shrinkage",
                        inbound_value=True,
                        note=note,
                    )
                )
        self.work.audit(
            "finance_stock",
            location_id,
            "count",
            {str(k): [None, str(v)] for k, v in counted.items()},
        )
        forms.remember(self.finance, form_token, [move.id for move in moves])
        return moves

    def set_minimum(
        self, item_id: int, location_id: int, min_qty: Any, *, form_token: str | None = None
    ) -> FinanceStockLevel:
        """The level below which the warehouse head is reminded to reorder.

        ``form_token``: the minimum form's one-time token; the same form sent again changes
        nothing (another minimum set since stays) and returns the level."""
        self.finance.require("finance_stock", "update")
        earlier = forms.claim(self.finance, form_token, "stock_minimum")
        if earlier:
            return self.session.get(FinanceStockLevel, earlier[0])
        item = self._item(item_id)
        value = quantity(min_qty, "min_qty")
        if value < 0:
            raise ValidationFailed({"min_qty": [message("not negative")]})
        level = self.level(item.id, location_id)
        old, level.min_qty = level.min_qty, value
        self.work.flush()
        self.work.audit("finance_stock", level.id, "minimum", {"min_qty": [str(old), str(value)]})
        location = self.session.get(FinanceLocation, location_id)
        self._watch_level(level, item, location)
        forms.remember(self.finance, form_token, [level.id])
        return level

    def _item(self, item_id: int) -> FinanceItem:
        item = self.session.get(FinanceItem, item_id)
        if item is None:
            raise ValidationFailed({"item_id": [message("no item {item}", item=item_id)]})
        return item

    def _last_cost(self, item_id: int) -> Decimal:
        row = self.session.execute(
            select(FinanceStockMove.value, FinanceStockMove.qty)
            .where(FinanceStockMove.item_id == item_id, FinanceStockMove.kind == "receipt")
            .order_by(FinanceStockMove.id.desc())
            .limit(1)
        ).first()
        if row is None or not row[1]:
            return Decimal("0.00")
        return round_money(row[0] / row[1], self.finance.base_currency)

    # -- low stock -----------------------------------------------------------------------

    def _watch_level(self, level: FinanceStockLevel, item: FinanceItem, location: Any) -> None:
        """Below its minimum: raise ``stock.low`` and, once committed, remind the warehouse."""
        if not (level.min_qty > 0 and level.qty < level.min_qty):
            return
        self.work.emit(
            "stock.low",
            "finance_stock",
            level.id,
            item_id=item.id,
            location_id=level.location_id,
            qty=str(level.qty),
            min_qty=str(level.min_qty),
        )
        crm = self.work.crm
        item_id, location_id = item.id, level.location_id
        # The actor (a worker adding a part to an order) may not create reminders; the
        # system does, after the stock change is safely committed.  The periodic check
        # (job finance.check_low_stock) catches an alert lost to a crash in between.
        self.work.after_commit(lambda: remind_low_stock(crm, item_id, location_id))


def low_stock_text(item: FinanceItem, location: Any, level: FinanceStockLevel) -> str:
    """The reminder text for a low stock level."""
    return (
        f"Low stock: “{item.name}” at {location.name}: {level.qty.normalize():f} {item.unit} "
        f"left, minimum {level.min_qty.normalize():f}"
    )


def remind_low_stock(crm: Any, item_id: int, location_id: int) -> Reminder | None:
    """Remind the warehouse heads about a low level, unless a reminder is still pending."""
    role = str(crm.config["finance.low_stock_role"])
    with crm.system() as work:
        session = work.session
        level = session.scalar(
            select(FinanceStockLevel).where(
                FinanceStockLevel.item_id == item_id, FinanceStockLevel.location_id == location_id
            )
        )
        if level is None or not (level.min_qty > 0 and level.qty < level.min_qty):
            return None
        marker = f"[stock:{item_id}:{location_id}]"
        pending = session.scalar(
            select(Reminder.id).where(
                Reminder.record_entity == "finance_item",
                Reminder.record_id == item_id,
                Reminder.status == "pending",
                Reminder.text.contains(marker),
            )
        )
        if pending is not None:
            return None
        recipients = list(
            session.scalars(
                select(User.id)
                .join(UserRole, UserRole.user_id == User.id)
                .where(UserRole.role == role, User.blocked.is_(False))
                .order_by(User.id)
            )
        )
        if not recipients:
            return None
        item = session.get(FinanceItem, item_id)
        location = session.get(FinanceLocation, location_id)
        return work.reminders.create(
            remind_at=utcnow().isoformat(),
            text=f"{low_stock_text(item, location, level)} {marker}",
            record_entity="finance_item",
            record_id=item_id,
            recipients=[{"user_id": user_id} for user_id in recipients],
        )


def check_low_stock(crm: Any) -> int:
    """Remind about every level below its minimum (the periodic job); returns how many."""
    with crm.system() as work:
        low = list(
            work.session.execute(
                select(FinanceStockLevel.item_id, FinanceStockLevel.location_id).where(
                    FinanceStockLevel.min_qty > 0,
                    FinanceStockLevel.qty < FinanceStockLevel.min_qty,
                )
            )
        )
    return sum(1 for item_id, location_id in low if remind_low_stock(crm, item_id, location_id))


class PurchaseService:
    """Suppliers, purchase orders, receipts and supplier payments."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    def supplier(self, supplier_id: int) -> FinanceSupplier:
        """A supplier the actor may read."""
        return self.work.records("finance_supplier").get(supplier_id)

    def create_order(
        self,
        supplier_id: int,
        location_id: int,
        lines: Iterable[Mapping[str, Any]],
        *,
        client_order_id: int | None = None,
        expected_on: dt.date | None = None,
        note: str = "",
        make_task: bool = True,
    ) -> FinancePurchaseOrder:
        """Order goods from a supplier, optionally for a client order.

        For a client order a task ("buy the parts for order N") is created for the actor,
        linked to the purchase order, so the purchase shows among the order's work.
        """
        self.finance.require("finance_purchase_order", "create")
        refuse_long_texts(note=note)
        supplier = self.supplier(supplier_id)
        if not supplier.active:
            raise ValidationFailed({"supplier_id": [message("this supplier is no longer used")]})
        if self.session.get(FinanceLocation, location_id) is None:
            raise ValidationFailed(
                {"location_id": [message("no location {location}", location=location_id)]}
            )
        client_order = None
        if client_order_id is not None:
            client_order = self.finance.orders.get(client_order_id)
        base = self.finance.base_currency
        rows = []
        for index, line in enumerate(lines):
            field = f"lines[{index}]"
            item = self.session.get(FinanceItem, line.get("item_id"))
            if item is None or item.kind != "goods":
                raise ValidationFailed({field: [message("choose goods to buy")]})
            qty = quantity(line.get("qty"), f"{field}.qty")
            if qty <= 0:
                raise ValidationFailed({f"{field}.qty": [message("a quantity is positive")]})
            cost = exact_money(line.get("unit_cost", 0), base, f"{field}.unit_cost")
            if cost < 0:
                raise ValidationFailed({f"{field}.unit_cost": [message("a cost is not negative")]})
            line_total(qty, cost, base, f"{field}.qty")
            rows.append(FinancePurchaseLine(item_id=item.id, qty=qty, unit_cost=cost))
        if not rows:
            raise ValidationFailed({"lines": [message("a purchase order buys something")]})
        purchase = FinancePurchaseOrder(
            supplier_id=supplier.id,
            status="ordered",
            location_id=location_id,
            client_order_id=client_order.id if client_order else None,
            currency=base,
            expected_on=expected_on,
            created_by_id=self.work.actor.user_id,
            note=note,
        )
        self.session.add(purchase)
        self.work.flush()
        for row in rows:
            row.purchase_order_id = purchase.id
        self.session.add_all(rows)
        if client_order is not None and make_task and self.work.access.can("task", "create"):
            task = self.work.tasks.create(
                title=f"Purchase {purchase.id} for order {client_order.number}",
                party_id=client_order.party_id,
                assignee_id=self.work.actor.user_id,
                record_entity="finance_purchase_order",
                record_id=purchase.id,
            )
            purchase.task_id = task.id
        self.work.flush()
        self.work.audit(
            "finance_purchase_order", purchase.id, "create", {"lines": [None, len(rows)]}
        )
        self.work.emit(
            "purchase.ordered",
            "finance_purchase_order",
            purchase.id,
            client_order_id=purchase.client_order_id,
        )
        return purchase

    def lines(self, purchase: FinancePurchaseOrder | int) -> list[FinancePurchaseLine]:
        """The lines of a purchase order."""
        purchase_id = purchase if isinstance(purchase, int) else purchase.id
        return list(
            self.session.scalars(
                select(FinancePurchaseLine)
                .where(FinancePurchaseLine.purchase_order_id == purchase_id)
                .order_by(FinancePurchaseLine.id)
            )
        )

    def get(self, purchase_id: int) -> FinancePurchaseOrder:
        """A purchase order."""
        self.finance.require("finance_purchase_order", "read")
        found = self.session.get(FinancePurchaseOrder, purchase_id)
        if found is None:
            raise NotFound("finance_purchase_order", purchase_id)
        return found

    def receive(
        self, purchase_id: int, received: Mapping[int, Any] | None = None
    ) -> list[FinanceStockMove]:
        """Goods of a purchase order arrived: ``received`` maps line ids to quantities
        (everything still outstanding when omitted).  Their cost is owed to the supplier."""
        self.finance.require("finance_purchase_order", "update")
        purchase = self.get(purchase_id)
        if purchase.status in ("received", "cancelled"):
            raise ValidationFailed(
                {
                    "purchase_order": [
                        message("the purchase order is {status}", status=Label(purchase.status))
                    ]
                }
            )
        lines = {line.id: line for line in self.lines(purchase)}
        wanted = received or {i: line.qty - line.received_qty for i, line in lines.items()}
        moves = []
        for line_id, raw in wanted.items():
            line = lines.get(int(line_id))
            if line is None:
                raise ValidationFailed(
                    {"received": [message("line {line} is not on this order", line=line_id)]}
                )
            qty = quantity(raw, f"received[{line_id}]")
            if qty <= 0:
                continue
            if line.received_qty + qty > line.qty:
                raise ValidationFailed(
                    {
                        f"received[{line_id}]": [
                            message(
                                "only {qty} outstanding", qty=_count(line.qty - line.received_qty)
                            )
                        ]
                    }
                )
            moves.append(
                self.finance.stock.receive(
                    line.item_id,
                    purchase.location_id,
                    qty,
                    line.unit_cost,
                    supplier_id=purchase.supplier_id,
                    purchase_order=purchase,
                )
            )
            line.received_qty += qty
        complete = all(line.received_qty >= line.qty for line in lines.values())
        purchase.status = "received" if complete else "partially_received"
        self.work.flush()
        self.work.audit(
            "finance_purchase_order", purchase.id, "receive", {"status": [None, purchase.status]}
        )
        return moves

    def cancel(self, purchase_id: int, reason: str = "") -> FinancePurchaseOrder:
        """Cancel a purchase order nothing of which has arrived."""
        self.finance.require("finance_purchase_order", "update")
        refuse_long_texts(reason=reason)
        purchase = self.get(purchase_id)
        if any(line.received_qty > 0 for line in self.lines(purchase)):
            raise ValidationFailed(
                {"purchase_order": [message("goods arrived; return them instead")]}
            )
        purchase.status = "cancelled"
        self.work.flush()
        self.work.audit("finance_purchase_order", purchase.id, "cancel", {"reason": reason})
        return purchase

    def for_order(self, order_id: int) -> list[FinancePurchaseOrder]:
        """Purchase orders serving a client order."""
        self.finance.require("finance_purchase_order", "read")
        return list(
            self.session.scalars(
                select(FinancePurchaseOrder)
                .where(FinancePurchaseOrder.client_order_id == order_id)
                .order_by(FinancePurchaseOrder.id)
            )
        )

    def owed_to(self, supplier_id: int) -> Decimal:
        """What we owe a supplier (their payable balance, base currency)."""
        supplier = self.supplier(supplier_id)
        ledger = self.finance.ledger
        return ledger.balance(ledger.payable(supplier.party_id), self.finance.base_currency)

    def pay(
        self,
        supplier_id: int,
        amount: Any,
        *,
        paid_from: str = "bank:main",
        note: str = "",
        form_token: str | None = None,
    ) -> Any:
        """Pay a supplier from a money account (``bank:main``, ``cash:desk:1``...).

        ``form_token``: the form's one-time token; the same form sent again returns the
        first payment's transaction."""
        self.finance.require("finance_ledger", "create")
        refuse_long_texts(note=note)
        earlier = forms.claim(self.finance, form_token, "supplier_payment")
        if earlier:
            return self.session.get(FinanceTransaction, earlier[0])
        supplier = self.supplier(supplier_id)
        base = self.finance.base_currency
        value = exact_money(amount, base)
        if value <= 0:
            raise ValidationFailed({"amount": [message("a payment is positive")]})
        ledger = self.finance.ledger
        source = ledger.named_account(paid_from, "paid_from")
        if source.kind not in ("cash", "bank"):
            raise ValidationFailed(
                {"paid_from": [message("pay from a cash drawer or a bank account")]}
            )
        shift = self.finance.cashdesk.drawer_shift(source, value, "paid_from")
        transaction = ledger.post(
            "supplier_payment",
            [debit(ledger.payable(supplier.party_id), value, base), credit(source, value, base)],
            memo=note or "supplier payment",
            record=("finance_supplier", supplier.id),
            party_id=supplier.party_id,
            shift=shift,
        )
        forms.remember(self.finance, form_token, [transaction.id])
        self.work.audit("finance_supplier", supplier.id, "pay", {"amount": [None, str(value)]})
        return transaction
