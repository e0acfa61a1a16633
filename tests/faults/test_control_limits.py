"""The control port under a huge client: a body over the limit is refused before it is read, so the daemon's
memory does not grow with what a client sends."""

from __future__ import annotations

import select
import socket
import time

import pytest

from appliance.testing import DaemonProcess
from faults.harness import rss_bytes

LIMIT = 16 * 1024 * 1024
MB = 1 << 20


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with DaemonProcess(tmp_path_factory.mktemp("control-limits") / "home") as d:
        yield d


def head(d: DaemonProcess, framing: str, token: str | None = None) -> bytes:
    return (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token or d.token}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n").encode()


def send_until_answered(sock: socket.socket, chunks, timeout: float = 20.0) -> tuple[bytes, int]:
    """Send ``chunks`` until the server answers (or stops reading); returns all it said before closing (or by
    ``timeout``) and the bytes sent."""
    sent, answer = 0, b""
    sock.settimeout(timeout)
    for chunk in chunks:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(chunk)
        except OSError:  # the server closed its end
            break
        sent += len(chunk)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = sock.recv(65536)
        except OSError:
            break
        if not got:
            break
        answer += got
    return answer, sent


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(daemon):
    before = rss_bytes(daemon.proc.pid)
    with socket.create_connection(("127.0.0.1", daemon.info["port"])) as s:
        s.sendall(head(daemon, f"Content-Length: {96 * MB}"))
        body = (b"x" * MB for _ in range(96))
        answer, sent = send_until_answered(s, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert str(LIMIT).encode() in answer  # the limit is named
    assert sent < 64 * MB, f"the daemon read {sent / MB:.0f} MB before refusing"
    assert rss_bytes(daemon.proc.pid) - before < 32 * MB


def test_a_chunked_body_is_stopped_once_over_the_limit(daemon):
    before = rss_bytes(daemon.proc.pid)
    chunk = b"%x\r\n" % MB + b"x" * MB + b"\r\n"
    with socket.create_connection(("127.0.0.1", daemon.info["port"])) as s:
        s.sendall(head(daemon, "Transfer-Encoding: chunked"))
        answer, sent = send_until_answered(s, (chunk for _ in range(96)))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 64 * MB, f"the daemon read {sent / MB:.0f} MB before refusing"
    assert rss_bytes(daemon.proc.pid) - before < 32 * MB
    assert daemon.get("/health").status_code == 200


def test_a_refused_clients_body_is_not_read_either(daemon):
    with socket.create_connection(("127.0.0.1", daemon.info["port"])) as s:
        s.sendall(head(daemon, f"Content-Length: {LIMIT}", token="guessed"))
        answer, sent = send_until_answered(s, (b"x" * MB for _ in range(16)))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert sent < LIMIT
