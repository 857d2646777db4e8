"""The contact center: one inbox for the conversations of every channel.

``/inbox?view=unassigned|mine|team&status=open|snoozed|closed`` lists conversations (``q``:
those whose sender's name or address or subject contains it, in any case); a
chosen one (``/inbox/<id>``) shows its messages, the client and the deal or task it is about,
and the actions: assign, reply (by hand or from a template), snooze, close; for an unknown
sender, create a lead, attach to an existing client or, for who manages the mailbox, "Not a
client": never record the sender (or their domain) again, and close.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from crmkit.channels import Capability
from crmkit.errors import (
    CrmkitError,
    DuplicatesFound,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from crmkit.services.conversations import ANY, STATUSES, VIEWS
from crmkit.web import i18n
from crmkit.web.forms import (
    NOT_AN_ID,
    address_list,
    as_id,
    local_time,
    optional_id,
    optional_int,
)
from crmkit.web.pages import error_text, posted, redirect, render, work

#: The longest snooze in hours: a year (a later return is chosen as a date).
MOST_SNOOZE_HOURS = 8760


def _query(request: Request) -> tuple[str, str]:
    view = request.query_params.get("view", "unassigned")
    status = request.query_params.get("status", "open")
    return (view if view in VIEWS else "unassigned", status if status in STATUSES else "open")


def _list_of(data: Any) -> tuple[str, str, str]:
    """The list an action was taken from (a form's ``view``, ``status`` and ``q``)."""
    view = str(data.get("view") or "unassigned")
    status = str(data.get("status") or "open")
    return (
        view if view in VIEWS else "unassigned",
        status if status in STATUSES else "open",
        str(data.get("q") or "").strip()[:200],
    )


def _back(conversation_id: int, view: str, status: str, query: str, **more: Any) -> str:
    """The conversation beside the list it was chosen from: the same view, status, search."""
    params = {"view": view, **more, "status": status, **({"q": query} if query else {})}
    return f"/inbox/{conversation_id}?{urlencode(params)}"


def inbox(request: Request) -> Response:
    """The list of conversations, and the chosen one beside it."""
    view, status = _query(request)
    return _page(request, view, status, request.path_params.get("conversation_id"))


def _page(
    request: Request,
    view: str,
    status: str,
    chosen_id: int | None,
    draft: dict[str, Any] | None = None,
    code: int = 200,
    duplicates: dict[str, Any] | None = None,
    query: str | None = None,
) -> Response:
    """The inbox page; ``draft`` is a refused reply shown again (its text, copies, error);
    ``duplicates`` the clients a new lead would likely duplicate (``name``, ``candidates``);
    ``query`` the list's search when not in the address (an action's form sent it)."""
    search = (request.query_params.get("party") or "").strip()
    # the list's own search: the sender's name or address, the subject
    if query is None:
        query = (request.query_params.get("q") or "").strip()[:200]
    after = request.query_params.get("after") or None
    with work(request) as unit:
        try:
            page = unit.conversations.page(view, status, after=after, search=query)
        except ValidationFailed:  # a cursor of another order, an edited link: the first page
            page, after = unit.conversations.page(view, status, search=query), None
        rows = page.items
        counts = unit.conversations.counts(status, search=query)
        chosen = messages = party = record = None
        files_of: dict[int, list[Any]] = {}
        templates = candidates = []
        open_deals: list[Any] = []
        open_tasks: list[Any] = []
        filing: list[dict[str, Any]] = []  # what the reply may be filed on
        filed = ""
        suggested = False
        copies_allowed = False
        files_allowed = True
        ignorable: dict[str, str] = {}
        lead_name = ""
        if chosen_id is not None:
            chosen = unit.conversations.get(chosen_id)
            client = None
            messages = unit.conversations.messages(chosen.id)
            files_of = unit.attachments.of_entries(messages)
            live = request.headers.get("X-Live") == "inbox"  # the list refreshed, unseen
            if chosen.unread and not live and unit.conversations.may_update(chosen.id):
                # read by one who may act on it; one who may only read leaves it unread
                unit.conversations.mark_read(chosen.id)
            if chosen.party_id:
                # a client hidden from the reader (a colleague's client who wrote to the
                # reader's own mailbox) is not shown: the sender is, as the mail says
                party = client = unit.conversations.client_of(chosen)
                # the reply's files go on the client: offered only where they would be kept
                files_allowed = party is not None and unit.attachments.may_attach(party.id)
                if party is not None:
                    open_deals, open_tasks = _open_work(unit, party.id)
            shown = unit.conversations.record_of(chosen)  # a deal the user may see
            if shown is not None:
                record = unit.records(shown[0]).get(shown[1])
            if client is not None:
                filing, filed = _filing(unit, chosen, shown, record)
            templates = one_per_name(unit.message_templates.list(channel=chosen.channel))
            if draft is None and "template" in request.query_params:
                draft = _filled(request, unit, chosen, client, shown)
            if search and chosen.party_id is None:
                candidates = unit.parties.list(search=search, limit=10).items
            elif chosen.party_id is None:  # no search yet: the clients of the sender's domain
                candidates = unit.conversations.suggested_clients(chosen)
                suggested = bool(candidates)
            if chosen.party_id is None:  # the name an empty field gives the lead
                lead_name = unit.conversations.lead_name(chosen)["name"]
            if chosen.party_id is None and chosen.status != "closed":
                ignorable = unit.conversations.ignore_rules(chosen)  # "Not a client"
            channel = unit.crm.channels.get(chosen.channel)
            copies_allowed = channel is not None and channel.can(Capability.COPIES)
            if copies_allowed and (draft is None or "cc" not in draft):
                # a reply to all, unless the user clears it
                copies = unit.conversations.reply_copies(chosen.id)
                draft = {**(draft or {}), "cc": ", ".join(copies)}
        users = [u for u in unit.users.list() if not u.blocked]
        assignee = next((u for u in users if chosen and u.id == chosen.assignee_id), None)
        if chosen is not None and chosen.assignee_id is not None and assignee is None:
            assignee = unit.users.get(chosen.assignee_id)  # blocked since: still named
        parties = unit.parties.find_many(c.party_id for c in rows if c.party_id)
    return render(
        request,
        "inbox.html",
        {
            "title": i18n.lazy("Contact center"),
            "view": view,
            "status": status,
            "rows": rows,
            "counts": counts,
            "after": after,
            "next_cursor": page.next_cursor,
            "seen": max((m.id for m in messages or []), default=""),
            "parties": parties,
            "chosen": chosen,
            "messages": messages or [],
            "files_of": files_of,
            "party": party,
            "record": record,
            "templates": templates,
            "candidates": candidates,
            "open_deals": open_deals,
            "open_tasks": open_tasks,
            "filing": filing,
            # the choice a refused reply made, else the record the conversation is on
            "filed": (draft or {}).get("filed_on", filed),
            "suggested": suggested,
            "search": search,
            "query": query,
            "users": users,
            "assignee": assignee,
            "channel_labels": {c.name: c.label or c.name for c in unit.crm.channels.values()},
            "copies_allowed": copies_allowed,
            "files_allowed": files_allowed,
            "ignorable": ignorable,
            "lead_name": lead_name,
            "draft": draft or {},
            "duplicates": duplicates,
        },
        status=code,
    )


#: How many of a client's open deals and tasks the conversation links to (the card has all).
SHOWN_OPEN = 5


def _open_work(unit: Any, party_id: int) -> tuple[list[Any], list[Any]]:
    """The client's open deals and tasks the user sees, for the conversation to link to:
    what an answer is likely about, without opening the card."""
    can = unit.access.can
    deals: list[Any] = []
    if can("deal", "read"):
        page = unit.deals.list(filters={"party_id": party_id}, limit=50, internal=True)
        deals = [d for d in page if d.closed_at is None][:SHOWN_OPEN]
    tasks = unit.tasks.for_party(party_id)[:SHOWN_OPEN] if can("task", "read") else []
    return deals, tasks


#: how a record the reply may be filed on is introduced in the choice
FILING_LABELS = {"deal": i18n.lazy("Deal"), "task": i18n.lazy("Task")}


def _filing(
    unit: Any, chosen: Any, shown: tuple[str, int] | None, record: Any
) -> tuple[list[dict[str, Any]], str]:
    """The open deals and tasks the reply may file the conversation on (those of its client
    the user may change, and the one it is on), and the one it is on (``""``: the client)."""
    choices = unit.conversations.filing_choices(chosen)
    if not choices:
        return [], ""
    current = f"{shown[0]}:{shown[1]}" if shown is not None else ""
    offered = [
        {"value": f"{entity}:{row.id}", "label": FILING_LABELS[entity], "title": row.title}
        for entity, row in choices
    ]
    if current and current not in {o["value"] for o in offered}:  # read-only, still shown
        offered.insert(
            0, {"value": current, "label": FILING_LABELS.get(shown[0], ""), "title": record.title}
        )
    return offered, current


def _record_choice(value: Any) -> tuple[str, int] | None:
    """The reply form's ``filed_on`` (``deal:12``, ``task:5``; empty: the client alone)."""
    text = str(value or "").strip()
    if not text:
        return None
    entity, _, number = text.partition(":")
    record_id = as_id(number)
    if not entity or record_id is None:
        raise ValidationFailed({"filed_on": [NOT_AN_ID]})
    return entity, record_id


def one_per_name(templates: list[Any]) -> list[Any]:
    """One entry per template, whatever its language versions (its oldest version stands
    for it: the client's language chooses the version when it is filled in)."""
    first: dict[str, Any] = {}
    for template in sorted(templates, key=lambda t: t.id):
        first.setdefault(template.name, template)
    return sorted(first.values(), key=lambda t: t.name)


def _filled(
    request: Request, unit: Any, chosen: Any, client: Any, record: tuple[str, int] | None
) -> dict[str, Any]:
    """The reply's draft filled from the template chosen (``?template=<id>``) for this
    conversation's client, to read and edit before sending; or what went wrong, named."""
    try:
        template_id = optional_id(request.query_params.get("template"), "template")
        if template_id is None:
            return {}
        try:
            rendered = unit.message_templates.render_for(
                template_id,
                channel=chosen.channel,
                party_id=client.id if client is not None else None,
                record=record,
            )
        except NotFound:
            raise ValidationFailed({"template": [i18n.lazy("not found")]}) from None
    except ValidationFailed as failed:
        return {"error": error_text(request, failed)}
    return {"body": rendered.body, "template_id": template_id, "unfilled": rendered.unfilled}


def _store_uploads(unit: Any, conversation_id: int, value: Any) -> tuple[int, ...]:
    """Files chosen in the reply form, kept on the conversation's client (and its deal or
    task); undone with the rest when the reply is refused."""
    items = value if isinstance(value, list) else [value]
    uploads = [item for item in items if getattr(item, "filename", None)]
    if not uploads:
        return ()
    conversation = unit.conversations.get(conversation_id)
    record = unit.conversations.record_of(conversation)
    if conversation.party_id is None and record is None:
        raise ValidationFailed(
            {"files": [i18n.lazy("a file is kept on a client: create a lead or attach first")]}
        )
    return tuple(
        unit.attachments.add(
            upload.filename, upload.file, party_id=conversation.party_id, record=record,
            content_type=upload.content_type,
        ).id
        for upload in uploads
    )  # fmt: skip


def act(request: Request) -> Response:
    """One action on a conversation (``action``: assign, reply, snooze, close, reopen, lead,
    attach, ignore: "Not a client", ``scope`` sender or domain)."""
    conversation_id = int(request.path_params["conversation_id"])
    data = posted(request)
    action = str(data.get("action", ""))
    view, status, query = _list_of(data)
    back = _back(conversation_id, view, status, query)
    message = i18n.lazy("Saved.")
    draft: dict[str, Any] | None = None
    duplicates: dict[str, Any] | None = None
    try:
        with work(request) as unit:
            service = unit.conversations
            seen = optional_id(data.get("seen"), "seen")  # the last message the page showed
            if action == "assign":
                who = data.get("assignee_id")
                user_id = request.state.user.id if who == "me" else optional_id(who, "assignee_id")
                # whom the page showed it assigned to: taking it from someone is refused
                expected = optional_id(data["expected"], "expected") if "expected" in data else ANY
                service.assign(conversation_id, user_id, expected=expected, seen=seen)
                if user_id == request.state.user.id:  # taken: shown among one's own
                    back = _back(conversation_id, "mine", status, query)
                if user_id is None:
                    message = i18n.lazy("Back in the unassigned queue.")
                else:
                    label = unit.users.get(user_id).label
                    with i18n.activate(request.state.locale):
                        message = i18n.gettext("Assigned to %(user)s.") % {"user": label}
            elif action == "reply":
                try:
                    if "filed_on" in data:  # the deal or task chosen: the conversation moves
                        record = _record_choice(data.get("filed_on"))
                        if record != service.record_of(service.get(conversation_id)):
                            try:
                                service.file_on(conversation_id, record)
                            except (NotFound, PermissionDenied):  # named, the reply kept
                                found = {
                                    "filed_on": [
                                        i18n.lazy("choose one of the deals and tasks offered")
                                    ]
                                }
                                raise ValidationFailed(found) from None
                    service.reply(
                        conversation_id,
                        body=str(data.get("body") or "") or None,
                        template_id=optional_id(data.get("template_id"), "template_id"),
                        cc=tuple(address_list(data.get("cc"))),
                        attachment_ids=_store_uploads(unit, conversation_id, data.get("files")),
                    )
                    if data.get("then") == "close":  # unless the client wrote meanwhile
                        service.close(conversation_id, seen=seen)
                        message = i18n.lazy("Reply queued and the conversation closed.")
                except ValidationFailed:
                    draft = {  # shown again with what was typed, not lost behind a redirect
                        "body": str(data.get("body") or ""),
                        "cc": str(data.get("cc") or ""),
                        "template_id": as_id(data.get("template_id")),
                        **({"filed_on": str(data["filed_on"])} if "filed_on" in data else {}),
                    }
                    raise
                if data.get("then") != "close":
                    message = i18n.lazy("Reply queued.")
            elif action == "snooze":
                # a time typed in wins over the hours, which always come with their default
                chosen = local_time(data.get("until"), request.state.locale, "until")
                if chosen:
                    until = dt.datetime.fromisoformat(chosen)
                elif data.get("hours") == "tomorrow":  # 9:00 on the agent's clock
                    zone = request.state.locale.zone
                    day = dt.datetime.now(zone).date() + dt.timedelta(days=1)
                    until = dt.datetime.combine(day, dt.time(9), tzinfo=zone)
                else:
                    hours = optional_int(data.get("hours"), "hours", low=1, high=MOST_SNOOZE_HOURS)
                    if not hours:
                        raise ValidationFailed({"until": [i18n.lazy("choose when it comes back")]})
                    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
                service.snooze(conversation_id, until, seen=seen)
                message = i18n.lazy("Snoozed.")
            elif action == "close":
                service.close(conversation_id, seen=seen)
                message = i18n.lazy("Closed.")
            elif action == "reopen":
                service.reopen(conversation_id)
                message = i18n.lazy("Reopened.")
            elif action == "lead":
                name = str(data.get("name") or "") or None
                try:
                    party = service.create_lead(
                        conversation_id, name, confirm_duplicates=data.get("confirm") == "1"
                    )
                except DuplicatesFound as found:
                    # attach to one of them, or confirm: shown with the conversation
                    duplicates = {"name": name or "", "candidates": found.candidates}
                    raise
                message = i18n.lazy("Lead created.")
                back = _back(conversation_id, "unassigned", status, query, lead=party.id)
            elif action == "ignore":
                rule = service.ignore_sender(
                    conversation_id, str(data.get("scope") or "sender"), seen=seen
                )
                with i18n.activate(request.state.locale):
                    message = i18n.gettext(
                        "Closed; mail from %(rule)s will no longer be recorded."
                    ) % {"rule": rule}
            elif action == "attach":
                party_id = optional_id(data.get("party_id"), "party_id")
                if party_id is None:
                    raise ValidationFailed({"party_id": [i18n.lazy("choose a client")]})
                service.attach(conversation_id, party_id)
                message = i18n.lazy("Attached to the client.")
            else:
                raise CrmkitError(f"unknown action {action!r}")
    except CrmkitError as failed:
        if duplicates is not None:
            return _page(
                request,
                view,
                status,
                conversation_id,
                code=409,
                duplicates=duplicates,
                query=query,
            )
        if draft is not None:
            draft["error"] = error_text(request, failed)
            return _page(request, view, status, conversation_id, draft, 422, query=query)
        return redirect(request, back, error_text(request, failed), kind="error")
    return redirect(request, back, message)
