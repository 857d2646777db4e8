"""Writing a mail to a client from a template: the client card's panel and the compose page.

The panel (on ``/clients/<id>``) picks a template and one of the client's email addresses;
``/mail/compose/<party_id>`` shows the template rendered for this client (the core's
sandbox), editable, and sending queues the mail through the outbox in the same transaction
as its timeline entry (:meth:`crmkit_mail.MailService.send`).  The worker delivers it,
retries failures and dead-letters what keeps failing.

Who may: users holding ``("activity", "create")`` (what the channels need to write to a
timeline) who may read the client; anyone else gets 404, like a missing page.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.services.message_templates import TemplateFailed, template_for_stage
from crmkit.web.contributions import CardPanel, Screen
from crmkit.web.forms import address_list, as_id, id_list, refuse_nul, required_id
from crmkit.web.pages import error_text, posted, redirect, render, work
from crmkit_mail import mail

SEND = ("activity", "create")


def mailbox_ready(unit: Any) -> bool:
    """Whether the user has a mailbox to send from (their own or a shared one)."""
    try:
        mail(unit).accounts.sending_account(name=None, user_id=unit.actor.user_id)
    except NotFound:
        return False
    return True


def email_addresses(party: Any) -> list[str]:
    """The client's email addresses, as the card lists them."""
    return [p.value for p in party.contact_points if p.kind == "email" and p.value]


def mail_templates(unit: Any) -> list[Any]:
    """The mail templates the user may read, one per name (its oldest version).

    Which language version a client gets is chosen when it is filled in (their language);
    none without the permission.
    """
    try:
        found = unit.message_templates.list(channel="mail")
    except PermissionDenied:
        return []
    first: dict[str, Any] = {}
    for template in sorted(found, key=lambda t: t.id):
        first.setdefault(template.name, template)
    return sorted(first.values(), key=lambda t: t.name)


def card_panel(unit: Any, party: Any) -> dict[str, Any] | None:
    """The variables of the client card's "Write a mail" panel: the template meant for the
    client's stage (a starter template's ``pipeline`` and ``stage``) is chosen, if the
    templates hold one of its name; the user may pick another."""
    templates = mail_templates(unit)
    meant = template_for_stage(unit.crm.starter_templates, party.pipeline, party.stage, "mail")
    return {
        "ready": mailbox_ready(unit),
        "addresses": email_addresses(party),
        "templates": templates,
        "chosen": next((t.id for t in templates if meant and t.name == meant), None),
    }


def _party_id(request: Request) -> int:
    return int(request.path_params["party_id"])


def _page(request: Request, values: dict[str, Any], status: int = 200) -> Response:
    attached = set(values.pop("attached", ()))  # ids of the client's files ticked
    with work(request) as unit:
        signature = mail(unit).signatures.get()
        try:  # the client's files, to attach
            files = unit.attachments.for_party(values["party_id"])
        except PermissionDenied:
            files = []
        # files from the computer are kept on the client: offered only where they would be
        uploads = unit.attachments.may_attach(values["party_id"])
    return render(
        request,
        "mail/compose.html",
        {
            "title": "Write a mail",
            "signature": signature,
            "files": files,
            "attached": attached,
            "uploads": uploads,
            **values,
        },
        status=status,
    )


def signature_page(request: Request) -> Response:
    """The user's own signature: shown, and changed (empty: none)."""
    error = None
    if request.method == "POST":
        text = str(posted(request).get("signature", ""))
        try:
            with work(request) as unit:
                mail(unit).signatures.set(text)
        except ValidationFailed as refused:
            error = error_text(request, refused)
        else:
            return redirect(request, "/mail/signature", "Signature saved.")
    else:
        with work(request) as unit:
            text = mail(unit).signatures.get()
    return render(
        request,
        "mail/signature.html",
        {"title": "My signature", "signature": text, "error": error},
        status=422 if error else 200,
    )


