"""One timeline per party: calls, mails, messages, notes, moves, payments, files.

Every service that records something happening to a client calls :meth:`TimelineService.add`;
the client card reads :meth:`TimelineService.list`.  Notes are activities of kind ``note``:
``@username`` in their text mentions a colleague, who gets a notification.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import or_, select, update

from crmkit import events
from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.i18n import Message, MoneyFormat
from crmkit.model import Activity, Mention, Party, User
from crmkit.services.limits import refuse_long_texts
from crmkit.services.paging import Page, after_clause, decode_cursor, encode_cursor, parse_order

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

#: The kinds of timeline entries the core declares; plugins declare their own with
#: ``crmkit_register_timeline_kinds`` (see :class:`TimelineKind`).
ACTIVITY_KINDS = (
    "call",
    "mail",
    "message",
    "note",
    "stage_move",
    "payment",
    "file",
    "assistant",
    "task",
    "meeting",
    "merge",
    "automation",
)

#: Longest name a kind may have (``Activity.kind`` is a ``String(32)``).
MAX_KIND_LENGTH = 32


def _kind_name(value: Any) -> str:
    name = str(value)
    if not name or len(name) > MAX_KIND_LENGTH or "," in name or name != name.strip():
        raise ValueError(
            f"timeline kind {name!r}: 1 to {MAX_KIND_LENGTH} characters, "
            "no commas or surrounding spaces"
        )
    return name


@attrs.frozen
class TimelineKind:
    """A kind of timeline entry a plugin writes (``Activity.kind``), declared so that
    readers know it: the API's ``kind`` filter accepts exactly the declared kinds, and the
    client card offers each as a filter.

    ``label`` is what the UI shows, translated through the catalogs (the name itself when
    not given, as the core's kinds are shown).  A channel's ``activity_kind`` is declared
    by the channel; two plugins may declare the same kind only with the same label.
    """

    name: str = attrs.field(converter=_kind_name)
    label: str = attrs.field(
        default=attrs.Factory(lambda kind: kind.name, takes_self=True), converter=str
    )


#: How a call that was made ended (``Activity.data["outcome"]`` of a ``call``), in English:
#: each is its own label in the catalogs.
CALL_OUTCOMES = ("reached", "no answer", "call back", "wrong number")

#: The most user ids one note may mention by id (``mention``), besides ``@names``.
MAX_MENTIONS = 100

_MENTION = re.compile(r"(?<![\w@])@([\w.+-]{2,150})", re.UNICODE)


def shown_subject(
    activity: Any,
    crm: Any,
    gettext: Callable[[str], str],
    zone: dt.tzinfo | None = None,
    money: MoneyFormat | None = None,
) -> str | None:
    """An entry's subject in the reader's language (``gettext``, ``zone``, ``money``).

    An entry written with a message (``data["subject_message"]``) is written anew from it;
    a stage move written before that is told from its data (the pipeline's stage titles);
    any other entry shows its stored subject.
    """
    data = activity.data or {}
    stored = data.get("subject_message")
    if isinstance(stored, dict) and stored.get("template"):
        return Message.from_json(stored).translate(gettext, zone, money)
    if activity.kind == "stage_move" and data.get("to"):
        pipeline = crm.pipelines.get(data.get("pipeline"))
        if pipeline is not None:
            return stage_move_subject(pipeline, data.get("from"), data["to"]).translate(
                gettext, zone, money
            )
    return activity.subject  # type: ignore[no-any-return]


def shown_body(
    activity: Any,
    gettext: Callable[[str], str],
    zone: dt.tzinfo | None = None,
    money: MoneyFormat | None = None,
) -> str:
    """An entry's body in the reader's language: its lines written anew from the messages
    kept in ``data["body_lines"]`` (a plain line as it is), else the stored body."""
    lines = (activity.data or {}).get("body_lines")
    if not isinstance(lines, list):
        return activity.body or ""
    return "\n".join(
        Message.from_json(line).translate(gettext, zone, money)
        if isinstance(line, dict)
        else str(line)
        for line in lines
    )


def stage_move_subject(pipeline: Any, source: str | None, target: str) -> Message:
    """``New → In work``: a move's timeline subject, the stages by their titles."""
    to = pipeline.stage_label(target)
    if not source:
        return Message("{target}", {"target": to})  # placed in its first stage
    return Message("{source} → {target}", {"source": pipeline.stage_label(source), "target": to})


def mentioned_usernames(text: str) -> list[str]:
    """``@ivan`` and ``@maria.k`` in a note's text, in order, without repeats."""
    seen: dict[str, None] = {}
    for match in _MENTION.finditer(text):
        seen.setdefault(match.group(1).rstrip("."), None)
    return list(seen)


class TimelineService:
    """Adding to and reading a party's timeline, access-scoped like everything else."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work
        self.entity = work.crm.entities["activity"]
        self._touched: dict[int, dt.datetime] = {}  # party -> latest activity, written at commit

    def add(
        self,
        kind: str,
        *,
        party_id: int | None,
        subject: str | Message | None = None,
        body: str | Message | Sequence[str | Message] = "",
        record: tuple[str, int] | None = None,
        data: dict[str, Any] | None = None,
        occurred_at: dt.datetime | None = None,
        direction: str | None = None,
        channel: str | None = None,
        external_id: str | None = None,
        status: str | None = None,
        pinned: bool = False,
    ) -> Activity:
        """Record an activity (the caller has already checked its own permission).

        Activities by the automation assistant are marked ``by_assistant``.  The party's
        ``last_activity_at`` moves forward so that lists ordered by it stay true.

        A ``subject`` or ``body`` written by the framework (not typed by a person) is given
        as a :class:`~crmkit.i18n.Message`, or the body as a list of lines, some of them
        messages: the entry keeps their English text in ``subject`` and ``body`` (exports,
        the API, old readers) and the messages themselves in ``data`` (``subject_message``,
        ``body_lines``), from which :func:`shown_subject` and :func:`shown_body` write them
        in the reader's language.
        """
        when = occurred_at or utcnow()
        actor = self.work.actor
        data = dict(data or {})
        if isinstance(subject, Message):
            data["subject_message"] = subject.as_json()
            subject = str(subject)
        if not isinstance(body, str):
            lines = [body] if isinstance(body, Message) else list(body)
            data["body_lines"] = [
                line.as_json() if isinstance(line, Message) else str(line) for line in lines
            ]
            body = "\n".join(str(line) for line in lines)
        activity = Activity(
            party_id=party_id,
            kind=kind,
            occurred_at=when,
            actor_id=actor.user_id,
            by_assistant=actor.assistant,
            subject=subject,
            body=body,
            data=data,
            direction=direction,
            channel=channel,
            external_id=external_id,
            status=status,
            pinned=pinned,
            record_entity=record[0] if record else None,
            record_id=record[1] if record else None,
        )
        self.work.session.add(activity)
        if party_id is not None:
            self.touch(party_id, when)
        return activity

    def touch(self, party_id: int, when: dt.datetime) -> None:
        """Move a party's ``last_activity_at`` forward (never back), without bumping its version.

        Written once per party when the unit of work commits (the latest moment wins), so a
        transaction adding many entries to one client's timeline updates the client once.
        """
        if not self._touched:
            self.work.before_commit(self._write_touches)
        known = self._touched.get(party_id)
        try:
            later = known is None or when > known
        except TypeError:  # a naive and an aware moment: both are UTC
            later = when.replace(tzinfo=None) > known.replace(tzinfo=None)  # type: ignore[union-attr]
        if later:
            self._touched[party_id] = when

    def _write_touches(self) -> None:
        touched, self._touched = self._touched, {}
        for party_id, when in touched.items():
            self.work.session.execute(
                update(Party)
                .where(
                    Party.id == party_id,
                    (Party.last_activity_at < when) | Party.last_activity_at.is_(None),
                )
                .values(last_activity_at=when)
                .execution_options(synchronize_session=False)
            )

    def list(
        self,
        party_id: int,
        *,
        kinds: Sequence[str] | None = None,
        record: tuple[str, int] | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page:
        """A party's timeline, newest first, optionally only some kinds or one record's entries."""
        # NotFound when the party is hidden; a merged-away id reads the survivor's timeline
        party_id = self.work.parties.get(party_id).id
        access = self.work.access
        access.require("activity", "read")
        keys = parse_order(["-occurred_at"], {"occurred_at": Activity.occurred_at}, Activity.id)
        statement = (
            select(Activity)
            .where(Activity.party_id == party_id)
            .where(access.where(self.entity, "read"))
        )
        if kinds:
            statement = statement.where(Activity.kind.in_(list(kinds)))
        if record:
            statement = statement.where(
                Activity.record_entity == record[0], Activity.record_id == record[1]
            )
        if after:
            statement = statement.where(after_clause(keys, decode_cursor(after, keys)))
        limit = max(1, min(limit, 500))
        rows = list(
            self.work.session.scalars(
                statement.order_by(*(k.clause() for k in keys)).limit(limit + 1)
            )
        )
        cursor = encode_cursor(keys, rows[limit - 1]) if len(rows) > limit else None
        return Page(rows[:limit], cursor)

    def kinds_of(self, party_id: int) -> set[str]:
        """The kinds found on a party's timeline (of the entries the user may read), in one
        query over the party's entries (``ix_activity_party_time``)."""
        party_id = self.work.parties.get(party_id).id
        self.work.access.require("activity", "read")
        return set(
            self.work.session.scalars(
                select(Activity.kind)
                .where(Activity.party_id == party_id)
                .where(self.work.access.where(self.entity, "read"))
                .distinct()
            )
        )

    def pinned(self, party_id: int) -> list[Activity]:
        """Pinned notes of a party, newest first."""
        party_id = self.work.parties.get(party_id).id
        return list(
            self.work.session.scalars(
                select(Activity)
                .where(Activity.party_id == party_id, Activity.pinned.is_(True))
                .where(self.work.access.where(self.entity, "read"))
                .order_by(Activity.occurred_at.desc())
            )
        )

    def get(self, activity_id: int) -> Activity:
        """One visible activity."""
        return self.work.records("activity").get(activity_id)

    # -- notes ------------------------------------------------------------------------

    def add_note(
        self,
        *,
        party_id: int | None = None,
        body: str,
        record: tuple[str, int] | None = None,
        pinned: bool = False,
        mention: Iterable[int] = (),
    ) -> Activity:
        """Write a note on a party (and/or a record); notify every @mentioned colleague.

        ``mention`` adds user ids to those found as ``@username`` in the text.  Only
        colleagues who may read the note (its client, its record) are told and listed in
        ``data["mentions"]``; the others are named in ``data["not_told"]`` so that the
        writer can be told who did not hear of it (the note's text never reaches them).
        A text longer than ``MAX_WRITTEN_TEXT`` characters is refused naming ``body``.
        """
        text = (body or "").strip()
        if not text:
            raise ValidationFailed({"body": ["a note cannot be empty"]})
        refuse_long_texts(body=text)
        self.work.access.require("activity", "create")
        if party_id is None and record is None:
            raise ValidationFailed({"party_id": ["a note belongs to a party or a record"]})
        if party_id is not None:
            party_id = self.work.parties.get(party_id).id  # a merged-away id: the survivor
        if record is not None:
            linked = self.work.records(record[0]).get(record[1])
            if party_id is None:
                party_id = self.work.records(record[0]).party_id_of(linked)
        mentioned = self._mentioned_users(text, mention)
        activity = self.add(
            "note",
            party_id=party_id,
            body=text,
            record=record,
            pinned=pinned,
            data={"mentions": [u.username for u in mentioned]},
        )
        self.work.flush()
        users = [u for u in mentioned if self._may_read(u, activity, party_id, record)]
        if len(users) < len(mentioned):
            activity.data = {
                "mentions": [u.username for u in users],
                "not_told": [u.username for u in mentioned if u not in users],
            }
        for user in users:
            self.work.session.add(Mention(activity_id=activity.id, user_id=user.id))
            if user.id != self.work.actor.user_id:
                self.work.notifications.notify(
                    user.id,
                    "mention",
                    f"{self.work.actor.label}: {_excerpt(text)}",
                    party_id=party_id,
                    record=("activity", activity.id),
                )
        self.work.audit("activity", activity.id, "create", {"kind": [None, "note"]})
        self.work.emit(
            events.NOTE_ADDED,
            "activity",
            activity.id,
            party_id=party_id,
            mentions=[u.id for u in users],
            pinned=pinned,
        )
        return activity

    def may_be_told(self, party_id: int) -> list[User]:
        """The colleagues a note on this client can tell with an ``@mention``: active users
        other than the writer who may read the client, by their own access rules (the
        others would not be told, see :meth:`add_note`), ordered by username.  The note
        box offers these and says so."""
        me = self.work.actor.user_id
        return [
            user
            for user in self.work.users.list(include_blocked=False)
            if user.id != me and self.work.user_may_read(user, [("party", party_id)])
        ]

    def add_call(self, party_id: int, *, outcome: str, body: str = "") -> Activity:
        """Record a phone call made to a client: how it ended (one of ``CALL_OUTCOMES``)
        and what was said, on the client's timeline as a ``call`` (outgoing, by phone), so
        the calls-per-week statistics count it.

        The writer needs ``activity create`` and must see the client (a merged-away id is
        its survivor); a missing or unknown outcome is refused naming ``outcome``, what was
        said longer than ``MAX_WRITTEN_TEXT`` characters naming ``body``.
        """
        self.work.access.require("activity", "create")
        if outcome not in CALL_OUTCOMES:
            raise ValidationFailed({"outcome": ["choose how the call ended"]})
        text = (body or "").strip()
        refuse_long_texts(body=text)
        party_id = self.work.parties.get(party_id).id
        activity = self.add(
            "call",
            party_id=party_id,
            body=text,
            direction="out",
            channel="phone",
            data={"outcome": outcome},
        )
        self.work.flush()
        self.work.audit("activity", activity.id, "create", {"kind": [None, "call"]})
        return activity

    def _may_read(
        self, user: User, note: Activity, party_id: int | None, record: tuple[str, int] | None
    ) -> bool:
        """Whether ``user`` may read the note, its client and its record.

        Asked in this unit's transaction (a client made in it counts), with the user's own
        access rules.
        """
        if user.id == self.work.actor.user_id:
            return True
        wanted = [("activity", note.id)]
        if party_id is not None:
            wanted.append(("party", party_id))
        if record is not None:
            wanted.append(record)
        return bool(self.work.user_may_read(user, wanted))

    def _mentioned_users(self, text: str, extra_ids: Iterable[int]) -> list[User]:
        names = mentioned_usernames(text)
        ids = list(dict.fromkeys(extra_ids))
        if not names and not ids:
            return []
        if len(ids) > MAX_MENTIONS:
            raise ValidationFailed({"mention": [f"at most {MAX_MENTIONS} users may be mentioned"]})
        if ids:
            found = set(self.work.session.scalars(select(User.id).where(User.id.in_(ids))))
            missing = [i for i in ids if i not in found]
            if missing:
                raise ValidationFailed({"mention": [f"no user {missing[0]}"]})
        clauses = []
        if names:
            clauses.append(User.username.in_(names))
        if ids:
            clauses.append(User.id.in_(ids))
        return list(
            self.work.session.scalars(
                select(User).where(or_(*clauses), User.blocked.is_(False)).order_by(User.id)
            )
        )

    def pin(self, activity_id: int, pinned: bool = True) -> Activity:
        """Pin (or unpin) a note on top of its party's card (an ``update`` of that note: a
        role that may update only its own clients' notes pins only those)."""
        activity = self.work.records("activity").get(activity_id, action="update")
        if activity.kind != "note":
            raise ValidationFailed({"pinned": ["only notes can be pinned"]})
        activity.pinned = pinned
        self.work.audit("activity", activity.id, "pin", {"pinned": [not pinned, pinned]})
        return activity

    def mentions_of(self, user_id: int, limit: int = 50) -> list[Activity]:
        """Notes mentioning a user that the actor may see, newest first."""
        return list(
            self.work.session.scalars(
                select(Activity)
                .join(Mention, Mention.activity_id == Activity.id)
                .where(Mention.user_id == user_id)
                .where(self.work.access.where(self.entity, "read"))
                .order_by(Activity.occurred_at.desc())
                .limit(limit)
            )
        )


def _excerpt(text: str, length: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= length else flat[: length - 1] + "…"
