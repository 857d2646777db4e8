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
"""

from __future__ import annotations

import contextlib
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

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
        tuple((a.filename, a.content_type, a.data) for a in parsed.attachments),
        None if bounce is None else (bounce.recipients, bounce.status, bounce.original_message_id),
        parsed.auto_submitted, parsed.list_unsubscribe, parsed.digest, parsed.defects,
    )  # fmt: skip


def from_wire(values: tuple[Any, ...]) -> Any:
    """The :class:`~crmkit_mail.parsing.ParsedMail` of :func:`to_wire`'s values."""
    from crmkit_mail.parsing import Bounce, MailAttachment, ParsedMail

    fields = list(values)
    fields[10] = tuple(MailAttachment(*a) for a in fields[10])
    fields[11] = None if fields[11] is None else Bounce(*fields[11])
    return ParsedMail(*fields)


class ParserProcess:
    """One child decoding batches of raw mails in order; use as a context manager.

    ``submit`` (from any one thread) sends a batch, ``results`` (from any one thread)
    returns the decoded mails of the oldest batch not yet returned.  After a failure the
    object is ``broken`` and the caller decodes in process.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.broken = False

    def __enter__(self) -> ParserProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the child (on failure, stay ``broken`` and decode in process)."""
        try:
            # -P: the package's directory is not put first on the child's module path
            self.process = subprocess.Popen(
                [sys.executable, "-P", __file__, str(Path(__file__).with_name("parsing.py"))],
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
        return True

    def results(self) -> list[Any]:
        """The decoded mails of the oldest batch submitted (raises once ``broken``)."""
        if self.broken or self.process is None or self.process.stdout is None:
            raise EOFError("the parser process is not running")
        try:
            return [from_wire(values) for values in _receive(self.process.stdout)]
        except Exception:
            self.broken = True
            raise

    def close(self) -> None:
        """Stop the child (batches still in it are dropped)."""
        process, self.process = self.process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _serve(parsing_path: str) -> None:
    """The child: decode batches from standard input until it closes."""
    import importlib.util

    # parsing.py alone, without the package (whose import loads the whole application)
    spec = importlib.util.spec_from_file_location("_crmkit_mail_parsing", parsing_path)
    assert spec is not None and spec.loader is not None
    parsing = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = parsing  # attrs resolves the module's annotations through it
    spec.loader.exec_module(parsing)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            raws = _receive(source)
        except EOFError:
            return
        _send(sink, [to_wire(parsing.parse_message(raw)) for raw in raws])


if __name__ == "__main__":
    _serve(sys.argv[1])