def compose(request: Request) -> Response:
    """The compose page: the chosen template rendered for this client, editable."""
    party_id = _party_id(request)
    chosen = request.query_params.get("template") or ""
    error = language = None
    subject = body = ""
    unfilled: tuple[str, ...] = ()  # variables of the template this client leaves empty
    with work(request) as unit:
        party = unit.parties.get(party_id)  # hidden or missing: 404
        addresses = email_addresses(party)
        templates = mail_templates(unit)
        ready = mailbox_ready(unit)
        if chosen:
            try:
                template_id = required_id(chosen, "template")
                # the client's language picks the version; the menu shows each name once
                version = unit.message_templates.version_for(template_id, party_id=party_id)
                rendered = unit.message_templates.render(version, party_id=party_id)
                subject, body, language = rendered.subject, rendered.body, version.language
                unfilled = rendered.unfilled
                chosen = str(next((t.id for t in templates if t.name == version.name), chosen))
            except ValidationFailed as refused:
                error = error_text(request, refused)
            except (ValueError, NotFound):
                error = "Choose a template."
            except TemplateFailed as failed:
                error = str(failed)
        to = request.query_params.get("to") or (addresses[0] if addresses else "")
        party_name = party.name
    return _page(
        request,
        {
            "party_id": party_id,
            "party_name": party_name,
            "addresses": addresses,
            "templates": templates,
            "chosen": chosen,
            "to": to,
            "cc": request.query_params.get("cc") or "",
            "subject": subject,
            "body": body,
            "ready": ready,
            "error": error,
            "language": language,
            "unfilled": unfilled,
        },
        status=422 if error else 200,
    )


async def send(request: Request) -> Response:
    """Queue the (edited) mail to one of the client's addresses, with the client's files
    ticked and files uploaded here (kept on the client's card); back to the card."""
    party_id = _party_id(request)
    async with request.form() as form:  # closes the spooled uploads however this ends
        to = str(form.get("to", "")).strip()
        cc = str(form.get("cc", "")).strip()
        subject = str(form.get("subject", "")).strip()
        body = str(form.get("body", ""))
        ticked = form.getlist("attach")
        attached = [i for i in map(as_id, ticked) if i is not None]  # ticked again if refused
        uploads = [f for f in form.getlist("files") if not isinstance(f, str) and f.filename]
        try:
            refuse_nul(form)
            id_list(ticked, "attach")  # one that is no id ("²", 25 digits) refuses the mail
            with work(request) as unit:
                party = unit.parties.get(party_id)  # hidden or missing: 404
                problems: dict[str, list[str]] = {}
                if to not in email_addresses(party):
                    problems["to"] = ["choose one of the client's email addresses"]
                if not subject:
                    problems["subject"] = ["write a subject"]
                if not body.strip():
                    problems["body"] = ["write the text"]
                attachment_ids = []
                for file_id in attached:
                    try:
                        found = unit.attachments.get(file_id)
                    except (NotFound, PermissionDenied):
                        found = None
                    if found is None or found.party_id != party_id:
                        problems["attach"] = ["choose among the client's files"]
                    else:
                        attachment_ids.append(found.id)
                if problems:
                    raise ValidationFailed(problems)
                if not mailbox_ready(unit):
                    raise ValidationFailed({"_schema": ["no mailbox is configured to send from"]})
                for upload in uploads:  # kept on the card; undone if the mail is refused
                    stored = unit.attachments.add(
                        upload.filename, upload.file, party_id=party_id,
                        content_type=upload.content_type,
                    )  # fmt: skip
                    attachment_ids.append(stored.id)
                mail(unit).send(
                    to=to, subject=subject, body=body, party_id=party_id,
                    attachment_ids=tuple(attachment_ids), cc=tuple(address_list(cc)),
                )  # fmt: skip
        except NotFound:
            raise
        except (ValidationFailed, PermissionDenied) as refused:
            with work(request) as unit:
                party = unit.parties.get(party_id)
                values = {
                    "party_id": party_id,
                    "party_name": party.name,
                    "addresses": email_addresses(party),
                    "templates": mail_templates(unit),
                    "ready": mailbox_ready(unit),
                }
            values.update(
                chosen=str(form.get("template", "")), to=to, cc=cc, subject=subject, body=body,
                attached=attached, error=error_text(request, refused),
            )  # fmt: skip
            return _page(request, values, status=422)
    return redirect(request, f"/clients/{party_id}", "Mail queued: it goes out in a moment.")


SCREENS = [
    Screen("mail_compose", "/mail/compose/{party_id:id}", "Write a mail", compose, permission=SEND),
    Screen(
        "mail_signature",
        "/mail/signature",
        "My signature",
        signature_page,
        methods=("GET", "POST"),
        permission=SEND,
    ),
    Screen(
        "mail_compose_send",
        "/mail/compose/{party_id:id}/send",
        "Send a mail",
        send,
        methods=("POST",),
        permission=SEND,
    ),
]

PANELS = [CardPanel("mail_compose", "mail/card_panel.html", card_panel, permission=SEND, order=30)]
