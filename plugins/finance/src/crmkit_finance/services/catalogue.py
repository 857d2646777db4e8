"""The catalogue: services and goods, their categories, price lists and price levels.

Records are created and edited with the generic entity services
(``work.records("finance_item").create(...)``); this service adds what they cannot do:
setting prices and finding the price a client pays.

**Which price a client pays** for an item on a date: the client's price levels are those of
the (static) groups they are in (``PartyGroup.price_level``), or the order's own level when
it names one.  Each level's price is that of its latest active list valid on the date that
prices the item (a new list replaces the level's older ones, dearer or not); among the
levels, the lowest price wins.  Without any, the latest valid default list (no level)
decides; without that, the item's own price.  A price in another currency is converted at
the day's rate.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import or_, select

from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import message
from crmkit.model import GroupMembership, PartyGroup
from crmkit_finance.model import FinanceItem, FinanceItemCategory, FinancePrice, FinancePriceList
from crmkit_finance.money import exact_money

if TYPE_CHECKING:
    from crmkit_finance.services import Finance


@attrs.frozen
class QuotedPrice:
    """A unit price in the order's currency and where it came from."""

    price: Decimal
    currency: str
    price_level: str | None
    price_list_id: int | None


class CatalogueService:
    """Prices and price resolution."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    def item(self, item_id: int) -> FinanceItem:
        """A catalogue item the actor may read."""
        return self.work.records("finance_item").get(item_id)

    def category(self, category_id: int) -> FinanceItemCategory:
        """A category the actor may read."""
        return self.work.records("finance_item_category").get(category_id)

    def items(self, *, kind: str | None = None, category_id: int | None = None) -> list[Any]:
        """Active items, by name."""
        statement = (
            self.work.records("finance_item")
            .query()
            .where(FinanceItem.active.is_(True))
            .order_by(FinanceItem.name)
        )
        if kind:
            statement = statement.where(FinanceItem.kind == kind)
        if category_id:
            statement = statement.where(FinanceItem.category_id == category_id)
        return list(self.session.scalars(statement))

    def set_price(self, price_list_id: int, item_id: int, price: Any) -> FinancePrice:
        """Set an item's price in a price list."""
        price_list = self.work.records("finance_price_list").get(price_list_id, action="update")
        self.item(item_id)
        value = exact_money(price, price_list.currency, "price")
        if value < 0:
            raise ValidationFailed({"price": [message("a price is not negative")]})
        row = self.session.scalar(
            select(FinancePrice).where(
                FinancePrice.price_list_id == price_list.id, FinancePrice.item_id == item_id
            )
        )
        old = row.price if row else None
        if row is None:
            row = FinancePrice(price_list_id=price_list.id, item_id=item_id, price=value)
            self.session.add(row)
        else:
            row.price = value
        self.work.flush()
        self.work.audit(
            "finance_price_list",
            price_list.id,
            "price",
            {f"item:{item_id}": [str(old) if old is not None else None, str(value)]},
        )
        return row

    def price_levels_of(self, party_id: int) -> list[str]:
        """Price levels of the groups a party is in."""
        return sorted(
            set(
                self.session.scalars(
                    select(PartyGroup.price_level)
                    .join(GroupMembership, GroupMembership.group_id == PartyGroup.id)
                    .where(
                        GroupMembership.party_id == party_id, PartyGroup.price_level.is_not(None)
                    )
                )
            )
        )

    def quote(
        self,
        item: FinanceItem,
        *,
        currency: str,
        party_id: int | None = None,
        price_level: str | None = None,
        on_date: dt.date | None = None,
    ) -> QuotedPrice:
        """The unit price of ``item`` for a client (see the module's rule)."""
        day = on_date or self.finance.business_date(dt.datetime.now(dt.UTC))
        levels = [price_level] if price_level else []
        if not levels and party_id is not None:
            levels = self.price_levels_of(party_id)
        valid = or_(FinancePriceList.valid_from.is_(None), FinancePriceList.valid_from <= day)
        base = (
            select(FinancePrice.price, FinancePriceList.currency, FinancePriceList.id)
            .join(FinancePriceList, FinancePriceList.id == FinancePrice.price_list_id)
            .where(FinancePrice.item_id == item.id, FinancePriceList.active.is_(True), valid)
        )
        candidates: list[tuple[Decimal, str, int, str | None]] = []
        if levels:
            seen: set[str] = set()
            for price, list_currency, list_id, level in self.session.execute(
                base.add_columns(FinancePriceList.price_level)
                .where(FinancePriceList.price_level.in_(levels))
                .order_by(
                    FinancePriceList.price_level,
                    FinancePriceList.valid_from.desc().nulls_last(),
                    FinancePriceList.id.desc(),
                )
            ):
                if level in seen:  # a level's latest list replaced its older ones
                    continue
                seen.add(level)
                converted = self.finance.rates.convert(price, list_currency, currency, day)
                candidates.append((converted, list_currency, list_id, level))
        if candidates:
            best = min(candidates, key=lambda c: (c[0], c[2]))
            return QuotedPrice(best[0], currency, best[3], best[2])
        default = self.session.execute(
            base.where(FinancePriceList.price_level.is_(None))
            .order_by(FinancePriceList.valid_from.desc().nulls_last(), FinancePriceList.id.desc())
            .limit(1)
        ).first()
        if default is not None:
            price, list_currency, list_id = default
            converted = self.finance.rates.convert(price, list_currency, currency, day)
            return QuotedPrice(converted, currency, None, list_id)
        converted = self.finance.rates.convert(item.price, item.currency, currency, day)
        return QuotedPrice(converted, currency, None, None)

    def income_account_code(self, item_kind: str) -> str:
        """The income category a line of this kind is booked to."""
        return "income:goods" if item_kind == "goods" else "income:services"

    def require_item(self, item_id: int | None) -> FinanceItem:
        """An active item, or ``ValidationFailed`` naming ``item_id``."""
        if item_id is None:
            raise ValidationFailed({"item_id": [message("choose a service or a good")]})
        try:
            found = self.item(item_id)
        except NotFound:
            raise ValidationFailed({"item_id": [message("no item {item}", item=item_id)]}) from None
        if not found.active:
            raise ValidationFailed(
                {"item_id": [message("{item} is no longer sold", item=found.name)]}
            )
        return found
