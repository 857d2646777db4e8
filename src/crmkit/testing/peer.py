"""A local HTTP peer that records what it receives, keyed by ``Idempotency-Key``.

Tests of deliveries (webhooks, outbox workers) point at it instead of a mock::

    with RecordingPeer() as peer:
        ...  # deliver to peer.url
        assert peer.accepted_count(key) == 1

It behaves like a well-made outside service: the first request bearing a key is
*accepted* (recorded, answered 200); a repeat of the key is answered 200 again but not
recorded twice.  Every request, repeats included, is kept in :attr:`requests`, so a test
can tell that a retry happened and that it changed nothing.  ``down = True`` makes it answer
503; :meth:`hold` makes it keep requests waiting after accepting them (to kill a worker
in the middle of a delivery); ``delay`` slows every answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are two writes: without TCP_NODELAY each answer waits ~40 ms for
    # the client's delayed ACK (Nagle)
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        peer = self.server.peer
        key = self.headers.get("Idempotency-Key") or ""
        status, answer = peer._receive(key, body, self.path)
        if peer.delay:
            time.sleep(peer.delay)
        peer._release.wait()
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_PUT = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    peer: RecordingPeer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender killed mid-request (what some tests do on purpose) is not an error here.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RecordingPeer:
    """A tiny HTTP server on 127.0.0.1 recording each idempotency key once."""

    def __init__(self, *, delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.delay = delay
        self.down = False
        self.requests: list[tuple[str, bytes]] = []
        self.accepted: dict[str, bytes] = {}
        self._accepted_counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._release.set()
        self._arrived = threading.Condition(self._lock)
        self._server = _Server((host, port), _Handler)
        self._server.peer = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The address to POST to."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def _receive(self, key: str, body: bytes, path: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((key, body))
            self._arrived.notify_all()
            if self.down:
                return 503, {"error": "down"}
            if key in self.accepted:
                return 200, {"duplicate": True}
            self.accepted[key] = body
            self._accepted_counts[key] += 1
            return 200, {"accepted": key}

    def accepted_count(self, key: str) -> int:
        """How many times the peer acted on ``key`` (1 for a correct sender)."""
        with self._lock:
            return self._accepted_counts[key]

    def request_count(self, key: str | None = None) -> int:
        """Requests received (for ``key``, or all), repeats included."""
        with self._lock:
            if key is None:
                return len(self.requests)
            return sum(1 for k, _ in self.requests if k == key)

    def hold(self) -> None:
        """Keep answering nothing: requests are accepted but their answers wait."""
        self._release.clear()

    def release(self) -> None:
        """Answer held requests and stop holding."""
        self._release.set()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` requests arrived; whether they did in time."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(remaining)
        return True

    def start(self) -> RecordingPeer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RecordingPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
