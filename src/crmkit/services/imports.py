"""Importing contacts from CSV and XLSX files, and exporting lists and groups.

An import is an :class:`~crmkit.model.ImportRun`::

    with crm.acting_as(user) as work:
        run = work.imports.start("clients.csv", data, source="old-crm")  # mapping guessed
        work.imports.preview(run.id)       # the first rows as they would be written
    run_import(crm, run.id)                # the job (or `crmkit import FILE`)

* Files as Russian Excel writes them are read as they are: UTF-8 (with or without BOM),
  UTF-16 with a BOM ("Unicode text") or windows-1251, ``;`` or ``,`` or tab between
  columns, ``1 234,56`` numbers and ``31.12.2025`` dates.
* Columns map to fields (``name``, ``phone``, ``email``, ``custom.inn``...); the mapping is
  guessed from the headers and remembered per ``source`` for the next file.
* Each batch of rows is one transaction that also moves the checkpoint (``done_rows``):
  an interrupted or failed import resumes after the last committed batch and a row is
  never half written.  A bad row is skipped with its row number, column and reason in the
  error report; the others are imported.  A row's number is the one the user sees: the
  header is 1, a CSV row is numbered by the line it starts on, an XLSX row by the sheet.
* Duplicates (the same phone, email, site or name as an existing client or as an earlier
  row of the file) are skipped, updated or created anyway: ``on_duplicate`` for the whole
  file, ``choices`` per row (from the preview).
* A row with no such duplicate whose name looks like a client's (one typo in a word, as
  screening finds it: ``ООО "Рамашка"`` for ``«Ромашка»``) is a *possible duplicate*: it is
  created unless its row's choice says ``skip`` or ``update`` (a guess never skips or
  overwrites on the file-wide setting), and listed in the report with the client's id and
  the name score.
* Duplicates are looked for in the whole base, but the preview and the report name only
  the clients the importer may read (the parties' own scope predicate, as screening asks
  it): another one is "a client you may not see", without its id or name.
* Errors and report lines are :class:`~crmkit.i18n.Message` s where they have parameters:
  a line keeps its English ``reason`` and, under ``message``, the template and parameters
  a screen translates (:func:`reason_text`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import multiprocessing
import re
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from crmkit.access.rules import Scope
from crmkit.clock import utcnow
from crmkit.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from crmkit.i18n import Label, Message, message, translate
from crmkit.identity import contact_key, name_skeleton, whole_name_key
from crmkit.model import (
    ContactPoint,
    ImportMapping,
    ImportRun,
    Party,
    PartyMatchKey,
    Tag,
    User,
)
from crmkit.reports import csv_cell, xlsx_cell
from crmkit.services.bulk import bulk_create_parties, chunked, one_of, uses_arrays
from crmkit.services.limits import refusals
from crmkit.services.screening import BatchLookalikes, Lookalike

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

JOB_NAME = "clientbase.import"
BATCH_ROWS = 2000
#: Possible duplicates listed one by one in a run's report (the rest are counted: a file
#: with more look-alikes than this is a case for the whole-base duplicate report).
REPORTED_LOOKALIKES = 10_000
ON_DUPLICATE = ("skip", "update", "create")
#: The error of a row duplicating a client the importer may not edit (or not even see).
UNEDITABLE = "duplicate of a client you may not edit: skipped"
#: The error of a row updating a client someone else saved (or merged away) between the
#: import's reading it and its write: the row is written not at all, the batch goes on.
CHANGED_MEANWHILE = "changed by someone else meanwhile: import it again"
#: The error report's columns (translated with the reasons: crmkit.web.i18n.SERVICE_MESSAGES).
REPORT_HEADER = ("row", "column", "reason")
#: What a row that creates, skips or updates did, in its report line.
DONE = {"create": "created", "skip": "skipped", "update": "updated"}
CONTACT_FIELDS = ("phone", "email", "website")
PLAIN_FIELDS = (
    "name",
    "kind",
    "first_name",
    "last_name",
    "position",
    "source",
    "description",
    "customer_type",
)
FIELDS = (*PLAIN_FIELDS, *CONTACT_FIELDS, "tags", "owner", "stage")

#: Header words that name a field (lower case), Russian and English.
GUESSES = {
    "name": ("name", "название", "наименование", "компания", "организация", "клиент", "фио"),
    "first_name": ("first name", "имя"),
    "last_name": ("last name", "фамилия"),
    "phone": ("phone", "телефон", "тел", "мобильный", "tel"),
    "email": ("email", "e-mail", "почта", "эл. почта", "mail"),
    "website": ("website", "site", "сайт", "url"),
    "position": ("position", "должность"),
    "source": ("source", "источник"),
    "description": ("description", "comment", "комментарий", "описание", "примечание"),
    "tags": ("tags", "теги", "метки"),
    "owner": ("owner", "manager", "ответственный", "менеджер"),
    "stage": ("stage", "стадия", "этап", "статус"),
    "kind": ("kind", "тип"),
}

_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")


# -- reading files ------------------------------------------------------------------------


#: Byte-order marks and the encodings they announce (Excel's "Unicode text" is UTF-16 LE).
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8", "UTF-8"),
    (b"\xff\xfe", "utf-16-le", "UTF-16"),
    (b"\xfe\xff", "utf-16-be", "UTF-16"),
)


def decode(data: bytes) -> str:
    """Text of a CSV file: UTF-8 (BOM or not), UTF-16 with a BOM (Excel's "Unicode text"),
    else windows-1251.  Bytes that are none of these, or a NUL character (no spreadsheet
    writes one in a cell: it is most likely UTF-16 without its BOM, and PostgreSQL cannot
    store it), are a :class:`ValidationFailed` on ``file`` naming the byte and its line."""
    for bom, encoding, label in _BOMS:
        if data.startswith(bom):
            return _decoded(data[len(bom) :], encoding, label, len(bom))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _decoded(data, "cp1251", None, 0)
    return _checked(text, "utf-8", None, 0)


def _decoded(data: bytes, encoding: str, label: str | None, skipped: int) -> str:
    """``data`` decoded; ``label`` names the encoding a BOM announced (``None``: none did,
    UTF-8 and windows-1251 were tried)."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.end]
        if encoding.startswith("utf-16"):
            line = data[: exc.start].decode(encoding, "replace").count("\n") + 1
        else:
            line = data[: exc.start].count(b"\n") + 1
        _refuse(label, skipped + exc.start + 1, line, bad[:1])
    return _checked(text, encoding, label, skipped)


def _checked(text: str, encoding: str, label: str | None, skipped: int) -> str:
    """``text``, unless it holds a NUL character (refused naming its byte and line)."""
    at = text.find("\x00")
    if at >= 0:
        byte = skipped + len(text[:at].encode(encoding)) + 1
        _refuse(label, byte, text.count("\n", 0, at) + 1, b"\x00")
    return text


def _refuse(label: str | None, byte: int, line: int, value: bytes) -> None:
    where = {"byte": byte, "line": line, "value": f"0x{value.hex().upper()}"}
    if label is None:
        refusal = message(
            "not UTF-8 or windows-1251 text: byte {byte} (line {line}) is {value}; "
            "save the file as CSV UTF-8",
            **where,
        )
    else:
        refusal = message(
            "not {encoding} text: byte {byte} (line {line}) is {value}; save the file as CSV UTF-8",
            encoding=label,
            **where,
        )
    raise ValidationFailed({"file": [refusal]}) from None


Rows = Iterator[tuple[int, list[str]]]


def read_rows(filename: str, data: bytes) -> tuple[list[str], Rows]:
    """The header and the rows (as strings) of a CSV or XLSX file, each row with its number
    in the file as the user sees it (the header is 1): the line of a CSV file on which it
    starts (a quoted cell of several lines counts them all), the row of the sheet.  Blank
    rows are left out, and counted."""
    if filename.lower().endswith((".xlsx", ".xlsm")):
        header, rows = _read_xlsx(data)
        return _unique(header), rows
    text = decode(data)
    sample = text[:4096]
    first = sample.splitlines()[0] if sample else ""
    delimiter = max((";", ",", "\t"), key=first.count) if first else ";"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = _next_row(reader, 1) or []

    def body() -> Rows:
        line = start = reader.line_num
        while (row := _next_row(reader, line + 1)) is not None:
            start, line = line + 1, reader.line_num
            if any(c.strip() for c in row):
                yield start, row
        if start < line and _open_quote(text, start):  # the last row took in the rest
            raise ValidationFailed(
                {
                    "file": [
                        message(
                            'line {line}: a quote (") opens a cell that is never closed',
                            line=start,
                        )
                    ]
                }
            )

    return _unique([h.strip() for h in header]), body()


#: The number a repeated column name is given (``Телефон (2)``), dropped to guess its field.
_REPEAT = re.compile(r"\s\(\d+\)$")


def _unique(header: Sequence[str]) -> list[str]:
    """The column names, a repeated one numbered (``Телефон``, ``Телефон (2)``): a mapping
    names each column, and two of one name would both follow the mapping of one."""
    taken = {name for name in header}
    seen: dict[str, int] = {}
    unique = []
    for name in header:
        if name and name in seen:
            number = seen[name]
            while (numbered := f"{name} ({number + 1})") in taken:
                number += 1
            seen[name] = number + 1
            taken.add(numbered)
            name = numbered
        elif name:
            seen[name] = 1
        unique.append(name)
    return unique


def _next_row(reader: Any, start: int) -> list[str] | None:
    """The reader's next row (``None`` at the end); a cell too long to read (most likely a
    quote never closed, taking in the rest of the file) refuses the file at its line."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error:
        raise ValidationFailed(
            {
                "file": [
                    message(
                        "line {line}: a cell of more than {limit} characters "
                        '(is a quote (") left open?)',
                        line=start,
                        limit=csv.field_size_limit(),
                    )
                ]
            }
        ) from None


def _open_quote(text: str, start: int) -> bool:
    """Whether the file's last row, from line ``start`` to the end, leaves a quote open
    (the reader then takes every line after it into one cell, without a word)."""
    at = 0
    for _ in range(start - 1):
        at = text.find("\n", at) + 1
    return text.count('"', at) % 2 == 1


def _read_xlsx(data: bytes) -> tuple[list[str], Rows]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several kinds for a broken file
        raise ValidationFailed(
            {"file": [message("not a readable XLSX file ({problem})", problem=str(exc))]}
        ) from None
    sheet = book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = [_cell(v) for v in next(rows, ())]

    def body() -> Rows:
        for number, row in enumerate(rows, start=2):  # missing rows come as empty ones
            values = [_cell(v) for v in row]
            if any(values):
                yield number, values

    return header, body()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%d.%m.%Y") if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.strftime("%d.%m.%Y")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_number(text: str) -> Decimal:
    """``1 234,56`` (Russian Excel) or ``1234.56`` as a Decimal."""
    cleaned = text.replace("\u00a0", "").replace(" ", "")
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():  # NaN, Infinity
        raise ValueError(message("{value} is not a number", value=repr(text)))
    return number


def parse_date(text: str) -> str:
    """``31.12.2025`` (or ISO ``2025-12-31``) as an ISO date string."""
    found = _DATE.match(text.strip())
    try:
        if found:
            day, month, year = (int(g) for g in found.groups())
            return dt.date(year, month, day).isoformat()
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ValueError(message("{value} is not a date (dd.mm.yyyy)", value=repr(text))) from None


def _one_of(choices: Sequence[str]) -> Message:
    return message("one of {choices}", choices=", ".join(choices))


# -- report lines -------------------------------------------------------------------------


def report_line(column: str, reason: str | Message, **more: Any) -> dict[str, Any]:
    """An error or report line (JSON): ``column``, the ``reason`` in English and, for a
    :class:`~crmkit.i18n.Message`, its template and parameters (``message``) to translate."""
    line: dict[str, Any] = {"column": column, "reason": str(reason), **more}
    if isinstance(reason, Message):
        line["message"] = reason.as_json()
    return line


def reason_text(line: Mapping[str, Any], gettext: Callable[[str], str]) -> str:
    """A line's reason in the language of ``gettext`` (a plain reason is looked up as it
    is: ``a name is required``)."""
    stored = line.get("message")
    return translate(Message.from_json(stored) if stored else str(line["reason"]), gettext)


def _raised(exc: Exception) -> str | Message:
    """What an exception was raised with: its :class:`~crmkit.i18n.Message`, else its text."""
    first = exc.args[0] if len(exc.args) == 1 else None
    return first if isinstance(first, Message) else str(exc)


def guess_mapping(header: Sequence[str], custom_labels: Mapping[str, str]) -> dict[str, str]:
    """Column -> field, from the header words (unknown columns map to nothing); a field
    is guessed for one column, but a phone, email or site for each column that names one
    (``Телефон``, ``Телефон (2)``, ``Мобильный``)."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for column in header:
        word = _REPEAT.sub("", column.strip()).lower()
        field = ""
        for candidate, words in GUESSES.items():
            if word in words and candidate not in taken:
                field = candidate
                break
        if not field:
            for key, label in custom_labels.items():
                if word in (key.lower(), label.lower()) and f"custom.{key}" not in taken:
                    field = f"custom.{key}"
                    break
        if field and field not in CONTACT_FIELDS:  # a client has several phones
            taken.add(field)
        mapping[column] = field
    return mapping


