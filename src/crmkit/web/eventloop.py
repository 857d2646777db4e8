"""The event loop ``crmkit serve`` runs: uvloop, taking every waiting connection at once.

libuv (under uvloop) accepts one connection per turn of the loop since version 1.45
(libuv/libuv#3696), relying on the listening socket staying readable for the next one.
That is cheap when the loop turns quickly; when the process is busy, each turn runs every
request already read, so a burst of new connections is taken in one by one, a turn apart.
Measured under ``wrk -c32`` with one worker (docs/decisions.md, "Accepting connections
under load"): the 32nd connection waited 700 ms before its first request was read, while
every request on an accepted connection was answered within 50 ms; that wait was the
whole of the p99 the API benchmark reported.  The standard asyncio loop accepts up to the
backlog per readiness event and does not have this tail, but it serves fewer requests per
second than uvloop.

:func:`event_loop` (a uvicorn loop factory, ``--loop crmkit.web.eventloop:event_loop``)
gives uvloop with :class:`Listener`: a listening socket of this process alone is watched
with ``add_reader`` and drained on each readiness event, every connection then handed to
uvloop's own transport (``connect_accepted_socket``), so serving itself is unchanged.  A
socket handed in by a parent process (``--workers``, ``--reload``) is shared with other
worker processes: draining it greedily would give one process every connection of a
burst, so there libuv's one-per-turn accept stays, which spreads connections over the
workers by how busy each is.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger("crmkit.web")

#: Accept errors that mean "out of a resource": stop accepting for a while (as asyncio does).
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Seconds without accepting after such an error.
RESOURCE_PAUSE = 1.0


class Listener:
    """Listening sockets drained on every readiness event (an ``asyncio.Server`` stand-in).

    uvicorn uses ``sockets`` and ``close()``; ``is_serving``, ``get_loop`` and
    ``wait_closed`` are there for anyone else treating it as a server.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        backlog: int,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._backlog = max(1, backlog)
        self._opening: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.sockets = sockets
        for sock in sockets:
            sock.setblocking(False)
            sock.listen(self._backlog)
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        # at most a backlog's worth per event, so one flood cannot hold the loop forever
        for _ in range(self._backlog):
            try:
                connection, _address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # drained (or the peer gave up before we got to it)
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                self._loop.call_exception_handler(
                    {
                        "message": "accepting a connection failed; pausing for a second",
                        "exception": exc,
                        "socket": sock,
                    }
                )
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(RESOURCE_PAUSE, self._resume, sock)
                return
            self._open(connection)

    def _open(self, connection: socket.socket) -> None:
        connection.setblocking(False)
        task = self._loop.create_task(self._connect(connection))
        self._opening.add(task)  # a strong reference until connection_made has run
        task.add_done_callback(self._opening.discard)

    async def _connect(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, connection)
        except Exception as exc:  # the peer reset it already, the protocol refused it...
            connection.close()
            log.debug("could not open an accepted connection: %s", exc)

    def _resume(self, sock: socket.socket) -> None:
        if not self._closed:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop listening; connections already open go on (as ``asyncio.Server.close``)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def is_serving(self) -> bool:
        return not self._closed

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def wait_closed(self) -> None:
        if self._opening:
            await asyncio.gather(*self._opening, return_exceptions=True)


def bind(host: str | list[str] | None, port: int | None, backlog: int) -> list[socket.socket]:
    """Listening TCP sockets for ``host`` and ``port``, as ``loop.create_server`` makes them.

    One socket per address the name resolves to (``None`` or ``""``: every interface), each
    made by :func:`socket.create_server` (``SO_REUSEADDR``; IPv6 sockets IPv6-only so that
    the IPv4 one can bind beside; a bind error names the address).  Nothing is left open if
    one of them cannot bind.
    """
    hosts = host if isinstance(host, list) else [host or None]
    addresses = {
        (family, address)
        for name in hosts
        for family, *_, address in socket.getaddrinfo(
            name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    }
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sockets.append(socket.create_server(address, family=family, backlog=backlog))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
    uvloop = None  # type: ignore[assignment]


if uvloop is not None:

    class Loop(uvloop.Loop):  # type: ignore[misc,name-defined]
        """uvloop, whose servers on an address of their own take every waiting connection."""

        async def create_server(  # type: ignore[override]
            self,
            protocol_factory: Callable[[], asyncio.BaseProtocol],
            host: str | list[str] | None = None,
            port: int | None = None,
            *,
            sock: socket.socket | None = None,
            backlog: int = 100,
            ssl: Any = None,
            **options: Any,
        ) -> Any:
            own_address = sock is None and ssl is None and not options
            if not own_address:  # shared or TLS or unusual: uvloop's own server
                return await super().create_server(
                    protocol_factory, host, port, sock=sock, backlog=backlog, ssl=ssl, **options
                )
            return Listener(self, bind(host, port, backlog), protocol_factory, backlog)


def event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for serving: :class:`Loop` with uvloop, else asyncio's default."""
    if uvloop is None:  # pragma: no cover
        return asyncio.new_event_loop()
    return Loop()
