"""The message template editor, with a live preview on a chosen client.

The preview renders in Jinja's sandbox on every pause in typing (htmx); a mistake shows the
line and the message in place of the preview, never a server error.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import NotFound, ValidationFailed
from crmkit.i18n import translate
from crmkit.services.message_templates import TemplateFailed
from crmkit.web import i18n
from crmkit.web.forms import NOT_AN_ID, as_id
from crmkit.web.pages import error_text, posted, redirect, render, work

CHANNELS = ("mail", "telegram", "sms", "whatsapp")


def index(request: Request) -> Response:
    """Every template."""
    with work(request) as unit:
        items = unit.message_templates.list()
        may_create = unit.access.can("message_template", "create")
    return render(
        request,
        "templates.html",
        {"title": i18n.lazy("Message templates"), "items": items, "may_create": may_create},
    )


def edit(request: Request) -> Response:
    """Create (``/templates/new``) or edit a template."""
    raw_id = request.path_params["template_id"]
    template_id = None if raw_id == "new" else as_id(raw_id)  # no id ("abc", 25 digits): 404
    if raw_id != "new" and template_id is None:
        raise NotFound("message_template", raw_id)
    error = None
    values: dict = {}
    if request.method == "POST":
        values = posted(request)
        data = {
            k: str(values.get(k, "")) for k in ("name", "channel", "language", "subject", "body")
        }
        try:
            with work(request) as unit:
                if template_id is None:
                    template = unit.message_templates.create(data)
                else:
                    template = unit.message_templates.update(template_id, data)
            return redirect(request, f"/templates/{template.id}", "Saved.")
        except ValidationFailed as failed:
            error = error_text(request, failed)
    with work(request) as unit:
        template = unit.message_templates.get(template_id) if template_id else None
        may_edit = unit.access.can("message_template", "update" if template else "create")
        sample = unit.parties.list(limit=1)
    return render(
        request,
        "template_edit.html",
        {
            "title": template.name if template else "New template",
            "template": template,
            "values": values,
            "error": error,
            "channels": CHANNELS,
            "may_edit": may_edit,
            "sample_party": sample.items[0] if len(sample) else None,
        },
        status=422 if error else 200,
    )


def preview(request: Request) -> Response:
    """The preview fragment: the template rendered for the chosen client, or its mistake."""
    data = posted(request)
    party_id = as_id(data.get("party_id"))
    texts = {
        "subject": str(data.get("subject", "")),
        "body": str(data.get("body", "")),
        "name": str(data.get("name", "")),  # named by a refusal of the template's limits
    }
    problem = None
    message = None
    if party_id is None and str(data.get("party_id") or "").strip():  # "abc", "²", 25 digits
        with i18n.activate(request.state.locale):
            text = i18n.gettext(NOT_AN_ID)
        problem = {"field": "party_id", "line": None, "message": text}
        return render(request, "template_preview.html", {"message": None, "problem": problem})
    try:
        with work(request) as unit:
            message = unit.message_templates.render(texts, party_id=party_id)
    except TemplateFailed as failed:
        with i18n.activate(request.state.locale):
            text = translate(failed.message, i18n.gettext, request.state.locale.zone)
        problem = {"field": failed.field, "line": failed.line, "message": text}
    except NotFound:
        problem = {"field": "party_id", "line": None, "message": "no such client"}
    return render(
        request,
        "template_preview.html",
        # what fills in nothing is named for a chosen client only (without one, every
        # party.* would be)
        {"message": message, "problem": problem, "client_chosen": party_id is not None},
    )
