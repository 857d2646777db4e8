"""Payments on the timeline written before their entries kept a message read in English:
they are given the message now.

Since the timeline writes its entries in the reader's language, a payment's or a refund's
entry keeps its subject as a message (``data["subject_message"]``: the template
``Payment: {amount} ({method})`` with the amount, its currency and the method).  Entries
written before kept only their English text, always in one shape,
``Payment: 10700.00 RUB (card)`` or ``Refund: 200.00 RUB (cash)``.  That text is read back
into the same message a new entry keeps (checked against the payment's currency and method
the entry's data also kept), so an old entry reads ``Оплата: 10 700,00 ₽ (карта)`` to a
Russian reader.  An entry whose text has any other shape keeps its text and is shown as it
is.  The stored English ``subject`` is kept, as on new entries.

Downgrading leaves the messages in place: the code of the revision before already reads
them.

Revision ID: finance_0004_payment_messages
Revises: finance_0003_form_token
Create Date: 2026-11-24 16:00:00
"""

import json
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "finance_0004_payment_messages"
down_revision: str | Sequence[str] | None = "finance_0003_form_token"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept here as written when this revision was made, not imported from the code.
#: the subject the cash desk wrote: ``{title}: {amount} {currency} ({method})``
OLD_SUBJECT = re.compile(
    r"(?P<title>Payment|Refund): (?P<amount>[0-9]+(?:\.[0-9]+)?) "
    r"(?P<currency>[A-Z]{3}) \((?P<method>[^()]+)\)"
)
#: the message templates the cash desk writes now (msgids of the finance catalog)
TEMPLATES = {
    "Payment": "Payment: {amount} ({method})",
    "Refund": "Refund: {amount} ({method})",
}
BATCH = 1000

activity = sa.table(
    "activity",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("subject", sa.String),
    sa.column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
)


def subject_message(subject: str | None, data: dict[str, Any]) -> dict[str, Any] | None:
    """The message an old payment entry's ``subject`` says, as ``Message.as_json`` writes
    it; ``None`` when the text has another shape or disagrees with the entry's data."""
    found = OLD_SUBJECT.fullmatch(subject or "")
    if found is None:
        return None
    currency, method = found["currency"], found["method"]
    if data.get("currency") not in (None, currency) or data.get("method") not in (None, method):
        return None
    if data.get("amount") is not None:
        try:
            if abs(Decimal(str(data["amount"]))) != Decimal(found["amount"]):
                return None
        except InvalidOperation:
            return None
    return {
        "template": TEMPLATES[found["title"]],
        "params": {"amount": {"amount": found["amount"], "currency": currency}, "method": method},
        "labels": {"amount": "amount", "method": "label"},
    }


def upgrade() -> None:
    connection = op.get_bind()
    write = (
        sa.update(activity)
        .where(activity.c.id == sa.bindparam("row_id"))
        .values(data=sa.bindparam("new_data"))
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(activity.c.id, activity.c.subject, activity.c.data)
            .where(activity.c.kind == "payment", activity.c.id > last)
            .order_by(activity.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        changed = []
        for row in rows:
            data = json.loads(row.data) if isinstance(row.data, str) else row.data
            data = dict(data) if isinstance(data, dict) else {}
            if data.get("subject_message"):
                continue  # written with its message
            message = subject_message(row.subject, data)
            if message is not None:
                changed.append({"row_id": row.id, "new_data": {**data, "subject_message": message}})
        if changed:
            connection.execute(write, changed)


def downgrade() -> None:
    pass  # the messages stay: the revision before reads them too
