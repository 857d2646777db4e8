"""The mail plugin's pages: mailboxes (admins), mass mailings, and the public unsubscribe page.

Mailboxes (``/mail/mailboxes``) need ``("mail_account", "update")``: admins, or a role an
admin grants it.  Mailings (``/mail/mailings``) need ``("mail_campaign", "read")`` to be
seen, ``create`` to be made and ``update`` to be started.  Anyone else gets 404, like a
missing page, and no menu item.

Passwords are never sent back to the browser: the form's password fields are always empty,
and leaving one empty keeps the stored (sealed) password.

The unsubscribe page (``/mail/unsubscribe/<token>``): GET shows a confirmation button (mail
scanners that open links must not unsubscribe anyone); POST records the opt-out, which is
also what RFC 8058 one-click clients send.
"""

from __future__ import annotations

import html
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.web import i18n
from crmkit.web.contributions import MenuItem, Screen
from crmkit.web.forms import NOT_AN_ID, as_id, optional_id
from crmkit.web.pages import error_text, posted, redirect, render, work
from crmkit_mail import mail
from crmkit_mail.compose import SEND
from crmkit_mail.smtp import SECURITY_CHOICES

MANAGE_MAILBOXES = ("mail_account", "update")
READ_MAILINGS = ("mail_campaign", "read")
CREATE_MAILINGS = ("mail_campaign", "create")
START_MAILINGS = ("mail_campaign", "update")

#: Form fields of a mailbox, as :class:`crmkit_mail.accounts.MailAccountSchema` names them.
TEXT_FIELDS = (
    "name",
    "address",
    "display_name",
    "imap_host",
    "imap_security",
    "imap_username",
    "imap_folder",
    "sent_folder",
    "smtp_host",
    "smtp_security",
    "smtp_username",
)
PORT_FIELDS = ("imap_port", "smtp_port")
#: What the form proposes for a new mailbox: a month of mail, not years of it in triage.
NEW_MAILBOX_IMPORT_DAYS = 30
PASSWORD_FIELDS = ("imap_password", "smtp_password")

#: Field names and states shown through ``_(value)``, listed so that the catalogs collect them.
SHOWN_TEXTS = (
    i18n.lazy("address"),
    i18n.lazy("display_name"),
    i18n.lazy("owner_id"),
    i18n.lazy("imap_host"),
    i18n.lazy("imap_port"),
    i18n.lazy("imap_security"),
    i18n.lazy("imap_username"),
    i18n.lazy("imap_password"),
    i18n.lazy("imap_folder"),
    i18n.lazy("import_days"),
    i18n.lazy("ignore_senders"),
    i18n.lazy("sent_folder"),
    i18n.lazy("smtp_host"),
    i18n.lazy("smtp_port"),
    i18n.lazy("smtp_security"),
    i18n.lazy("smtp_username"),
    i18n.lazy("smtp_password"),
    i18n.lazy("audience"),
    i18n.lazy("template"),
    i18n.lazy("rate_per_minute"),
    i18n.lazy("view_id"),
    i18n.lazy("group_id"),
    i18n.lazy("account"),
    i18n.lazy("draft"),
    i18n.lazy("sending"),
    i18n.lazy("done"),
    i18n.lazy("pending"),
    i18n.lazy("sent"),
    i18n.lazy("failed"),
    i18n.lazy("bounced"),
    i18n.lazy("unsubscribed"),
    i18n.lazy("skipped"),
    # fields the plugin's refusals name
    i18n.lazy("signature"),
    i18n.lazy("attach"),
    i18n.lazy("party"),
)


# -- mailboxes ----------------------------------------------------------------------------


