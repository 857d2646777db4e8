"""Administration of background work: failed deliveries (the dead-letter list), the
watchers' state, and the automation assistant's rules."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.automation import ACTIONS, TRIGGERS
from crmkit.errors import ValidationFailed
from crmkit.jobs.watchers import states as watcher_states
from crmkit.services.automation import automation
from crmkit.web import i18n
from crmkit.web.api.params import text_param
from crmkit.web.forms import id_list
from crmkit.web.pages import posted, redirect, render, work

#: Texts shown through ``_(value)``, listed here so that the catalogs collect them.
SHOWN_TEXTS = (
    i18n.lazy("pending"),
    i18n.lazy("delivering"),
    i18n.lazy("delivered"),
    i18n.lazy("dead"),
    i18n.lazy("discarded"),
    i18n.lazy("cancelled"),
    i18n.lazy("running"),
    i18n.lazy("not running"),
    i18n.lazy("A record was created"),
    i18n.lazy("A record entered a stage"),
    i18n.lazy("A record left a stage"),
    i18n.lazy("A field changed"),
    i18n.lazy("A payment was received"),
    i18n.lazy("A task became overdue"),
    i18n.lazy("A booking was made"),
    i18n.lazy("Hours before a booking"),
    i18n.lazy("Days without activity"),
)


def dead_letters(request: Request) -> Response:
    """Outbox items given up after their last attempt, with the error; retry or discard.

    Below them, the newest items cancelled on purpose (with the reason), and the watchers
    (a mailbox's IDLE connection...): who runs each, the last error.
    """
    if request.method == "POST":
        data = posted(request)
        ids = id_list(data.get("ids"), "ids")
        if not ids:
            return redirect(request, "/admin/dead-letters", "Choose the items first.", "error")
        with work(request) as unit:
            if data.get("action") == "discard":
                unit.outbox.discard(ids)
                return redirect(request, "/admin/dead-letters", "Discarded.")
            unit.outbox.retry(ids)
        return redirect(request, "/admin/dead-letters", "Queued again.")
    kind = text_param(request.query_params, "kind")
    with work(request) as unit:
        rows = unit.outbox.failed(limit=200, kind=kind)
        cancelled = unit.outbox.cancelled(limit=50)
        counts = unit.outbox.counts()
    crm = request.app.state.crm
    return render(
        request,
        "admin/dead_letters.html",
        {
            "title": i18n.lazy("Failed deliveries"),
            "rows": rows,
            "cancelled": cancelled,
            "counts": counts,
            "kind": kind,
            "watchers": watcher_states(crm) if crm.watchers else None,
        },
    )


def _json_field(data: dict[str, Any], name: str, default: Any) -> Any:
    text = str(data.get(name) or "").strip()
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed({name: [f"not valid JSON: {exc.msg} (line {exc.lineno})"]}) from None


def _number(value: Any, name: str) -> float | None:
    text = str(value or "").strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValidationFailed({name: [f"not a number: {text}"]}) from None


def rules(request: Request) -> Response:
    """Automation rules (code and data): create, enable, disable, delete; recent failures."""
    if request.method == "POST":
        data = posted(request)
        action = data.get("action")
        name = str(data.get("name", "")).strip()
        with work(request) as unit:
            service = automation(unit)
            if action == "enable":
                service.set_enabled(name, True)
                return redirect(request, "/admin/automation", "Rule switched on.")
            if action == "disable":
                service.set_enabled(name, False)
                return redirect(request, "/admin/automation", "Rule switched off.")
            if action == "delete":
                service.delete(name)
                return redirect(request, "/admin/automation", "Rule deleted.")
            trigger: dict[str, Any] = {"event": str(data.get("event", ""))}
            for key in ("entity", "stage", "field"):
                if str(data.get(key) or "").strip():
                    trigger[key] = str(data[key]).strip()
            for key in ("hours", "days"):
                number = _number(data.get(key), key)
                if number is not None:
                    trigger[key] = number
            service.create(
                name,
                trigger,
                _json_field(data, "actions", []),
                condition=_json_field(data, "condition", None),
                label=str(data.get("label", "")).strip(),
            )
        return redirect(request, "/admin/automation", "Rule created.")
    with work(request) as unit:
        service = automation(unit)
        rows = service.rules()
        failures = service.failures(limit=30)
    return render(
        request,
        "admin/automation.html",
        {
            "title": i18n.lazy("Automation"),
            "rows": rows,
            "failures": failures,
            "triggers": TRIGGERS,
            "actions": ACTIONS,
            "entities": sorted(request.app.state.crm.entities.by_name),
        },
    )
