"""Attachments: multipart upload with the size limit, and download."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from marshmallow import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive

from crmkit.errors import NotFound, ValidationFailed
from crmkit.schemas.api import AttachmentUploadSchema
from crmkit.schemas.output import detail_schema
from crmkit.web.api.auth import acting, in_thread
from crmkit.web.api.operations import Operation, linked
from crmkit.web.api.params import parse_id
from crmkit.web.api.records import record_response
from crmkit.web.api.responses import MEGABYTE, ApiError, too_large
from crmkit.web.forms import refuse_nul

#: Room for the multipart framing and the small fields around the file.
FRAMING = 64 * 1024
_CHUNK = 1 << 16


def _too_large(limit: int) -> ApiError:
    return too_large("files", limit, "storage.max_upload_mb", field="file")


def _limited(receive: Receive, limit: int, file_limit: int) -> Receive:
    """``receive`` that refuses the request once its body passes ``limit`` bytes.

    The multipart parser spools to disk; without this a client could fill the disk with a
    body far beyond the limit before the size of the file is ever checked.
    """
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(file_limit)
        return message

    return counted


async def upload(request: Request) -> Response:
    """Store a file on a party or record (``multipart/form-data``)."""
    crm = request.app.state.crm
    limit = int(crm.config["storage.max_upload_mb"]) * MEGABYTE
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            415,
            "Unsupported media type",
            "upload files as multipart/form-data with the file in the `file` field",
            kind="unsupported-media-type",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FRAMING:
        raise _too_large(limit)
    limited = Request(request.scope, _limited(request.receive, limit + FRAMING, limit))
    try:
        form = await limited.form(max_files=1, max_fields=20)
    except ApiError:
        raise
    except Exception as exc:  # the multipart parser's own complaint about malformed input
        raise ApiError(
            400, "Bad request", f"malformed multipart body: {exc}", kind="bad-request"
        ) from None
    try:
        refuse_nul(form)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise ValidationFailed({"file": ["attach the file in the `file` field"]})
        if file.size is not None and file.size > limit:
            raise _too_large(limit)
        fields = {k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str)}
        try:
            values = AttachmentUploadSchema(partial=("file",)).load(fields)
        except ValidationError as exc:
            raise ValidationFailed(exc.messages_dict) from None  # type: ignore[arg-type]
        if bool(values.get("record_entity")) != bool(values.get("record_id")):
            raise ValidationFailed({"record_id": ["give record_entity and record_id together"]})
        entity = crm.entities["attachment"]

        def action(work: Any) -> Response:
            record = None
            if values.get("record_entity"):
                if values["record_entity"] not in work.crm.entities:
                    raise ValidationFailed(
                        {"record_entity": [f"no entity {values['record_entity']!r}"]}
                    )
                record = (values["record_entity"], values["record_id"])
                with linked("record_id"):
                    work.records(record[0]).get(record[1])
            if values.get("party_id") is not None:
                with linked("party_id"):
                    work.parties.get(values["party_id"])
            file.file.seek(0)
            attachment = work.attachments.add(
                file.filename or "",
                file.file,
                party_id=values.get("party_id"),
                record=record,
                document_type=values.get("document_type"),
                content_type=file.content_type,
            )
            return record_response(
                work, entity, attachment, 201, Location=f"/api/v1/attachment/{attachment.id}"
            )

        return await in_thread(request, action)
    finally:
        await form.close()


def download(request: Request) -> Response:
    """The content of a file you may see."""
    attachment_id = parse_id(request.path_params["id"])
    if attachment_id is None:
        raise NotFound("attachment", request.path_params["id"])
    with acting(request) as work:
        attachment, stream = work.attachments.open(attachment_id)
    ascii_name = attachment.filename.encode("ascii", "replace").decode().replace('"', "_")
    headers = {
        "Content-Disposition": (
            f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{quote(attachment.filename, safe='')}"
        ),
        "Content-Length": str(attachment.size),
        "ETag": f'"{attachment.sha256}"',
        "X-Content-Type-Options": "nosniff",
    }

    def chunks() -> Any:
        with stream:
            while chunk := stream.read(_CHUNK):
                yield chunk

    return StreamingResponse(chunks(), media_type=attachment.content_type, headers=headers)


def operations(crm: Any) -> list[Operation]:
    """Upload and download."""
    entity = crm.entities["attachment"]
    return [
        Operation(
            "POST",
            "/attachment",
            upload,
            "upload_attachment",
            "Upload a file",
            entity.label_plural or "Files",
            description=(
                "`multipart/form-data` with the file in `file` and `party_id` and/or "
                "`record_entity` + `record_id`; larger than `storage.max_upload_mb` answers 413."
            ),
            body={"multipart/form-data": {"schema": AttachmentUploadSchema}},
            responses={201: ("The stored file's record.", detail_schema(entity))},
            errors=(403, 413, 415, 422),
        ),
        Operation(
            "GET",
            "/attachment/{id:id}/content",
            download,
            "download_attachment",
            "Download a file",
            entity.label_plural or "Files",
            responses={
                200: (
                    "The file's bytes.",
                    {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                )
            },
            errors=(403, 404),
        ),
    ]
