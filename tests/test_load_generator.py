"""The load generator records every request's outcome with its duration (issue 18, item 6): a reply
that is no port, a connection dropped without an answer, and a request that outlived the client's
time-out all appear in ``answers``; none of them ends a client thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.load import PortLoad

TIMEOUT = 0.5  # the client's time-out in this test


class Misbehaving(BaseHTTPRequestHandler):
    """Answers the n-th request badly in turn: a 201 that is not JSON, a dropped connection, no answer
    until the client gave up; then a proper 503."""

    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # http.server calls it by this name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with Misbehaving.lock:
            n = Misbehaving.count % 4
            Misbehaving.count += 1
        if n == 0:
            self._reply(201, b"<html>not json</html>")
        elif n == 1:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif n == 2:
            time.sleep(TIMEOUT * 3)
            self.close_connection = True
        else:
            body = b'{"NeutronError": {"type": "IpamMigrationInProgress", "message": "m", "detail": ""}}'
            self._reply(503, body)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None: ...


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_every_outcome_is_recorded_with_its_duration(stub):
    Misbehaving.count = 0
    with PortLoad([stub], "net", per_base=1, timeout=TIMEOUT) as load:
        deadline = time.monotonic() + 60
        while len(load.answers) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    answers = list(load.answers)
    assert not load.crashed
    errors = {a.error for a in answers}
    assert {"not-a-port", "RemoteProtocolError", "ReadTimeout", "IpamMigrationInProgress"} <= errors, errors
    assert not load.created()  # none of them is a port the client holds
    timed_out = [a for a in answers if a.error == "ReadTimeout"]
    assert all(a.status == 0 and a.took >= TIMEOUT for a in timed_out)
    assert load.slowest >= TIMEOUT  # a hung request is seen by the same measure the fault tests use
