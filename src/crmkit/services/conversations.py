"""The contact center: every inbound conversation of every channel, assigned and answered.

Ingest (:meth:`crmkit.services.channels.ChannelService.ingest`) files each inbound message
under the open conversation of its sender on its channel, or starts one.  Staff see them as
*unassigned*, *mine* or *my team's*; they assign, reply (by hand or from a template, through
the channel and the outbox), snooze until a time (a new message wakes it) and close.  A
conversation from an unknown sender becomes a lead, or is attached to an existing party, in
one step; its messages and files move to that party's timeline.

Visibility follows the clients: a conversation is visible where its party is (and may only
be assigned to someone who sees that client); a conversation with an unknown sender is
everyone's (that is triage).  One that came to a personal mailbox is its owner's and its
client's owner's; its owner works it (reads, answers) without reading the client.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import and_, bindparam, func, or_, select, update

from crmkit.clock import utcnow
from crmkit.db import lock_row
from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.i18n import message
from crmkit.identity import domain_key
from crmkit.model import Activity, ContactPoint, Conversation, Party, User
from crmkit.services.bulk import allocate_ids, insert_rows, one_of, uses_arrays
from crmkit.services.paging import Page, after_clause, decode_cursor, encode_cursor, parse_order

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

VIEWS = ("unassigned", "mine", "team")
#: ``assign(expected=ANY)``: whoever has it now (no check against what a page showed)
ANY = object()
#: refusals of an action taken on a page that no longer shows the conversation as it is
NEW_MESSAGE = "a new message arrived: read it first (it is shown now)"
BACK_IN_QUEUE = "the conversation has been put back in the unassigned queue meanwhile"
STATUSES = ("open", "snoozed", "closed")
#: what "Not a client" ignores from now on: the sender's address, or their whole domain
IGNORE_SCOPES = ("sender", "domain")
#: what a conversation (and its replies) may be filed on: its client's open deals and tasks
FILED_ON = ("deal", "task")
#: how many of each :meth:`ConversationService.filing_choices` offers
MOST_CHOICES = 50

_CONVERSATION = Conversation.__table__
#: what a new message may change on an open conversation (see ``note_message``)
_COUNTED = ("unread", "last_message_at", "status", "snoozed_until", "party_id", "account")
_RECORD = ("record_entity", "record_id")
_NOTE = update(_CONVERSATION).where(_CONVERSATION.c.id == bindparam("_id"))
# the senders' open conversations, newest first (built once: a batch asks with many keys)
_OPEN_BY_KEY = {
    array: select(
        *(_CONVERSATION.c[name] for name in ("id", "address_key", "owner_id", *_COUNTED, *_RECORD))
    )
    .where(
        _CONVERSATION.c.channel == bindparam("channel"),
        one_of(_CONVERSATION.c.address_key, "keys", array=array),
        _CONVERSATION.c.status != "closed",
    )
    .order_by(_CONVERSATION.c.id.desc())
    for array in (False, True)
}


@attrs.frozen
class InboundNote:
    """One inbound message as its conversation counts it (see ``note_messages``)."""

    address: str
    address_key: str
    sender_name: str | None
    subject: str | None
    party_id: int | None
    record: tuple[str, int] | None
    when: dt.datetime
    account: str | None = None
    owner_id: int | None = None


class ConversationService:
    """Conversations for the contact center (``work.conversations``)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work
        self._announced = False

    def _announce(self) -> None:
        """Once the unit commits, tell open contact-center tabs to refresh their list.

        The message says only that conversations changed; each tab reloads its own list,
        so what it shows still follows its user's access rules.
        """
        if self._announced:
            return
        self._announced = True
        crm = self.work.crm

        def publish() -> None:
            self._announced = False
            crm.live.publish_everyone({"type": "inbox"})

        self.work.after_commit(publish)
        self.work.on_rollback(lambda: setattr(self, "_announced", False))

    # -- filing messages ------------------------------------------------------------------

    def note_messages(self, channel: str, notes: list[InboundNote]) -> list[int]:
        """File a batch of inbound messages on one channel; their conversation ids.

        Each goes to its sender's open conversation (the newest), or starts one: counted as
        unread, a snoozed one woken, the deal or task of its thread noted.  A conversation
        in triage whose sender has since become known (an address added to a client's card)
        takes that client, with its earlier messages; a sender whose address now belongs to
        another client starts a new conversation there (the old one stays with the old
        client's people).

        Without ORM objects: one query for the senders' open conversations, one
        ``executemany`` UPDATE of those counted on, one bulk INSERT of those started (ids
        allocated up front).  Conversation objects already loaded in the session are
        expired, so they read the new counts.
        """
        if not notes:
            return []
        work = self.work
        work.flush()
        self._announce()
        keys = sorted({note.address_key for note in notes})
        # by sender and by personal account: a mail to Anna's own mailbox is Anna's
        # conversation, apart from the sender's conversation with the shared mailboxes
        opened: dict[tuple[str, int | None], dict[str, Any]] = {}
        for start in range(0, len(keys), 500):
            rows = work.session.execute(
                _OPEN_BY_KEY[uses_arrays(work.crm.engine)],
                {"channel": channel, "keys": keys[start : start + 500]},
            )
            for row in rows.mappings():
                opened.setdefault((row["address_key"], row["owner_id"]), dict(row))
        started: list[dict[str, Any]] = []
        changed: dict[int, dict[str, Any]] = {}
        targets: list[dict[str, Any]] = []
        known_now: dict[int, int] = {}  # conversation id -> the party its sender became
        for note in notes:
            state = opened.get((note.address_key, note.owner_id))
            moved = state is not None and note.party_id is not None
            if moved and state["party_id"] not in (None, note.party_id):
                state = None  # the address is another client's now
            if state is None:
                state = {
                    "id": None,
                    "channel": channel,
                    "address": note.address,
                    "address_key": note.address_key,
                    "sender_name": note.sender_name,
                    "subject": note.subject,
                    "party_id": note.party_id,
                    "assignee_id": None,
                    "team_id": None,
                    "status": "open",
                    "snoozed_until": None,
                    "unread": 0,
                    "last_message_at": note.when,
                    "created_at": utcnow(),
                    "closed_at": None,
                    "record_entity": None,
                    "record_id": None,
                    "account": note.account,
                    "owner_id": note.owner_id,
                }
                opened[(note.address_key, note.owner_id)] = state
                started.append(state)
            elif state["id"] not in changed:
                changed[state["id"]] = state
            state["unread"] = (state["unread"] or 0) + 1
            if note.when >= state["last_message_at"]:
                state["last_message_at"] = note.when
                state["account"] = note.account or state["account"]
            if state["status"] == "snoozed":
                state["status"], state["snoozed_until"] = "open", None
            if state["party_id"] is None and note.party_id is not None:
                state["party_id"] = note.party_id
                if state["id"] is not None:
                    known_now[state["id"]] = note.party_id
            if note.record is not None:
                state["record_entity"], state["record_id"] = note.record
            targets.append(state)
        connection = work.session.connection()
        for state, new_id in zip(
            started, allocate_ids(connection, _CONVERSATION, len(started)), strict=True
        ):
            state["id"] = new_id
        insert_rows(connection, _CONVERSATION, started)
        if changed:
            connection.execute(
                _NOTE.values({name: bindparam(f"_{name}") for name in (*_COUNTED, *_RECORD)}),
                [
                    {f"_{name}": state[name] for name in ("id", *_COUNTED, *_RECORD)}
                    for state in changed.values()
                ],
            )
            for loaded in list(work.session.identity_map.values()):
                if isinstance(loaded, Conversation) and loaded.id in changed:
                    work.session.expire(loaded)
        for conversation_id, party_id in known_now.items():
            conversation = work.session.get(Conversation, conversation_id)
            party = work.session.get(Party, party_id)
            if conversation is not None and party is not None:
                self.file_triaged(conversation, party)
        return [state["id"] for state in targets]

    # -- reading --------------------------------------------------------------------------

    def _visible(self, action: str = "read") -> Any:
        # triage (no client yet) is everyone's queue; the rest follows the client, a
        # personal mailbox's its owner: the entity's own predicate (``shared_without_party``,
        # ``personal_attr``), so the API lists the same
        return self.work.access.where("conversation", action)

    def _listed(self, view: str, status: str) -> Any:
        """The conversations of a view and status the actor sees (a SELECT)."""
        if view not in VIEWS:
            raise ValidationFailed({"view": [f"one of {', '.join(VIEWS)}"]})
        if status not in STATUSES:
            raise ValidationFailed({"status": [f"one of {', '.join(STATUSES)}"]})
        self.work.access.require("conversation", "read")
        actor = self.work.actor
        statement = select(Conversation).where(self._visible())
        if view == "unassigned":
            statement = statement.where(Conversation.assignee_id.is_(None))
        elif view == "mine":  # (the system has none: ``== None`` would be the unassigned)
            statement = statement.where(Conversation.assignee_id == (actor.user_id or 0))
        else:
            team = sorted(actor.teammate_ids or {actor.user_id or 0})
            statement = statement.where(Conversation.assignee_id.in_(team))
        now = utcnow()
        if status == "open":
            statement = statement.where(
                or_(
                    Conversation.status == "open",
                    and_(Conversation.status == "snoozed", Conversation.snoozed_until <= now),
                )
            )
        elif status == "snoozed":
            statement = statement.where(
                Conversation.status == "snoozed", Conversation.snoozed_until > now
            )
        else:
            statement = statement.where(Conversation.status == "closed")
        return statement

    def page(
        self,
        view: str = "unassigned",
        status: str = "open",
        *,
        after: str | None = None,
        limit: int = 50,
        search: str | None = None,
    ) -> Page:
        """One page of a view's conversations and the cursor of the next (``after``);
        ``search``: only those whose sender's name or address or subject contains it (see
        :meth:`search_clause`).

        The open unassigned queue comes oldest-waiting first (its latest message arrived
        longest ago); the other views newest first.  Both by arrival, not by the sender's
        clock.
        """
        statement = self._listed(view, status)
        if search and search.strip():
            statement = statement.where(self.search_clause(search))
        descending = not (view == "unassigned" and status == "open")
        keys = parse_order(
            ["-last_message_at" if descending else "last_message_at"],
            {"last_message_at": Conversation.last_message_at},
            Conversation.id,
        )
        if after:
            statement = statement.where(after_clause(keys, decode_cursor(after, keys)))
        limit = max(1, min(int(limit), 500))
        rows = list(
            self.work.session.scalars(
                statement.order_by(*(key.clause() for key in keys)).limit(limit + 1)
            )
        )
        cursor = encode_cursor(keys, rows[limit - 1]) if len(rows) > limit else None
        return Page(rows[:limit], cursor)

    def list(
        self,
        view: str = "unassigned",
        status: str = "open",
        limit: int = 100,
        search: str | None = None,
    ) -> list[Conversation]:
        """The first ``limit`` conversations of a view (see :meth:`page`).

        ``open`` includes snoozed ones whose time has come.
        """
        return self.page(view, status, limit=limit, search=search).items

    @staticmethod
    def search_clause(text: str) -> Any:
        """Conversations whose sender's name, address or subject contains ``text``, in any
        case: ``lower()`` on both sides, as records are searched (SQLite's own ``lower``
        folds ASCII only; crmkit registers a Unicode one, so "иВаН" finds "Иван"), and "ё"
        read as "е" as clients' names are ("счет" finds "Счёт")."""
        typed = text.strip().casefold().replace("ё", "е")
        pattern = "%" + typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return or_(
            *(
                func.replace(func.lower(column), "ё", "е").like(pattern, escape="\\")
                for column in (
                    Conversation.sender_name,
                    Conversation.address,
                    Conversation.subject,
                )
            )
        )

    def counts(self, status: str = "open", *, search: str | None = None) -> dict[str, int]:
        """How many conversations each view holds in ``status``, as the actor sees them;
        ``search``: only those it finds (as :meth:`page` does), so each count is what
        its view would list."""
        counted: dict[str, int] = {}
        for view in VIEWS:
            statement = self._listed(view, status)
            if search and search.strip():
                statement = statement.where(self.search_clause(search))
            counted[view] = int(
                self.work.session.scalar(select(func.count()).select_from(statement.subquery()))
                or 0
            )
        return counted

    def get(self, conversation_id: int) -> Conversation:
        """One conversation (hidden ones are :class:`NotFound`)."""
        self.work.access.require("conversation", "read")
        found = self.work.session.scalar(
            select(Conversation).where(Conversation.id == conversation_id, self._visible())
        )
        if found is None:
            raise NotFound("conversation", conversation_id)
        return found

    def messages(self, conversation_id: int) -> list[Activity]:
        """The conversation's messages, both ways, oldest first."""
        conversation = self.get(conversation_id)
        return list(
            self.work.session.scalars(
                select(Activity)
                .where(Activity.conversation_id == conversation.id)
                .order_by(Activity.occurred_at, Activity.id)
            )
        )

    # -- acting ---------------------------------------------------------------------------

    def _for_update(self, conversation_id: int) -> Conversation:
        """A visible conversation the actor's ``update`` scope reaches (else refused)."""
        access = self.work.access
        access.require("conversation", "update")
        conversation = self.get(conversation_id)
        access.check_record(
            self.work.session, self.work.crm.entities["conversation"], conversation.id, "update"
        )
        return conversation

    def may_update(self, conversation_id: int) -> bool:
        """Whether the actor may act on the (visible) conversation: assign, close, mark read."""
        try:
            self._for_update(conversation_id)
        except PermissionDenied:
            return False
        return True

    def _unseen(self, conversation_id: int, seen: int | None) -> None:
        """Refuse when messages came in after ``seen``, the last one the actor's page showed.

        The row is held first, so a message being filed now is either seen here or waits.
        """
        if seen is None:
            return
        lock_row(self.work.session, Conversation, conversation_id)
        newer = self.work.session.scalar(
            select(func.count())
            .select_from(Activity)
            .where(
                Activity.conversation_id == conversation_id,
                Activity.direction == "in",
                Activity.id > seen,
            )
        )
        if newer:
            raise ValidationFailed({"_schema": [NEW_MESSAGE]})

    def _change(self, conversation_id: int, seen: int | None = None, **values: Any) -> Conversation:
        conversation = self._for_update(conversation_id)
        self._unseen(conversation.id, seen)
        changes = {
            key: [getattr(conversation, key), value]
            for key, value in values.items()
            if getattr(conversation, key) != value
        }
        for key, value in values.items():
            setattr(conversation, key, value)
        if changes:
            self.work.flush()
            shown = {k: [_plain(a), _plain(b)] for k, (a, b) in changes.items()}
            self.work.audit("conversation", conversation.id, "update", shown)
            self._announce()
        return conversation

    def assign(
        self,
        conversation_id: int,
        user_id: int | None,
        *,
        expected: int | object | None = ANY,
        seen: int | None = None,
    ) -> Conversation:
        """Give the conversation to a colleague (``None``: back to the unassigned queue).

        ``expected``: whom the actor's page showed it assigned to (``None``: nobody); when
        someone else has taken it since, the assignment is refused naming them.  ``seen``:
        the last message the page showed (see :meth:`close`).
        """
        conversation = self.get(conversation_id)
        if user_id is not None:
            user = self.work.users.get(user_id)
            if conversation.party_id is not None and not self._may_hold(
                user_id, conversation, conversation.party_id
            ):
                raise ValidationFailed({"assignee_id": [f"{user.label} cannot see this client"]})
            if conversation.owner_id not in (None, user_id) and not self.work.user_may_read(
                user_id, [("conversation", conversation.id)]
            ):
                hidden = message(
                    "{user} cannot see this conversation: it came to a colleague's own mailbox",
                    user=user.label,
                )
                raise ValidationFailed({"assignee_id": [hidden]})
        if expected is not ANY:
            self._for_update(conversation_id)
            lock_row(self.work.session, Conversation, conversation.id)
            self.work.session.refresh(conversation, ["assignee_id"])
            if conversation.assignee_id != expected:
                holder = (
                    self.work.session.get(User, conversation.assignee_id)
                    if conversation.assignee_id is not None
                    else None
                )
                text: Any = (
                    message("{user} has taken this conversation meanwhile", user=holder.label)
                    if holder is not None
                    else BACK_IN_QUEUE
                )
                raise ValidationFailed({"assignee_id": [text]})
        conversation = self._change(conversation_id, seen=seen, assignee_id=user_id)
        if user_id is not None and user_id != self.work.actor.user_id:
            party_id = conversation.party_id
            if party_id is not None and not self._sees_party(user_id, party_id):
                party_id = None  # its mailbox's owner: the client stays hidden from them
            self.work.notifications.notify(
                user_id,
                "conversation.assigned",
                f"{conversation.sender_name or conversation.address}: {conversation.subject or ''}",
                party_id=party_id,
                record=("conversation", conversation.id),
            )
        return conversation

    def _sees_party(self, user_id: int, party_id: int) -> bool:
        # asked in this transaction: a client handed over in it counts as handed over
        return bool(self.work.user_may_read(user_id, [("party", party_id)]))

    def _may_hold(self, user_id: int, conversation: Conversation, party_id: int) -> bool:
        """Whether ``user_id`` may be given the conversation filed under ``party_id``: one
        who sees the client, or the owner of the personal mailbox it came to (who works it
        without reading the client)."""
        return user_id == conversation.owner_id or self._sees_party(user_id, party_id)

    def client_of(self, conversation: Conversation) -> Party | None:
        """The conversation's client if the actor may read it (else ``None``: a colleague's
        client who wrote to the actor's own mailbox is answered without being shown)."""
        if conversation.party_id is None:
            return None
        return self.work.parties.find(conversation.party_id)

    def suggested_clients(self, conversation: Conversation, limit: int = 5) -> list[Party]:
        """Clients an unknown sender likely belongs to, offered to attach without a search:
        those the actor sees with an address or a website at the sender's own domain
        (``new.boss@romashka.ru``: a client with ``romashka.ru``).  A public mail service's
        domain (``mail.ru``, ``gmail.com``) says nothing: none."""
        if conversation.party_id is not None or "@" not in conversation.address_key:
            return []
        domain = domain_key("email", conversation.address_key)
        if domain is None:
            return []
        at_domain = select(ContactPoint.party_id).where(ContactPoint.domain == domain)
        return list(
            self.work.session.scalars(
                self.work.parties.query()
                .where(Party.id.in_(at_domain))
                .order_by(Party.name, Party.id)
                .limit(limit)
            )
        )

    def snooze(
        self, conversation_id: int, until: dt.datetime, *, seen: int | None = None
    ) -> Conversation:
        """Hide it until ``until`` (a new message brings it back sooner); ``seen`` as for
        :meth:`close`."""
        if until.tzinfo is None or until <= utcnow():
            raise ValidationFailed({"until": ["a time in the future"]})
        if self.get(conversation_id).status == "closed":
            raise ValidationFailed({"status": ["a closed conversation is not snoozed: reopen it"]})
        return self._change(conversation_id, seen=seen, status="snoozed", snoozed_until=until)

    def close(self, conversation_id: int, *, seen: int | None = None) -> Conversation:
        """Done: the next message from the sender starts a new conversation.

        ``seen``: the id of the last message the actor's page showed; when the client wrote
        again since, closing is refused (the new message must not be buried unread).
        """
        return self._change(
            conversation_id, seen=seen, status="closed", closed_at=utcnow(), unread=0
        )

    def ignore_rules(self, conversation: Conversation) -> dict[str, str]:
        """What "Not a client" may ignore for this conversation, by scope (``sender``:
        the address; ``domain``: the sender's domain, unless a public mail service's): empty
        unless it is in triage, its channel keeps such rules and the actor may change them
        for the conversation's account (see :class:`~crmkit.channels.SenderRules`)."""
        channel = self.work.crm.channels.get(conversation.channel)
        rules = channel.sender_rules if channel is not None else None
        if conversation.party_id is not None or rules is None or not conversation.address_key:
            return {}
        if not rules.may_ignore(self.work, conversation.account):
            return {}
        found = {"sender": conversation.address_key}
        if channel is not None and channel.address_kind == "email":
            domain = domain_key("email", conversation.address_key)
            if domain is not None:
                found["domain"] = domain
        return found

    def ignore_sender(
        self, conversation_id: int, scope: str = "sender", *, seen: int | None = None
    ) -> str:
        """ "Not a client": an unknown sender's messages (or their domain's) are no longer
        recorded on the conversation's account, and the conversation is closed; the rule
        added.  Only in triage, for those who may change the account's rules; ``seen`` as
        for :meth:`close`."""
        if scope not in IGNORE_SCOPES:
            raise ValidationFailed({"scope": [f"one of {', '.join(IGNORE_SCOPES)}"]})
        conversation = self._for_update(conversation_id)
        if conversation.party_id is not None:
            raise ValidationFailed(
                {"_schema": [message("the sender is a client: only unknown senders")]}
            )
        channel = self.work.crm.channels.get(conversation.channel)
        if channel is None or channel.sender_rules is None:
            raise ValidationFailed({"_schema": [f"{conversation.channel} cannot ignore senders"]})
        rules = self.ignore_rules(conversation)
        if not rules:
            detail = "only those who manage the mailbox may stop recording a sender"
            raise PermissionDenied("conversation", "ignore_sender", detail)
        if scope not in rules:
            public = message("a public mail service's domain cannot be ignored: the address can")
            raise ValidationFailed({"scope": [public]})
        self._unseen(conversation.id, seen)
        channel.sender_rules.ignore(self.work, conversation.account, rules[scope])
        self.close(conversation.id)
        return rules[scope]

    def reopen(self, conversation_id: int) -> Conversation:
        """Open a closed or snoozed conversation again."""
        return self._change(conversation_id, status="open", closed_at=None, snoozed_until=None)

    def mark_read(self, conversation_id: int) -> Conversation:
        """Nothing unread any more."""
        return self._change(conversation_id, unread=0)

    def reply(
        self,
        conversation_id: int,
        *,
        body: str | None = None,
        template_id: int | None = None,
        subject: str | None = None,
        cc: tuple[str, ...] = (),
        attachment_ids: tuple[int, ...] = (),
    ) -> Activity:
        """Answer through the conversation's channel (queued in the outbox).

        ``cc``: copies to others (channels that can send copies; :meth:`reply_copies` are
        those the client's latest message went to besides us, for a reply to all);
        ``attachment_ids``: files sent with it (stored already, see ``work.attachments``).
        """
        conversation = self._for_update(conversation_id)
        record = self.record_of(conversation)
        # a client hidden from the actor (mail to their own mailbox from a colleague's
        # client) is answered all the same; a template then sees no client
        client = self.client_of(conversation)
        if template_id is not None:
            # the version in the client's language (else the deployment's, else the oldest)
            rendered = self.work.message_templates.render_for(
                template_id, party_id=client.id if client else None, record=record
            )
            body = body or rendered.body
            subject = subject or rendered.subject
        last_in = self.work.session.scalar(
            select(Activity)
            .where(Activity.conversation_id == conversation.id, Activity.direction == "in")
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
            .limit(1)
        )
        in_reply_to = last_in.external_id if last_in is not None else None
        refs = tuple(reversed((last_in.data or {}).get("refs", []))) if last_in else ()
        # from the account the client wrote to (support@, a personal mailbox), so the
        # client's answer comes back there too; the conversation's when the entry lacks it
        account = ((last_in.data or {}).get("account") if last_in else None) or conversation.account
        if subject is None and conversation.subject:
            subject = " ".join(conversation.subject.split())  # one line, whatever came in
            if not subject.lower().startswith("re:"):
                # "Re: " before a subject its column held at full length: cut to fit
                subject = f"Re: {subject}"[: Activity.subject.type.length]
        activity = self.work.channels.send(
            conversation.channel,
            to=conversation.address,
            body=body or "",
            subject=subject,
            party_id=conversation.party_id,
            record=record,
            in_reply_to=in_reply_to,
            references=(*refs, in_reply_to) if in_reply_to else refs,
            cc=cc,
            attachment_ids=attachment_ids,
            account=account,
            check_party=client is not None,  # a hidden client: the conversation vouches
        )
        activity.conversation_id = conversation.id
        if conversation.assignee_id is None:
            conversation.assignee_id = self.work.actor.user_id
        conversation.unread = 0
        return activity

    def record_of(self, conversation: Conversation) -> tuple[str, int] | None:
        """The deal or task the conversation is about, if the actor may see it.

        The thread chose it; a colleague's deal the actor may not see is not shown to them,
        and their reply goes to the client's timeline without it.
        """
        if not (conversation.record_entity and conversation.record_id):
            return None
        try:
            self.work.records(conversation.record_entity).get(conversation.record_id)
        except NotFound:
            return None
        return (conversation.record_entity, conversation.record_id)

    def filing_choices(self, conversation: Conversation) -> list[tuple[str, Any]]:
        """The client's open deals and tasks the actor may read and change, as
        ``(entity, record)``: what :meth:`file_on` may file the conversation on."""
        if conversation.party_id is None:
            return []
        from crmkit.services.channels import CLOSED_STATUSES

        found: list[tuple[str, Any]] = []
        for entity in FILED_ON:
            service = self.work.records(entity)
            try:
                statement = service.query("update").where(service.visible("read"))
            except PermissionDenied:  # no right to change any: none offered
                continue
            model = service.entity.model
            statement = statement.where(model.party_id == conversation.party_id)
            if hasattr(model, "closed_at"):
                statement = statement.where(model.closed_at.is_(None))
            if hasattr(model, "status"):
                statement = statement.where(model.status.not_in(sorted(CLOSED_STATUSES)))
            rows = self.work.session.scalars(statement.order_by(model.id).limit(MOST_CHOICES))
            found.extend((entity, row) for row in rows)
        return found

    def file_on(self, conversation_id: int, record: tuple[str, int] | None) -> Conversation:
        """File the conversation on one of its client's open deals or tasks (``None``: on
        the client alone), with its messages: its next replies go there, and so does the
        client's mail answering any message of it.

        The record must be the client's, open, and one the actor may change.  Messages the
        actor sees on no record or on the conversation's record move with it; those on a
        record hidden from the actor (a colleague's deal) stay where they are.
        """
        conversation = self._for_update(conversation_id)
        if conversation.party_id is None:
            first = message("the conversation has no client yet: create a lead or attach first")
            raise ValidationFailed({"filed_on": [first]})
        if record is not None:
            entity, record_id = record
            if entity not in FILED_ON:
                raise ValidationFailed({"filed_on": [message("a deal or a task of the client")]})
            row = self.work.records(entity).get(record_id, action="update")
            if row.party_id != conversation.party_id:
                raise ValidationFailed({"filed_on": [message("not a deal or task of this client")]})
            if not self.work.channels.record_open(entity, record_id):
                raise ValidationFailed({"filed_on": [message("closed: choose an open one")]})
        shown = self.record_of(conversation)
        if record == shown:
            return conversation
        entity_id = record or (None, None)
        movable = [Activity.record_entity.is_(None)]
        if shown is not None:
            movable.append(and_(Activity.record_entity == shown[0], Activity.record_id == shown[1]))
        moved = self.work.session.scalars(
            select(Activity).where(Activity.conversation_id == conversation.id, or_(*movable))
        ).all()
        for activity in moved:
            activity.record_entity, activity.record_id = entity_id
        before = [conversation.record_entity, conversation.record_id]
        conversation.record_entity, conversation.record_id = entity_id
        self.work.flush()
        self.work.audit(
            "conversation",
            conversation.id,
            "file_on",
            {"record_entity": [before[0], entity_id[0]], "record_id": [before[1], entity_id[1]]},
        )
        self._announce()
        return conversation

    def reply_copies(self, conversation_id: int) -> list[str]:
        """Whom the client's latest message was also addressed to (a reply to all copies them)."""
        conversation = self.get(conversation_id)
        data = self.work.session.scalar(
            select(Activity.data)
            .where(Activity.conversation_id == conversation.id, Activity.direction == "in")
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
            .limit(1)
        )
        return [str(address) for address in (data or {}).get("cc", [])]

    def lead_name(self, conversation: Conversation) -> dict[str, str]:
        """What :meth:`create_lead` names the sender's lead when no name is typed (see
        :meth:`crmkit.services.channels.ChannelService.lead_name`)."""
        channel = self.work.channels.channel(conversation.channel)
        return self.work.channels.lead_name(channel, conversation.address, conversation.sender_name)

    def create_lead(
        self, conversation_id: int, name: str | None = None, *, confirm_duplicates: bool = False
    ) -> Party:
        """Make the unknown sender a new lead and file the conversation there: named
        ``name``, else as :meth:`lead_name` says (the sender's name; for a nameless one,
        the person or company their address names, else the address).

        A likely duplicate is :class:`~crmkit.errors.DuplicatesFound` (attach to it instead,
        or confirm with ``confirm_duplicates``).
        """
        conversation = self._for_update(conversation_id)
        if conversation.party_id is not None:
            raise ValidationFailed({"party_id": ["the conversation already has a client"]})
        channel = self.work.channels.channel(conversation.channel)
        typed = (name or "").strip()
        named = {"kind": "person", "name": typed} if typed else self.lead_name(conversation)
        party = self.work.parties.create(
            {**named, "source": conversation.channel},
            confirm_duplicates=confirm_duplicates,
        )
        self.attach(conversation.id, party.id, _channel=channel)
        return party

    def attach(self, conversation_id: int, party_id: int, _channel: Any = None) -> Conversation:
        """File an unknown sender's conversation under an existing party (the address is kept)."""
        conversation = self._for_update(conversation_id)
        if conversation.party_id is not None:
            raise ValidationFailed({"party_id": ["the conversation already has a client"]})
        party = self.work.parties.get(party_id, action="update", follow_merge=True)
        party_id = party.id  # a merged-away id: the client it became
        self.file_triaged(conversation, party)
        changes: dict[str, list[Any]] = {"party_id": [None, party_id]}
        assignee = conversation.assignee_id
        if assignee is not None and not self._may_hold(assignee, conversation, party_id):
            # whoever took it in triage may not see this client: back to the queue
            conversation.assignee_id = None
            changes["assignee_id"] = [assignee, None]
        self.work.flush()
        self.work.audit("conversation", conversation.id, "attach", changes)
        self._announce()
        return conversation

    def file_triaged(self, conversation: Conversation, party: Party) -> None:
        """File the conversation under ``party``, with every earlier conversation of the same
        sender still without a client (closed in triage, say) and their messages.

        Only those of the same account owner: a personal mailbox's conversations are not
        moved onto a client's timeline by a shared mailbox's triage, nor the reverse.
        """
        session = self.work.session
        owner = Conversation.owner_id
        others = session.scalars(
            select(Conversation).where(
                Conversation.channel == conversation.channel,
                Conversation.address_key == conversation.address_key,
                Conversation.party_id.is_(None),
                Conversation.id != conversation.id,
                owner.is_(None)
                if conversation.owner_id is None
                else owner == conversation.owner_id,
            )
        ).all()
        filed = [conversation, *others]
        triaged = session.scalars(
            select(Activity)
            .where(
                Activity.conversation_id.in_([c.id for c in filed]),
                Activity.party_id.is_(None),
            )
            .order_by(Activity.id)
        ).all()
        for activity in triaged:
            self.work.channels.file_under(activity, party)
        for filing in filed:
            filing.party_id = party.id
            assignee = filing.assignee_id
            if (
                filing is not conversation
                and assignee is not None
                and not self._may_hold(assignee, filing, party.id)
            ):
                filing.assignee_id = None  # as attach does: back to the queue


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value
