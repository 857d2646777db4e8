"""Letters to suppliers: a purchase order sent to the supplier's email through a mail channel.

The finance plugin does not depend on any mail plugin: it looks in the core channel
registry for a channel that sends to email addresses (``mail`` first).  Without one, the
purchases screen hides the button and :meth:`SupplierLetterService.send` says that no mail
channel is configured.

The letter is the message template ``finance.purchase_order`` (channel ``mail``, in the
deployment's language, Russian shipped by default), rendered in the core's Jinja sandbox
with the usual ``party``/``record``/``sender``/``today`` and a ``purchase`` mapping: ``number``,
``expected_on``, ``currency``, ``note``, ``total`` and ``lines`` (``name``, ``sku``, ``unit``,
``qty``, ``unit_cost``, ``amount``).  :meth:`~crmkit.services.channels.ChannelService.send`
records it on the supplier's timeline, linked to the purchase order, and writes the
``channel.send`` outbox item in the same transaction; the outbox worker delivers it,
retries a failure and dead-letters it (the timeline entry turns ``failed``) when retrying
cannot help.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from crmkit.channels import AddressKind, Capability, Channel
from crmkit.errors import ValidationFailed
from crmkit.i18n import message
from crmkit.model import Activity, ContactPoint, MessageTemplate
from crmkit.services.message_templates import StarterTemplate
from crmkit_finance.model import FinanceItem, FinancePurchaseOrder, FinanceSupplier

if TYPE_CHECKING:
    from crmkit_finance.services import Finance

#: The name of the purchase-order letter template.
TEMPLATE_NAME = "finance.purchase_order"

DEFAULT_TEMPLATE = StarterTemplate(
    name=TEMPLATE_NAME,
    channel="mail",
    language="ru",
    subject="Заказ поставщику № {{ purchase.number }}",
    body=(
        "Здравствуйте, {{ party.name }}!\n"
        "\n"
        "Просим поставить по заказу № {{ purchase.number }}:\n"
        "{% for line in purchase.lines %}"
        "{{ loop.index }}. {{ line.name }}{% if line.sku %} (арт. {{ line.sku }}){% endif %}"
        " — {{ line.qty }} {{ line.unit }} × {{ line.unit_cost|money }} {{ purchase.currency }}"
        " = {{ line.amount|money }} {{ purchase.currency }}\n"
        "{% endfor %}"
        "Итого: {{ purchase.total|money }} {{ purchase.currency }}\n"
        "{% if purchase.expected_on %}"
        "Ожидаемая дата поставки: {{ purchase.expected_on|date }}\n"
        "{% endif %}"
        "{% if purchase.note %}Примечание: {{ purchase.note }}\n{% endif %}"
        "\n"
        "Пожалуйста, подтвердите заказ ответным письмом.\n"
        "\n"
        "С уважением,\n"
        "{{ sender.name }}\n"
    ),
)


def mail_channel(crm: Any) -> Channel | None:
    """The channel letters go through: ``mail`` if registered, else any email sender."""
    channels = crm.channels
    preferred = channels.get("mail")
    candidates = [preferred, *channels.values()] if preferred else list(channels.values())
    for channel in candidates:
        if channel.address_kind == AddressKind.EMAIL and channel.can(Capability.SEND):
            return channel
    return None


def _qty(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text


class SupplierLetterService:
    """Send a purchase order to its supplier and list the letters sent about it."""

    def __init__(self, finance: Finance) -> None:
        self.finance = finance
        self.work = finance.work
        self.session = finance.work.session

    @property
    def channel(self) -> Channel | None:
        """The mail channel, or ``None`` when no plugin provides one."""
        return mail_channel(self.work.crm)

    def can_send(self) -> bool:
        """Whether a mail channel exists and the actor may write timeline entries."""
        return self.channel is not None and self.work.access.can("activity", "create")

    def supplier_email(self, supplier: FinanceSupplier) -> str | None:
        """The supplier's email: the first email contact point of its party."""
        return self.session.scalar(
            select(ContactPoint.value)
            .where(ContactPoint.party_id == supplier.party_id, ContactPoint.kind == "email")
            .order_by(ContactPoint.id)
            .limit(1)
        )

    def template(self) -> Any:
        """The letter's template: the deployment's own row, else the shipped default."""
        language = str(self.work.crm.config["locale.default"])
        rows = {
            row.language: row
            for row in self.session.scalars(
                select(MessageTemplate).where(
                    MessageTemplate.name == TEMPLATE_NAME, MessageTemplate.channel == "mail"
                )
            )
        }
        row = rows.get(language) or rows.get(DEFAULT_TEMPLATE.language)
        if row is not None:
            return {"subject": row.subject, "body": row.body}
        return {"subject": DEFAULT_TEMPLATE.subject, "body": DEFAULT_TEMPLATE.body}

    def variables(self, purchase: FinancePurchaseOrder, party_id: int) -> dict[str, Any]:
        """The template's variables: the core ones and ``purchase``."""
        templates = self.work.message_templates
        values = templates.variables(
            party_id=party_id, record=("finance_purchase_order", purchase.id)
        )
        lines = self.finance.purchases.lines(purchase)
        items = {
            i.id: i
            for i in self.session.scalars(
                select(FinanceItem).where(FinanceItem.id.in_({line.item_id for line in lines}))
            )
        }
        rows = []
        total = Decimal(0)
        for line in lines:
            item = items.get(line.item_id)
            amount = (line.qty * line.unit_cost).quantize(Decimal("0.01"))
            total += amount
            rows.append(
                {
                    "name": item.name if item else str(line.item_id),
                    "sku": getattr(item, "sku", "") or "",
                    "unit": item.unit if item else "",
                    "qty": _qty(line.qty),
                    "unit_cost": str(line.unit_cost),
                    "amount": str(amount),
                }
            )
        values["purchase"] = {
            "number": purchase.id,
            "expected_on": purchase.expected_on,
            "currency": purchase.currency,
            "note": purchase.note or "",
            "total": str(total),
            "lines": rows,
        }
        return values

    def render(self, purchase_id: int) -> tuple[str, str, str | None]:
        """The letter's subject and body, and the supplier's email (``None`` if it has none)."""
        self.finance.require("finance_purchase_order", "read")
        purchase = self.finance.purchases.get(purchase_id)
        supplier = self.finance.purchases.supplier(purchase.supplier_id)
        texts = self.template()
        variables = self.variables(purchase, supplier.party_id)
        templates = self.work.message_templates
        subject = templates.render_text("subject", texts["subject"], variables).strip()
        body = templates.render_text("body", texts["body"], variables)
        return subject, body, self.supplier_email(supplier)

    def send(self, purchase_id: int) -> Activity:
        """Queue the purchase order letter to the supplier's email.

        Refused (nothing written) when no mail channel is configured, when the supplier
        has no email, or when the order is cancelled.  The returned timeline entry is
        ``queued`` until the outbox worker delivers it.
        """
        self.finance.require("finance_purchase_order", "read")
        channel = self.channel
        if channel is None:
            raise ValidationFailed(
                {
                    "channel": [
                        message("no mail channel is configured: install and set up a mail plugin")
                    ]
                }
            )
        purchase = self.finance.purchases.get(purchase_id)
        if purchase.status == "cancelled":
            raise ValidationFailed({"purchase_order": [message("the purchase order is cancelled")]})
        supplier = self.finance.purchases.supplier(purchase.supplier_id)
        party = self.work.parties.get(supplier.party_id)
        to = self.supplier_email(supplier)
        if not to:
            raise ValidationFailed(
                {
                    "email": [
                        message(
                            "the supplier {supplier} has no email: add one on their card",
                            supplier=party.name,
                        )
                    ]
                }
            )
        subject, body, _ = self.render(purchase.id)
        activity = self.work.channels.send(
            channel.name,
            to=to,
            subject=subject,
            body=body,
            party_id=party.id,
            record=("finance_purchase_order", purchase.id),
        )
        self.work.audit(
            "finance_purchase_order",
            purchase.id,
            "letter",
            {"to": [None, to], "activity_id": [None, activity.id]},
        )
        return activity

    def sent(self, purchase_ids: list[int]) -> dict[int, list[Activity]]:
        """Letters about each purchase order (newest first), by purchase order id."""
        if not purchase_ids:
            return {}
        rows = self.session.scalars(
            select(Activity)
            .where(
                Activity.record_entity == "finance_purchase_order",
                Activity.record_id.in_(purchase_ids),
                Activity.direction == "out",
            )
            .order_by(Activity.id.desc())
        )
        found: dict[int, list[Activity]] = {}
        for row in rows:
            found.setdefault(row.record_id, []).append(row)
        return found
