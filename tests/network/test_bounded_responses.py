"""Answers that never end: avml reads at most a small bound of any response body, and
does not wait for the rest of one after a 2xx.

The peer is a raw HTTP/1.1 server on 127.0.0.1 (a thread per connection) that reads
the request and its body, answers with a status, and then trickles a body forever
(a byte every 20 ms, announced as 1 GB), until avml closes the connection.
"""

from __future__ import annotations

import socket
import time

import pytest
from conftest import LoopbackServer, run


class TricklingServer(LoopbackServer):
    """Answers every request with `status` and an endless, slow body; counts requests."""

    def __init__(self, status: str, body_start: bytes = b""):
        self.status = status
        self.body_start = body_start
        self.requests = 0
        super().__init__()

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.port}/bucket/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00ff00ff00"

    def handle(self, client: socket.socket, head: bytes, rest: bytes):
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            rest += chunk
        self.requests += 1
        client.sendall(
            f"HTTP/1.1 {self.status}\r\nContent-Type: application/xml\r\nContent-Length: 1000000000\r\n\r\n".encode()
            + self.body_start
        )
        started = time.monotonic()
        try:
            while self.running and time.monotonic() - started < 60:
                client.sendall(b" ")
                time.sleep(0.02)
        except OSError:
            pass  # avml closed the connection: it does not wait for the rest


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.lime"
    path.write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    return path


def test_a_2xx_with_an_endless_body_is_success_at_once(avml, image):
    server = TricklingServer("201 Created")
    try:
        started = time.monotonic()
        done = run([avml, "upload", "put", str(image), server.url("ok.lime")], timeout=60)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert server.requests == 1
    assert "retrying" not in done.stderr
    assert "00ff00ff00" not in done.stderr


def test_a_500_with_an_endless_body_fails_in_time_naming_the_status(avml, image):
    server = TricklingServer("500 Internal Server Error", b"<?xml version=\"1.0\"?><Error><Code>InternalError</Code>")
    try:
        started = time.monotonic()
        done = run(
            [avml, "upload", "put", str(image), server.url("fail.lime")],
            env={"AVML_RETRY_BASE_MS": "1"},
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert done.returncode == 1
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert "HTTP 500" in done.stderr and "InternalError" in done.stderr
    assert "gave up after 8 attempts" in done.stderr
    assert server.requests == 8
    assert "00ff00ff00" not in done.stderr
