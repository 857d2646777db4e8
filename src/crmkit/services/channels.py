"""Messages and calls through channels: the core half of the channel contract.

* :meth:`ChannelService.send` records an outbound message on the timeline (status
  ``queued``) and writes a ``channel.send`` outbox item in the same transaction; a worker
  hands it to the channel's adapter and updates the status.
* :meth:`ChannelService.ingest` records an inbound message exactly once per
  ``(channel, external_id)``, on the sender's party if one owns the address, else as a new
  lead or in triage (setting ``channels.unknown_sender``).
* :meth:`ChannelService.record_call` keeps one timeline entry per phone call across its
  phases.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import psycopg
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DataError, IntegrityError

from crmkit import events, i18n
from crmkit.builtins.core import crmkit_resolve_party as _core_resolve
from crmkit.channels import (
    AddressKind,
    Attachment,
    CallEvent,
    CallPhase,
    Capability,
    Channel,
    InboundMessage,
    OutboundMessage,
)
from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.identity import contact_key, sender_name_guess
from crmkit.model import Activity, AuditEntry, ContactPoint, Party
from crmkit.model import Attachment as AttachmentRow
from crmkit.services.bulk import allocate_ids, insert_rows, one_of, uses_arrays
from crmkit.services.conversations import InboundNote
from crmkit.services.limits import MAX_SENT_TEXT, refusals, written_text_refusal
from crmkit.storage import too_large

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork
    from crmkit.storage import StoredFile


#: Statuses of records (tasks and the like) that are over: mail no longer joins them.
CLOSED_STATUSES = frozenset({"done", "cancelled", "closed"})


#: How many copies one message may carry (SMTP servers commonly take 100 recipients; a
#: message to more people than this is a mailing, which has its own screens).
MAX_COPIES = 20

#: Errors that blame one message's data rather than the system (see ``ingest_isolated``).
#: what a message's own content can cause (refused by a handler or by the database); the
#: driver's own errors come straight from PostgreSQL's bulk COPY, which SQLAlchemy does not wrap
BAD_MESSAGE = (
    ValidationFailed,
    DataError,
    IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
)


def refusal_text(exc: BaseException) -> str:
    """How a message refused for its content (:data:`BAD_MESSAGE`) is reported: the
    error's kind and first line."""
    first_line = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:300]


_TOUCH_PARTY = (
    update(Party)
    .where(
        Party.id == bindparam("party"),
        (Party.last_activity_at < bindparam("when")) | Party.last_activity_at.is_(None),
    )
    .values(last_activity_at=bindparam("when"))
)


_ACTIVITY = Activity.__table__
# the batch look-ups, built once per kind of parameter (see ``one_of``): a batch asks each
# with a few hundred values
_RECORDED = {
    array: select(Activity.external_id).where(
        Activity.channel == bindparam("channel"),
        one_of(Activity.external_id, "ids", array=array),
    )
    for array in (False, True)
}
# the same order as the core resolver: most recently active owner first
_OWNERS = {
    array: select(ContactPoint.key, ContactPoint.party_id)
    .join(Party, Party.id == ContactPoint.party_id)
    .where(
        ContactPoint.kind == bindparam("kind"),
        one_of(ContactPoint.key, "keys", array=array),
        Party.merged_into_id.is_(None),
    )
    .order_by(Party.last_activity_at.desc(), Party.id.desc())
    for array in (False, True)
}
_THREADS = {
    array: select(Activity.external_id, Activity.record_entity, Activity.record_id).where(
        Activity.channel == bindparam("channel"),
        one_of(Activity.external_id, "ids", array=array),
        Activity.record_entity.is_not(None),
    )
    for array in (False, True)
}
_ATTACHMENT = AttachmentRow.__table__
_AUDIT = AuditEntry.__table__


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def address_key(channel: Channel, address: str, region: str) -> str:
    """The normalized key of an address on a channel (what contact points are matched by)."""
    return contact_key(
        channel.address_kind.value, address, region=region, service=channel.service
    ).key


