"""The serving port under attack and bad luck, at the connection level: idle sockets by the hundred, bodies
that never finish, clients that send a byte a second. Each must cost a bounded amount of descriptors and
memory, and every other client must keep being answered."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import tritonclient.http as triton
from conftest import make_project
from serving_models import N_FEATURES, linear_model

from faults.harness import LimitedDaemon, idle_connections, open_fds, rss_bytes, serving_address, slow_request

NOFILE = 256
TOML = """
[serving]
port = 0
max_body_mb = 16

[deployments.fraud]
model = "fraud@champion"
"""
X = np.random.default_rng(3).normal(size=(2, N_FEATURES)).astype(np.float32)


def serve_model(d, root) -> None:
    d.register_model("fraud", linear_model(root / "m.onnx", seed=1))
    assert d.post("/models/fraud/aliases/champion", {"version": 1}).status_code == 200
    deadline = time.monotonic() + 30
    while d.get("/deployments/fraud").json()["state"] != "ready":
        assert time.monotonic() < deadline, d.get("/deployments/fraud").text
        time.sleep(0.05)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A daemon allowed NOFILE descriptors, serving one model."""
    root = tmp_path_factory.mktemp("serving-limits")
    project = make_project(root / "project", [], TOML)
    with LimitedDaemon(root / "home", project, nofile=NOFILE) as d:
        serve_model(d, root)
        yield d


def infer_ok(client: triton.InferenceServerClient) -> float:
    """One inference through tritonclient; returns its latency."""
    inp = triton.InferInput("features", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    t0 = time.perf_counter()
    result = client.infer("fraud", [inp])
    assert result.as_numpy("probability").shape == (2, 1)
    return time.perf_counter() - t0


def exchange(host: str, port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` on a new connection; what came back before the server closed (or ``timeout``)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        got = b""
        try:
            s.sendall(request)
            while chunk := s.recv(65536):
                got += chunk
                if b"\r\n\r\n" in got and b"connection: close" not in got.lower():
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return got


def test_idle_connections_beyond_the_cap_are_shed_before_descriptors_run_out(limited):
    host, port = serving_address(limited)
    client = triton.InferenceServerClient(url=f"{host}:{port}")
    infer_ok(client)  # the client's connection is open before the flood
    with idle_connections(host, port, 4 * NOFILE) as socks:
        assert len(socks) == 4 * NOFILE  # the backlog took them all: none was refused at connect
        time.sleep(0.5)  # the server has accepted (and shed) what it will
        assert open_fds(limited.proc.pid) < NOFILE - 32, "the serving port took the daemon's last descriptors"
        infer_ok(client)  # an existing client keeps working
        shed = exchange(host, port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert shed.startswith(b"HTTP/1.1 503"), shed[:200]
        assert b"too many connections" in shed
        assert limited.get("/health").status_code == 200  # the rest of the daemon still has descriptors
    time.sleep(0.5)  # the flood's sockets closed: their slots are free again
    assert exchange(host, port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") \
        .startswith(b"HTTP/1.1 200")


def test_bodies_that_never_finish_hold_bounded_memory_and_others_are_answered(limited):
    host, port = serving_address(limited)
    client = triton.InferenceServerClient(url=f"{host}:{port}")
    infer_ok(client)
    before = rss_bytes(limited.proc.pid)
    declared, sent = 16 * 1024 * 1024 - 1, 15 * 1024 * 1024  # within max_body_mb, never finished
    head = b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n" % declared
    held = []
    try:
        for _ in range(20):
            s = socket.create_connection((host, port), timeout=10)
            held.append(s)
            try:
                s.sendall(head + b"0" * sent)
            except OSError:
                pass  # shed: the server closed it
        time.sleep(1.0)  # the server has read what it will
        grown = rss_bytes(limited.proc.pid) - before
        assert grown < 120 * 1024 * 1024, f"20 unfinished bodies grew the daemon by {grown >> 20} MB"
        assert infer_ok(client) < 1.0
    finally:
        for s in held:
            s.close()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    """A daemon with one-second deadlines (two for a body)."""
    root = tmp_path_factory.mktemp("serving-deadlines")
    toml = TOML.replace("max_body_mb = 16", "header_timeout_s = 1\nbody_timeout_s = 2\nidle_timeout_s = 1")
    project = make_project(root / "project", [], toml)
    with LimitedDaemon(root / "home", project) as d:
        serve_model(d, root)
        yield d


def test_a_head_sent_a_byte_at_a_time_gets_408_and_others_are_answered_meanwhile(impatient):
    host, port = serving_address(impatient)
    client = triton.InferenceServerClient(url=f"{host}:{port}")
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nUser-Agent: a-slow-one\r\n\r\n"  # 15 s at this pace
    t0 = time.monotonic()
    got = slow_request(host, port, request, delay=0.25)
    assert time.monotonic() - t0 < 4
    assert got.startswith(b"HTTP/1.1 408") and b"request head not received within 1 s" in got, got[:200]
    assert infer_ok(client) < 1.0


def test_a_body_sent_a_byte_at_a_time_gets_408(impatient):
    host, port = serving_address(impatient)
    body = b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'
    got, t0 = b"", time.monotonic()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n" % len(body))
        s.settimeout(0.25)
        for i in range(len(body)):  # 23 s at this pace
            try:
                s.sendall(body[i:i + 1])
                got += s.recv(65536)
                break
            except TimeoutError:
                continue
            except OSError:
                break
        s.settimeout(5)
        while chunk := s.recv(65536):
            got += chunk
    assert time.monotonic() - t0 < 5
    assert got.startswith(b"HTTP/1.1 408") and b"request body not received within 2 s" in got, got[:200]


def test_idle_and_silent_connections_are_closed(impatient):
    host, port = serving_address(impatient)
    with socket.create_connection((host, port), timeout=5) as used, \
            socket.create_connection((host, port), timeout=5) as silent:
        used.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert used.recv(65536).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        assert used.recv(65536) == b""  # the keep-alive connection, idle: closed without a word
        assert silent.recv(65536) == b""  # one that never sent a request: closed too
        assert time.monotonic() - t0 < 3.5


def test_clients_that_never_read_their_answers_stop_being_read(limited):
    """Pipelined requests for a page 100 times their size, never read: the answers must not pile up in memory."""
    host, port = serving_address(limited)
    client = triton.InferenceServerClient(url=f"{host}:{port}")
    infer_ok(client)
    before = rss_bytes(limited.proc.pid)
    flood = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 30_000  # 1 MB asking for ~120 MB of answers
    socks = [socket.create_connection((host, port), timeout=10) for _ in range(10)]
    try:
        for s in socks:
            s.settimeout(0.5)
            try:
                s.sendall(flood)
            except TimeoutError:
                pass  # the server stopped reading: the kernel's buffers are full
        time.sleep(1.0)
        grown = rss_bytes(limited.proc.pid) - before
        assert grown < 100 * 1024 * 1024, f"unread answers grew the daemon by {grown >> 20} MB"
        assert infer_ok(client) < 1.0
    finally:
        for s in socks:
            s.close()
