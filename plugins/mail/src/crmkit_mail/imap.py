"""Inbound mail: a thin IMAP client over :mod:`imaplib` with UID fetches and IDLE.

Only what sync needs: open a folder read-only (``EXAMINE``) and learn its ``UIDVALIDITY``,
list the UIDs above the last one recorded, fetch raw messages by UID in batches, and wait
for new mail with ``IDLE`` (RFC 2177) when the server has it.  Messages are fetched with
``BODY.PEEK[]`` so reading them never marks them seen for the people using the mailbox.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime as dt
import imaplib
import re
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import attrs

from crmkit_mail.smtp import tls_context

_UID = re.compile(rb"UID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_STOP_CHECK_SECONDS = 0.25


T = TypeVar("T")


def _as_fetched(batch: list[FetchedMessage]) -> list[FetchedMessage]:
    return batch


class ImapError(Exception):
    """The IMAP server refused a command (the message names the command and the answer)."""


@attrs.frozen
class ImapSettings:
    """Where and how to connect; ``password`` is already unsealed."""

    host: str
    port: int
    security: str = "tls"
    username: str = ""
    password: str = ""
    folder: str = "INBOX"
    timeout: float = 60.0
    ca_file: str | None = None


@attrs.frozen
class FetchedMessage:
    """A message as the server holds it: its UID, arrival time and raw bytes."""

    uid: int
    internal_date: dt.datetime | None
    raw: bytes


def _quoted(text: str) -> str:
    """A string as an IMAP quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def folder_name(name: str) -> str:
    """A folder's name as IMAP servers spell it: modified UTF-7 (RFC 3501, 5.1.3), so that
    ``Отправленные`` is ``&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-`` and ``&`` is ``&-``."""
    spelled: list[str] = []
    other: list[str] = []

    def flush() -> None:
        if other:
            encoded = base64.b64encode("".join(other).encode("utf-16-be")).decode("ascii")
            spelled.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            other.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            spelled.append("&-" if char == "&" else char)
        else:
            other.append(char)
    flush()
    return "".join(spelled)


def _folder(name: str) -> str:
    """A folder's name as a command's quoted argument."""
    return _quoted(folder_name(name))


def _check(command: str, answer: tuple[str, list[object]]) -> list[object]:
    status, data = answer
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise ImapError(f"IMAP {command}: {status} {detail}")
    return data


#: Month names of IMAP dates (``INTERNALDATE``, ``SEARCH SINCE``), whatever the locale.
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name.encode(): number for number, name in enumerate(_MONTH_NAMES, 1)}
_DATE_TIME = re.compile(rb" ?(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")


def _internal_date(header: bytes) -> dt.datetime | None:
    """The INTERNALDATE of a FETCH response (``date-time`` of RFC 3501) as aware UTC."""
    found = _INTERNALDATE.search(header)
    if not found:
        return None
    parts = _DATE_TIME.fullmatch(found.group(1))
    if parts is None or parts[2] not in _MONTHS:
        return None
    day, _month, year, hour, minute, second, sign, zone_h, zone_m = parts.groups()
    offset = dt.timedelta(hours=int(zone_h), minutes=int(zone_m))
    try:
        when = dt.datetime(
            int(year), _MONTHS[parts[2]], int(day), int(hour), int(minute), int(second),
            tzinfo=dt.timezone(-offset if sign == b"-" else offset),
        )  # fmt: skip
    except ValueError:
        return None
    return when.astimezone(dt.UTC)