def copies(channel: Channel, to: str, cc: Any, region: str) -> list[str]:
    """The copies of a message to ``to``: trimmed, each address once, ``to`` left out.

    Refuses (naming the field ``cc``) copies on a channel without ``Capability.COPIES``, an
    address the channel's kind does not accept, and more than :data:`MAX_COPIES`.
    """
    if isinstance(cc, str):
        cc = [cc]
    kind = channel.address_kind.value
    keys = {contact_key(kind, to, region=region, service=channel.service).key}
    kept: list[str] = []
    problems: list[Any] = []  # texts and messages (translated where they are shown)
    for value in cc or ():
        if not isinstance(value, str):
            problems.append(f"{value!r} is not an address")
            continue
        normalized = contact_key(kind, value, region=region, service=channel.service)
        if not normalized.value:
            continue
        if not normalized.valid:
            problems.append(
                i18n.message(
                    "{address} is not a valid {kind} address",
                    address=repr(normalized.value),
                    kind=i18n.Label(kind),
                )
            )
        elif normalized.key not in keys:
            keys.add(normalized.key)
            kept.append(normalized.value)
    if (kept or problems) and not channel.can(Capability.COPIES):
        raise ValidationFailed({"cc": [f"{channel.name} cannot send copies"]})
    if len(kept) > MAX_COPIES:
        problems.append(f"at most {MAX_COPIES} copies (a mailing reaches more people)")
    if problems:
        raise ValidationFailed({"cc": problems})
    return kept


def _file_row(
    work: UnitOfWork,
    saved: StoredFile,
    name: str,
    content_type: str | None,
    party_id: int | None,
    row: dict[str, Any],
) -> dict[str, Any]:
    """The ``attachment`` row of a file stored for the timeline entry ``row``."""
    return {
        "id": None,
        "storage_key": saved.key,
        "filename": name,
        "content_type": content_type or mimetypes.guess_type(name)[0] or "application/octet-stream",
        "size": saved.size,
        "sha256": saved.sha256,
        "document_type": None,
        "party_id": party_id,
        "uploaded_by_id": work.actor.user_id,
        "created_at": utcnow(),
        "record_entity": "activity",
        "record_id": row["id"],
    }


