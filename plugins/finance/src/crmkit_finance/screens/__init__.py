"""The finance plugin's screens, menu items and record panels (the web UI's hooks).

Every screen names the permission-table cell it needs (``Screen.permission``), so a user
without it gets 404 and no menu item, whatever their role is called; the services check the
same permissions again for every action.  Screens are thin: a form calls one service method
in a unit of work acting as the signed-in user and redirects back with a message; a refused
operation (bad input, no permission) writes nothing and comes back as an error message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.i18n import Message
from crmkit.web import i18n
from crmkit.web.contributions import CardPanel, MenuItem, Screen
from crmkit.web.pages import error_text, redirect, work
from crmkit_finance import finance
from crmkit_finance.services import forms


def sent_token(data: Any) -> str | None:
    """A form's one-time token (its hidden ``form_token`` field), ``None`` when it has none."""
    return str(data.get("form_token") or "") or None


def client_names(work: Any, party_ids: Iterable[int | None]) -> dict[int, str]:
    """Names of the clients the user may see, by id."""
    return {i: p.name for i, p in work.parties.find_many(i for i in party_ids if i).items()}


def order_numbers(work: Any, order_ids: Iterable[int | None]) -> dict[int, str]:
    """Numbers of the orders the user may see, by id."""
    found = work.records("finance_order").find_many(i for i in order_ids if i)
    return {i: o.number for i, o in found.items()}


#: The optional hook through which another plugin describes the records a screen found (the
#: car service: an order's car, a client's plates); see docs/guide/finance.md.
DESCRIBE_FOUND_HOOK = "crmkit_finance_describe_found"


def found_notes(work: Any, entity: str, records: list[Any]) -> dict[int, list[str]]:
    """What plugins say of each found record of ``entity`` (``"finance_order"`` on the cash
    desk, ``"party"`` on the cashback screen), by record id: every record's id is a key, with
    the texts plugins return for it, empty ones left out.

    The hook, ``crmkit_finance_describe_found(work, entity, records)`` returning ``{id:
    text}``, is optional (declared by no spec: its implementations are marked
    ``optionalhook``), so a plugin adds a line under each found record without the screen
    knowing what it is.  ``work`` acts as the reader: a plugin tells only what they may read."""
    notes: dict[int, list[str]] = {r.id: [] for r in records}
    hook = getattr(work.crm.pm.hook, DESCRIBE_FOUND_HOOK, None)
    if hook is None or not records:
        return notes
    for answer in hook(work=work, entity=entity, records=records):
        for record_id, text in (answer or {}).items():
            if text and record_id in notes:
                notes[record_id].append(str(text))
    return notes


#: Fields the plugin's refusals name that are no column: a refusal shows a field's name
#: through ``gettext`` (:func:`crmkit.web.pages.error_text`), so they are listed for the
#: catalogs.  ``order`` is not: the core's lists name their sort order so too, and the
#: core's catalog, read first, would say one for both.
REFUSAL_FIELDS = (
    i18n.lazy("client"),
    i18n.lazy("client_order"),
    i18n.lazy("counted"),
    i18n.lazy("discount"),
    i18n.lazy("form_token"),
    i18n.lazy("invoice"),
    i18n.lazy("legs"),
    i18n.lazy("line"),
    i18n.lazy("lines"),
    i18n.lazy("order_ids"),
    i18n.lazy("payslip"),
    i18n.lazy("period"),
    i18n.lazy("purchase_order"),
    i18n.lazy("shift"),
    i18n.lazy("to_location_id"),
    i18n.lazy("transaction"),
    i18n.lazy("unit_cost"),
    i18n.lazy("unit_price"),
)


def safe_back(value: Any, default: str) -> str:
    """Where a form returns: a local path only (never another site)."""
    text = str(value or "")
    return text if text.startswith("/") and not text.startswith("//") else default


def attempt(
    request: Request,
    back: str,
    action: Callable[[Any], Any],
    done: str | Callable[[Any], str | Message],
    then: Callable[[Any], str] | None = None,
    labels: Mapping[str, str] | None = None,
    refused: Callable[[str], Response] | None = None,
) -> Response:
    """Run ``action(fin)`` in one unit of work as the user and go back to ``back``.

    Success shows ``done`` (or ``done(result)``, a text or a message with parameters; on
    ``then(result)`` when given); a form sent again (its
    one-time token already used, see :mod:`crmkit_finance.services.forms`) did nothing the
    second time and says so instead.  A refusal (invalid input, no permission) rolls
    everything back and shows why on ``back``, naming a field by its label in ``labels``
    (the form's), else by its name; with ``refused``, the page ``refused(why)`` answers
    instead (the form shown again as it was sent, the reason beside it).  A record outside
    the user's scope stays a 404.
    """
    try:
        with work(request) as unit:
            result = action(finance(unit))
            repeat = forms.repeated(unit.session)
    except NotFound:
        raise
    except (ValidationFailed, PermissionDenied) as refusal:
        why = error_text(request, refusal, labels=labels)
        if refused is not None:
            return refused(why)
        return redirect(request, back, why, kind="error")
    target = then(result) if then else back
    if repeat:
        return redirect(request, target, "This form was already sent: nothing was done again.")
    said = done(result) if callable(done) else done
    if isinstance(said, Message):
        with i18n.activate(request.state.locale):
            said = said.translate(i18n.gettext, request.state.locale.zone)
    return redirect(request, target, said)


def screens() -> list[Screen]:
    """Every finance screen (see the modules for what each does)."""
    from crmkit_finance.screens import accounting, cashdesk, orders, warehouse

    return [*cashdesk.SCREENS, *orders.SCREENS, *accounting.SCREENS, *warehouse.SCREENS]


def menu_items() -> list[MenuItem]:
    """Menu entries; each shows only to users who may open its screen."""
    return [
        MenuItem("Cash desk", "finance_cashdesk", order=15, icon="💰"),
        MenuItem("Receivables", "finance_receivables", order=16, icon="🧾"),
        MenuItem("Invoices", "finance_invoices", order=17, icon="📄"),
        MenuItem(
            "Orders",
            "/lists/finance_order",
            order=18,
            icon="🛠",
            permission=("finance_order", "read"),
        ),
        MenuItem("Salaries", "finance_payroll", order=61, icon="👛"),
        MenuItem("Cashback", "finance_cashback", order=62, icon="🎁"),
        MenuItem("Expenses", "finance_expenses", order=63, icon="📉"),
        MenuItem("Warehouse", "finance_stock", order=64, icon="📦"),
        MenuItem("Purchases", "finance_purchases", order=65, icon="🚚"),
    ]


def panels() -> list[CardPanel]:
    """The client card's money panel, the order page's lines, payments and totals, and the
    purchase order page's letters to the supplier."""
    from crmkit_finance.screens import orders, warehouse

    return [*orders.PANELS, *warehouse.PANELS]
