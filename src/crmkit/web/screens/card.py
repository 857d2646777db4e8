"""The client card: everything about one party, one click from each other.

Details and contact points, groups and tags, pinned notes, the whole timeline newest first
(filtered by kind, a keyset page at a time), open tasks and reminders, pipelined records,
files and meetings, and a note form with @mentions.  A party outside the user's scope is a
404, like a missing one (the services raise ``NotFound``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from crmkit.errors import DuplicatesFound, ValidationFailed
from crmkit.services.timeline import CALL_OUTCOMES
from crmkit.web import i18n
from crmkit.web.api.params import timeline_kinds
from crmkit.web.forms import (
    custom_values,
    id_list,
    local_time,
    optional_id,
    optional_version,
    refuse_nul,
    required_id,
)
from crmkit.web.links import party_url
from crmkit.web.pages import error_text, is_htmx, posted, redirect, render, work

#: States of sent messages the timeline shows (listed so that the catalogs collect them).
MESSAGE_STATES = (
    i18n.lazy("queued"),
    i18n.lazy("sent"),
    i18n.lazy("failed"),
    i18n.lazy("bounced"),
)

TIMELINE_PAGE = 30
#: Entities shown in the card's own sections rather than as "linked records".
OWN_SECTIONS = {
    "party",
    "activity",
    "contact_point",
    "attachment",
    "task",
    "reminder",
    "calendar_event",
}


def _party_id(request: Request) -> int:
    return int(request.path_params["party_id"])


def timeline_context(
    unit: Any, party_id: int, params: Any, request: Request | None = None
) -> dict[str, Any]:
    """A page of the timeline with the names needed to show it.

    ``kind`` is read as the API's timeline reads it (:func:`timeline_kinds`): a kind the
    timeline does not know leaves the timeline empty with the API's refusal in
    ``timeline_refusal`` (in the language of ``request``'s user) for the page to show.

    The filters offered (``all_kinds``) are the declared kinds found on this party's
    timeline, in their declared order, and the chosen ones even when none is found.
    """
    try:
        kinds = timeline_kinds(unit, params)
        page = unit.timeline.list(
            party_id, kinds=kinds or None, after=params.get("after") or None, limit=TIMELINE_PAGE
        )
    except ValidationFailed as exc:
        if request is None:
            raise
        return {
            "timeline": [],
            "files_of": {},
            "timeline_next": None,
            "kinds": [],
            "all_kinds": offered_kinds(unit, party_id, []),
            "timeline_refusal": error_text(request, exc),
        }
    entries = list(page)
    return {
        "timeline": entries,
        "files_of": unit.attachments.of_entries(entries),
        "timeline_next": page.next_cursor,
        "kinds": kinds,
        # a further page adds entries only: its filters are already on the page
        "all_kinds": [] if params.get("after") else offered_kinds(unit, party_id, kinds),
    }


def offered_kinds(unit: Any, party_id: int, chosen: Any) -> list[Any]:
    """The timeline kinds the card offers as filters: those declared (core, plugins) that
    occur on the party's timeline, plus the chosen ones, so a filter with no entries stays
    visible (and can be seen to be on)."""
    present = unit.timeline.kinds_of(party_id) | set(chosen or ())
    return [kind for name, kind in unit.crm.timeline_kinds.items() if name in present]


def card(request: Request) -> Response:
    """The card of one client."""
    crm = request.app.state.crm
    party_id = _party_id(request)
    with work(request) as unit:
        party = unit.parties.get(party_id)
        if party.id != party_id:  # merged into another client: show that one
            return redirect(request, party_url(party.id))
        context = timeline_context(unit, party_id, request.query_params, request)
        users = unit.users.list()
        options = unit.moves.options(party) if party.pipeline else []
        organisation = unit.parties.find(party.organisation_id) if party.organisation_id else None
        people = unit.parties.contacts_of(party.id) if party.kind == "organisation" else []
        linked = []
        for entity in crm.entities:
            if entity.name in OWN_SECTIONS or not entity.party_attr:
                continue
            if not unit.access.can(entity.name, "read"):
                continue
            # the party link narrows it even when the entity offers users no such filter
            page = unit.records(entity.name).list(
                filters={entity.party_attr: party.id}, limit=20, internal=True
            )
            if len(page):
                linked.append((entity, list(page)))
        # a role may read clients without tasks, reminders or meetings (a cashier): the
        # card leaves those sections empty for them rather than refusing the whole card
        can = unit.access.can
        reminders = (
            unit.reminders.list(filters={"party_id": party.id, "status": "pending"}, limit=20)
            if can("reminder", "read")
            else []
        )
        panels = card_panels(request, unit, party)
        definitions = unit.custom_fields.definitions("party")
        all_groups = unit.groups.tree()
        context.update(
            party=party,
            contacts=list(party.contact_points),
            title=party.name,
            tags=unit.parties.tags_of(party),
            groups=unit.groups.groups_of(party.id),
            all_groups=all_groups,
            pinned=unit.timeline.pinned(party.id),
            tasks=unit.tasks.for_party(party.id) if can("task", "read") else [],
            reminders=list(reminders),
            files=unit.attachments.for_party(party.id) if can("attachment", "read") else [],
            events=list(
                unit.calendar.list(filters={"party_id": party.id}, order=["-starts_at"], limit=10)
            )
            if can("calendar_event", "read")
            else [],
            linked=linked,
            panels=panels,
            options=options,
            pipeline=crm.pipelines.get(party.pipeline) if party.pipeline else None,
            organisation=organisation,
            people=people,
            users={u.id: u for u in users},
            colleagues=[u for u in users if not u.blocked],
            # only who may read the client hears of a note on it: the note box offers those
            call_outcomes=CALL_OUTCOMES,
            mentionable=unit.timeline.may_be_told(party.id) if can("activity", "create") else [],
            definitions=definitions,
            deal_pipelines=crm.pipelines_for("deal"),
            may={
                "update": unit.access.can("party", "update"),
                "delete": unit.access.can("party", "delete"),
                "note": unit.access.can("activity", "create"),
                "call": unit.access.can("activity", "create"),
                "task": unit.access.can("task", "create"),
                "reminder": unit.access.can("reminder", "create"),
                "deal": unit.access.can("deal", "create"),
                # a file is an edit of its client (AttachmentService.add): no form that
                # would be refused for a client the reader may only read
                "file": unit.attachments.may_attach(party.id),
                "meeting": unit.access.can("calendar_event", "create"),
                "group": unit.access.can("party", "update") and bool(all_groups),
            },
            now=dt.datetime.now(dt.UTC),
        )
    return render(
        request, "card.html", context, status=422 if "timeline_refusal" in context else 200
    )


def card_panels(
    request: Request, unit: Any, record: Any, entity: str = "party"
) -> list[tuple[Any, dict[str, Any]]]:
    """``(panel, its context)`` of every plugin panel the viewer may see on this page."""
    from crmkit.web.pages import actor_can

    shown = []
    for panel in request.app.state.crm.card_panels:
        if panel.entity != entity:
            continue
        if panel.permission is not None and not actor_can(request, *panel.permission):
            continue
        values = panel.context(unit, record)
        if values is not None:
            shown.append((panel, dict(values)))
    return shown


def timeline(request: Request) -> Response:
    """The timeline section alone (htmx: kind filter, next page)."""
    party_id = _party_id(request)
    with work(request) as unit:
        party = unit.parties.get(party_id)
        if party.id != party_id:  # merged into another client: show that one
            return redirect(request, party_url(party.id))
        context = timeline_context(unit, party_id, request.query_params, request)
        context["users"] = {u.id: u for u in unit.users.list()}
    context["party"] = party
    refused = "timeline_refusal" in context
    after = request.query_params.get("after") and not refused
    template = "timeline_items.html" if after else "timeline.html"
    return render(request, template, context, status=422 if refused else 200)


def add_call(request: Request) -> Response:
    """Record a call made to this client: how it ended and what was said."""
    party_id = _party_id(request)
    data = posted(request)
    with work(request) as unit:
        unit.timeline.add_call(
            party_id, outcome=str(data.get("outcome", "")), body=str(data.get("body", ""))
        )
    return redirect(request, party_url(party_id) + "#timeline", "Call recorded.")


def add_note(request: Request) -> Response:
    """Write a note (``@username`` mentions notify colleagues at once)."""
    party_id = _party_id(request)
    data = posted(request)
    with work(request) as unit:
        note = unit.timeline.add_note(
            party_id=party_id, body=str(data.get("body", "")), pinned=bool(data.get("pinned"))
        )
        not_told = list((note.data or {}).get("not_told") or ())
    warning = None
    if not_told:  # mentioned, but they may not see this client: the writer should know
        with i18n.activate(request.state.locale):
            warning = i18n.gettext("Not told, as they cannot see this client: %(names)s") % {
                "names": ", ".join(f"@{name}" for name in not_told)
            }
    if is_htmx(request):
        with work(request) as unit:
            party = unit.parties.get(party_id)
            context = timeline_context(unit, party_id, request.query_params)
            context["users"] = {u.id: u for u in unit.users.list()}
        context["party"] = party
        response = render(request, "timeline.html", context)
        if warning:
            toast = {"crmkit:toast": {"text": warning, "kind": "error"}}
            response.headers["HX-Trigger"] = json.dumps(toast)
        return response
    if warning:
        return redirect(request, party_url(party_id), warning, kind="error")
    return redirect(request, party_url(party_id), "Note added.")


def pin_note(request: Request) -> Response:
    """Pin or unpin a note on top of the card."""
    data = posted(request)
    with work(request) as unit:
        note = unit.timeline.pin(int(request.path_params["activity_id"]), bool(data.get("pinned")))
        party_id = note.party_id
    return redirect(request, party_url(party_id) if party_id else "/")


#: The new client form's heading, and the flash after "Save and add another" (message ids).
NEW_CLIENT = i18n.lazy("New client")
CLIENT_SAVED = i18n.lazy("Client created: %(name)s")


def new(
    request: Request,
    *,
    title: str = NEW_CLIENT,
    another: bool = False,
    saved: str = CLIENT_SAVED,
) -> Response:
    """Create a client: a form, then the card of the new client.

    A deployment's own screen may reuse the form: ``title`` (a message id) heads it as the
    button that led there is named (denaq's "New lead"); ``another`` adds a "Save and add
    another" button, which saves and comes back to an empty form at the same address with a
    flash (``saved``, a message id taking ``%(name)s``) linking to the saved client.
    """
    with work(request) as unit:
        unit.access.require("party", "create")
        definitions = unit.custom_fields.definitions("party")
    if request.method == "GET":
        return render(
            request,
            "client_form.html",
            {
                "title": title,
                "another": another,
                "party": None,
                "definitions": definitions,
                # ?kind=person&organisation_id=7: a contact person of organisation 7
                "values": dict(request.query_params),
            },
        )
    data = posted(request)
    values = _party_values(data, definitions)
    points = []
    for kind in ("phone", "email"):
        if str(data.get(kind, "")).strip():
            points.append({"kind": kind, "value": str(data[kind]).strip(), "is_primary": True})
    if points:
        values["contact_points"] = points
    person = _contact_person(values)
    confirmed = bool(data.get("confirm_duplicates"))
    try:
        with work(request) as unit:
            party = unit.parties.create(values, confirm_duplicates=confirmed)
            if person:
                # the people of an organisation are many and alike by name: not screened
                unit.parties.create(
                    {**person, "kind": "person", "organisation_id": party.id},
                    confirm_duplicates=True,
                )
    except DuplicatesFound as found:
        from crmkit.web.screens.clientbase import duplicates_found

        return render(
            request,
            "client_form.html",
            {
                "title": title,
                "another": another,
                "party": None,
                "definitions": definitions,
                "values": data,
                **duplicates_found(request, values, found),
            },
            status=409,
        )
    except ValidationFailed as failed:
        from crmkit.web.pages import error_text

        return render(
            request,
            "client_form.html",
            {
                "title": title,
                "another": another,
                "party": None,
                "definitions": definitions,
                "values": data,
                "error": error_text(request, failed),
            },
            status=422,
        )
    if another and data.get("another"):
        with i18n.activate(request.state.locale):
            text = i18n.gettext(saved) % {"name": party.name}
            opens = i18n.gettext("Open")
        return redirect(request, request.url.path, text, link=(party_url(party.id), opens))
    return redirect(request, party_url(party.id), "Client created.")


def _contact_person(values: dict[str, Any]) -> dict[str, Any]:
    """The person named on a new organisation's form (first and last name, position): taken
    out of the organisation's values, to be made its contact person; empty when none was.

    An organisation has no first name of its own: a name typed there is the person the user
    spoke to, whom the card lists under its people (and whom a pipeline guard such as
    denaq's "a contact person first" counts)."""
    if values.get("kind", "organisation") != "organisation":
        return {}
    person = {k: values.pop(k) for k in ("first_name", "last_name", "position") if k in values}
    person = {k: v for k, v in person.items() if str(v or "").strip()}
    if not (person.get("first_name") or person.get("last_name")):
        # a position alone names nobody: it stays the organisation's, as before
        if person.get("position"):
            values["position"] = person["position"]
        return {}
    return person


def _party_values(data: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in ("kind", "name", "first_name", "last_name", "position", "source", "description"):
        if key in data:
            values[key] = str(data[key]).strip() or (None if key != "description" else "")
    if values.get("kind") == "person" and not values.get("name"):
        values.pop("name", None)
    if "customer_type" in data:
        values["customer_type"] = str(data["customer_type"]) or None
    if "language" in data:
        values["language"] = str(data["language"]).strip() or None
    if "organisation_id" in data:
        values["organisation_id"] = optional_id(data["organisation_id"], "organisation_id")
    custom = custom_values(data, definitions)
    if custom:
        values["custom"] = custom
    return values


def edit(request: Request) -> Response:
    """Edit a client's details (stale edits are refused: ``version`` of the form)."""
    party_id = _party_id(request)
    with work(request) as unit:
        party = unit.parties.get(party_id, action="update")
        definitions = unit.custom_fields.definitions("party")
    if request.method == "GET":
        return render(
            request,
            "client_form.html",
            {"title": party.name, "party": party, "definitions": definitions, "values": {}},
        )
    data = posted(request)
    values = _party_values(data, definitions)
    with work(request) as unit:
        unit.parties.update(
            party_id, values, expected_version=optional_version(data.get("version"))
        )
    return redirect(request, party_url(party_id), "Saved.")


def add_contact(request: Request) -> Response:
    """Add a phone, email, messenger handle or website."""
    party_id = _party_id(request)
    data = posted(request)
    with work(request) as unit:
        unit.parties.add_contact(
            party_id,
            str(data.get("kind", "phone")),
            str(data.get("value", "")),
            label=str(data.get("label", "")) or None,
        )
    return redirect(request, party_url(party_id) + "#contacts", "Contact added.")


def remove_contact(request: Request) -> Response:
    """Remove a contact point."""
    party_id = _party_id(request)
    with work(request) as unit:
        unit.parties.remove_contact(party_id, int(request.path_params["contact_id"]))
    return redirect(request, party_url(party_id) + "#contacts", "Contact removed.")


async def upload(request: Request) -> Response:
    """Attach a file (size-limited by ``storage.max_upload_mb``)."""
    party_id = _party_id(request)
    async with request.form() as form:  # closes the spooled upload however this ends
        refuse_nul(form)
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not upload.filename:
            raise ValidationFailed({"file": ["choose a file"]})
        document_type = str(form.get("document_type", "")).strip() or None
        with work(request) as unit:
            unit.attachments.add(
                upload.filename,
                upload.file,
                party_id=party_id,
                document_type=document_type,
                content_type=upload.content_type,
            )
    return redirect(request, party_url(party_id) + "#files", "File attached.")


async def download(request: Request) -> Response:
    """A visible file's content."""
    from urllib.parse import quote

    with work(request) as unit:
        attachment, stream = unit.attachments.open(int(request.path_params["attachment_id"]))
        filename, content_type = attachment.filename, attachment.content_type

    def chunks():  # type: ignore[no-untyped-def]
        with stream:
            while chunk := stream.read(1 << 16):
                yield chunk

    disposition = f"attachment; filename*=UTF-8''{quote(filename)}"
    return StreamingResponse(
        chunks(), media_type=content_type, headers={"Content-Disposition": disposition}
    )


def add_task(request: Request) -> Response:
    """A task about this client."""
    party_id = _party_id(request)
    data = posted(request)
    locale = request.state.locale
    with work(request) as unit:
        unit.tasks.create(
            title=str(data.get("title", "")),
            party_id=party_id,
            assignee_id=optional_id(data.get("assignee_id"), "assignee_id")
            or request.state.user.id,
            deadline=local_time(data.get("deadline"), locale, "deadline"),
        )
    return redirect(request, party_url(party_id) + "#tasks", "Task added.")


def add_reminder(request: Request) -> Response:
    """A reminder about this client, for the user and chosen colleagues."""
    party_id = _party_id(request)
    data = posted(request)
    locale = request.state.locale
    recipients = [{"user_id": u} for u in id_list(data.get("recipients"), "recipients")]
    with work(request) as unit:
        unit.reminders.create(
            text=str(data.get("text", "")),
            remind_at=local_time(data.get("remind_at"), locale, "remind_at"),
            party_id=party_id,
            recipients=recipients or [{"user_id": request.state.user.id}],
        )
    return redirect(request, party_url(party_id) + "#reminders", "Reminder set.")


def add_deal(request: Request) -> Response:
    """A deal with this client."""
    party_id = _party_id(request)
    data = posted(request)
    values: dict[str, Any] = {"title": str(data.get("title", "")), "party_id": party_id}
    if str(data.get("amount", "")).strip():
        values["amount"] = str(data["amount"]).replace(" ", "").replace(",", ".")
    if data.get("pipeline"):
        values["pipeline"] = str(data["pipeline"])
    with work(request) as unit:
        deal = unit.deals.create(values)
    return redirect(request, f"/records/deal/{deal.id}", "Deal created.")


def add_group(request: Request) -> Response:
    """Put this client in a group."""
    party_id = _party_id(request)
    data = posted(request)
    with work(request) as unit:
        unit.groups.add_members(required_id(data.get("group_id"), "group_id"), [party_id])
    return redirect(request, party_url(party_id), "Added to the group.")


def set_tags(request: Request) -> Response:
    """Replace the client's tags (comma-separated)."""
    party_id = _party_id(request)
    data = posted(request)
    names = [t.strip() for t in str(data.get("tags", "")).split(",") if t.strip()]
    with work(request) as unit:
        unit.parties.update(party_id, {"tags": names})
    return redirect(request, party_url(party_id), "Saved.")


def kind_label(kind: str) -> str:
    """A timeline kind in the user's language."""
    return i18n.gettext(kind)
