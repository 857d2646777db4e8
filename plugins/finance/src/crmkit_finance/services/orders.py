"""Orders: lines of services and goods, discounts, totals, and revenue recognition.

An order is a pipelined entity (``finance_order``).  The deployment owns its statuses: the
finance plugin only reads the *kind* of the stage an order enters.

* entering a **success** stage completes the order: its revenue is recognized (the client's
  receivable is charged, income is booked, the goods' cost moves from "goods issued to
  orders" to the cost of goods sold);
* leaving a success stage for an open one reopens it: the recognized lines are credited
  back and copied as open lines, to be recognized again on completion;
* entering a **dead end** cancels it: goods go back to stock.

Goods leave stock when their line is added (valued at the moving average cost) and come back
when it is removed.  A recognized line is never edited: removing it appends a negative
line, recognized on the day of the removal, so every report of a past period stays true.

**Line amounts**: ``gross = qty x unit_price`` rounded half up; the discount is the order's
percent of ``gross`` (rounded half up) unless an amount is given for the line;
``amount = gross - discount``.  Order totals are sums of their lines.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import func, select

from crmkit.clock import utcnow
from crmkit.db import lock_row
from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.i18n import Message, message
from crmkit.pipeline.definition import StageKind
from crmkit.services.limits import refuse_long_texts
from crmkit.services.records import EntityService
from crmkit_finance.ledger import credit, debit
from crmkit_finance.model import (
    FinanceContract,
    FinanceItem,
    FinanceLocation,
    FinanceOrder,
    FinanceOrderCompletion,
    FinanceOrderLine,
    FinancePayment,
    FinanceStockMove,
)
from crmkit_finance.money import (
    exact_money,
    line_total,
    percent_of,
    quantity,
    round_money,
    to_decimal,
)
from crmkit_finance.numbering import next_number
from crmkit_finance.services import finance, forms

if TYPE_CHECKING:
    from crmkit.pipeline.engine import MoveContext

#: The pipeline new orders get when no other is configured or registered as default.
BUILTIN_PIPELINE = "finance_order"

LINE_EDITABLE = ("qty", "unit_price", "discount", "performer_id", "description", "main")
#: What a line given to ``add_lines`` may hold.
LINE_ARGUMENTS = frozenset({"item_id", *LINE_EDITABLE})


@attrs.frozen
class OrderTotals:
    """What an order is worth and where its payment stands (order currency)."""

    currency: str
    subtotal: Decimal
    discount: Decimal
    total: Decimal
    charged: Decimal
    paid: Decimal
    cancelled: bool = False

    @property
    def due(self) -> Decimal:
        """What is left to pay: of the charged amount once completed, else of the total;
        nothing on a cancelled order (what was paid for it is the client's: negative)."""
        if self.cancelled:
            return -self.paid
        return (self.charged if self.charged else self.total) - self.paid

    @property
    def settled(self) -> bool:
        """Completed and fully paid."""
        return self.charged > 0 and self.paid >= self.charged


class OrderService(EntityService):
    """The ``finance_order`` entity service: generic CRUD plus lines, totals and recognition."""

    extra_fields = ("tags", "lines")

    @property
    def fin(self) -> Any:
        return finance(self.work)

    # -- creating ----------------------------------------------------------------------

    def build(self, values: dict[str, Any]) -> Any:
        fin = self.fin
        values.setdefault("currency", fin.base_currency)
        if values.get("pipeline") is None:
            values["pipeline"] = self.default_pipeline_name()
        if values.get("assignee_id") not in (None, self.work.actor.user_id):
            self.check_assignable(values["assignee_id"])
        if values.get("location_id") is not None:
            self._check_location(values["location_id"])
        if values.get("contract_id") is None and values.get("party_id") is not None:
            contract = self.active_contract(values["party_id"])
            values["contract_id"] = contract.id if contract else None
        elif values.get("contract_id") is not None:
            contract = self.session.get(FinanceContract, values["contract_id"])
            if contract is None or contract.party_id != values.get("party_id"):
                raise ValidationFailed({"contract_id": [message("not a contract of this client")]})
        return super().build(values)

    def _check_location(self, location_id: int) -> None:
        """A branch the order may name: one there is and the actor may see.  Another is a
        refusal naming the field (a form shows it again), not a missing page."""
        if self.work.records("finance_location").find(location_id) is None:
            raise ValidationFailed(
                {"location_id": [message("no location {location}", location=location_id)]}
            )

    def default_pipeline_name(self) -> str | None:
        """``finance.order_pipeline``, else a deployment's default pipeline, else the built-in."""
        configured = str(self.work.crm.config["finance.order_pipeline"] or "")
        if configured:
            return configured
        crm = self.work.crm
        if any(p.default for p in crm.pipelines_for("finance_order")):
            return None  # the pipeline engine picks the default one
        return BUILTIN_PIPELINE

    def after_create(
        self, record: Any, values: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        record.number = str(next_number(self.session, "order"))
        for line in extra.get("lines") or ():
            self.add_line(record, **line)

    def active_contract(self, party_id: int, on_date: dt.date | None = None) -> Any:
        """The client's contract in force on a date (the latest signed), if any."""
        day = on_date or self.fin.business_date(utcnow())
        return self.session.scalar(
            select(FinanceContract)
            .where(
                FinanceContract.party_id == party_id,
                FinanceContract.active.is_(True),
                (FinanceContract.valid_until.is_(None)) | (FinanceContract.valid_until >= day),
            )
            .order_by(FinanceContract.signed_on.desc().nulls_last(), FinanceContract.id.desc())
            .limit(1)
        )

    def apply_changes(self, record: Any, values: Mapping[str, Any]) -> dict[str, Any]:
        if "assignee_id" in values and values["assignee_id"] != record.assignee_id:
            if values["assignee_id"] is not None:
                self.check_assignable(values["assignee_id"])
            else:
                self.work.access.require(self.entity.name, "assign")
        if record.completed_at is not None:
            frozen = {"currency", "party_id", "discount_percent", "contract_id"} & set(values)
            frozen = {k for k in frozen if values[k] != getattr(record, k)}
            if frozen:
                raise ValidationFailed(
                    {
                        sorted(frozen)[0]: [
                            message("the order is completed; reopen it to change this")
                        ]
                    }
                )
        if "currency" in values and values["currency"] != record.currency and self.lines(record):
            raise ValidationFailed(
                {"currency": [message("remove the lines before changing currency")]}
            )
        if "location_id" in values and values["location_id"] != record.location_id:
            self._check_branch_change(record)
            if values["location_id"] is not None:
                self._check_location(values["location_id"])
        if "party_id" in values and values["party_id"] != record.party_id:
            paid = self.paid(record)
            if paid != 0:
                # the money sits on the first client's account; the order would charge another
                raise ValidationFailed(
                    {
                        "party_id": [
                            message(
                                "{paid} {currency} was paid for this order by its client; "
                                "refund it before changing the client",
                                paid=paid,
                                currency=record.currency,
                            )
                        ]
                    }
                )
        values = self._contract_of_client(record, values)
        changes = super().apply_changes(record, values)
        if "discount_percent" in changes:
            self._reprice(record)
        return changes

    def _contract_of_client(self, order: Any, values: Mapping[str, Any]) -> Mapping[str, Any]:
        """The order's contract is always one of its client's: a contract named with the
        change must be the (new) client's, refused by ``contract_id`` otherwise; a new
        client without one named takes their contract in force, as a new order does, or
        none (the first client's terms never pass to another)."""
        party_id = values.get("party_id", order.party_id)
        new_client = party_id != order.party_id
        named = "contract_id" in values and values["contract_id"] != order.contract_id
        if new_client and not named:
            contract = self.active_contract(party_id) if party_id is not None else None
            return {**values, "contract_id": contract.id if contract else None}
        if named and values["contract_id"] is not None:
            contract = self.session.get(FinanceContract, values["contract_id"])
            if contract is None or contract.party_id != party_id:
                raise ValidationFailed({"contract_id": [message("not a contract of this client")]})
        return values

    def _check_branch_change(self, order: Any) -> None:
        """Refuse another branch while goods issued from this one are with the order: they
        would go back to (or be charged to) a branch they never left."""
        if order.cancelled_at is not None:
            return  # its goods went back; restoring it issues them from the new branch
        held = self.session.scalar(
            select(func.coalesce(func.sum(FinanceOrderLine.qty), 0))
            .join(FinanceItem, FinanceItem.id == FinanceOrderLine.item_id)
            .where(
                FinanceOrderLine.order_id == order.id,
                FinanceOrderLine.kind == "goods",
                FinanceItem.track_stock.is_(True),
            )
        )
        if held and Decimal(held) > 0:
            location = self.session.get(FinanceLocation, order.location_id)
            raise ValidationFailed(
                {
                    "location_id": [
                        message(
                            "the order's goods were issued from {location}; "
                            "remove the goods lines before changing the branch",
                            location=location.name if location else order.location_id,
                        )
                    ]
                }
            )

    def delete(self, record: Any) -> None:
        """Delete an order entered by mistake: only while it has no lines and no payments.

        An order with history is cancelled instead (its money and goods movements stay).
        """
        order = self.get(record, action="delete")
        has_lines = self.session.scalar(
            select(FinanceOrderLine.id).where(FinanceOrderLine.order_id == order.id).limit(1)
        )
        has_payments = self.session.scalar(
            select(FinancePayment.id).where(FinancePayment.order_id == order.id).limit(1)
        )
        if has_lines or has_payments:
            raise ValidationFailed(
                {"order": [message("the order has lines or payments; cancel it instead")]}
            )
        super().delete(order)

    # -- lines -------------------------------------------------------------------------

    def lines(self, order: Any) -> list[FinanceOrderLine]:
        """Every line of an order in order of entry (negative lines after their originals)."""
        order = self.get(order)
        return list(
            self.session.scalars(
                select(FinanceOrderLine)
                .where(FinanceOrderLine.order_id == order.id)
                .order_by(FinanceOrderLine.position, FinanceOrderLine.id)
            )
        )

    def _open_for_lines(self, order: Any) -> Any:
        order = self.get(order, action="update")
        if order.cancelled_at is not None:
            raise ValidationFailed(
                {"order": [message("order {number} is cancelled", number=order.number)]}
            )
        return order

    def add_line(
        self,
        order: Any,
        item_id: int,
        qty: Any = 1,
        unit_price: Any = None,
        discount: Any = None,
        performer_id: int | None = None,
        main: bool = False,
        description: str | None = None,
        form_token: str | None = None,
        location_id: int | None = None,
    ) -> FinanceOrderLine | None:
        """Add a service or a good; goods leave stock now (at their moving average cost).

        Without ``unit_price`` the client's price applies (see the catalogue); without
        ``discount`` the order's percent.  On a completed order the line is recognized at
        once (an extra service added after the work was done).  ``location_id``: the branch
        to give the order with the line (see :meth:`add_lines`).  ``form_token``: the form's
        one-time token; the same form sent again adds nothing and returns the line it added
        (``None`` if that line was removed since; see :mod:`crmkit_finance.services.forms`).
        """
        self.fin.require("finance_order", "update")
        refuse_long_texts(FinanceOrderLine, description=description)
        earlier = forms.claim(self.fin, form_token, "order_line_add")
        if earlier is not None:
            return self.session.get(FinanceOrderLine, earlier[0]) if earlier else None
        [line] = self.add_lines(
            order,
            [
                {
                    "item_id": item_id,
                    "qty": qty,
                    "unit_price": unit_price,
                    "discount": discount,
                    "performer_id": performer_id,
                    "main": main,
                    "description": description,
                }
            ],
            location_id=location_id,
        )
        forms.remember(self.fin, form_token, [line.id])
        return line

    def add_lines(
        self,
        order: Any,
        lines: Sequence[Mapping[str, Any]],
        *,
        location_id: int | None = None,
    ) -> list[FinanceOrderLine]:
        """Add several lines at once (each a mapping of :meth:`add_line`'s arguments).

        The same rules and books as line by line, with one flush, one re-total and one
        recognition for all of them: the way to build an order of many lines (intake
        forms, imports, generated data).  A refused line refuses them all (nothing written).

        Goods kept in stock leave the order's branch.  ``location_id`` gives the order that
        branch first (an edit of the order, refused as one: an unknown branch, goods already
        issued from another).  An order still without one takes :meth:`branch_for_goods`,
        or the goods are refused naming ``location_id``.
        """
        order = self._open_for_lines(order)
        position = (
            self.session.scalar(
                select(func.max(FinanceOrderLine.position)).where(
                    FinanceOrderLine.order_id == order.id
                )
            )
            or 0
        )
        built: list[tuple[FinanceOrderLine, FinanceItem]] = []
        for number, spec in enumerate(lines, start=1):
            unknown = set(spec) - LINE_ARGUMENTS
            if unknown:
                raise ValidationFailed(
                    {
                        f"lines[{number}]": [
                            message("unknown {argument}", argument=repr(sorted(unknown)[0]))
                        ]
                    }
                )
            if spec.get("item_id") is None:
                raise ValidationFailed({f"lines[{number}]": [message("item_id is required")]})
            _refuse_long_description(spec.get("description"), f"lines[{number}].description")
            built.append(self._new_line(order, position + number, **spec))
        if not built:
            return []
        if location_id is not None and location_id != order.location_id:
            self.update(order, location_id=location_id)
        if order.location_id is None and any(item.track_stock for _, item in built):
            self._give_goods_branch(order)
        self.session.add_all(line for line, _ in built)
        self.work.flush()
        for line, item in built:
            if item.track_stock:
                self._issue(order, line, item)
        if order.completed_at is not None:
            self._recognize(order, [line for line, _ in built], utcnow())
        self._retotal(order)
        for line, item in built:
            self.work.audit(
                "finance_order",
                order.id,
                "add_line",
                {
                    "line": [
                        None,
                        {"item_id": item.id, "qty": str(line.qty), "amount": str(line.amount)},
                    ]
                },
            )
        return [line for line, _ in built]

    def _new_line(
        self,
        order: Any,
        position: int,
        item_id: int,
        qty: Any = 1,
        unit_price: Any = None,
        discount: Any = None,
        performer_id: int | None = None,
        main: bool = False,
        description: str | None = None,
    ) -> tuple[FinanceOrderLine, FinanceItem]:
        fin = self.fin
        item = fin.catalogue.require_item(item_id)
        amount_qty = quantity(qty if qty is not None else 1)
        if amount_qty <= 0:
            raise ValidationFailed({"qty": [message("a quantity is positive")]})
        if unit_price is None:
            price = fin.catalogue.quote(
                item,
                currency=order.currency,
                party_id=order.party_id,
                price_level=order.price_level,
            ).price
        else:
            if not fin.can("finance_order", "price"):
                raise PermissionDenied(
                    "finance_order", "price", message("not allowed to set prices")
                )
            price = exact_money(unit_price, order.currency, "unit_price")
            if price < 0:
                raise ValidationFailed({"unit_price": [message("a price is not negative")]})
        if performer_id is not None and performer_id != self.work.actor.user_id:
            self.check_assignable(performer_id)
        line = FinanceOrderLine(
            order_id=order.id,
            position=position,
            item_id=item.id,
            kind=item.kind,
            category_id=item.category_id,
            description=description or item.name,  # both fit: refused before when longer
            main=bool(main),
            qty=amount_qty,
            unit_price=price,
            performer_id=performer_id,
            # a performer given with the line is chosen by hand, even the order's assignee
            performer_chosen=performer_id is not None,
            added_at=utcnow(),
            added_by_id=self.work.actor.user_id,
            cost=Decimal(0),
        )
        self._price_line(order, line, discount)
        return line, item

    def branches(self) -> list[FinanceLocation]:
        """The active branches the actor may read (the places orders take goods from)."""
        if not self.fin.can("finance_location", "read"):
            return []
        return list(
            self.session.scalars(
                self.work.records("finance_location")
                .query()
                .where(FinanceLocation.active.is_(True), FinanceLocation.kind == "branch")
                .order_by(FinanceLocation.name, FinanceLocation.id)
            )
        )

    def branch_for_goods(self, order: Any) -> FinanceLocation | None:
        """The branch an order's goods come from: its own; else, for an order taken without
        one, the branch of the actor adding them when they work at exactly one (they are a
        member of its team, ``FinanceLocation.team_id``), else the station's only branch;
        else ``None`` (the user must choose).  Only active branches the actor may read."""
        if order.location_id is not None:
            return self.session.get(FinanceLocation, order.location_id)
        branches = self.branches()
        teams = self.work.actor.team_ids or frozenset()
        own = [b for b in branches if b.team_id is not None and b.team_id in teams]
        if len(own) == 1:
            return own[0]
        if len(branches) == 1:
            return branches[0]
        return None

    def _give_goods_branch(self, order: Any) -> None:
        """Give an order without a branch the one its goods come from, or refuse them."""
        branch = self.branch_for_goods(order)
        if branch is None:
            raise ValidationFailed(
                {
                    "location_id": [
                        message("the order has no branch: choose the one its goods come from")
                    ]
                }
            )
        self.update(order, location_id=branch.id)

    def update_line(self, line: Any, **values: Any) -> FinanceOrderLine:
        """Change an open line's quantity, price, discount, performer or text."""
        line = self._line(line)
        order = self._open_for_lines(line.order_id)
        unknown = set(values) - set(LINE_EDITABLE)
        if unknown:
            raise ValidationFailed({sorted(unknown)[0]: [message("cannot be changed on a line")]})
        refuse_long_texts(FinanceOrderLine, description=values.get("description"))
        if line.recognized_on is not None:
            raise ValidationFailed(
                {"line": [message("the line is recognized; remove it and add a new one instead")]}
            )
        changes: dict[str, Any] = {}
        gross_before = (line.qty, line.unit_price)
        item = self.session.get(FinanceItem, line.item_id) if line.item_id else None
        if "qty" in values:
            new_qty = quantity(values["qty"])
            if new_qty <= 0:
                raise ValidationFailed({"qty": [message("a quantity is positive")]})
            if new_qty != line.qty:
                changes["qty"] = [str(line.qty), str(new_qty)]
                if item is not None and item.track_stock and order.cancelled_at is None:
                    self._return_goods(order, line, item)
                    line.qty = new_qty
                    self._issue(order, line, item)
                else:
                    line.qty = new_qty
        if "unit_price" in values:
            if not self.fin.can("finance_order", "price"):
                raise PermissionDenied(
                    "finance_order", "price", message("not allowed to set prices")
                )
            price = exact_money(values["unit_price"], order.currency, "unit_price")
            if price < 0:
                raise ValidationFailed({"unit_price": [message("a price is not negative")]})
            changes["unit_price"] = [str(line.unit_price), str(price)]
            line.unit_price = price
        if "performer_id" in values and values["performer_id"] != line.performer_id:
            if values["performer_id"] is not None:
                self.check_assignable(values["performer_id"])
            changes["performer_id"] = [line.performer_id, values["performer_id"]]
            line.performer_id = values["performer_id"]
        if "performer_id" in values:
            # chosen by hand (or left to the assignee again, when emptied)
            line.performer_chosen = values["performer_id"] is not None
        for key in ("description", "main"):
            if key in values:
                changes[key] = [getattr(line, key), values[key]]
                setattr(line, key, values[key])
        if "discount" in values:
            changes["discount"] = [str(line.discount), values["discount"]]
            self._price_line(order, line, values["discount"])
        elif (line.qty, line.unit_price) != gross_before:
            # a new quantity or price: the order's discount percent applies to the new sum
            self._price_line(order, line, None)
        # otherwise the line keeps its own discount (a performer or a text changed)
        self._retotal(order)
        self.work.audit("finance_order", order.id, "update_line", {f"line:{line.id}": changes})
        return line

    def remove_line(
        self,
        line: Any,
        *,
        reason: str = "",
        order_id: int | None = None,
        form_token: str | None = None,
    ) -> FinanceOrderLine | None:
        """Take a line off the order; goods go back to stock.

        An open line is deleted.  A recognized one stays and gets a negative twin,
        recognized today (returned as the result).  ``order_id``: the order the line must
        be on (a form names both; another order's line is not found).  ``form_token``: the
        form's one-time token; the same form sent again removes nothing more and returns
        what the first one did.
        """
        self.fin.require("finance_order", "update")
        refuse_long_texts(reason=reason)
        earlier = forms.claim(self.fin, form_token, "order_line_remove")
        if earlier is not None:
            return self.session.get(FinanceOrderLine, earlier[0]) if earlier else None
        line = self._line(line)
        if order_id is not None and line.order_id != order_id:
            raise NotFound("finance_order_line", line.id)
        order = self._open_for_lines(line.order_id)
        item = self.session.get(FinanceItem, line.item_id) if line.item_id else None
        if line.reverses_line_id is not None:
            raise ValidationFailed({"line": [message("a correcting line cannot be removed")]})
        if line.recognized_on is None:
            if item is not None and item.track_stock:
                self._return_goods(order, line, item)
            self.session.delete(line)
            self.work.flush()
            self._retotal(order)
            self.work.audit("finance_order", order.id, "remove_line", {f"line:{line.id}": reason})
            forms.remember(self.fin, form_token, [])
            return None
        if self.session.scalar(
            select(FinanceOrderLine.id).where(FinanceOrderLine.reverses_line_id == line.id)
        ):
            raise ValidationFailed({"line": [message("this line was already removed")]})
        negative = self._credit_line(order, line, utcnow(), memo=reason or "line removed")
        if item is not None and item.track_stock:
            self._return_goods(order, line, item, booked_on=negative, from_account="expense:cogs")
        self._retotal(order)
        self.work.audit("finance_order", order.id, "remove_line", {f"line:{line.id}": reason})
        forms.remember(self.fin, form_token, [negative.id])
        return negative

    def _line(self, line: Any) -> FinanceOrderLine:
        line_id = line.id if isinstance(line, FinanceOrderLine) else int(line)
        found = self.session.get(FinanceOrderLine, line_id)
        if found is None:
            raise NotFound("finance_order_line", line_id)
        self.get(found.order_id)  # NotFound when the order is hidden
        return found

    def _price_line(self, order: Any, line: FinanceOrderLine, discount: Any) -> None:
        gross = line_total(line.qty, line.unit_price, order.currency)
        if discount is None:
            amount_off = percent_of(gross, order.discount_percent, order.currency)
        else:
            amount_off = exact_money(discount, order.currency, "discount")
            if amount_off < 0 or amount_off > gross:
                raise ValidationFailed(
                    {"discount": [message("a discount is between 0 and {most}", most=gross)]}
                )
        line.discount = amount_off
        line.amount = gross - amount_off

    def _reprice(self, order: Any) -> None:
        for line in self.lines(order):
            if line.recognized_on is None:
                self._price_line(order, line, None)
        self._retotal(order)

    def set_discount(self, order: Any, percent: Any) -> Any:
        """Give the order a discount percent (applied to every open line)."""
        value = to_decimal(percent, "discount_percent")
        if not 0 <= value <= 100:
            raise ValidationFailed({"discount_percent": [message("between 0 and 100")]})
        return self.update(order, discount_percent=str(value))

    def _retotal(self, order: Any) -> None:
        # the lines as they are now: a discount staged by a move (autoflush off) has
        # repriced them in memory only, and the sum below reads the table
        self.work.flush()
        row = self.session.execute(
            select(
                func.coalesce(func.sum(FinanceOrderLine.amount), 0),
                func.coalesce(func.sum(FinanceOrderLine.discount), 0),
            ).where(FinanceOrderLine.order_id == order.id)
        ).one()
        total, discount = Decimal(row[0]), Decimal(row[1])
        order.total = total
        order.discount_total = discount
        order.subtotal = total + discount
        order.updated_at = utcnow()
        self.work.flush()

    # -- totals and payments ------------------------------------------------------------

    def totals(self, order: Any) -> OrderTotals:
        """Totals, what was charged (recognized) and what was paid."""
        return self.totals_of(self.get(order))

    def totals_of(self, order: FinanceOrder) -> OrderTotals:
        """:meth:`totals` of an order already in hand (read, or held by :meth:`lock`)."""
        charged = self.session.scalar(
            select(func.coalesce(func.sum(FinanceOrderLine.amount), 0)).where(
                FinanceOrderLine.order_id == order.id, FinanceOrderLine.recognized_on.is_not(None)
            )
        )
        return OrderTotals(
            currency=order.currency,
            subtotal=order.subtotal,
            discount=order.discount_total,
            total=order.total,
            charged=Decimal(charged),
            paid=self.paid(order),
            cancelled=order.cancelled_at is not None,
        )

    def paid(self, order: Any) -> Decimal:
        """What the client paid for this order (refunds deducted), in its currency."""
        order_id = order.id if isinstance(order, FinanceOrder) else int(order)
        value = self.session.scalar(
            select(func.coalesce(func.sum(FinancePayment.order_amount), 0)).where(
                FinancePayment.order_id == order_id
            )
        )
        return Decimal(value).quantize(Decimal("0.01"))

    def lock(self, order: Any) -> FinanceOrder:
        """Hold the order's row until the transaction ends and read it afresh.

        Everything that reads an order's totals and payments to decide something (taking,
        refunding or voiding a payment; completing or cancelling the order) takes it first,
        so of two such steps at once the second waits and sees what the first wrote: a
        payment taken while the order is being completed still earns its cashback."""
        order_id = order.id if isinstance(order, FinanceOrder) else int(order)
        self.work.flush()
        lock_row(self.session, FinanceOrder, order_id)
        return self.session.get(FinanceOrder, order_id, populate_existing=True)

    def after_payment(self, order: Any) -> None:
        """What follows a payment, refund or void of an order: its cashback and the status of
        its invoice."""
        fin = self.fin
        fin.cashback.on_order_changed(order)
        fin.invoices.follow_order(order)

    def of_party(self, party_id: int, *, limit: int = 100) -> list[Any]:
        """A client's visible orders, newest first."""
        return list(
            self.session.scalars(
                self.query()
                .where(FinanceOrder.party_id == party_id)
                .order_by(FinanceOrder.id.desc())
                .limit(limit)
            )
        )

    def assigned_to(self, user_id: int, *, open_only: bool = True) -> list[Any]:
        """Orders a worker is assigned to (as far as the actor may see)."""
        statement = self.query().where(FinanceOrder.assignee_id == user_id)
        if open_only:
            statement = statement.where(
                FinanceOrder.completed_at.is_(None), FinanceOrder.cancelled_at.is_(None)
            )
        return list(self.session.scalars(statement.order_by(FinanceOrder.id.desc())))

    # -- recognition ------------------------------------------------------------------

    def complete(self, order: Any, *, at: dt.datetime | None = None) -> Any:
        """Recognize the order's revenue (called when it enters a success stage)."""
        order = self.lock(self.get(order))
        if order.completed_at is not None:
            return order
        if order.cancelled_at is not None:
            raise ValidationFailed({"order": [message("a cancelled order cannot be completed")]})
        when = at or utcnow()
        fin = self.fin
        open_lines = [ln for ln in self.lines(order) if ln.recognized_on is None]
        if open_lines:
            self._recognize(order, open_lines, when)
        order.completed_at = when
        order.completed_on = fin.business_date(when)
        # the director's count of the day, written once as the revenue is
        self.session.add(
            FinanceOrderCompletion(
                order_id=order.id,
                completed_on=order.completed_on,
                orders=1,
                base_total=order.base_total,
            )
        )
        contract = (
            self.session.get(FinanceContract, order.contract_id) if order.contract_id else None
        )
        order.due_on = order.completed_on + dt.timedelta(
            days=contract.payment_days if contract else 0
        )
        self.work.flush()
        self.work.audit("finance_order", order.id, "complete", {"total": [None, str(order.total)]})
        self.work.emit(
            "order.completed",
            "finance_order",
            order.id,
            party_id=order.party_id,
            total=str(order.total),
            currency=order.currency,
        )
        fin.cashback.on_order_changed(order)
        return order

    def reopen(self, order: Any, *, reason: str = "reopened") -> Any:
        """Undo a completion: credit the recognized lines back and copy them as open lines."""
        order = self.get(order)
        if order.completed_at is None:
            return order
        now = utcnow()
        recognized = order.base_total
        for line in self._live_recognized(order):
            self._credit_line(order, line, now, memo=reason)
            # a performer its recognition filled in from the assignee is left empty again,
            # so doing the order again fills in the assignee of then; one chosen by hand
            # stays, even when it was the assignee (``performer_chosen``; finance_0007)
            chosen = line.performer_id is not None and line.performer_chosen
            copy = FinanceOrderLine(
                order_id=order.id,
                position=line.position,
                item_id=line.item_id,
                kind=line.kind,
                category_id=line.category_id,
                description=line.description,
                main=line.main,
                qty=line.qty,
                unit_price=line.unit_price,
                discount=line.discount,
                amount=line.amount,
                cost=line.cost,
                performer_id=line.performer_id if chosen else None,
                performer_chosen=chosen,
                added_at=now,
                added_by_id=self.work.actor.user_id,
            )
            self.session.add(copy)
            if line.kind == "goods" and line.cost:
                # the goods stay with the order: their cost goes back to "issued to orders"
                fin = self.fin
                fin.ledger.post(
                    "order_reopen",
                    [
                        debit(fin.ledger.account("wip:orders"), line.cost, fin.base_currency),
                        credit(fin.ledger.account("expense:cogs"), line.cost, fin.base_currency),
                    ],
                    record=("finance_order", order.id),
                    party_id=order.party_id,
                )
        # counted off on the day of the reopening, with what it credited back: the month it
        # was done keeps it, as it keeps its revenue
        self.session.add(
            FinanceOrderCompletion(
                order_id=order.id,
                completed_on=self.fin.business_date(now),
                orders=-1,
                base_total=order.base_total - recognized,
            )
        )
        order.completed_at = None
        order.completed_on = None
        order.due_on = None
        self.work.flush()
        self._retotal(order)
        self.work.audit("finance_order", order.id, "reopen", {"reason": [None, reason]})
        self.work.emit("order.reopened", "finance_order", order.id, party_id=order.party_id)
        return order

    def cancel(self, order: Any, *, reason: str = "cancelled") -> Any:
        """Cancel the order: a completed one is reopened first; goods go back to stock.

        The order leaves its invoice, and the cashback it earned is withdrawn as far as it
        is unspent (what was paid for it stays on the client's account)."""
        order = self.lock(self.get(order))
        if order.cancelled_at is not None:
            return order
        if order.completed_at is not None:
            self.reopen(order, reason=reason)
        for line in self.lines(order):
            if line.recognized_on is None and line.kind == "goods":
                item = self.session.get(FinanceItem, line.item_id)
                if item is not None and item.track_stock:
                    self._return_goods(order, line, item)
        order.cancelled_at = utcnow()
        self.work.flush()
        self.fin.cashback.on_order_changed(order)
        self.fin.invoices.follow_order(order)
        self.work.audit("finance_order", order.id, "cancel", {"reason": [None, reason]})
        self.work.emit("order.cancelled", "finance_order", order.id, party_id=order.party_id)
        return order

    def restore(self, order: Any) -> Any:
        """Bring a cancelled order back: its goods are issued from stock again."""
        order = self.get(order)
        if order.cancelled_at is None:
            return order
        order.cancelled_at = None
        for line in self.lines(order):
            if line.recognized_on is None and line.kind == "goods":
                item = self.session.get(FinanceItem, line.item_id)
                if item is not None and item.track_stock:
                    self._issue(order, line, item)
        self.work.flush()
        self.work.audit("finance_order", order.id, "restore", {})
        return order

    def _live_recognized(self, order: Any) -> list[FinanceOrderLine]:
        lines = self.lines(order)
        reversed_ids = {ln.reverses_line_id for ln in lines if ln.reverses_line_id}
        return [
            ln
            for ln in lines
            if ln.recognized_on is not None
            and ln.reverses_line_id is None
            and ln.id not in reversed_ids
        ]

    def _issue(self, order: Any, line: FinanceOrderLine, item: FinanceItem) -> None:
        if order.location_id is None:
            raise ValidationFailed(
                {"location_id": [message("choose the branch the goods come from")]}
            )
        line.cost = self.fin.stock.issue(
            item=item, location_id=order.location_id, qty=line.qty, order=order, line=line
        )

    def _return_goods(
        self,
        order: Any,
        line: FinanceOrderLine,
        item: FinanceItem,
        *,
        booked_on: FinanceOrderLine | None = None,
        from_account: str = "wip:orders",
    ) -> None:
        """Bring the line's goods back to stock at the value they left with, goods that cost
        nothing included: every unit issued comes back.  What the order still holds of the
        item (issued less returned, from its stock moves) bounds it, so goods never issued
        (a line added before the item was kept in stock) do not appear from nowhere.
        ``booked_on``: the line the return is booked on (a removed recognized line's
        negative twin); an open line's cost drops to 0 with its goods."""
        back = min(line.qty, self._held(order, item.id))
        if back > 0:
            value = (
                line.cost
                if back == line.qty
                else round_money(line.cost * back / line.qty, self.fin.base_currency)
            )
            self.fin.stock.take_back(
                item=item,
                location_id=order.location_id,
                qty=back,
                value=value,
                order=order,
                line=booked_on or line,
                from_account=from_account,
            )
        if line.recognized_on is None:
            line.cost = Decimal(0)

    def _held(self, order: Any, item_id: int) -> Decimal:
        """Units of an item issued to the order and not yet returned (its stock moves)."""
        self.work.flush()
        moved = self.session.scalar(
            select(func.coalesce(func.sum(FinanceStockMove.qty), 0)).where(
                FinanceStockMove.order_id == order.id, FinanceStockMove.item_id == item_id
            )
        )
        return -Decimal(moved)

    def _recognize(self, order: Any, lines: list[FinanceOrderLine], when: dt.datetime) -> None:
        """Charge the client for ``lines`` and book their income and cost, in one transaction."""
        fin = self.fin
        ledger = fin.ledger
        base = fin.base_currency
        day = fin.business_date(when)
        income: dict[str, Decimal] = defaultdict(Decimal)
        charged = Decimal(0)
        base_charged = Decimal(0)
        cost = Decimal(0)
        for line in lines:
            line.base_amount = fin.rates.to_base(line.amount, order.currency, day)
            line.base_cost = line.cost
            line.recognized_on = day
            # the worker of record of the revenue (basis ``orders``): the order's of now
            line.assignee_id = order.assignee_id
            if line.performer_id is None:
                # the work is the assignee's of now: given to someone else later (a warranty
                # look), the order takes no earned percent (nor a later clawback) along
                line.performer_id = order.assignee_id
                line.performer_chosen = False
            income[fin.catalogue.income_account_code(line.kind)] += line.base_amount
            charged += line.amount
            base_charged += line.base_amount
            cost += line.cost
        legs = [debit(ledger.receivable(order.party_id), charged, order.currency)]
        if order.currency != base:
            exchange = ledger.account("equity:exchange")
            legs += [credit(exchange, charged, order.currency), debit(exchange, base_charged, base)]
        legs += [credit(ledger.account(code), amount, base) for code, amount in income.items()]
        if cost:
            legs += [
                debit(ledger.account("expense:cogs"), cost, base),
                credit(ledger.account("wip:orders"), cost, base),
            ]
        if charged == 0 and cost == 0:
            self.work.flush()
            return
        transaction = ledger.post(
            "order_charge",
            legs,
            memo=f"order {order.number}",
            record=("finance_order", order.id),
            party_id=order.party_id,
            at=when,
        )
        for line in lines:
            line.charge_transaction_id = transaction.id
        order.base_total += base_charged
        self.work.flush()

    def _credit_line(
        self, order: Any, line: FinanceOrderLine, when: dt.datetime, *, memo: str
    ) -> FinanceOrderLine:
        """Append the negative twin of a recognized line and credit the client for it."""
        fin = self.fin
        ledger = fin.ledger
        base = fin.base_currency
        negative = FinanceOrderLine(
            order_id=order.id,
            position=line.position,
            item_id=line.item_id,
            kind=line.kind,
            category_id=line.category_id,
            description=line.description,
            main=line.main,
            qty=-line.qty,
            unit_price=line.unit_price,
            discount=-line.discount,
            amount=-line.amount,
            cost=-line.cost,
            performer_id=line.performer_id,
            performer_chosen=line.performer_chosen,
            assignee_id=line.assignee_id,
            added_at=when,
            added_by_id=self.work.actor.user_id,
            recognized_on=fin.business_date(when),
            base_amount=-(line.base_amount or Decimal(0)),
            base_cost=-(line.base_cost or Decimal(0)),
            reverses_line_id=line.id,
        )
        self.session.add(negative)
        self.work.flush()
        base_amount = line.base_amount or Decimal(0)
        legs = [credit(ledger.receivable(order.party_id), line.amount, order.currency)]
        if order.currency != base:
            exchange = ledger.account("equity:exchange")
            legs += [
                debit(exchange, line.amount, order.currency),
                credit(exchange, base_amount, base),
            ]
        legs.append(
            debit(ledger.account(fin.catalogue.income_account_code(line.kind)), base_amount, base)
        )
        if line.amount or base_amount:
            transaction = ledger.post(
                "order_credit",
                legs,
                memo=f"order {order.number}: {memo}",
                record=("finance_order", order.id),
                party_id=order.party_id,
                at=when,
            )
            negative.charge_transaction_id = transaction.id
        order.base_total -= base_amount
        self.work.flush()
        return negative


# -- the pipeline side ------------------------------------------------------------------


def follow_stage_move(move: MoveContext) -> None:
    """Complete, reopen, cancel or restore an order according to the kind of stage it entered."""
    if move.entity.name != "finance_order" or move.source is None:
        return
    orders = finance(move.work).orders
    record = move.record
    # a stage the pipeline no longer declares counts as an open one
    pipeline = move.pipeline
    if pipeline.has_stage(move.source):
        source_kind = pipeline.stage(move.source).kind
    else:
        source_kind = StageKind.OPEN
    target_kind = move.target.kind
    if source_kind is StageKind.DEAD_END and target_kind is not StageKind.DEAD_END:
        orders.restore(record)
    if target_kind is StageKind.SUCCESS:
        orders.complete(record, at=move.at)
    elif target_kind is StageKind.DEAD_END:
        orders.cancel(record, reason=move.comment or f"moved to {move.target.title}")
    elif source_kind is StageKind.SUCCESS:
        orders.reopen(record, reason=move.comment or f"moved back to {move.target.title}")


def paid_or_on_contract(move: MoveContext) -> Message | None:
    """A guard for pipelines: the order is paid in full, or the client pays by contract."""
    orders = finance(move.work).orders
    order = move.record
    if order.contract_id is not None:
        return None
    totals = orders.totals(order)
    if totals.paid >= totals.total:
        return None
    return message(
        "the order is not paid: {due} {currency} due",
        due=totals.total - totals.paid,
        currency=order.currency,
    )


def _refuse_long_description(value: Any, field: str) -> None:
    """Refuse a line's text longer than its column, naming ``field`` (which line's it is);
    it used to be cut at 300 characters, losing the end of what was typed."""
    try:
        refuse_long_texts(FinanceOrderLine, description=value)
    except ValidationFailed as refused:
        (why,) = refused.errors.values()  # the column's words, under the line's field
        raise ValidationFailed({field: why}) from None