# -- the service --------------------------------------------------------------------------


class ImportService:
    """Start, preview and follow imports (``work.imports``)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    @property
    def session(self) -> Any:
        return self.work.session

    def start(
        self,
        filename: str,
        data: bytes,
        *,
        source: str = "",
        mapping: Mapping[str, str] | None = None,
        on_duplicate: str = "skip",
        dry_run: bool = False,
    ) -> ImportRun:
        """Store the file and make a run (not started: preview it, then run the job).

        ``mapping`` maps some columns (the remembered mapping of ``source``, then the guess,
        map the others); it may leave the name out (mapped later with :meth:`configure`), but
        a run is queued only once a column is mapped to the name."""
        self.work.access.require("party", "create")
        if on_duplicate not in ON_DUPLICATE:
            raise ValidationFailed({"on_duplicate": [_one_of(ON_DUPLICATE)]})
        if not filename.lower().endswith((".csv", ".txt", ".xlsx", ".xlsm")):
            raise ValidationFailed({"file": ["a .csv or .xlsx file"]})
        header, rows = read_rows(filename, data)
        if not header or not any(header):
            raise ValidationFailed({"file": ["the first row must name the columns"]})
        total = sum(1 for _ in rows)
        stored = self.work.crm.storage.save([data])
        self.work.on_rollback(lambda: self.work.crm.storage.delete(stored.key))
        unknown = [column for column in mapping or () if column not in header]
        if unknown:
            raise ValidationFailed({unknown[0]: ["no such column in the file"]})
        remembered = self.session.get(ImportMapping, source) if source else None
        chosen = {**(remembered.mapping if remembered else {}), **(mapping or {})}
        guessed = guess_mapping(header, self._custom_labels())
        chosen = {column: chosen.get(column, guessed[column]) for column in header}
        self.check_mapping(chosen, name=False)
        run = ImportRun(
            created_by_id=self.work.actor.user_id,
            source=source,
            filename=filename,
            path=stored.key,
            status="new",
            dry_run=dry_run,
            on_duplicate=on_duplicate,
            mapping=chosen,
            options={"choices": {}},
            total_rows=total,
            errors=[],
        )
        self.session.add(run)
        self.work.flush()
        return run

    def _custom_labels(self) -> dict[str, str]:
        return {k: d.label for k, d in self.work.custom_fields.definitions("party").items()}

    def check_mapping(self, mapping: Mapping[str, str], *, name: bool = True) -> None:
        """Refuse a mapping to unknown fields, or (``name``) one without a name."""
        custom = self._custom_labels()
        for column, field in mapping.items():
            if not field:
                continue
            if field.startswith("custom."):
                if field[len("custom.") :] not in custom:
                    raise ValidationFailed(
                        {column: [message("no custom field {field}", field=repr(field))]}
                    )
            elif field not in FIELDS:
                raise ValidationFailed({column: [message("no field {field}", field=repr(field))]})
        targets = set(mapping.values())
        if name and not targets & {"name", "last_name", "first_name"}:
            raise ValidationFailed({"mapping": ["map a column to the name"]})

    def get(self, run_id: int) -> ImportRun:
        """An import the actor started (any, with ``import`` on ``party`` over all records)."""
        run = self.session.get(ImportRun, run_id)
        if run is None or (
            run.created_by_id != self.work.actor.user_id
            and self.work.access.scope("party", "import") is not Scope.ALL
        ):
            raise NotFound("import", run_id)
        return run

    def configure(
        self,
        run_id: int,
        *,
        mapping: Mapping[str, str] | None = None,
        on_duplicate: str | None = None,
        dry_run: bool | None = None,
        choices: Mapping[int, str] | None = None,
    ) -> ImportRun:
        """Change a run before it starts; the mapping is remembered for its source."""
        run = self.get(run_id)
        if run.status not in ("new", "dry_run"):
            raise ValidationFailed({"status": ["the import has started already"]})
        if mapping is not None:
            self.check_mapping(mapping)
            run.mapping = dict(mapping)
        if on_duplicate is not None:
            if on_duplicate not in ON_DUPLICATE:
                raise ValidationFailed({"on_duplicate": [_one_of(ON_DUPLICATE)]})
            run.on_duplicate = on_duplicate
        if dry_run is not None:
            run.dry_run = dry_run
        if choices is not None:
            bad = [c for c in choices.values() if c not in ON_DUPLICATE]
            if bad:
                raise ValidationFailed(
                    {
                        "choices": [
                            message(
                                "{choice}: one of {choices}",
                                choice=repr(bad[0]),
                                choices=", ".join(ON_DUPLICATE),
                            )
                        ]
                    }
                )
            run.options = {**run.options, "choices": {str(k): v for k, v in choices.items()}}
        self.work.flush()
        return run

    def remember(self, run: ImportRun) -> None:
        """Keep the run's mapping for the next file of the same source."""
        if not run.source:
            return
        stored = self.session.get(ImportMapping, run.source)
        if stored is None:
            self.session.add(ImportMapping(source=run.source, mapping=dict(run.mapping)))
        else:
            stored.mapping, stored.updated_at = dict(run.mapping), utcnow()

    def preview(self, run_id: int, limit: int = 20) -> list[dict[str, Any]]:
        """The first rows as they would be imported: values, errors, duplicates found.

        A duplicate the actor may not read is ``duplicate_hidden`` (``duplicate_of`` is
        ``None``): the row matches a client they may not see, whose id is not theirs."""
        run = self.get(run_id)
        header, rows = self._rows(run)
        plan = _Planner(self.work, run, header)
        shown = []
        for number, raw in rows:
            if len(shown) >= limit:
                break
            shown.append(plan.row(number, raw))
        readable = plan.readable(row["duplicate_of"] for row in shown)
        for row in shown:
            hidden = row["duplicate_of"] is not None and row["duplicate_of"] not in readable
            row["duplicate_hidden"] = hidden
            if hidden:
                row["duplicate_of"] = None
        return shown

    def queue(self, run_id: int) -> ImportRun:
        """Hand the run to the background workers (once a column is mapped to the name).

        A finished dry run goes again from the first row (for real once ``configure`` has
        turned ``dry_run`` off), its counts and report forgotten."""
        run = self.get(run_id)
        self.check_mapping(run.mapping)
        if run.status == "dry_run":
            _start_over(run)
        run.status = "queued"
        self.remember(run)
        self.work.outbox.add("job", {"job": JOB_NAME, "payload": {"run_id": run.id}})
        return run

    def _rows(self, run: ImportRun) -> tuple[list[str], Rows]:
        with self.work.crm.storage.open(run.path) as handle:
            data = handle.read()
        return read_rows(run.filename, data)

    def error_report(self, run_id: int, gettext: Callable[[str], str] | None = None) -> bytes:
        """The errors as a CSV file (row; column; reason), UTF-8 with BOM for Excel; in the
        language of ``gettext`` when given (the header too), else in English."""
        run = self.get(run_id)
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";")
        writer.writerow([gettext(h) for h in REPORT_HEADER] if gettext else REPORT_HEADER)
        for error in run.errors:  # the file's own text comes back: never as a formula
            reason = reason_text(error, gettext) if gettext else error["reason"]
            writer.writerow([csv_cell(value) for value in (error["row"], error["column"], reason)])
        return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


