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


def _with_a_user(crm):
    from crmkit.testing import add_user

    return add_user(crm, "kept", ["agent"]).id


def test_module_crm_builds_once_and_again_after_the_database_was_emptied(
    module_crm, make_crm, db_backend
):
    first, user_id = module_crm(_with_a_user)
    assert module_crm(_with_a_user) == (first, user_id)

    make_crm()  # a fresh application: on PostgreSQL it empties this process's schema

    again, again_id = module_crm(_with_a_user)
    assert (again is first) == (db_backend == "sqlite")
    with again.system() as work:
        assert work.users.get(again_id).username == "kept"