def _account_values(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The submitted mailbox form as the accounts service takes it (it validates)."""
    values: dict[str, Any] = {}
    for key in TEXT_FIELDS:
        if key in data:
            values[key] = str(data[key]).strip()
    for key in PORT_FIELDS:
        text = str(data.get(key, "")).strip()
        if text:
            values[key] = text  # the schema says "Not a valid integer." for "99x"
    if "import_days" in data:
        days = str(data["import_days"]).strip()
        values["import_days"] = days or None  # empty: all the mail
    if "ignore_senders" in data:
        values["ignore_senders"] = str(data["ignore_senders"])  # one a line
    for key in PASSWORD_FIELDS:
        secret = str(data.get(key, ""))
        if secret:  # empty: keep the stored password
            values[key] = secret
    owner = str(data.get("owner_id", "")).strip()
    # kept as typed when it is no id, to show it again: the handler refuses it naming the field
    values["owner_id"] = as_id(owner) or owner or None
    values["active"] = bool(data.get("active"))
    if creating:
        for key in ("imap_security", "smtp_security", "imap_folder", "display_name"):
            if values.get(key) == "":
                values.pop(key)
    return values


def _account_form(
    request: Request,
    account: Any,
    values: dict[str, Any],
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    with work(request) as unit:
        users = [u for u in unit.users.list(include_blocked=False)]
    title = account.name if account is not None else i18n.lazy("New mailbox")
    return render(
        request,
        "mail/mailbox_form.html",
        {
            "title": title,
            "account": account,
            "values": values,
            "users": users,
            "securities": SECURITY_CHOICES,
            "error": error,
        },
        status=status,
    )


def mailboxes(request: Request) -> Response:
    """Every mailbox with its sync state: UIDVALIDITY, last UID, last sync, last error."""
    with work(request) as unit:
        accounts = mail(unit).accounts.list()
        owners = {u.id: u.label for u in unit.users.list()}
    return render(
        request,
        "mail/mailboxes.html",
        {"title": i18n.lazy("Mailboxes"), "accounts": accounts, "owners": owners},
    )


def mailbox_new(request: Request) -> Response:
    """Add a mailbox (GET: the empty form)."""
    if request.method == "GET":
        return _account_form(
            request, None, {"active": True, "import_days": NEW_MAILBOX_IMPORT_DAYS}
        )
    data = posted(request)
    values = _account_values(data, creating=True)
    try:
        optional_id(values["owner_id"], "owner_id")
        with work(request) as unit:
            account = mail(unit).accounts.create(values)
            account_id = account.id
    except ValidationFailed as failed:
        shown = {k: v for k, v in values.items() if k not in PASSWORD_FIELDS}
        return _account_form(request, None, shown, error=error_text(request, failed), status=422)
    return redirect(
        request, f"/mail/mailboxes/{account_id}", "Mailbox added. Check the connection."
    )


def mailbox_edit(request: Request) -> Response:
    """Change a mailbox; empty password fields keep the stored passwords."""
    account_id = int(request.path_params["account_id"])
    with work(request) as unit:
        account = mail(unit).accounts.get(account_id)
    if request.method == "GET":
        return _account_form(request, account, {})
    data = posted(request)
    values = _account_values(data, creating=False)
    try:
        optional_id(values["owner_id"], "owner_id")
        with work(request) as unit:
            mail(unit).accounts.update(account_id, values)
    except ValidationFailed as failed:
        shown = {k: v for k, v in values.items() if k not in PASSWORD_FIELDS}
        return _account_form(request, account, shown, error=error_text(request, failed), status=422)
    return redirect(request, f"/mail/mailboxes/{account_id}", "Saved.")


async def mailbox_check(request: Request) -> Response:
    """Connect to the mailbox's servers and log in; the page says what happened."""
    from crmkit_mail.accounts import check_connection

    account_id = int(request.path_params["account_id"])
    crm = request.app.state.crm
    with work(request) as unit:
        account = mail(unit).accounts.get(account_id)
    checks = await run_in_threadpool(check_connection, crm, account)
    return render(
        request,
        "mail/mailbox_check.html",
        {"title": account.name, "account": account, "checks": checks},
        status=200 if checks and all(c.ok for c in checks) else 422,
    )


def mailbox_active(request: Request) -> Response:
    """Switch a mailbox on or off (off: not synced, not sent from)."""
    account_id = int(request.path_params["account_id"])
    data = posted(request)
    active = str(data.get("active", "")) == "1"
    with work(request) as unit:
        mail(unit).accounts.update(account_id, active=active)
    if active:
        return redirect(request, "/mail/mailboxes", "Mailbox switched on.")
    return redirect(request, "/mail/mailboxes", "Mailbox switched off.")


def mailbox_delete(request: Request) -> Response:
    """Remove a mailbox that no mailing went out from."""
    account_id = int(request.path_params["account_id"])
    try:
        with work(request) as unit:
            mail(unit).accounts.delete(account_id)
    except ValidationFailed as failed:
        return redirect(request, "/mail/mailboxes", error_text(request, failed), "error")
    return redirect(request, "/mail/mailboxes", "Mailbox removed.")


# -- mailings -----------------------------------------------------------------------------


def _mailing_choices(unit: Any) -> dict[str, Any]:
    """What the new-mailing form offers: templates (one per name), groups, client views."""
    from crmkit_mail.compose import mail_templates

    try:
        views = unit.saved_views.list("party")
    except (PermissionDenied, ValidationFailed):
        views = []
    return {
        "templates": mail_templates(unit),
        "groups": unit.groups.tree(),
        "views": views,
        "accounts": [
            a
            for a in mail(unit).accounts.list(active_only=True)
            if a.smtp_host and mail(unit).accounts.may_send_from(a)
        ],
    }


def _mailing_form(
    request: Request, values: dict[str, Any], *, error: str | None = None, status: int = 200
) -> Response:
    with work(request) as unit:
        choices = _mailing_choices(unit)
    return render(
        request,
        "mail/mailing_form.html",
        {"title": i18n.lazy("New mailing"), "values": values, "error": error, **choices},
        status=status,
    )


def _mailing_arguments(data: dict[str, Any]) -> dict[str, Any]:
    """The form as ``campaigns.create`` arguments; a missing or wrong field is named."""
    problems: dict[str, list[str]] = {}
    name = str(data.get("name", "")).strip()
    if not name:
        problems["name"] = [i18n.lazy("the mailing needs a name")]
    # an id is what the core's reader takes ("²" or 25 digits are none), else it is named
    template = str(data.get("template", "")).strip()
    template_id = as_id(template)
    if template_id is None:
        problems["template"] = [i18n.lazy("choose a template")] if not template else [NOT_AN_ID]
    audience = str(data.get("audience", "group"))
    field, unchosen = (
        ("view_id", i18n.lazy("choose a saved view of clients"))
        if audience == "view"
        else ("group_id", i18n.lazy("choose a group"))
    )
    chosen = str(data.get(field, "")).strip()
    audience_id = as_id(chosen)
    if audience_id is None:
        problems[field] = [unchosen] if not chosen else [NOT_AN_ID]
    rate = str(data.get("rate_per_minute", "")).strip() or "60"
    if not (rate.isascii() and rate.isdigit()) or len(rate) > 9:
        problems["rate_per_minute"] = [
            i18n.lazy("a whole number of mails per minute (0: no limit)")
        ]
    if problems:
        raise ValidationFailed(problems)
    return {
        "name": name,
        "template_id": template_id,
        "rate_per_minute": int(rate),
        "account": str(data.get("account", "")).strip() or None,
        field: audience_id,
    }


def mailings(request: Request) -> Response:
    """The latest mailings with their counts."""
    with work(request) as unit:
        rows = mail(unit).campaigns.list()
        may_create = unit.access.can(*CREATE_MAILINGS)
    return render(
        request,
        "mail/mailings.html",
        {"title": i18n.lazy("Mailings"), "rows": rows, "may_create": may_create},
    )


def mailing_new(request: Request) -> Response:
    """Create a draft mailing from a template to a group or a saved client view."""
    if request.method == "GET":
        return _mailing_form(request, {"audience": "group", "rate_per_minute": 60})
    data = posted(request)
    try:
        arguments = _mailing_arguments(data)
        with work(request) as unit:
            campaign_id = mail(unit).campaigns.create(arguments.pop("name"), **arguments).id
    except NotFound as missing:
        return _mailing_form(request, data, error=error_text(request, missing), status=422)
    except ValidationFailed as failed:
        return _mailing_form(request, data, error=error_text(request, failed), status=422)
    return redirect(
        request, f"/mail/mailings/{campaign_id}", "Mailing saved: preview it, then start it."
    )


def mailing(request: Request) -> Response:
    """A mailing: a draft's preview for one recipient, or the report of one sent."""
    campaign_id = int(request.path_params["campaign_id"])
    status = request.query_params.get("status") or None
    chosen = request.query_params.get("party") or ""
    preview = preview_error = None
    with work(request) as unit:
        campaigns = mail(unit).campaigns
        campaign = campaigns.get(campaign_id)
        counts = campaigns.report(campaign_id)
        sample: list[Any] = []
        if campaign.status == "draft":
            try:
                found = unit.parties.find_many(campaigns.audience_sample(campaign_id))
                sample = list(found.values())
            except ValidationFailed as failed:
                preview_error = error_text(request, failed)
            try:
                party_id = optional_id(chosen, "party") or (sample[0].id if sample else None)
            except ValidationFailed as failed:  # "abc", "²" or 25 digits: no client to show
                party_id, preview_error = None, error_text(request, failed)
            if party_id is not None:
                try:
                    preview = campaigns.preview(campaign_id, party_id)
                except (ValidationFailed, NotFound) as failed:
                    preview_error = error_text(request, failed)
            chosen = str(party_id or "")
        recipients = campaigns.recipients(campaign_id, status=status)
        names = unit.parties.find_many({r.party_id for r in recipients if r.party_id})
        may_start = unit.access.can(*START_MAILINGS)
        audience = dict(campaign.audience or {})
        if audience.get("group_id"):
            try:
                audience["group"] = unit.groups.get(int(audience["group_id"])).name
            except NotFound:
                audience["group"] = f"#{audience['group_id']}"
    return render(
        request,
        "mail/mailing.html",
        {
            "title": campaign.name,
            "campaign": campaign,
            "counts": counts,
            "audience": audience,
            "recipients": recipients,
            "names": {i: p.name for i, p in names.items()},
            "status": status,
            "statuses": STATUS_LABELS,
            "sample": sample,
            "chosen": chosen,
            "preview": preview,
            "preview_error": preview_error,
            "may_start": may_start,
        },
    )


def mailing_start(request: Request) -> Response:
    """Fix the recipients and queue the sending (the ``mail.campaign`` job)."""
    campaign_id = int(request.path_params["campaign_id"])
    path = f"/mail/mailings/{campaign_id}"
    try:
        with work(request) as unit:
            count = mail(unit).campaigns.start(campaign_id)
    except ValidationFailed as failed:
        return redirect(request, path, error_text(request, failed), "error")
    with i18n.activate(request.state.locale):
        text = i18n.gettext("Mailing started: %(num)d to send.") % {"num": count}
    return redirect(request, path, text)


def mailing_retry_unknown(request: Request) -> Response:
    """Send again the mails a stopped worker left unknown (maybe sent): an admin's choice."""
    campaign_id = int(request.path_params["campaign_id"])
    path = f"/mail/mailings/{campaign_id}"
    with work(request) as unit:
        count = mail(unit).campaigns.retry_unknown(campaign_id)
    with i18n.activate(request.state.locale):
        text = i18n.gettext("Sending again: %(num)d.") % {"num": count}
    return redirect(request, path, text)


# -- unsubscribing (public) ---------------------------------------------------------------

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">
<h1>{title}</h1><p>{text}</p>{form}</body></html>"""


def unsubscribe(request: Request) -> Response:
    """Confirm (GET) or record (POST) an unsubscription."""
    from crmkit_mail.campaigns import Campaigns, address_of_token

    crm = request.app.state.crm
    found = address_of_token(crm, request.path_params["token"])
    if found is None:
        body = PAGE.format(title="Ссылка недействительна / Invalid link", text="", form="")
        return HTMLResponse(body, status_code=404)
    address, campaign_id = found
    shown = html.escape(address)
    if request.method == "POST":
        with crm.system() as work:
            Campaigns(work).unsubscribe(address, campaign_id)
        text = f"{shown}: вы отписаны от рассылок. / You are unsubscribed from mailings."
        return HTMLResponse(PAGE.format(title="Готово / Done", text=text, form=""))
    form = (
        '<form method="post"><button type="submit" data-unsubscribe>'
        "Отписаться / Unsubscribe</button></form>"
    )
    text = f"Больше не присылать рассылки на {shown}? / No more mailings to {shown}?"
    return HTMLResponse(PAGE.format(title="Отписка / Unsubscribe", text=text, form=form))


SCREENS = [
    Screen(
        "mail_mailboxes", "/mail/mailboxes", "Mailboxes", mailboxes, permission=MANAGE_MAILBOXES
    ),
    Screen(
        "mail_mailbox_new",
        "/mail/mailboxes/new",
        "New mailbox",
        mailbox_new,
        methods=("GET", "POST"),
        permission=MANAGE_MAILBOXES,
    ),
    Screen(
        "mail_mailbox",
        "/mail/mailboxes/{account_id:id}",
        "Mailbox",
        mailbox_edit,
        methods=("GET", "POST"),
        permission=MANAGE_MAILBOXES,
    ),
    Screen(
        "mail_mailbox_check",
        "/mail/mailboxes/{account_id:id}/check",
        "Check the connection",
        mailbox_check,
        methods=("POST",),
        permission=MANAGE_MAILBOXES,
    ),
    Screen(
        "mail_mailbox_active",
        "/mail/mailboxes/{account_id:id}/active",
        "Switch a mailbox on or off",
        mailbox_active,
        methods=("POST",),
        permission=MANAGE_MAILBOXES,
    ),
    Screen(
        "mail_mailbox_delete",
        "/mail/mailboxes/{account_id:id}/delete",
        "Remove a mailbox",
        mailbox_delete,
        methods=("POST",),
        permission=("mail_account", "delete"),
    ),
    Screen("mail_mailings", "/mail/mailings", "Mailings", mailings, permission=READ_MAILINGS),
    Screen(
        "mail_mailing_new",
        "/mail/mailings/new",
        "New mailing",
        mailing_new,
        methods=("GET", "POST"),
        permission=CREATE_MAILINGS,
    ),
    Screen(
        "mail_mailing",
        "/mail/mailings/{campaign_id:id}",
        "Mailing",
        mailing,
        permission=READ_MAILINGS,
    ),
    Screen(
        "mail_mailing_start",
        "/mail/mailings/{campaign_id:id}/start",
        "Start a mailing",
        mailing_start,
        methods=("POST",),
        permission=START_MAILINGS,
    ),
    Screen(
        "mail_mailing_retry_unknown",
        "/mail/mailings/{campaign_id:id}/retry-unknown",
        "Send the unknown again",
        mailing_retry_unknown,
        methods=("POST",),
        permission=START_MAILINGS,
    ),
]

#: A mailing report's states, in the order shown, with their labels.
STATUS_LABELS = {
    "sent": i18n.lazy("sent"),
    "failed": i18n.lazy("failed"),
    "bounced": i18n.lazy("bounced"),
    "unsubscribed": i18n.lazy("unsubscribed"),
    "pending": i18n.lazy("pending"),
    "sending": i18n.lazy("being sent"),
    "unknown": i18n.lazy("unknown, maybe sent"),
    "skipped": i18n.lazy("skipped"),
}

MENU = [
    MenuItem("Mailings", "mail_mailings", order=72, icon="📨", permission=READ_MAILINGS),
    MenuItem("Mailboxes", "mail_mailboxes", order=93, icon="📮", permission=MANAGE_MAILBOXES),
    MenuItem("My signature", "mail_signature", order=94, icon="✍", permission=SEND),
]
