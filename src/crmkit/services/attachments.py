"""Files on parties and records, kept by the application's storage backend.

The content is written before the database row; if the transaction then rolls back, the
stored file is deleted again, so a failed upload leaves nothing behind.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import select

from crmkit.errors import PermissionDenied, ValidationFailed
from crmkit.i18n import Label, message
from crmkit.model import Attachment

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

_CHUNK = 1 << 16


def _chunks(content: bytes | BinaryIO | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(content, bytes | bytearray):
        yield bytes(content)
        return
    read = getattr(content, "read", None)
    if read is not None:
        while chunk := read(_CHUNK):
            yield chunk
        return
    yield from content  # type: ignore[misc]


class AttachmentService:
    """Adding, reading and removing files."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work
        self.entity = work.crm.entities["attachment"]

    def add(
        self,
        filename: str,
        content: bytes | BinaryIO | Iterable[bytes],
        *,
        party_id: int | None = None,
        record: tuple[str, int] | None = None,
        document_type: str | None = None,
        content_type: str | None = None,
        timeline: bool = True,
    ) -> Attachment:
        """Store a file and link it; ``document_type`` marks papers pipelines may require."""
        work = self.work
        work.access.require("attachment", "create")
        name = (filename or "").strip().replace("/", "_").replace("\\", "_")
        if not name:
            raise ValidationFailed({"filename": ["a file needs a name"]})
        if party_id is None and record is None:
            raise ValidationFailed({"party_id": ["a file belongs to a party or a record"]})
        if party_id is not None:
            party_id = work.parties.get(party_id).id  # a merged-away id: the survivor
            self._editable("party", party_id)
        if record is not None:
            linked = self._editable(*record)
            if party_id is None:
                party_id = work.records(record[0]).party_id_of(linked)
        limit = int(work.crm.config["storage.max_upload_mb"]) * 1024 * 1024
        try:
            stored = work.crm.storage.save(_chunks(content), max_size=limit)
        except ValueError as exc:
            raise ValidationFailed({"file": [str(exc)]}) from None
        work.on_rollback(lambda: work.crm.storage.delete(stored.key))
        kind = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        attachment = Attachment(
            storage_key=stored.key,
            filename=name,
            content_type=kind,
            size=stored.size,
            sha256=stored.sha256,
            document_type=document_type,
            party_id=party_id,
            uploaded_by_id=work.actor.user_id,
            record_entity=record[0] if record else None,
            record_id=record[1] if record else None,
        )
        work.session.add(attachment)
        work.flush()
        work.audit(
            "attachment",
            attachment.id,
            "create",
            {"filename": [None, name], "document_type": [None, document_type]},
        )
        if timeline and party_id is not None:
            work.timeline.add(
                "file",
                party_id=party_id,
                subject=name,
                record=record,
                data={
                    "attachment_id": attachment.id,
                    "size": stored.size,
                    "document_type": document_type,
                },
            )
        return attachment

    def may_attach(self, party_id: int) -> bool:
        """Whether the actor may put a file on this (readable) client: the forms that
        carry a file field offer it only then, instead of a refusal after the upload."""
        if not self.work.access.can("attachment", "create"):
            return False
        try:
            self._editable("party", party_id)
        except PermissionDenied:
            return False
        return True

    def _editable(self, entity: str, record_id: int) -> Any:
        """The record a file is to be attached to, which the actor must be allowed to edit.

        A file is one of the record's documents (a stage may require it), so attaching one
        is an edit: reading the record is not enough.  A hidden or missing record is
        :class:`NotFound`; a user's own record is theirs, as their profile is, and anyone
        else's takes ``update`` on ``user``.
        """
        work = self.work
        service = work.records(entity)
        record = service.get(record_id)
        if entity == "user" and record.id == work.actor.user_id:
            return record
        try:
            service.get(record, action="update")
        except PermissionDenied:
            kind = work.crm.entities[entity]
            raise PermissionDenied(
                entity,
                "update",
                message(
                    "{entity} {id}: attaching a file takes the permission to edit the record",
                    entity=Label(kind.label or entity),
                    id=record.id,
                ),
            ) from None
        return record

    def get(self, attachment_id: int) -> Attachment:
        """One visible attachment."""
        return self.work.records("attachment").get(attachment_id)

    def open(self, attachment_id: int) -> tuple[Attachment, BinaryIO]:
        """A visible attachment and a binary stream of its content."""
        attachment = self.get(attachment_id)
        return attachment, self.work.crm.storage.open(attachment.storage_key)

    def for_record(self, entity: str, record_id: int) -> list[Attachment]:
        """Files attached to a visible record."""
        self.work.records(entity).get(record_id)
        return list(
            self.work.session.scalars(
                select(Attachment)
                .where(Attachment.record_entity == entity, Attachment.record_id == record_id)
                .order_by(Attachment.id)
            )
        )

    def for_party(self, party_id: int) -> list[Attachment]:
        """Files of a visible party (its records' files included)."""
        party_id = self.work.parties.get(party_id).id
        return list(
            self.work.session.scalars(
                select(Attachment)
                .where(Attachment.party_id == party_id)
                .where(self.work.access.where(self.entity, "read"))
                .order_by(Attachment.id.desc())
            )
        )

    def of_entries(self, entries: Iterable[Any]) -> dict[int, list[Attachment]]:
        """The files each timeline entry carries (``data["attachments"]``: a mail's files),
        by entry id, those the actor may read, in one query; entries without any are left out.
        """
        wanted = {
            entry.id: [i for i in (entry.data or {}).get("attachments") or () if isinstance(i, int)]
            for entry in entries
        }
        ids = {i for listed in wanted.values() for i in listed}
        if not ids or not self.work.access.can("attachment", "read"):
            return {}
        found = {
            a.id: a
            for a in self.work.session.scalars(
                select(Attachment)
                .where(Attachment.id.in_(sorted(ids)))
                .where(self.work.access.where(self.entity, "read"))
            )
        }
        shown = {
            entry_id: [found[i] for i in listed if i in found]
            for entry_id, listed in wanted.items()
        }
        return {entry_id: files for entry_id, files in shown.items() if files}

    def delete(self, attachment_id: int) -> None:
        """Remove a file (its content goes once the transaction commits)."""
        attachment = self.work.records("attachment").get(attachment_id, action="delete")
        key = attachment.storage_key
        self.work.session.delete(attachment)
        self.work.audit(
            "attachment", attachment_id, "delete", {"filename": [attachment.filename, None]}
        )
        self.work.after_commit(lambda: self.work.crm.storage.delete(key))