class ImapMailbox:
    """One connection to one folder; use as a context manager."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.conn: imaplib.IMAP4 | None = None
        self.uidvalidity: int | None = None

    def __enter__(self) -> ImapMailbox:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection -----------------------------------------------------------------------

    def open(self) -> None:
        """Connect, secure, log in and open the folder read-only."""
        s = self.settings
        if s.security == "tls":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                s.host, s.port, ssl_context=tls_context(s.ca_file), timeout=s.timeout
            )
        elif s.security in ("starttls", "none"):
            conn = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
        else:
            raise ImapError(f"imap security {s.security!r}: use tls, starttls or none")
        try:
            if s.security == "starttls":
                _check("STARTTLS", conn.starttls(ssl_context=tls_context(s.ca_file)))
            try:
                _check("LOGIN", conn.login(s.username, s.password))
            except imaplib.IMAP4.error as exc:
                raise ImapError(f"IMAP LOGIN as {s.username}: {exc}") from None
        except BaseException:
            # a refused login, or a timeout (servers slow down repeated failures)
            with contextlib.suppress(OSError):
                conn.shutdown()
            raise
        self.conn = conn
        self.examine()

    def examine(self) -> int:
        """(Re)open the folder read-only; returns its UIDVALIDITY."""
        conn = self._conn()
        folder = self.settings.folder
        _check(f"EXAMINE {folder}", conn.select(_folder(folder), readonly=True))
        answer = conn.response("UIDVALIDITY")[1]
        value = answer[0] if answer and answer[0] is not None else None
        if value is None:
            raise ImapError(f"IMAP EXAMINE {folder}: no UIDVALIDITY")
        self.uidvalidity = int(value)
        # the folder's size as it is opened: only EXISTS or RECENT said later is news
        conn.untagged_responses.pop("EXISTS", None)
        conn.untagged_responses.pop("RECENT", None)
        return self.uidvalidity

    def close(self) -> None:
        """Log out (or drop the connection if the server is gone)."""
        if self.conn is None:
            return
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            with contextlib.suppress(OSError):
                self.conn.shutdown()
        self.conn = None

    def _conn(self) -> imaplib.IMAP4:
        if self.conn is None:
            raise ImapError("IMAP: not connected")
        return self.conn

    def append(
        self,
        folder: str,
        raw: bytes,
        when: dt.datetime | None = None,
        flags: str | None = None,
    ) -> int | None:
        """Store a message in ``folder`` (``when`` sets its ``INTERNALDATE``); its UID when
        the server says it (``APPENDUID``)."""
        answer = self._conn().append(_folder(folder), flags, when, raw)
        _check(f"APPEND {folder}", answer)
        found = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(answer[1]))  # type: ignore[arg-type]
        return int(found.group(1)) if found else None

    def has_folder(self, name: str) -> bool:
        """Whether the server has a folder called ``name`` (``LIST``)."""
        data = _check(f"LIST {name}", self._conn().list('""', _folder(name)))
        return any(item is not None for item in data)

    @property
    def has_idle(self) -> bool:
        """Whether the server announced IDLE."""
        return "IDLE" in self._conn().capabilities

    # -- reading --------------------------------------------------------------------------

    def _search(self, criteria: str) -> list[int]:
        """UIDs of the folder's messages matching a ``UID SEARCH``, ascending."""
        data = _check("UID SEARCH", self._conn().uid("SEARCH", criteria))
        return sorted(int(x) for x in b" ".join(d for d in data if isinstance(d, bytes)).split())

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs of the folder's messages above ``last_uid``, ascending."""
        # "n:*" always matches the last message, even when its UID is below n
        return [uid for uid in self._search(f"UID {last_uid + 1}:*") if uid > last_uid]

    def uids_since(self, day: dt.date) -> list[int]:
        """UIDs of the folder's messages the server received on ``day`` or later (their
        ``INTERNALDATE``, by the server's calendar), ascending."""
        return self._search(f"SINCE {day.day}-{_MONTH_NAMES[day.month - 1]}-{day.year}")

    def fetch(self, uids: Sequence[int]) -> list[FetchedMessage]:
        """Raw messages of ``uids`` (in UID order); vanished ones are simply absent."""
        if not uids:
            return []
        spec = ",".join(str(u) for u in uids)
        data = _check(
            "UID FETCH", self._conn().uid("FETCH", spec, "(UID INTERNALDATE BODY.PEEK[])")
        )
        messages = []
        for item in data:
            if not isinstance(item, tuple) or len(item) < 2:
                continue
            header, raw = item[0], item[1]
            found = _UID.search(header)
            if found is None or not isinstance(raw, bytes):
                continue
            messages.append(FetchedMessage(int(found.group(1)), _internal_date(header), raw))
        messages.sort(key=lambda m: m.uid)
        return messages

    def batches(
        self,
        uids: Sequence[int],
        size: int,
        prepare: Callable[[list[FetchedMessage]], T] = _as_fetched,  # type: ignore[assignment]
        ahead: int = 2,
    ) -> Iterator[T]:
        """``fetch`` in batches of ``size`` UIDs, up to ``ahead`` batches ahead of the caller.

        The batches are fetched (and passed through ``prepare``: parsing, or handing them to
        a decoding process) one after the other in a background thread, which keeps up to
        ``ahead`` of them ready while the caller handles the last one: the server sends
        and the decoder decodes while the caller records, and a decoder slower than the
        fetch always has the next batch waiting.  Batches come out in order; the
        connection is not to be used by the caller until the iteration ends (or is
        closed, which cancels the batches not yet started and waits for the one under way).
        """
        chunks = [uids[start : start + size] for start in range(0, len(uids), size)]
        if len(chunks) < 2:
            for chunk in chunks:
                yield prepare(self.fetch(chunk))
            return

        def ahead_of_time(chunk: Sequence[int]) -> T:
            return prepare(self.fetch(chunk))

        with ThreadPoolExecutor(1, thread_name_prefix="imap-fetch") as worker:
            following = iter(chunks[max(ahead, 1) :])
            pending = collections.deque(
                worker.submit(ahead_of_time, chunk) for chunk in chunks[: max(ahead, 1)]
            )
            try:
                while pending:
                    batch = pending.popleft().result()
                    chunk = next(following, None)
                    if chunk is not None:
                        pending.append(worker.submit(ahead_of_time, chunk))
                    yield batch
            finally:
                for queued in pending:
                    queued.cancel()

    # -- waiting --------------------------------------------------------------------------

    def news(self) -> bool:
        """Whether the server said that mail arrived (``* n EXISTS``, ``* n RECENT``) while
        answering the commands since the folder was opened or this was last asked; forgets
        it.  imaplib keeps such responses aside (``untagged_responses``): a mail delivered
        while a sync searched or fetched is announced there, not again in the next IDLE."""
        pending = self._conn().untagged_responses
        exists = pending.pop("EXISTS", None)
        recent = pending.pop("RECENT", None) or []
        return exists is not None or any(count not in (b"0", "0") for count in recent)

    def idle(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait up to ``timeout`` seconds for new mail with IDLE; True if some arrived.

        Mail the server announced while answering earlier commands (see :meth:`news`)
        returns True at once.  Setting ``stop`` ends the wait within a fraction of a second
        (IDLE is ended properly, the connection stays usable).  Without IDLE on the server
        this sleeps and returns True (the caller polls).
        """
        conn = self._conn()
        if self.news():
            return True
        if not self.has_idle:
            if stop is None:
                time.sleep(timeout)
            else:
                stop.wait(timeout)
            return True
        tag = conn._new_tag()  # type: ignore[attr-defined]
        conn.send(tag + b" IDLE\r\n")
        line = conn.readline()
        if not line.startswith(b"+"):
            raise ImapError(f"IMAP IDLE: {line!r}")
        arrived = False
        deadline = time.monotonic() + timeout
        sock = conn.socket()
        while not arrived:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                break
            pending = getattr(sock, "pending", lambda: 0)()
            # in short waits when someone may ask us to stop
            wait = remaining if stop is None else min(remaining, _STOP_CHECK_SECONDS)
            if not pending and not select.select([sock], [], [], wait)[0]:
                continue
            line = conn.readline()
            if not line:
                raise ImapError("IMAP IDLE: connection closed")
            arrived = line.startswith(b"*") and (b"EXISTS" in line or b"RECENT" in line)
        conn.send(b"DONE\r\n")
        while True:
            line = conn.readline()
            if not line:
                raise ImapError("IMAP IDLE: connection closed")
            if line.startswith(tag):
                break
            if line.startswith(b"*") and b"EXISTS" in line:
                arrived = True
        return arrived


def append(
    settings: ImapSettings,
    raw: bytes,
    folder: str | None = None,
    received_at: dt.datetime | None = None,
) -> int | None:
    """Store a message in a folder (tests, sent copies); returns its UID when the server says.

    ``received_at`` (aware) sets its ``INTERNALDATE``, as a copy from an archive keeps it.
    """
    with ImapMailbox(settings) as box:
        return box.append(folder or settings.folder, raw, received_at)


def append_once(
    settings: ImapSettings,
    folder: str,
    raw: Callable[[], bytes],
    message_id: str,
    sent_at: dt.datetime | None = None,
) -> int | None:
    """Store a sent mail (``raw()``'s bytes, read only when needed) in ``folder``, marked
    seen, unless one with its ``message_id`` is there already (a retry after a copy the
    server kept); the folder is created when the server has none of that name.  Returns
    the copy's UID when the server says it."""
    with ImapMailbox(settings) as box:
        conn = box._conn()
        status, _data = conn.select(_folder(folder), readonly=True)
        if status == "OK":
            found = box._search(f"HEADER Message-ID {_quoted(message_id)}")
            if found:
                return found[-1]
        else:
            _check(f"CREATE {folder}", conn.create(_folder(folder)))
        return box.append(folder, raw(), sent_at, flags=r"(\Seen)")


__all__ = ["FetchedMessage", "ImapError", "ImapMailbox", "ImapSettings", "append", "append_once"]