class ChannelService:
    """Sending, receiving and calls for every registered channel."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def channel(self, name: str) -> Channel:
        """The registered channel called ``name``."""
        channel = self.work.crm.channels.get(name)
        if channel is None:
            raise NotFound("channel", name)
        return channel

    @property
    def region(self) -> str:
        return str(self.work.crm.config["locale.phone_region"])

    # -- resolving parties -------------------------------------------------------------

    def resolve(self, kind: str, address: str, service: str | None = None) -> int | None:
        """The id of the party owning an address (through ``crmkit_resolve_party``)."""
        key = contact_key(kind, address, region=self.region, service=service).key
        return self.work.crm.pm.hook.crmkit_resolve_party(work=self.work, kind=kind, key=key)

    # -- outbound ----------------------------------------------------------------------

    def send(
        self,
        channel_name: str,
        *,
        to: str,
        body: str,
        subject: str | None = None,
        html: str | None = None,
        party_id: int | None = None,
        record: tuple[str, int] | None = None,
        in_reply_to: str | None = None,
        references: tuple[str, ...] = (),
        attachment_ids: tuple[int, ...] = (),
        account: str | None = None,
        idempotency_key: str | None = None,
        cc: tuple[str, ...] = (),
        check_party: bool = True,
    ) -> Activity:
        """Queue a message: a timeline entry now, the delivery by a worker after commit.

        ``cc``: further addresses that get the same message (see :func:`copies`).  A
        subject longer than its column (500 characters) or a text (``body``, ``html``)
        longer than ``MAX_SENT_TEXT`` is refused naming the field, nothing queued.
        ``check_party=False``: the caller has checked that the actor may write to this
        party's timeline without reading the party (the owner of a personal mailbox
        answering, from the conversation, a colleague's client who wrote to it).
        """
        channel = self.channel(channel_name)
        if not channel.can(Capability.SEND):
            raise ValidationFailed({"channel": [f"{channel.name} cannot send"]})
        if not (to or "").strip():
            raise ValidationFailed({"to": ["no recipient"]})
        for field, value in (("to", to), ("subject", subject or "")):
            if any(mark in value for mark in "\r\n\x00"):
                raise ValidationFailed({field: ["one line, without line breaks"]})
        if not (body or html or "").strip():
            raise ValidationFailed({"body": ["the message is empty"]})
        # what the API's schema refuses, refused for every writer (the contact center's
        # reply, a plugin's compose page): a subject its column cannot hold, a longer text
        too_long = refusals(Activity, {"subject": subject})
        for field, value in (("body", body), ("html", html)):
            problem = written_text_refusal(value or "", MAX_SENT_TEXT)
            if problem is not None:
                too_long[field] = [problem]
        if too_long:
            raise ValidationFailed(too_long)
        cc = tuple(copies(channel, to, cc, self.region))
        self.work.access.require("activity", "create")
        if party_id is not None and check_party:
            party_id = self.work.parties.get(party_id).id  # a merged-away id: the survivor
        for attachment_id in attachment_ids:
            self.work.attachments.get(attachment_id)
        activity = self.work.timeline.add(
            channel.activity_kind,
            party_id=party_id,
            subject=subject,
            body=body,
            record=record,
            direction="out",
            channel=channel.name,
            status="queued",
            data={
                "to": to,
                "account": account,
                "html": bool(html),
                **({"cc": list(cc)} if cc else {}),
                **({"attachments": list(attachment_ids)} if attachment_ids else {}),
            },
        )
        self.work.flush()
        key = idempotency_key or f"{channel.name}:activity:{activity.id}"
        message = OutboundMessage(
            channel=channel.name,
            to=to.strip(),
            body=body,
            subject=subject,
            html=html,
            idempotency_key=key,
            party_id=party_id,
            record_entity=record[0] if record else None,
            record_id=record[1] if record else None,
            sender_user_id=self.work.actor.user_id,
            account=account,
            in_reply_to=in_reply_to,
            references=references,
            activity_id=activity.id,
            cc=cc,
        )
        payload = attrs.asdict(message, recurse=True)
        payload["attachments"] = list(attachment_ids)
        self.work.outbox.add("channel.send", payload, idempotency_key=key, party_id=party_id)
        return activity

    # -- inbound -----------------------------------------------------------------------

    def ingest(self, message: InboundMessage) -> Activity | None:
        """Record an inbound message once; returns ``None`` when it was already recorded."""
        return self.ingest_many([message])[0]

    def ingest_many(self, messages: list[InboundMessage]) -> list[Activity | None]:
        """Record a batch of inbound messages, each once; ``None`` for those already recorded.

        The batch costs a handful of statements, not a handful per message: one query for
        the messages recorded already, one for the senders' parties, one for the threads,
        one for the open conversations, one INSERT of every timeline entry.  Senders nobody
        owns are handled per ``channels.unknown_sender`` (one lead per address, however many
        of its messages the batch holds).  A file refused (too large...) leaves its message
        without files, noted in its data as ``dropped_attachments``, and does not affect the
        rest of the batch.  :meth:`record_many` does the same without reading the entries
        back.
        """
        return self._activities(self.record_many(messages))

    def record_many(self, messages: list[InboundMessage]) -> list[int | None]:
        """:meth:`ingest_many` returning the entries' ids (``None`` for those recorded already).

        For bulk readers (mail sync): the timeline entries, new conversations and files are
        written with Core statements (ids allocated up front), no ORM objects are made, and
        ``crmkit_message_received`` gets loaded entries only when a plugin implements it.
        The ``message.received`` events are emitted as by :meth:`ingest_many`.
        """
        results: list[int | None] = [None] * len(messages)
        if not messages:
            return results
        work = self.work
        session = work.session
        region = self.region
        todo: list[tuple[int, InboundMessage, Channel, str]] = []
        seen: set[tuple[str, str]] = set()
        by_channel: dict[str, list[str]] = {}
        for message in messages:
            by_channel.setdefault(message.channel, []).append(message.external_id)
        recorded: set[tuple[str, str]] = set()
        for name, ids in by_channel.items():
            self.channel(name)
            for chunk in _chunks(sorted(set(ids))):
                recorded.update(
                    (name, external_id)
                    for external_id in session.scalars(
                        _RECORDED[uses_arrays(work.crm.engine)], {"channel": name, "ids": chunk}
                    )
                )
        for index, message in enumerate(messages):
            marker = (message.channel, message.external_id)
            if marker in recorded or marker in seen:
                continue
            seen.add(marker)
            channel = self.channel(message.channel)
            todo.append((index, message, channel, address_key(channel, message.sender, region)))
        if not todo:
            return results
        parties = self._resolve_keys({(c.address_kind.value, c.service, k) for _, _, c, k in todo})
        threads = self._thread_records(todo)
        rows: list[dict[str, Any]] = []
        planned: list[tuple[int, InboundMessage, Channel, int | None, str]] = []
        notes: dict[str, list[tuple[int, InboundNote]]] = {}
        touched: dict[int, Any] = {}
        arrived = utcnow()  # when the channel does not say when the peer got them
        for index, message, channel, key in todo:
            lookup = (channel.address_kind.value, channel.service, key)
            party_id = parties.get(lookup)
            status = "new"
            if party_id is None:
                party_id, status = self._unknown_sender(channel, message)
                if party_id is not None:
                    parties[lookup] = party_id  # the next message from them joins the lead
            record = self._thread_of(channel.name, message.thread_refs, threads)
            threads[(channel.name, message.external_id)] = record
            when = message.received_at or utcnow()
            notes.setdefault(channel.name, []).append(
                (
                    len(rows),
                    InboundNote(
                        address=message.sender[:320],
                        address_key=key[:320],
                        sender_name=message.sender_name[:300] if message.sender_name else None,
                        subject=message.subject[:500] if message.subject else None,
                        party_id=party_id,
                        record=record,
                        when=message.arrived_at or arrived,
                        account=message.account,
                        owner_id=message.owner_id,
                    ),
                )
            )
            if party_id is not None and (party_id not in touched or touched[party_id] < when):
                touched[party_id] = when
            rows.append(
                {
                    "id": None,
                    "party_id": party_id,
                    "kind": channel.activity_kind,
                    "occurred_at": when,
                    "actor_id": work.actor.user_id,
                    "by_assistant": work.actor.assistant,
                    "subject": message.subject[:500] if message.subject else None,
                    "body": message.body,
                    "data": {
                        "from": message.sender,
                        "from_name": message.sender_name,
                        "to": list(message.recipients),
                        "refs": list(message.thread_refs),
                        "account": message.account,
                        "has_html": bool(message.html),
                        **({"cc": list(message.cc)} if message.cc else {}),
                        **message.meta,
                    },
                    "direction": "in",
                    "channel": channel.name,
                    "external_id": message.external_id,
                    "status": status,
                    "pinned": False,
                    "record_entity": record[0] if record else None,
                    "record_id": record[1] if record else None,
                    "conversation_id": None,
                }
            )
            planned.append((index, message, channel, party_id, status))
        for name, noted in notes.items():
            conversation_ids = work.conversations.note_messages(name, [n for _, n in noted])
            for (position, _note), conversation_id in zip(noted, conversation_ids, strict=True):
                rows[position]["conversation_id"] = conversation_id
        connection = session.connection()
        for row, new_id in zip(rows, allocate_ids(connection, _ACTIVITY, len(rows)), strict=True):
            row["id"] = new_id
        # files are stored before the entries are written, so each entry's data names them
        late_files = self._store_files_early(planned, rows)
        insert_rows(connection, _ACTIVITY, rows)
        if touched:
            connection.execute(
                _TOUCH_PARTY,
                [{"party": party, "when": when} for party, when in touched.items()],
            )
        for position in late_files:
            self._store_files(planned[position][1], rows[position], planned[position][3])
        hook = work.crm.pm.hook.crmkit_message_received
        loaded = self._activities([row["id"] for row in rows]) if hook.get_hookimpls() else None
        for position, ((index, message, channel, party_id, status), row) in enumerate(
            zip(planned, rows, strict=True)
        ):
            results[index] = row["id"]
            if loaded is not None:
                hook(work=work, message=message, activity=loaded[position])
            work.emit(
                events.MESSAGE_RECEIVED,
                "activity",
                row["id"],
                party_id=party_id,
                channel=channel.name,
                status=status,
            )
        return results

    def _activities(self, ids: list[int | None]) -> list[Activity | None]:
        """The entries of ``ids`` (``None`` stays ``None``), loaded in one query per 500."""
        wanted = [i for i in ids if i is not None]
        found: dict[int, Activity] = {}
        for chunk in _chunks(wanted):  # type: ignore[arg-type]
            found.update(
                (a.id, a)
                for a in self.work.session.scalars(select(Activity).where(Activity.id.in_(chunk)))
            )
        return [found[i] if i is not None else None for i in ids]

    def record_isolated(
        self, messages: list[InboundMessage]
    ) -> tuple[list[int | None], dict[int, str]]:
        """:meth:`record_many`, where a message refused for its own content spoils nothing.

        The batch runs in a savepoint.  When it fails on a message's data (a refusal of a
        ``crmkit_message_received`` handler with :class:`ValidationFailed`, a value the
        database rejects), it is undone and run again message by message, each in its own
        savepoint: the others are recorded and the refused ones come back as
        ``{index: reason}`` for the caller to report.  Any other error (a handler down, the
        database gone) propagates, so the caller's whole transaction is retried later.
        """
        try:
            with self.work.savepoint():
                return self.record_many(messages), {}
        except BAD_MESSAGE:
            pass  # find the culprits one by one
        results: list[int | None] = []
        failures: dict[int, str] = {}
        for index, message in enumerate(messages):
            try:
                with self.work.savepoint():
                    results.append(self.record_many([message])[0])
            except BAD_MESSAGE as exc:
                results.append(None)
                failures[index] = refusal_text(exc)
        return results, failures

    def ingest_isolated(
        self, messages: list[InboundMessage]
    ) -> tuple[list[Activity | None], dict[int, str]]:
        """:meth:`ingest_many` with the isolation of :meth:`record_isolated`."""
        ids, failures = self.record_isolated(messages)
        return self._activities(ids), failures

    def _store_files_early(
        self,
        planned: list[tuple[int, InboundMessage, Channel, int | None, str]],
        rows: list[dict[str, Any]],
    ) -> list[int]:
        """Store the batch's files and their rows in bulk; positions left to ``_store_files``.

        For the system actor (sync workers) the checks ``attachments.add`` makes per file
        (permission, the party and the entry visible) hold by construction, so the files
        are saved and their rows written in one statement.  Other actors get them one by
        one through ``attachments.add`` after the entries exist.
        """
        positions = [p for p, plan in enumerate(planned) if plan[1].attachments]
        if not positions or not self.work.actor.system:
            return positions
        work = self.work
        storage = work.crm.storage
        limit = int(work.crm.config["storage.max_upload_mb"]) * 1024 * 1024
        stored_rows: list[dict[str, Any]] = []
        audits: list[tuple[int, str]] = []
        for position in positions:
            message, party_id, row = planned[position][1], planned[position][3], rows[position]
            files: list[dict[str, Any]] = []
            saved_here: list[str] = []  # by this call (a reader's stored files are its own)
            try:
                for attachment in message.attachments:
                    if attachment.data is None and attachment.stored is None:
                        continue
                    name = (attachment.filename or "attachment").strip()
                    name = name.replace("/", "_").replace("\\", "_")
                    if not name:
                        raise ValidationFailed({"filename": ["a file needs a name"]})
                    if attachment.stored is not None:
                        # written by the reader: referred to, not copied (nor deleted here)
                        saved = attachment.stored
                        if saved.size > limit:
                            raise ValidationFailed({"file": [too_large(limit)]})
                    else:
                        try:
                            saved = storage.save([attachment.data], max_size=limit)
                        except ValueError as exc:
                            raise ValidationFailed({"file": [str(exc)]}) from None
                        saved_here.append(saved.key)
                    files.append(
                        _file_row(work, saved, name, attachment.content_type, party_id, row)
                    )
            except (ValidationFailed, OSError) as exc:
                for key in saved_here:
                    storage.delete(key)
                names = ", ".join(a.filename or "attachment" for a in message.attachments)
                row["data"]["dropped_attachments"] = f"{names}: {exc}"[:500]
                continue
            for key in saved_here:
                work.on_rollback(lambda key=key: storage.delete(key))
            stored_rows += files
            if files:
                row["data"]["attachments"] = files
        connection = work.session.connection()
        ids = allocate_ids(connection, _ATTACHMENT, len(stored_rows))
        for file, new_id in zip(stored_rows, ids, strict=True):
            file["id"] = new_id
            audits.append((new_id, file["filename"]))
        for position in positions:
            data = rows[position]["data"]
            if "attachments" in data:
                data["attachments"] = [file["id"] for file in data["attachments"]]
        insert_rows(connection, _ATTACHMENT, stored_rows)
        now = utcnow()
        insert_rows(
            connection,
            _AUDIT,
            [
                {
                    "at": now,
                    "actor_id": work.actor.user_id,
                    "actor_label": work.actor.label,
                    "entity": "attachment",
                    "record_id": attachment_id,
                    "action": "create",
                    "changes": {"filename": [None, name], "document_type": [None, None]},
                }
                for attachment_id, name in audits
            ],
        )
        return []

    def _store_files(
        self, message: InboundMessage, row: dict[str, Any], party_id: int | None
    ) -> None:
        """Store a message's files; refused ones are all dropped and noted on the message."""
        data = {**row["data"], **self.keep_files(row["id"], message.attachments, party_id)}
        if data != row["data"]:
            row["data"] = data
            self.work.session.execute(
                update(Activity).where(Activity.id == row["id"]).values(data=data)
            )

    def keep_files(
        self, entry_id: int, files: Sequence[Attachment], party_id: int | None
    ) -> dict[str, Any]:
        """Store a message's files on its timeline entry, all of them or, when one is
        refused (too large, a full disk), none; what to add to the entry's data:
        ``{"attachments": [ids]}``, ``{"dropped_attachments": "names: why"}`` or nothing.

        A file a reader stored itself (``Attachment.stored``) is copied: it stays the
        reader's.  The files are kept on the entry even while it waits in triage (its party
        comes later).
        """
        try:
            with self.work.savepoint():
                stored_ids = []
                for attachment in files:
                    content = attachment.data
                    if content is None and attachment.stored is not None:
                        with self.work.crm.storage.open(attachment.stored.key) as handle:
                            content = handle.read()
                    if content is None:
                        continue
                    stored = self.work.attachments.add(
                        attachment.filename or "attachment",
                        content,
                        party_id=party_id,
                        record=("activity", entry_id),
                        content_type=attachment.content_type,
                        timeline=False,
                    )
                    stored_ids.append(stored.id)
        except (ValidationFailed, OSError) as exc:
            names = ", ".join(a.filename or "attachment" for a in files)
            return {"dropped_attachments": f"{names}: {exc}"[:500]}
        return {"attachments": stored_ids} if stored_ids else {}

    def _resolve_keys(
        self, lookups: set[tuple[str, str | None, str]]
    ) -> dict[tuple[str, str | None, str], int | None]:
        """Parties owning each ``(kind, service, key)``: one query when only the core resolves."""
        hook = self.work.crm.pm.hook.crmkit_resolve_party
        found: dict[tuple[str, str | None, str], int | None] = {}
        if any(impl.function is not _core_resolve for impl in hook.get_hookimpls()):
            for lookup in lookups:  # a plugin resolves too: ask the hook, address by address
                found[lookup] = hook(work=self.work, kind=lookup[0], key=lookup[2])
            return found
        by_kind: dict[str, list[str]] = {}
        for kind, _service, key in lookups:
            by_kind.setdefault(kind, []).append(key)
        owners: dict[tuple[str, str], int] = {}
        for kind, keys in by_kind.items():
            for chunk in _chunks(sorted(set(keys))):
                rows = self.work.session.execute(
                    _OWNERS[uses_arrays(self.work.crm.engine)], {"kind": kind, "keys": chunk}
                )
                for key, party_id in rows:
                    owners.setdefault((kind, key), party_id)
        for lookup in lookups:
            found[lookup] = owners.get((lookup[0], lookup[2]))
        return found

    def _thread_records(
        self, todo: list[tuple[int, InboundMessage, Channel, str]]
    ) -> dict[tuple[str, str], tuple[str, int] | None]:
        """Records of the earlier messages a batch refers to, in one query per channel."""
        refs: dict[str, set[str]] = {}
        for _, message, channel, _ in todo:
            refs.setdefault(channel.name, set()).update(message.thread_refs[:100])
        found: dict[tuple[str, str], tuple[str, int] | None] = {}
        for name, wanted in refs.items():
            for chunk in _chunks(sorted(wanted)):
                rows = self.work.session.execute(
                    _THREADS[uses_arrays(self.work.crm.engine)], {"channel": name, "ids": chunk}
                )
                for row in rows:
                    found[(name, row.external_id)] = (row.record_entity, row.record_id)
        return found

    def _thread_of(
        self,
        channel_name: str,
        refs: tuple[str, ...],
        known: dict[tuple[str, str], tuple[str, int] | None],
    ) -> tuple[str, int] | None:
        for ref in refs[:100]:
            record = known.get((channel_name, ref))
            if record is not None and self._record_open(*record):
                return record
        return None

    def thread_record(self, channel_name: str, refs: tuple[str, ...]) -> tuple[str, int] | None:
        """The open record (deal, task...) of the conversation a message answers.

        ``refs`` are the ids of earlier messages (mail References, a replied-to Telegram
        message), nearest first; the first one recorded on this channel with a record that
        is still open gives it.  Closed records (a ``closed_at`` or a done/cancelled status)
        are passed over, so a new request after a won deal starts fresh.
        """
        if not refs:
            return None
        rows = self.work.session.execute(
            select(Activity.external_id, Activity.record_entity, Activity.record_id).where(
                Activity.channel == channel_name,
                Activity.external_id.in_(list(refs[:100])),
                Activity.record_entity.is_not(None),
            )
        ).all()
        found = {row.external_id: (row.record_entity, row.record_id) for row in rows}
        for ref in refs:
            record = found.get(ref)
            if record is not None and self._record_open(*record):
                return record
        return None

    def record_open(self, entity: str, record_id: int) -> bool:
        """Whether a record (deal, task...) is still open: mail still joins it."""
        return self._record_open(entity, record_id)

    def _record_open(self, entity: str, record_id: int) -> bool:
        try:
            model = self.work.crm.entity(entity).model
        except Exception:  # an entity of a plugin no longer loaded
            return False
        row = self.work.session.get(model, record_id)
        if row is None or getattr(row, "closed_at", None) is not None:
            return False
        return getattr(row, "status", None) not in CLOSED_STATUSES

    def _unknown_sender(self, channel: Channel, message: InboundMessage) -> tuple[int | None, str]:
        policy = self.work.crm.config.get("channels.unknown_sender", "triage")
        # an auto-reply or a mail system's notice (the channel says so): nobody to sell to
        if policy != "lead" or message.meta.get("automatic") or message.meta.get("suspicious"):
            return None, "triage"
        contact_kind = channel.address_kind.value
        party = self.work.parties.create(
            {
                **self.lead_name(channel, message.sender, message.sender_name),
                "source": channel.name,
                "owner_id": None,
                "contact_points": [
                    {
                        "kind": contact_kind,
                        "value": message.sender,
                        **({"service": channel.service} if channel.service else {}),
                    }
                ],
            },
            # the address is unknown (checked above); a namesake is no reason to drop mail
            confirm_duplicates=True,
        )
        return party.id, "new"

    def lead_name(self, channel: Channel, address: str, sender_name: str | None) -> dict[str, str]:
        """What a new lead from an unknown sender is (``kind``) and is called (``name``,
        ``first_name``, ``last_name``): the name the sender gave; else, for mail, what
        their address says (:func:`crmkit.identity.sender_name_guess`: *Ivan Petrov* from
        ``ivan.petrov@``, the company *Romashka* from ``info@romashka.ru``); else the
        address.  The one place both the contact center's "Create a lead" and the
        ``channels.unknown_sender = "lead"`` policy name a lead."""
        given = (sender_name or "").strip()
        if given:
            return {"kind": "person", "name": given}
        if channel.address_kind is not AddressKind.EMAIL:
            return {"kind": "person", "name": address.strip()}
        guess = sender_name_guess(address)
        names = {"first_name": guess.first_name, "last_name": guess.last_name}
        return {
            "kind": guess.kind,
            "name": guess.name,
            **{key: value for key, value in names.items() if value},
        }

    def attach_to_party(self, activity_id: int, party_id: int) -> Activity:
        """File a triaged message under a party (and remember the address on it)."""
        activity = self.work.session.get(Activity, activity_id)
        if activity is None or activity.party_id is not None:
            raise NotFound("activity", activity_id)
        self.work.access.require("activity", "update")
        party = self.work.parties.get(party_id, action="update", follow_merge=True)
        return self.file_under(activity, party)

    def file_under(self, activity: Activity, party: Any) -> Activity:
        """Move a triaged message (and its files) to ``party``; the caller checked access."""
        channel = self.channel(activity.channel or "")
        sender = (activity.data or {}).get("from")
        if sender and channel.address_kind in (
            AddressKind.EMAIL,
            AddressKind.PHONE,
            AddressKind.MESSENGER,
        ):
            key = address_key(channel, sender, self.region)
            known = self.work.session.scalar(
                select(ContactPoint.id).where(
                    ContactPoint.party_id == party.id, ContactPoint.key == key
                )
            )
            if known is None:
                self.work.parties.add_contact(
                    party, channel.address_kind.value, sender, service=channel.service
                )
        activity.party_id = party.id
        if activity.direction != "out":  # a reply sent from triage keeps its delivery state
            activity.status = "new"
        for attachment_id in (activity.data or {}).get("attachments", []):
            stored = self.work.session.get(AttachmentRow, attachment_id)
            if stored is not None and stored.party_id is None:
                stored.party_id = party.id
        self.work.timeline.touch(party.id, activity.occurred_at)
        self.work.audit("activity", activity.id, "attach", {"party_id": [None, party.id]})
        return activity

    # -- calls -------------------------------------------------------------------------

    def record_call(self, call: CallEvent) -> Activity:
        """Record a phase of a call; one timeline entry per ``call_id`` is kept up to date."""
        channel = self.channel(call.channel)
        external_id = f"call:{call.call_id}"
        activity = self.work.session.scalar(
            select(Activity).where(
                Activity.channel == channel.name, Activity.external_id == external_id
            )
        )
        when = call.at or utcnow()
        if activity is None:
            party_id = self.resolve("phone", call.remote)
            activity = self.work.timeline.add(
                "call",
                party_id=party_id,
                subject=call.remote,
                direction=call.direction,
                channel=channel.name,
                external_id=external_id,
                occurred_at=when,
                status=call.phase.value,
                data={
                    "remote": call.remote,
                    "extension": call.extension,
                    "user_id": call.user_id,
                    "phases": {call.phase.value: when.isoformat()},
                },
            )
        else:
            data: dict[str, Any] = dict(activity.data or {})
            data["phases"] = {**data.get("phases", {}), call.phase.value: when.isoformat()}
            if call.user_id is not None:
                data["user_id"] = call.user_id
            if call.duration_seconds is not None:
                data["duration"] = call.duration_seconds
            if call.recording_url:
                data["recording_url"] = call.recording_url
            activity.data = data
            if not (activity.status == CallPhase.ANSWERED and call.phase == CallPhase.MISSED):
                activity.status = call.phase.value
        self.work.flush()
        self.work.crm.pm.hook.crmkit_call_event(work=self.work, call=call, activity=activity)
        self.work.emit(
            events.CALL_EVENT,
            "activity",
            activity.id,
            party_id=activity.party_id,
            phase=call.phase.value,
            direction=call.direction,
        )
        return activity
