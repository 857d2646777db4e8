"""Running automation rules: matching events, queueing runs, doing the actions.

* :func:`on_event` (a ``crmkit_handle_event`` implementation) matches the event against
  every enabled rule and queues each match as an ``automation`` outbox item, in the
  change's transaction (admins' rules are kept by each process for ``RULES_TTL`` seconds).
* :func:`scan_clock` (the schedule ``crmkit.automation.clock``) queues the time-based
  triggers: bookings starting within N hours, parties idle for N days.  The outbox's
  idempotency key makes each (rule, record, moment) queue once however often it scans;
  a run skipped because its rule was changed, switched off or deleted since gives the key
  back, so the record is queued again under the rule as it is now (if still due).
* :func:`run_queued` (the ``automation`` outbox handler) runs one match in a unit of work
  acting as the assistant: holds and loads the subject (runs on one record take turns),
  checks the condition, does the actions, writes them on the timeline.  A failure rolls
  all of it back and is recorded in ``automation_failure`` (and shown to admins); errors
  a retry cannot fix are not retried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import select, update

from crmkit import events
from crmkit.automation import Rule, definition_digest, rule_from_data
from crmkit.channels import PermanentFailure
from crmkit.clock import utcnow
from crmkit.db import lock_row
from crmkit.errors import CrmkitError, ValidationFailed
from crmkit.events import DomainEvent
from crmkit.filters import BUILTIN_FIELDS, ComputedCheck, compile_condition, evaluate
from crmkit.i18n import Label, Message, Moment, message
from crmkit.jobs import Delivery
from crmkit.model import AutomationFailure, AutomationRule, User

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.services.unit import UnitOfWork

log = logging.getLogger(__name__)

KIND = "automation"


# -- which rules ---------------------------------------------------------------------------


def code_rules(crm: CRM) -> list[Rule]:
    """Rules plugins defined in code (``crmkit_register_automations``)."""
    return list(crm.automations.values())


def data_rules(session: Any, *, enabled_only: bool = True) -> list[Rule]:
    """Rules admins defined, each with its row's id and its version; a stored rule that no
    longer validates is skipped (logged)."""
    query = select(AutomationRule)
    if enabled_only:
        query = query.where(AutomationRule.enabled.is_(True))
    rules = []
    for row in session.scalars(query.order_by(AutomationRule.name)):
        try:
            rule = rule_from_data(row.name, row.trigger, row.actions, row.condition, row.label)
        except ValidationFailed as exc:
            log.warning("automation rule %s is invalid: %s", row.name, exc)
            continue
        version = definition_digest(rule, row.created_at)
        rules.append(attrs.evolve(rule, row_id=row.id, version=version))
    return rules


#: Seconds a process keeps admins' rules before reading them again (edits made in the
#: process itself apply at once; other processes see them within this time).
RULES_TTL = 5.0

_cache: weakref.WeakKeyDictionary[Any, tuple[float, list[Rule]]] = weakref.WeakKeyDictionary()


def forget_rules(crm: CRM) -> None:
    """Drop this process's copy of the admins' rules (after an edit)."""
    _cache.pop(crm, None)


class _Rules:
    """Every enabled rule, for one unit of work."""

    def __init__(self, work: UnitOfWork) -> None:
        import time

        now = time.monotonic()
        cached = _cache.get(work.crm)
        if cached is None or now - cached[0] > RULES_TTL:
            cached = _cache[work.crm] = (now, data_rules(work.session))
        code = code_rules(work.crm)
        names = {rule.name for rule in code}
        # a plugin installed later may bring a rule named like an admin's: the code rule
        # wins (it is the one a queued run finds by name), the admin's is left out
        self.all = code + [rule for rule in cached[1] if rule.name not in names]


def rules_of(work: UnitOfWork) -> list[Rule]:
    """The enabled rules (admins' ones read at most every few seconds per process)."""
    return work.service("automation_rules", _Rules).all


def find_rule(crm: CRM, session: Any, name: str) -> Rule | None:
    """An enabled rule (code or data) by name; ``None`` if deleted or switched off."""
    if name in crm.automations:
        return crm.automations[name]
    return next((r for r in data_rules(session) if r.name == name), None)


# -- matching events ---------------------------------------------------------------------------


def triggers_of(event: DomainEvent) -> list[tuple[str, dict[str, Any]]]:
    """The automation triggers a domain event stands for, each with what narrows it."""
    if event.name == events.RECORD_CREATED:
        found = [("record.created", {})]
        if event.entity == "calendar_event":
            found.append(("booking.made", {}))
        return found
    if event.name == events.STAGE_MOVED:
        return [
            ("stage.entered", {"stage": event.data.get("to")}),
            ("stage.left", {"stage": event.data.get("from")}),
        ]
    if event.name == events.RECORD_UPDATED:
        return [("field.changed", {"field": f}) for f in _changed_fields(event)]
    if event.name in ("payment.received", "task.overdue"):
        return [(event.name, {})]
    return []


def _changed_fields(event: DomainEvent) -> list[str]:
    """The fields a ``record.updated`` event changed; custom fields as ``custom.KEY`` (the
    event carries them as one ``custom`` change of the whole mapping)."""
    fields = []
    for field, change in (event.data.get("changes") or {}).items():
        if field == "custom" and isinstance(change, list | tuple) and len(change) == 2:
            old, new = (value if isinstance(value, Mapping) else {} for value in change)
            fields += [f"custom.{k}" for k in sorted({*old, *new}) if old.get(k) != new.get(k)]
        else:
            fields.append(field)
    return fields


def _matches(rule: Rule, trigger: str, narrow: Mapping[str, Any], entity: str) -> bool:
    when = rule.when
    if when.event != trigger:
        return False
    if when.entity and when.entity != entity:
        return False
    if when.stage and when.stage != narrow.get("stage"):
        return False
    return not (when.field and when.field != narrow.get("field"))


def on_event(event: DomainEvent, work: UnitOfWork) -> None:
    """Queue a run of every rule the event matches (nothing done by the assistant counts)."""
    if work.actor.assistant or event.rules_paused:  # set at emit, inside paused()
        return
    found = triggers_of(event)
    if not found:
        return
    rules = rules_of(work)
    if not rules:
        return
    for trigger, narrow in found:
        for rule in rules:
            if _matches(rule, trigger, narrow, event.entity):
                queue_run(
                    work,
                    rule,
                    trigger,
                    event.entity,
                    event.record_id,
                    event.data,
                    party_id=event.party_id,
                )


def queue_run(
    work: UnitOfWork,
    rule: Rule,
    trigger: str,
    entity: str,
    record_id: int | None,
    data: Mapping[str, Any],
    *,
    party_id: int | None = None,
    key: str | None = None,
) -> None:
    """Write the outbox item that makes a worker run ``rule`` for this event.

    An admin's rule is named with its row's id and version too: the worker runs it only
    while the stored rule still has both (see :func:`_run`).
    """
    from crmkit.services.records import jsonable

    payload: dict[str, Any] = {
        "rule": rule.name,
        "trigger": trigger,
        "entity": entity,
        "record_id": record_id,
        "party_id": party_id,
        "event": {k: jsonable(v) for k, v in data.items()},
    }
    if rule.row_id is not None:
        payload.update(rule_id=rule.row_id, version=rule.version)
    work.outbox.add(KIND, payload, idempotency_key=key, party_id=party_id, max_attempts=3)


# -- time-based triggers -------------------------------------------------------------------


#: The triggers :func:`scan_clock` raises, each (rule, record, moment) once.
CLOCK_TRIGGERS = ("booking.upcoming", "record.idle")

#: Records :func:`scan_clock` reads at a time, and new runs it queues per rule and scan (a
#: rule that suddenly matches many records queues the rest in the next scans).
SCAN_PAGE = 500
SCAN_QUEUE_LIMIT = 1000


def _clock_candidates(
    work: UnitOfWork, rule: Rule, moment: dt.datetime
) -> Iterable[list[tuple[int, int | None, str]]]:
    """Pages of (id, party id, moment) of the records a time-based rule is due for.

    Every due record is reached: the pages follow the order of an index (booking start or
    last activity, then id), so none is left out behind already queued ones.
    """
    from sqlalchemy import and_, or_

    from crmkit.model import CalendarEvent, Party

    if rule.when.event == "booking.upcoming":
        horizon = moment + dt.timedelta(hours=float(rule.when.hours or 0))
        at, model = CalendarEvent.starts_at, CalendarEvent
        query = select(CalendarEvent.id, CalendarEvent.starts_at, CalendarEvent.party_id).where(
            CalendarEvent.starts_at > moment,
            CalendarEvent.starts_at <= horizon,
            CalendarEvent.status != "cancelled",
        )
    else:
        cutoff = moment - dt.timedelta(days=float(rule.when.days or 0))
        at, model = Party.last_activity_at, Party
        query = select(Party.id, Party.last_activity_at, Party.id.label("party_id")).where(
            Party.last_activity_at < cutoff,
            Party.merged_into_id.is_(None),  # a merged-away client lives on in its survivor
        )
    after: tuple[Any, int] | None = None
    while True:
        page = query
        if after is not None:
            page = page.where(or_(at > after[0], and_(at == after[0], model.id > after[1])))
        rows = work.session.execute(page.order_by(at, model.id).limit(SCAN_PAGE)).all()
        if not rows:
            return
        yield [(r[0], r[2], r[1].isoformat()) for r in rows]
        if len(rows) < SCAN_PAGE:
            return
        after = (rows[-1][1], rows[-1][0])


def scan_clock(crm: CRM, now: dt.datetime | None = None, **_: Any) -> int:
    """Queue ``booking.upcoming`` and ``record.idle`` matches; how many were new.

    Each rule is scanned in its own savepoint: one that fails (a bad stored value, a
    database error) is recorded as the rule's failure for the admin, the others go on.
    """
    moment = now or utcnow()
    queued = 0
    failed: list[tuple[Rule, str, str]] = []
    with crm.system() as work:
        rules = [r for r in rules_of(work) if r.when.event in CLOCK_TRIGGERS]
        for rule in rules:
            entity = "calendar_event" if rule.when.event == "booking.upcoming" else "party"
            if rule.when.entity and rule.when.entity != entity:
                continue
            try:
                with work.session.begin_nested():
                    queued += _scan_rule(work, rule, entity, moment)
            except Exception as exc:  # one rule's trouble must not stop the others' reminders
                from crmkit.jobs.delivery import error_text

                log.exception("automation rule %s: the clock scan failed", rule.name)
                failed.append((rule, entity, error_text(exc)))
    for rule, entity, error in failed:  # after the scan's commit: SQLite has one writer
        record_failure(
            crm, {"rule": rule.name, "trigger": rule.when.event, "entity": entity}, error
        )
    return queued


def clock_key(rule_name: str, entity: str, record_id: Any, at: Any) -> str:
    """The outbox key that queues one clock run once: the rule's name as written while the
    key fits the column (200 characters), a digest of it for longer names (a rule may be
    named with up to 200 characters itself)."""
    key = f"automation:{rule_name}:{entity}:{record_id}:{at}"
    if len(key) <= 200:
        return key
    digest = hashlib.sha256(rule_name.encode("utf-8")).hexdigest()[:32]
    return f"automation:#{digest}:{entity}:{record_id}:{at}"


def _scan_rule(work: UnitOfWork, rule: Rule, entity: str, moment: dt.datetime) -> int:
    """Queue one time-based rule's new matches (at most ``SCAN_QUEUE_LIMIT``); how many."""
    from crmkit.model import OutboxItem

    new = 0
    for page in _clock_candidates(work, rule, moment):
        keys = {
            clock_key(rule.name, entity, record_id, at): (record_id, party_id, at)
            for record_id, party_id, at in page
        }
        done = set(
            work.session.scalars(
                select(OutboxItem.idempotency_key).where(OutboxItem.idempotency_key.in_(list(keys)))
            )
        )
        for key, (record_id, party_id, moment_key) in keys.items():
            if key in done or new >= SCAN_QUEUE_LIMIT:
                continue
            queue_run(
                work,
                rule,
                rule.when.event,
                entity,
                record_id,
                {"at": moment_key},
                party_id=party_id,
                key=key,
            )
            new += 1
        if new >= SCAN_QUEUE_LIMIT:
            break
    return new


# -- running a rule --------------------------------------------------------------------------


def _record_values(work: UnitOfWork, entity: str, record: Any) -> dict[str, Any]:
    from crmkit.schemas.output import public_values

    # private columns (hashes, sealed secrets) never reach a template or a webhook
    values = public_values(record)
    for name, value in (values.pop("custom", None) or {}).items():
        values[f"custom.{name}"] = value
    return values


def _computed_checks(work: UnitOfWork, entity: str, record: Any) -> dict[str, ComputedCheck]:
    """Computed filter fields of the subject (``tag``, ``group``, those plugins register
    with ``crmkit_register_filter_fields``), each checked by asking the database about this
    one record: a condition means there what it means in a list or a smart group."""
    entity_type = work.crm.entity(entity)
    fields = {**BUILTIN_FIELDS, **work.crm.filter_fields_for(entity)}
    model = entity_type.model

    def check_of(name: str) -> ComputedCheck:
        def check(op: str, value: Any) -> bool:
            leaf = {"field": name, "op": op, "value": value}
            predicate = compile_condition(entity_type, leaf, fields=fields)
            found = work.session.scalar(select(model.id).where(model.id == record.id, predicate))
            return found is not None

        return check

    return {name: check_of(name) for name in fields}


def _template(work: UnitOfWork, text: str, variables: Mapping[str, Any]) -> str:
    return str(work.message_templates.render_text("text", str(text), variables))


def _users_for(work: UnitOfWork, target: Any, record: Any) -> list[int]:
    """``owner``, a username or id, ``role:NAME`` or ``team:NAME`` -> user ids.

    A role or a team stands for its active (not blocked) users, ordered by username: the
    first of them is who ``assign`` and ``create_task`` choose.
    """
    if target in (None, "owner"):
        owner = getattr(record, "owner_id", None) or getattr(record, "assignee_id", None)
        return [owner] if owner else []
    if isinstance(target, int):
        return [target]
    text = str(target)
    if text.startswith("role:"):
        return [u.id for u in work.users.list(role=text[5:], include_blocked=False)]
    if text.startswith("team:"):
        return [u.id for u in work.users.list(team=text[5:], include_blocked=False)]
    user = work.session.scalar(select(User.id).where(User.username == text))
    if user is None:
        raise ValidationFailed({"to": [f"no user {text!r}"]})
    return [user]


def _one_user(work: UnitOfWork, target: Any, record: Any) -> int:
    users = _users_for(work, target, record)
    if not users:
        raise ValidationFailed({"user": [f"nobody to give it to ({target!r})"]})
    return users[0]


#: How a move the assistant makes is commented (the rule's label follows): the record
#: page signs such a move with the assistant and shows the rule alone.
ASSISTANT_COMMENT = "assistant: "


def _act(
    work: UnitOfWork,
    rule: Rule,
    kind: str,
    params: Mapping[str, Any],
    entity: str,
    record: Any,
    party_id: int | None,
    variables: Mapping[str, Any],
) -> Message:
    """Do one action; a line describing what was done (for the timeline, which shows it in
    the reader's language; ``str()`` of it is the English line)."""
    ref = (entity, record.id) if record is not None else None
    if kind == "move":
        target = str(params["to"])
        work.moves.move(record, target, comment=ASSISTANT_COMMENT + (rule.label or rule.name))
        pipeline = work.crm.pipelines.get(getattr(record, "pipeline", None))
        stage = pipeline.stage_label(target) if pipeline is not None else Label(target)
        return message("moved to “{stage}”", stage=stage)
    if kind == "assign":
        user_id = _one_user(work, params["user"], record)
        field = "assignee_id" if hasattr(record, "assignee_id") else "owner_id"
        work.records(entity).update(record, {field: user_id})
        return message("assigned to user {user}", user=user_id)
    if kind == "create_task":
        due = utcnow() + dt.timedelta(hours=float(params.get("due_in_hours") or 24))
        assignee = _one_user(work, params.get("assignee", "owner"), record)
        seen = _as_read_by(work, [assignee], entity, record, party_id, variables)
        task = work.tasks.create(
            {
                "title": _template(work, params["title"], seen)[:300],
                "assignee_id": assignee,
                "deadline": due.isoformat(),
                "party_id": party_id,
                **({"record_entity": entity, "record_id": record.id} if record else {}),
            }
        )
        return message("task {id}: {title}", id=task.id, title=task.title)
    if kind == "create_reminder":
        at = utcnow() + dt.timedelta(hours=float(params.get("in_hours") or 0))
        recipients = [{"user_id": u} for u in _users_for(work, params.get("to", "owner"), record)]
        if not recipients:
            raise ValidationFailed({"to": ["nobody to remind"]})
        readers = [r["user_id"] for r in recipients]
        seen = _as_read_by(work, readers, entity, record, party_id, variables)
        reminder = work.reminders.create(
            {
                "remind_at": at.isoformat(),
                "text": _template(work, params["text"], seen),
                "party_id": party_id,
                "recipients": recipients,
                **({"record_entity": entity, "record_id": record.id} if record else {}),
            }
        )
        return message("reminder {id} at {time}", id=reminder.id, time=Moment(at))
    if kind == "notify":
        text = _template(work, params["text"], variables)  # the timeline's: the client's
        users = _users_for(work, params.get("to", "owner"), record)
        for user_id in users:
            seen = _as_read_by(work, [user_id], entity, record, party_id, variables)
            told = text if seen is variables else _template(work, params["text"], seen)
            work.notifications.notify(user_id, "assistant", told, party_id=party_id, record=ref)
        return message("told {count} colleague(s): {text}", count=len(users), text=text)
    if kind == "send_message":
        channel = work.channels.channel(str(params["channel"]))
        # the client's own address, or one the rule names; that of a colleague is read by
        # the colleague, who is told only the clients they may read
        colleague = _colleague_at(work, params["to"]) if params.get("to") else None
        seen = variables
        if colleague is not None:
            seen = _as_read_by(work, [colleague], entity, record, party_id, variables)
        if params.get("template"):
            template = _find_template(work, params["template"], channel.name)
            if seen is variables:
                rendered = work.message_templates.render(template, party_id=party_id, record=ref)
                subject, body = rendered.subject, rendered.body
            else:
                subject, body = _template_as_read(work, template, seen, party_id, ref)
        else:
            subject = _template(work, params.get("subject") or "", seen) or None
            body = _template(work, params.get("body") or "", seen)
        to = params.get("to") or _address_of(work, party_id, channel)
        work.channels.send(
            channel.name, to=to, body=body, subject=subject, party_id=party_id, record=ref
        )
        return message("sent a {channel} message to {to}", channel=Label(channel.name), to=to)
    if kind == "add_note":
        work.timeline.add_note(
            party_id=party_id, body=_template(work, params["body"], variables), record=ref
        )
        return message("added a note")
    if kind == "webhook":
        work.outbox.add(
            "webhook",
            {"url": params["url"], "json": {"rule": rule.name, **_plain(variables)}},
            party_id=party_id,
        )
        return message("called {url}", url=params["url"])
    raise ValidationFailed({"actions": [f"unknown action {kind!r}"]})


def _as_read_by(
    work: UnitOfWork,
    users: Iterable[int],
    entity: str,
    record: Any,
    party_id: int | None,
    variables: Mapping[str, Any],
) -> Mapping[str, Any]:
    """``variables`` as every one of ``users`` may read them.  The rule runs as the system
    and reads every client, but a colleague told something (a notification, a task given
    to them, a reminder, a mail to their address) reads it as themselves: a client one of
    them may not read (the run's, or one the record names: a person's organisation) is
    blank there, its name, addresses and id, as the API gives its id as ``null``; a rule
    on such a client tells them none of its fields.  ``variables`` itself when nothing is
    hidden (one query per user and client, only for the clients the run names)."""
    named = {party_id} if party_id is not None else set()
    attrs = {"party_id", "organisation_id"}
    if record is not None:
        attrs.update(work.records(entity).client_attrs())
        named.update(getattr(record, a, None) for a in attrs)
    named.discard(None)
    users = list(dict.fromkeys(users))
    hidden = {
        client
        for client in named
        if not all(work.user_may_read(user, [("party", client)]) for user in users)
    }
    if not hidden:
        return variables
    values = dict(variables.get("record") or {})
    if entity == "party" and record is not None and record.id in hidden:
        values = dict.fromkeys(values)  # the record is the client they may not read
    for key, value in values.items():
        field = key.removeprefix("event.")  # the event's data is in the record's values too
        if (field in attrs and value in hidden) or (party_id in hidden and key[:6] == "party."):
            values[key] = None
    event = {
        k: None if k in attrs and v in hidden else v
        for k, v in (variables.get("event") or {}).items()
    }
    party = {} if party_id in hidden else variables.get("party")
    return {**variables, "record": values, "event": event, "party": party}


def _colleague_at(work: UnitOfWork, address: Any) -> int | None:
    """The user an address is theirs: their account's email, or one they have their
    notifications forwarded to."""
    from sqlalchemy import func

    from crmkit.model import NotificationPreference

    text = str(address or "").strip().lower()
    if not text:
        return None
    found = work.session.scalar(select(User.id).where(func.lower(User.email) == text).limit(1))
    if found is None:
        found = work.session.scalar(
            select(NotificationPreference.user_id)
            .where(func.lower(NotificationPreference.address) == text)
            .limit(1)
        )
    return found


def _template_as_read(
    work: UnitOfWork,
    template: Any,
    seen: Mapping[str, Any],
    party_id: int | None,
    ref: tuple[str, int] | None,
) -> tuple[str | None, str]:
    """A message template filled for a colleague who may not read a client it would name:
    its variables as the template service gives them, less that client (see
    :func:`_as_read_by`: ``seen`` is the run's variables as they read them)."""
    templates = work.message_templates
    filled = dict(templates.variables(party_id=party_id, record=ref))
    if seen.get("party") == {}:
        filled["party"] = {}
    record = dict(filled.get("record") or {})
    shown = seen.get("record") or {}
    for key in record:
        if key in shown and shown[key] is None:
            record[key] = None
    filled["record"] = record
    subject = templates.render_text("subject", template.subject, filled, template=template.name)
    body = templates.render_text("body", template.body, filled, template=template.name)
    return subject or None, body


def _plain(variables: Mapping[str, Any]) -> dict[str, Any]:
    from crmkit.services.records import jsonable

    return {
        "event": {k: jsonable(v) for k, v in (variables.get("event") or {}).items()},
        "record": {k: jsonable(v) for k, v in (variables.get("record") or {}).items()},
    }


def _find_template(work: UnitOfWork, template: Any, channel: str) -> Any:
    if isinstance(template, int) or str(template).isdigit():
        return work.message_templates.get(int(template))
    for row in work.message_templates.list(channel=channel):
        if row.name == template:
            return row
    raise ValidationFailed({"template": [f"no {channel} template {template!r}"]})


def _address_of(work: UnitOfWork, party_id: int | None, channel: Any) -> str:
    if party_id is None:
        raise ValidationFailed({"to": ["no client to write to"]})
    party = work.parties.get(party_id)
    for point in party.contact_points:
        if point.kind == channel.address_kind.value:
            return str(point.value)
    raise ValidationFailed({"to": [f"the client has no {channel.address_kind.value} address"]})


def run_queued(crm: CRM, delivery: Delivery) -> dict[str, Any]:
    """The ``automation`` outbox handler: run one queued match as the assistant."""
    payload = delivery.payload
    try:
        return _run(crm, payload, delivery.item_id)
    except Exception as exc:
        from crmkit.jobs.delivery import error_text

        error = error_text(exc)
        record_failure(crm, payload, error)
        if isinstance(exc, CrmkitError):  # bad data or a refused move: retrying cannot help
            raise PermanentFailure(error) from exc
        raise


def _run(crm: CRM, payload: Mapping[str, Any], item_id: int | None = None) -> dict[str, Any]:
    with crm.assistant() as work:
        rule = find_rule(crm, work.session, payload["rule"])
        if rule is None:
            log.info("automation rule %s was deleted or switched off: run skipped", payload["rule"])
            _free_clock_key(work, payload, item_id)
            return {"skipped": "the rule was deleted or switched off"}
        if "rule_id" in payload and (rule.row_id, rule.version) != (
            payload["rule_id"],
            payload.get("version"),
        ):
            # queued for a rule since edited, or deleted and made anew under its name: the
            # event was matched against a definition that no longer exists
            log.info("automation rule %s changed since the run was queued: run skipped", rule.name)
            _free_clock_key(work, payload, item_id)
            return {"skipped": "the rule was changed or made anew since the run was queued"}
        entity = payload["entity"]
        record_id = payload.get("record_id")
        event = dict(payload.get("event") or {})
        if rule.subject:
            entity, key = rule.subject
            record_id = event.get(key)
        record = None
        if record_id is not None and entity in crm.entities:
            # runs on one record take turns: the second checks its condition on what the
            # first did (a payment's rule and a stage's rule must not both move an order)
            lock_row(work.session, crm.entities[entity].model, record_id)
            record = work.records(entity).find(record_id)
            if record is None:
                return {"skipped": f"{entity} {record_id} is gone"}
            if payload.get("trigger") == "record.idle" and record.id != record_id:
                # merged since: the survivor was not idle then (it is scanned on its own)
                return {"skipped": f"{entity} {record_id} was merged into {record.id}"}
        values = _record_values(work, entity, record) if record is not None else {}
        values.update({f"event.{k}": v for k, v in event.items()})
        party_id = payload.get("party_id")
        if record is not None:
            party_id = work.records(entity).party_id_of(record) or party_id
        party_values: dict[str, Any] = {}
        if party_id is not None:
            party = work.parties.find(party_id)
            if party is not None:
                party_values = {"id": party.id, "name": party.name}
                for point in party.contact_points:  # the first address of each kind
                    party_values.setdefault(str(point.kind), point.value)
        # conditions may ask for the client's addresses: party.email, party.phone ...
        values.update({f"party.{k}": v for k, v in party_values.items()})
        for kind in ("email", "phone", "messenger"):
            values.setdefault(f"party.{kind}", None)
        computed = _computed_checks(work, entity, record) if record is not None else None
        if not evaluate(rule.condition, values, computed):
            return {"skipped": "condition not met"}
        variables = {
            "record": values,
            "event": event,
            "party": party_values,
            "today": utcnow().astimezone(work.crm.config.zone).date(),  # the deployment's
            "zone": str(work.crm.config["locale.timezone"]),
        }
        done = [
            _act(work, rule, action.kind, action.params, entity, record, party_id, variables)
            for action in rule.actions
        ]
        if party_id is not None:
            work.timeline.add(
                "automation",
                party_id=party_id,
                subject=rule.label or rule.name,
                body=done,
                record=(entity, record.id) if record is not None else None,
                data={"rule": rule.name, "trigger": payload.get("trigger")},
            )
        if rule.row_id is not None:
            work.session.execute(
                update(AutomationRule)
                .where(AutomationRule.id == rule.row_id)
                .values(runs=AutomationRule.runs + 1)
            )
        return {"rule": rule.name, "done": [str(line) for line in done]}


def _free_clock_key(work: UnitOfWork, payload: Mapping[str, Any], item_id: int | None) -> None:
    """Give a skipped run of a time-based rule its own key, freeing the (rule, record,
    moment) key for the clock: the record is queued again under the rule as it is now,
    when (and if) the rule is on and the record is due under it.  A run that was done, or
    whose condition did not hold, keeps its key: the clock queues each moment once."""
    if item_id is None or payload.get("trigger") not in CLOCK_TRIGGERS:
        return
    from crmkit.model import OutboxItem

    work.session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(idempotency_key=f"{KIND}:skipped:{item_id}")
    )


def record_failure(crm: CRM, payload: Mapping[str, Any], error: str) -> None:
    """Keep a failed run for the admin (its own transaction: the run's rolled back)."""
    with crm.system() as work:
        work.session.add(
            AutomationFailure(
                rule=str(payload.get("rule")),
                event=str(payload.get("trigger")),
                entity=payload.get("entity"),
                record_id=payload.get("record_id"),
                error=error,
                at=utcnow(),
            )
        )
        work.session.execute(
            update(AutomationRule)
            .where(AutomationRule.name == payload.get("rule"))
            .values(failures=AutomationRule.failures + 1)
        )


def recent_failures(session: Any, rule: str | None = None, limit: int = 50) -> list[Any]:
    """The newest failures (of one rule, or all)."""
    query = select(AutomationFailure)
    if rule:
        query = query.where(AutomationFailure.rule == rule)
    return list(session.scalars(query.order_by(AutomationFailure.id.desc()).limit(limit)))


def ensure_unique(crm: CRM, names: Iterable[str]) -> None:
    """Refuse a data rule named like a code rule."""
    clash = sorted(set(names) & set(crm.automations))
    if clash:
        raise ValidationFailed({"name": [f"a rule named {clash[0]!r} is defined in code"]})
