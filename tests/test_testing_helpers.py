"""The helpers of ``crmkit.testing`` that tests of plugins build on."""

from __future__ import annotations

import socket
import threading

from crmkit.testing import free_port, listening, wait_until


def test_listening_tells_a_port_with_a_server_from_one_without():
    port = free_port()
    assert not listening(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert listening(port)
    assert not listening(port)


def test_wait_until_sees_a_server_that_starts_later():
    port = free_port()
    ready = threading.Event()

    def serve() -> None:
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            ready.wait(5)

    thread = threading.Timer(0.3, serve)
    thread.start()
    try:
        assert not listening(port)
        assert wait_until(lambda: listening(port), timeout=5)
    finally:
        ready.set()
        thread.join()
    assert not wait_until(lambda: listening(port), timeout=0.2)
