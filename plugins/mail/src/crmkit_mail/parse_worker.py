"""Decoding mail on another core: a child process running :func:`parse_message`.

Decoding is pure Python, so a thread only overlaps it with waiting; it still holds the GIL
the recording thread needs.  A long sync therefore hands each fetched batch to one child
process and records the previous batch meanwhile.  The child is a plain interpreter that
loads ``parsing.py`` by path (standard library and attrs only), not a fork of a process
holding database connections and threads, nor a ``multiprocessing`` spawn that imports the
whole application (the package, or the ``crmkit`` script as ``__main__``): it is ready in
a fraction of a second.

Batches and results travel as length-prefixed pickles of plain values over the child's
standard input and output, in order.  If the child cannot be started or fails, the caller
decodes in process (``ParserProcess.parse`` does it itself), so decoding never stops a
sync.  Run as a script, this file is the child.

Given the CRM's file storage (a :class:`~crmkit.storage.FileStorage`: a directory), the
child also writes each attachment there itself and sends back its key, size and digest
instead of the bytes: creating a file (directories, a temporary file, a rename) was the
largest single cost of recording a mail with one, and here it overlaps with the recording
of the previous batch.  Those files are the sync's until an entry refers to them
(:class:`crmkit.channels.Attachment` ``stored``): it deletes the ones no entry took, and
:meth:`ParserProcess.close` those of batches decoded but never collected.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from crmkit.storage import FileStorage

_LENGTH = struct.Struct("!Q")


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the parser process closed its output")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the parser process closed its output")
    return pickle.loads(data)  # our own child, over its own pipe


def to_wire(parsed: Any) -> tuple[Any, ...]:
    """A :class:`~crmkit_mail.parsing.ParsedMail` as plain values (no classes to import)."""
    bounce = parsed.bounce
    return (
        parsed.message_id, parsed.sender, parsed.sender_name, parsed.recipients,
        parsed.subject, parsed.date, parsed.text, parsed.html, parsed.in_reply_to,
        parsed.references,
        tuple(
            (a.filename, a.content_type, a.data, a.stored and attrs.astuple(a.stored))
            for a in parsed.attachments
        ),
        None if bounce is None else attrs.astuple(bounce),
        parsed.auto_submitted, parsed.list_unsubscribe, parsed.digest, parsed.defects,
        parsed.authenticated,
    )  # fmt: skip


def from_wire(values: tuple[Any, ...]) -> Any:
    """The :class:`~crmkit_mail.parsing.ParsedMail` of :func:`to_wire`'s values."""
    from crmkit.storage import StoredFile
    from crmkit_mail.parsing import Bounce, MailAttachment, ParsedMail

    fields = list(values)
    fields[10] = tuple(
        MailAttachment(name, kind, data, None if stored is None else StoredFile(*stored))
        for name, kind, data, stored in fields[10]
    )
    fields[11] = None if fields[11] is None else Bounce(*fields[11])
    return ParsedMail(*fields)


class ParserProcess:
    """One child decoding batches of raw mails in order; use as a context manager.

    ``submit`` (from any one thread) sends a batch, ``results`` (from any one thread)
    returns the decoded mails of the oldest batch not yet returned.  After a failure the
    object is ``broken`` and the caller decodes in process.
    """

    def __init__(self, storage: FileStorage | None = None, max_size: int = 0) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.broken = False
        #: where the child writes attachments (files above ``max_size`` come back as bytes)
        self.storage = storage
        self.max_size = max_size
        #: batches submitted and not yet returned by ``results``
        self.pending = 0

    def __enter__(self) -> ParserProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the child (on failure, stay ``broken`` and decode in process)."""
        try:
            # -P: the package's directory is not put first on the child's module path
            command = [sys.executable, "-P", __file__, str(Path(__file__).with_name("parsing.py"))]
            if self.storage is not None:
                from crmkit import storage as storage_module

                command += [storage_module.__file__, str(self.storage.root), str(self.max_size)]
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError:
            self.broken = True

    def submit(self, raws: list[bytes]) -> bool:
        """Send a batch to the child; False (and ``broken``) if it could not be sent."""
        if self.broken or self.process is None or self.process.stdin is None:
            self.broken = True
            return False
        try:
            _send(self.process.stdin, raws)
        except (OSError, ValueError):
            self.broken = True
            return False
        self.pending += 1
        return True

    def results(self) -> list[Any]:
        """The decoded mails of the oldest batch submitted (raises once ``broken``)."""
        if self.broken or self.process is None or self.process.stdout is None:
            raise EOFError("the parser process is not running")
        try:
            answer = _receive(self.process.stdout)
        except Exception:
            self.broken = True
            raise
        self.pending -= 1
        return [from_wire(values) for values in answer]

    def discard(self, parsed: list[Any]) -> None:
        """Delete the files the child stored for mails that will not be recorded."""
        if self.storage is not None:
            for key in stored_keys(parsed):
                self.storage.delete(key)

    def close(self) -> None:
        """Stop the child; batches still in it are dropped, with the files it stored."""
        process = self.process
        if process is None:
            return
        if self.storage is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the child finishes what it has, then ends
            while self.pending and not self.broken:
                with contextlib.suppress(Exception):
                    self.discard(self.results())
        self.process = None
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stored_keys(parsed: list[Any]) -> list[str]:
    """Storage keys of the files the child wrote for ``parsed`` mails."""
    return [a.stored.key for mail in parsed for a in mail.attachments if a.stored is not None]


def _load(name: str, path: str) -> Any:
    """A module of one file by path, without its package (whose import loads the application)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


def _store(storage: Any, max_size: int, parsed: Any) -> Any:
    """``parsed`` with its files written to ``storage``; a file it refuses stays as bytes."""
    if not parsed.attachments:
        return parsed
    files = []
    for attachment in parsed.attachments:
        if attachment.data is not None and len(attachment.data) <= max_size:
            try:
                saved = storage.save([attachment.data], max_size=max_size)
            except (OSError, ValueError):  # left to the sync, which reports why
                pass
            else:
                attachment = attrs.evolve(attachment, data=None, stored=saved)
        files.append(attachment)
    return attrs.evolve(parsed, attachments=tuple(files))


def _serve(parsing_path: str, storage_path: str | None, root: str | None, limit: str) -> None:
    """The child: decode batches from standard input until it closes."""
    parsing = _load("_crmkit_mail_parsing", parsing_path)
    storage = None
    if storage_path is not None and root is not None:
        storage = _load("_crmkit_storage", storage_path).FileStorage(root)
    max_size = int(limit)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    # batches are read as they come, whether or not the parent reads the answers: a parent
    # that stops reading (a sync stopped midway) must still be able to send the batches its
    # fetching thread has under way, or both would wait for the other forever
    waiting: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                waiting.put(_receive(source))
        except EOFError:
            pass
        finally:
            waiting.put(None)

    threading.Thread(target=read, daemon=True).start()
    while (raws := waiting.get()) is not None:
        parsed = [parsing.parse_message(raw) for raw in raws]
        if storage is not None:
            parsed = [_store(storage, max_size, mail) for mail in parsed]
        _send(sink, [to_wire(mail) for mail in parsed])


if __name__ == "__main__":
    _serve(*(sys.argv[1:5] if len(sys.argv) > 2 else (sys.argv[1], None, None, "0")))