class _Planner:
    """Turns file rows into party input and finds their duplicates, batch by batch."""

    def __init__(self, work: UnitOfWork, run: ImportRun, header: Sequence[str]) -> None:
        self.work = work
        self.run = run
        self.header = list(header)
        self.region = str(work.crm.config["locale.phone_region"])
        self.kinds = {k: d.kind for k, d in work.custom_fields.definitions("party").items()}
        self.users: dict[tuple[int, str], list[tuple[int, str]]] | None = None
        self.threshold = int(work.crm.config["screening.threshold"])

    def _user(self, text: str) -> int:
        """The user an owner cell names: by username, else email, else display name (any
        case).  A name two users share names neither: the row is refused, listing them."""
        if self.users is None:
            self.users = {}
            for user_id, username, email, display in self.work.session.execute(
                select(User.id, User.username, User.email, User.display_name).order_by(User.id)
            ):
                for tier, name in enumerate((username, email, display)):
                    if name and name.strip():
                        self.users.setdefault((tier, name.strip().lower()), []).append(
                            (user_id, username)
                        )
        wanted = text.strip().lower()
        for tier in range(3):
            found = self.users.get((tier, wanted), [])
            if len(found) == 1:
                return found[0][0]
            if found:
                raise ValueError(
                    message(
                        "{user} names several users ({users}): write the username of one",
                        user=repr(text),
                        users=", ".join(username for _, username in found),
                    )
                )
        raise ValueError(message("no user {user}", user=repr(text)))

    def values(self, raw: Sequence[str]) -> tuple[dict[str, Any], list[tuple[str, str | Message]]]:
        """Party input from one row, and ``(column, reason)`` of each bad cell."""
        values: dict[str, Any] = {}
        points: list[dict[str, Any]] = []
        errors: list[tuple[str, str | Message]] = []
        for index, column in enumerate(self.header):
            field = self.run.mapping.get(column) or ""
            text = raw[index].strip() if index < len(raw) and raw[index] else ""
            if not field or not text:
                continue
            try:
                if field in CONTACT_FIELDS:
                    parts = self.phones(text) if field == "phone" else re.split(r"[,;]\s*", text)
                    for part in parts:
                        if part.strip():
                            _fits(ContactPoint, "value", part.strip())
                            points.append({"kind": field, "value": part.strip()})
                elif field == "tags":
                    values["tags"] = [t.strip() for t in re.split(r"[,;]", text) if t.strip()]
                    for tag in values["tags"]:
                        _fits(Tag, "name", tag)
                elif field == "owner":
                    values["owner_id"] = self._user(text)
                elif field == "kind":
                    values["kind"] = _kind(text)
                elif field.startswith("custom."):
                    key = field[len("custom.") :]
                    kind = self.kinds.get(key, "text")
                    if kind in ("number", "money"):
                        number = parse_number(text)
                        values.setdefault("custom", {})[key] = (
                            str(number) if kind == "money" else float(number)
                        )
                    elif kind == "date":
                        values.setdefault("custom", {})[key] = parse_date(text)
                    elif kind == "boolean":
                        values.setdefault("custom", {})[key] = text.lower() in (
                            "1", "да", "yes", "true", "+", "y", "д",
                        )  # fmt: skip
                    else:
                        values.setdefault("custom", {})[key] = text
                else:
                    if field != "name":  # the name's own check follows
                        _fits(Party, field, text)
                    values[field] = text
            except ValueError as exc:
                errors.append((column, _raised(exc)))
        if points:
            values["contact_points"] = points
        kind = values.get("kind", "organisation")
        name = _name(values)
        if not name.strip():
            errors.append((self.column_of("name"), "a name is required"))
        if len(name) > 300:
            errors.append((self.column_of("name"), "longer than 300 characters"))
        for point in points:  # normalized once per row; kept and flagged when invalid
            normalized = contact_key(point["kind"], point["value"], region=self.region)
            point["invalid"], point["key"] = not normalized.valid, normalized.key
        values.setdefault("kind", kind)
        return values, errors

    def phones(self, text: str) -> list[str]:
        """The phones of a cell: several when it lists them (``8 916 123-45-67, 8 903
        000-00-01``: each part a phone by itself, although the cell may read as its first
        phone alone), else the cell as typed (an extension, ``+7 495 123-45-67, доб. 123``,
        is one phone; a typo stays one invalid value)."""
        if "," not in text and ";" not in text:
            return [text]
        parts = [part.strip() for part in re.split(r"[,;]", text) if part.strip()]
        if len(parts) > 1 and all(
            contact_key("phone", part, region=self.region).valid for part in parts
        ):
            return parts
        return [text]

    def column_of(self, field: str) -> str:
        return next((c for c, f in self.run.mapping.items() if f == field), field)

    def keys(self, values: Mapping[str, Any]) -> list[str]:
        """Exact duplicate keys of a planned party: contacts and the name skeleton."""
        keys = []
        for point in values.get("contact_points") or ():
            key = (
                point.get("key")
                or contact_key(point["kind"], point["value"], region=self.region).key
            )
            if not key:  # nothing left of it (`http://`, `<>`): it matches nothing
                continue
            if point["kind"] != "phone" or sum(c.isdigit() for c in key) >= 6:
                keys.append(f"{point['kind']}={key}")
        name = skeleton(values)
        if name:
            keys.append(whole_name_key(name.split()))
        return keys

    def existing(self, planned: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Key -> id of an existing (live) party, for all keys of a batch, in two queries."""
        contact: dict[tuple[str, str], str] = {}
        names: dict[str, str] = {}
        for values in planned:
            for key in self.keys(values):
                if key.startswith(("n:", "w:")):
                    names[key] = key
                else:
                    kind, _, value = key.partition("=")
                    contact[(kind, value)] = key
        found: dict[str, int] = {}
        session = self.work.session
        # PostgreSQL: all keys in one array; elsewhere 500 at a time
        arrays = uses_arrays(session.get_bind())

        def ask(statement: Any, keys: list[str]) -> Iterator[Any]:
            for chunk in ([keys] if keys else []) if arrays else chunked(keys, 500):
                yield from session.execute(statement, {"keys": chunk})

        for kind in CONTACT_FIELDS:
            contacts = (
                select(ContactPoint.key, ContactPoint.party_id)
                .join(Party, Party.id == ContactPoint.party_id)
                .where(
                    ContactPoint.kind == kind,
                    one_of(ContactPoint.key, "keys", array=arrays),
                    Party.merged_into_id.is_(None),
                )
            )
            for key, party_id in ask(contacts, sorted(v for k, v in contact if k == kind)):
                found.setdefault(f"{kind}={key}", party_id)
        names_asked = select(PartyMatchKey.key, PartyMatchKey.party_id).where(
            one_of(PartyMatchKey.key, "keys", array=arrays)
        )
        for key, party_id in ask(names_asked, sorted(names)):
            found.setdefault(key, party_id)
        return found

    def readable(self, ids: Iterable[int | None]) -> set[int]:
        """Those of ``ids`` the actor may read: the parties' scope predicate, the one
        screening asks (a duplicate search covers the whole base; the others are only
        "a client you may not see")."""
        wanted = sorted({i for i in ids if i is not None})
        if not wanted:
            return set()
        visible = self.work.parties.visible("read")
        found: set[int] = set()
        for chunk in chunked(wanted, 500):
            found.update(
                self.work.session.scalars(select(Party.id).where(Party.id.in_(chunk), visible))
            )
        return found

    def lookalikes(self, planned: Sequence[tuple[int, Mapping[str, Any]]]) -> BatchLookalikes:
        """The look-alike names of planned rows (those without an exact duplicate)."""
        found = BatchLookalikes(self.work.session.connection(), self.threshold)
        found.prepare({number: skeleton(values) for number, values in planned})
        return found

    def row(self, number: int, raw: Sequence[str]) -> dict[str, Any]:
        """One row planned alone (the preview): ``duplicate_of`` is the client it
        duplicates exactly (``match`` ``"exact"``, ``score`` 100) or whose name it looks like
        (``"similar name"``, the name score)."""
        values, errors = self.values(raw)
        duplicate = lookalike = None
        if not errors:
            found = self.existing([values])
            duplicate = next((found[k] for k in self.keys(values) if k in found), None)
            if duplicate is None:
                lookalike = self.lookalikes([(number, values)]).of(number)
        return {
            "row": number,
            "values": values,
            "errors": [report_line(c, r) for c, r in errors],
            "duplicate_of": duplicate if lookalike is None else lookalike.party_id,
            "match": "exact" if duplicate else "similar name" if lookalike else None,
            "score": 100 if duplicate else lookalike.score if lookalike else None,
            "action": self.action(number, duplicate, lookalike),
        }

    def action(self, number: int, duplicate: int | None, lookalike: Lookalike | None = None) -> str:
        """What happens to a row: an exact duplicate follows its row's choice, else the
        file's ``on_duplicate``; a look-alike follows its row's choice, else is created."""
        choice = self.run.options.get("choices", {}).get(str(number))
        if duplicate is not None:
            return str(choice or self.run.on_duplicate)
        if lookalike is not None:
            return str(choice or "create")
        return "create"

    def possible_duplicate(
        self, number: int, lookalike: Lookalike, action: str, *, hidden: bool = False
    ) -> dict[str, Any]:
        """The report's line for a look-alike row; ``hidden``: the client is one the actor
        may not read (the line names neither its id nor its name)."""
        said = {"score": lookalike.score, "done": Label(DONE[action])}
        if hidden:
            reason = message(
                "possible duplicate of a client you may not see (similar name, {score}%): {done}",
                **said,
            )
        elif lookalike.party_id is not None:
            reason = message(
                "possible duplicate of client #{client} {name} (similar name, {score}%): {done}",
                client=lookalike.party_id,
                name=repr(lookalike.name),
                **said,
            )
        else:
            reason = message(
                "possible duplicate of row {other} {name} (similar name, {score}%): {done}",
                other=lookalike.row,
                name=repr(lookalike.name),
                **said,
            )
        return {
            "row": number,
            **report_line(self.column_of("name"), reason),
            "kind": "possible duplicate",
            "duplicate_of": None if hidden else lookalike.party_id,
            "duplicate_hidden": hidden,
            "duplicate_row": lookalike.row,
            "score": lookalike.score,
            "action": action,
        }


def _fits(model: type[Any], attribute: str, text: str) -> None:
    """Refuse a cell longer than its column (PostgreSQL would fail the whole batch, SQLite
    keep it whole): the row is reported with the cell's column."""
    refused = refusals(model, {attribute: text})
    if refused:
        raise ValueError(refused[attribute][0])


def _kind(text: str) -> str:
    lowered = text.lower()
    persons = ("person", "человек", "физлицо", "физ. лицо", "фл")
    return "person" if lowered in persons else "organisation"


def _row_skeleton(header: Sequence[str], mapping: Mapping[str, str], raw: Sequence[str]) -> str:
    """The name skeleton of a file row, as :meth:`_Planner.values` reads its name."""
    values: dict[str, str] = {}
    for index, column in enumerate(header):
        field = mapping.get(column) or ""
        if field in ("name", "first_name", "last_name", "kind") and index < len(raw):
            text = (raw[index] or "").strip()
            if text:
                values[field] = _kind(text) if field == "kind" else text
    return skeleton(values)


def _name(values: Mapping[str, Any]) -> str:
    """A row's name: its ``name``, else its first and last names."""
    return values.get("name") or " ".join(
        values.get(k, "") for k in ("first_name", "last_name") if values.get(k)
    )


def skeleton(values: Mapping[str, Any]) -> str:
    """The name skeleton of planned party input."""
    name = _name(values)
    return name_skeleton(name, values.get("kind", "organisation")) if name.strip() else ""


# -- running ------------------------------------------------------------------------------


def run_import(
    crm: Any,
    run_id: int,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Run (or resume) an import; the job's function.  Returns the rows done.

    Rows before ``done_rows`` were committed by an earlier try and are skipped; each batch
    is one transaction moving the checkpoint with it.  A finished dry run starts over.
    ``progress(done, total)`` is called after each batch (the CLI's progress bar).
    """
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        if run is None:
            raise NotFound("import", run_id)
        if run.status == "done":
            return int(run.done_rows)
        if run.status == "dry_run":
            _start_over(run)
        run.status = "running"
        actor_id, start_at, total = run.created_by_id, run.done_rows, run.total_rows
    actor = crm.load_actor(actor_id) if actor_id else None
    try:
        with crm.system() as work:
            run = work.session.get(ImportRun, run_id)
            header, rows = ImportService(work)._rows(run)
            threshold = int(crm.config["screening.threshold"])
            mapping = dict(run.mapping)
        seen: dict[str, int] = {}
        written = analyzed = 0
        batches = _batches(rows, start_at, batch_rows)
        current = next(batches, None)
        left = max(total - start_at, 0)
        with _lookalike_pool(crm, -(-left // batch_rows)) as pool:
            # the look-alikes of batch N+1 are looked up on a second connection while
            # batch N is written (see docs/decisions.md, "Fuzzy names at import")
            engine = crm.engine if isinstance(pool, ThreadPoolExecutor) else None
            prepare = partial(_prepare_lookalikes, engine, header, mapping, threshold)
            future = pool.submit(prepare, current[1] if current else [], {})
            previous = None
            while current is not None:
                done, batch = current
                looks = future.result()
                if previous is not None:
                    looks.follow(previous)
                following = next(batches, None)
                if following:
                    future = pool.submit(prepare, following[1], looks.words)
                _run_batch(crm, actor, run_id, header, batch, done, seen, looks)
                previous = looks
                written += len(batch)
                if following and written >= 2 * analyzed:
                    _refresh_statistics(crm)
                    analyzed = written
                if progress and following:
                    progress(done, total)
                current = following
        with crm.system() as work:
            run = work.session.get(ImportRun, run_id)
            run.status = "done" if not run.dry_run else "dry_run"
            run.finished_at = utcnow()
            done = run.done_rows
        if progress:
            progress(done, total)
        return int(done)
    except BaseException as exc:
        with crm.system() as work:
            run = work.session.get(ImportRun, run_id)
            run.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            run.error = str(exc)[:2000]
        raise


def _start_over(run: ImportRun) -> None:
    """Forget a finished dry run's progress and report: the run goes again from its first
    row (a real run after a dry run writes every row; the dry run's counts were not)."""
    run.done_rows = run.created = run.updated = run.skipped = 0
    run.errors = []
    run.options = {k: v for k, v in run.options.items() if k != "possible_duplicates"}
    run.error = ""
    run.finished_at = None


def _batches(
    rows: Rows, start_at: int, size: int
) -> Iterator[tuple[int, list[tuple[int, list[str]]]]]:
    """The numbered rows after the checkpoint (the first ``start_at`` rows), ``size`` at a
    time, each batch with the rows done once it is written (the next checkpoint)."""
    batch: list[tuple[int, list[str]]] = []
    for done, (number, raw) in enumerate(rows, start=1):
        if done <= start_at:
            continue
        batch.append((number, raw))
        if len(batch) >= size:
            yield done, batch
            batch = []
    if batch:
        yield done, batch


#: From how many batches an import looks look-alikes up in a process of its own.
PROCESS_BATCHES = 3
_reader_engine: Any = None


def _lookalike_pool(crm: Any, batches: int) -> Executor:
    """Where look-alikes are looked up while a batch is written: a thread for a small file,
    a process for a large one (the look-up is Python: in a thread it waits for the GIL
    that the writer holds; a process has a core of its own).  A daemonic process (which
    may not start children) uses the thread."""
    if batches < PROCESS_BATCHES or multiprocessing.current_process().daemon:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-lookalikes")
    url = crm.engine.url.render_as_string(hide_password=False)
    options: dict[str, Any] = {}
    if crm.engine.dialect.name == "postgresql":
        with crm.engine.connect() as connection:
            path = connection.exec_driver_sql("SHOW search_path").scalar()
        escaped = str(path).replace("\\", "\\\\").replace(" ", "\\ ")  # libpq's options
        options["connect_args"] = {"options": f"-csearch_path={escaped}"}
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_reader,
        initargs=(url, options),
    )
    with _main_left_out():
        pool.submit(int).result()  # the process starts now, without the caller's script
    return pool


_MAIN_SWAP = threading.Lock()


@contextlib.contextmanager
def _main_left_out() -> Iterator[None]:
    """Start processes that do not import the caller's ``__main__``.

    A spawned process imports the parent's main module first (as ``__mp_main__``), so a
    script without an ``if __name__ == "__main__":`` guard would run again inside it: open
    the CRM, write, start this import again.  The look-up process needs nothing from the
    script (its functions live in this module), so while it starts ``__main__`` is a bare
    stand-in, which the process has no file or module name to import from.
    """
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def _start_reader(url: str, options: dict[str, Any]) -> None:
    """The look-up process's engine (one connection)."""
    global _reader_engine
    from crmkit.db import make_engine

    _reader_engine = make_engine(url, **options)


def _prepare_lookalikes(
    engine: Any,
    header: Sequence[str],
    mapping: Mapping[str, str],
    threshold: int,
    batch: Sequence[tuple[int, list[str]]],
    also: Mapping[str, Sequence[str]],
) -> BatchLookalikes:
    """The existing look-alikes of a batch's rows, on a connection of its own (the reader
    thread or process; ``engine`` ``None``: the process's): it sees the batches committed
    before the one being written, whose words (``also``) and created rows
    (:meth:`BatchLookalikes.follow`) are added from memory."""
    names = {number: _row_skeleton(header, mapping, raw) for number, raw in batch}
    with (engine or _reader_engine).connect() as connection:
        looks = BatchLookalikes(connection, threshold)
        looks.prepare({number: name for number, name in names.items() if name}, also)
        connection.rollback()
    looks.connection = None
    return looks


def _refresh_statistics(crm: Any) -> None:
    """Let PostgreSQL's planner see how big the tables have grown (each time the import has
    written twice as many rows as at the last time; see
    :func:`crmkit.services.bulk.refresh_statistics`).

    The batch look-ups (``key IN (...)`` of 500 keys) were planned for the small tables the
    planner last saw and scanned them whole: 45 of the 115 s of a 100,000-row import.
    """
    from crmkit.services.bulk import refresh_statistics

    if crm.engine.dialect.name != "postgresql":
        return
    with crm.engine.begin() as connection:
        refresh_statistics(connection, ("party", "contact_point", "party_match_key"))


def _run_batch(
    crm: Any,
    actor: Any,
    run_id: int,
    header: Sequence[str],
    batch: Sequence[tuple[int, list[str]]],
    done: int,
    seen: dict[str, int],
    looks: BatchLookalikes,
) -> None:
    """Plan and write one batch, with the checkpoint (``done`` rows), in one transaction;
    ``looks`` are its rows' look-alike names (prepared while the batch before was written)."""
    unit = crm.acting_as(actor) if actor is not None else crm.system()
    with unit as work:
        run = work.session.get(ImportRun, run_id)
        plan = _Planner(work, run, header)
        planned: list[tuple[int, dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        for number, raw in batch:
            values, problems = plan.values(raw)
            if problems:
                errors += [{"row": number, **report_line(c, r)} for c, r in problems]
                continue
            planned.append((number, values))
        existing = plan.existing([v for _, v in planned])
        readable = plan.readable(looks.parties())
        reported = run.possible_duplicate_count
        lookalikes = 0
        keyed = [(number, values, plan.keys(values)) for number, values in planned]
        creates: list[tuple[int, dict[str, Any]]] = []
        updated = skipped = 0
        for number, values, keys in keyed:
            duplicate = next((existing[k] for k in keys if k in existing), None)
            earlier = next((seen[k] for k in keys if k in seen), None)
            lookalike = None
            if duplicate is None and earlier is None:
                lookalike = looks.of(number)
            action = plan.action(number, duplicate if duplicate is not None else earlier, lookalike)
            if lookalike is not None:
                duplicate = lookalike.party_id  # an earlier row has no client to update yet
                action = action if action != "update" or duplicate is not None else "create"
                lookalikes += 1
                if reported + lookalikes <= REPORTED_LOOKALIKES:
                    hidden = duplicate is not None and duplicate not in readable
                    errors.append(plan.possible_duplicate(number, lookalike, action, hidden=hidden))
            if action == "skip":
                skipped += 1
                continue
            if action == "update" and duplicate is not None:
                try:
                    if run.dry_run:
                        work.parties.get(duplicate, action="update")
                    else:
                        _update(work, duplicate, values, keep_name=lookalike is not None)
                    updated += 1
                except ValidationFailed as failed:
                    if lookalike is not None:
                        errors.pop()  # not updated after all: the reasons say why
                    errors += _errors(number, failed, plan.column_of)
                except (NotFound, PermissionDenied):
                    # the duplicate search covers the whole base: the client may be one
                    # the importer may not see or edit (whose id is not theirs to learn)
                    if lookalike is not None:
                        errors.pop()
                    errors.append(
                        {"row": number, **report_line(plan.column_of("name"), UNEDITABLE)}
                    )
                except (Conflict, StaleDataError):
                    # saved by someone else since it was read (or merged away): their
                    # change is newer than the file's, so the row is not written over it
                    if lookalike is not None:
                        errors.pop()
                    errors.append(
                        {"row": number, **report_line(plan.column_of("name"), CHANGED_MEANWHILE)}
                    )
                continue
            for key in keys:
                seen.setdefault(key, number)
            looks.created(number, str(values.get("name") or skeleton(values)))
            for point in values.get("contact_points") or ():
                point.pop("invalid", None)
                point.pop("key", None)
            creates.append((number, values))
        created = _create(work, run, creates, errors, plan.column_of)
        run.done_rows = done
        run.created += created
        run.updated += updated
        run.skipped += skipped
        run.errors = [*run.errors, *errors]
        if lookalikes:
            run.options = {**run.options, "possible_duplicates": reported + lookalikes}


def _create(
    work: Any,
    run: ImportRun,
    creates: list[tuple[int, dict[str, Any]]],
    errors: list[Any],
    column_of: Callable[[str], str],
) -> int:
    """Create the batch's new parties on the bulk path; a row it refuses is reported and
    the rest written (the bulk call is all or nothing, so it is repeated without it)."""
    pending = list(creates)
    while pending:
        try:
            if run.dry_run:  # every check of the real run, nothing written
                bulk_create_parties(
                    work.parties,
                    [values for _, values in pending],
                    batch_size=BATCH_ROWS,
                    source=run.source or None,
                    check_only=True,
                )
            else:
                with work.savepoint():
                    work.parties.bulk_create(
                        [values for _, values in pending], source=run.source or None
                    )
            return len(pending)
        except ValidationFailed as failed:
            if failed.row is None:
                raise
            number, _ = pending.pop(failed.row - 1)
            errors += _errors(number, failed, column_of)
    return 0


def _update(work: Any, party_id: int, values: dict[str, Any], *, keep_name: bool = False) -> None:
    """Fill an existing client from a row: given fields overwrite, new contacts are added.
    The row is written whole or not at all (a refused tag undoes the fields and contacts).
    The stage is left alone: it changes by a move, with the pipeline's checks and
    automation, not by a file's status column (which sets the stage of new clients).

    ``keep_name``: a look-alike's row is the name spelled otherwise (most likely a typo),
    so the client keeps its own."""
    party = work.parties.get(party_id, action="update")
    known = {(c.kind, c.key) for c in party.contact_points}
    region = str(work.crm.config["locale.phone_region"])
    kept = ("contact_points", "kind", "tags", "owner_id", "stage")
    if keep_name:
        kept += ("name", "first_name", "last_name")
    changes = {k: v for k, v in values.items() if k not in kept}
    with work.savepoint():
        if changes:
            work.parties.update(party, changes)
        for point in values.get("contact_points") or ():
            point.pop("invalid", None)
            key = (
                point.pop("key", None)
                or contact_key(point["kind"], point["value"], region=region).key
            )
            if (point["kind"], key) not in known:
                work.parties.add_contact(party, point["kind"], point["value"])
        if values.get("tags"):
            work.parties.add_tags([party], values["tags"])
        work.flush()  # a clash with someone else's save surfaces here, undoing the row


#: The file's field a service's error on an input key is about.
_FIELD_OF = {"owner_id": "owner", "pipeline": "stage"}


def _errors(
    number: int, failed: ValidationFailed, column_of: Callable[[str], str] | None = None
) -> list[dict[str, Any]]:
    """The lines of a refused row, a field each (a single :class:`~crmkit.i18n.Message`
    is kept to translate), named by the file's column (``column_of``) where there is one:
    a custom field's error by its own column, not as ``custom``."""
    errors: dict[str, Any] = {}
    for field, messages in failed.errors.items():
        if field == "custom" and isinstance(messages, Mapping):
            errors.update({f"custom.{key}": value for key, value in messages.items()})
        else:
            errors[field] = messages
    lines = []
    for field, messages in errors.items():
        if column_of is not None:
            field = column_of(_FIELD_OF.get(field, field))
        if isinstance(messages, list) and len(messages) == 1:
            messages = messages[0]
        if isinstance(messages, list):
            messages = " ".join(map(str, messages))
        reason = messages if isinstance(messages, Message) else str(messages)
        lines.append({"row": number, **report_line(field, reason)})
    return lines


# -- export -------------------------------------------------------------------------------

EXPORT_COLUMNS = ("id", "name", "kind", "phone", "email", "website", "owner", "stage", "tags")


def export_parties(
    work: UnitOfWork,
    fmt: str = "csv",
    *,
    where: Mapping[str, Any] | None = None,
    filters: Mapping[str, Any] | None = None,
    search: str | None = None,
) -> bytes:
    """Every client the actor may see and export that matches, as CSV (``;``, UTF-8 with
    BOM, as Excel in Russia opens it) or XLSX, with contacts, owner, stage, tags and custom
    fields.  Needs the ``export`` permission on parties."""
    work.access.require("party", "export")
    if fmt not in ("csv", "xlsx"):
        raise ValidationFailed({"format": ["csv or xlsx"]})
    parties = work.parties
    definitions = work.custom_fields.definitions("party")
    users = {u.id: u.label for u in work.users.list()}
    header = [*EXPORT_COLUMNS, *(d.label for d in definitions.values())]

    def lines() -> Iterator[list[Any]]:
        batch: list[Any] = []
        for party in parties.iterate(where=where, filters=filters, search=search, action="export"):
            batch.append(party)
            if len(batch) >= 500:
                yield from _export_rows(parties, batch, users, definitions)
                batch = []
        yield from _export_rows(parties, batch, users, definitions)

    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";")
        writer.writerow([csv_cell(v) for v in header])
        for line in lines():  # names and fields are the clients' text: never a formula
            writer.writerow(["" if v is None else csv_cell(v) for v in line])
        return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("clients")
    sheet.append([xlsx_cell(sheet, v) for v in header])
    for line in lines():
        sheet.append([xlsx_cell(sheet, v) for v in line])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _export_rows(
    parties: Any, batch: list[Any], users: Mapping[int, str], definitions: Mapping[str, Any]
) -> Iterator[list[Any]]:
    if not batch:
        return
    tags = parties.tags_for(p.id for p in batch)
    # the batch's contact points in one query (the relationship would load them per client)
    by_party: dict[int, dict[str, list[str]]] = {p.id: {} for p in batch}
    rows = parties.session.execute(
        select(ContactPoint.party_id, ContactPoint.kind, ContactPoint.value)
        .where(ContactPoint.party_id.in_(list(by_party)))
        .order_by(ContactPoint.party_id, ContactPoint.id)
    )
    for party_id, kind, value in rows:
        by_party[party_id].setdefault(kind, []).append(value)
    for party in batch:
        points = by_party[party.id]
        custom = party.custom or {}
        yield [
            party.id,
            party.name,
            party.kind,
            ", ".join(points.get("phone", [])),
            ", ".join(points.get("email", [])),
            ", ".join(points.get("website", [])),
            users.get(party.owner_id, "") if party.owner_id else "",
            party.stage or "",
            ", ".join(tags.get(party.id, [])),
            *(_plain(custom.get(key)) for key in definitions),
        ]


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return value


def read_file(path: str | Path) -> bytes:
    """A file's bytes (the CLI reads the file it is given)."""
    return Path(path).read_bytes()
