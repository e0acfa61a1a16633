"""A small HTTP/1.1 server for the serving port: httptools parsing on uvloop, one socket write per response.

Why not uvicorn and ASGI here: an ASGI server writes the status line and headers as soon as the app starts its
response, then the body in a second write (each a syscall that wakes the client), and it runs every request as
a task with its receive/send coroutines. Here a parsed request goes straight to ``ServingApp.handle`` from the
parser's callback; most answers come back at once and leave in one write, with no task at all. A batched
inference answers later, through a callback. It supports what inference clients use: keep-alive, pipelining
(answers leave in request order), content-length and chunked request bodies, ``Expect: 100-continue``.

The port may face a LAN without a credential, so everything a client can make it hold is bounded (``Limits``):
connections (those beyond the cap get a 503 and are closed, long before the daemon's descriptors run out), a
request's head (64 KB), its body (413 past ``max_body``), the bodies being received on all connections together
(503 past ``max_buffered``), and time: a request's head and its body each have a deadline (408), and an idle
keep-alive connection is closed. A client that stops reading its answers stops being read. Per request this
costs a few attribute updates; the deadlines are kept by one sweep of the connections a second, not by a timer
per request.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import math
import os
import resource
import socket
import threading
import time

import httptools

from appliance import name_thread
from appliance.logthrottle import LogThrottle

from .settings import Limits

log = logging.getLogger("appliance.serving.http")
# Whatever a client can cause is logged at most once a minute per kind: a flood must not rotate the evidence away.
throttled = LogThrottle(log)

_PHRASES = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_JSON = ((b"content-type", b"application/json"),)
_INTERNAL = (500, _JSON, b'{"error":"internal error; see the daemon log"}')
_TOO_MANY = b'{"error":"too many connections: the serving port is at its limit; retry later"}'

#: Bytes of a request's line and headers (more is a 431).
MAX_HEAD = 64 * 1024
#: Seconds between sweeps of the connections for deadlines: a deadline of T seconds closes after T to T + TICK_S.
TICK_S = 1.0
# Where a connection is in its current request: deadlines differ by phase.
IDLE, HEAD, BODY = 0, 1, 2


class Stats:
    """The port's connection counters, kept on its loop and read by ``/metrics``."""

    __slots__ = ("limit", "open", "buffered", "shed_connections", "shed_memory", "timeouts")

    def __init__(self, limit: int):
        self.limit = limit  # connections taken at once (the setting, lowered to fit the descriptor limit)
        self.open = self.buffered = self.shed_connections = self.shed_memory = self.timeouts = 0


def connection_limit(configured: int) -> int:
    """``configured``, or half the descriptors the process has left if that is fewer: the stores, the control
    API, jobs and their pipes keep the other half."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError):
        return configured
    if soft == resource.RLIM_INFINITY or (soft - used) // 2 >= configured:
        return configured
    limit = max(1, (soft - used) // 2)
    log.warning("serving takes at most %d connections, not %d: the daemon may open %d files (ulimit -n; "
                "LimitNOFILE= under systemd) and keeps half of those left for itself", limit, configured, soft)
    return limit


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive", "version")

    method: str
    path: str
    query: bytes
    headers: dict[bytes, bytes]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    keep_alive: bool
    version: str


class _Slot:
    """A request's place in its connection's answer order."""

    __slots__ = ("data", "keep_alive")

    def __init__(self, keep_alive: bool):
        self.data: bytes | None = None
        self.keep_alive = keep_alive


class _Refused(Exception):
    """Raised in a parser callback: stop reading this request and answer ``status`` instead."""

    def __init__(self, status: int, body: bytes):
        super().__init__(status)
        self.status, self.body = status, body


class _Connection(asyncio.Protocol):
    def __init__(self, app, server: HttpServer):
        self.app = app
        self.server = server
        self.limits = server.limits
        self.stats = server.stats
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.slots: collections.deque[_Slot] = collections.deque()
        # Requests parsed while the client was not reading its answers: handled once it does, so what piles up
        # is the requests it sent, not the (maybe far larger) answers to them.
        self.deferred: collections.deque[Request] = collections.deque()
        self.phase = IDLE
        self.requests = 0  # begun on this connection: with the phase, what tells the sweep it moved on
        self.head_bytes = 0
        self.refused = False  # a refusal is on its way: nothing more is read
        self.writing_paused = False
        self._seen: tuple = ()
        self._ticks = 0  # sweeps that saw the connection where it was the sweep before
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0  # bytes of the body so far, counted in stats.buffered until released

    # ------------------------------------------------------------------------------------------- transport

    def connection_made(self, transport) -> None:
        stats = self.stats
        if stats.open >= stats.limit:
            # Accepted only to say no: its descriptor is freed at once, so a flood never takes the daemon's last.
            self.refused = True
            stats.shed_connections += 1
            throttled.warning("serving refused connections: %d open, its limit ([serving] max_connections)",
                              stats.open)
            transport.write(_response(503, _JSON, _TOO_MANY, False))
            transport.close()
            return
        stats.open += 1
        self.transport = transport
        self.server.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc) -> None:
        if self.transport is None:
            return  # refused at the door: never counted
        self.transport = None
        self.stats.open -= 1
        self.server.connections.discard(self)
        self._release()
        self.slots.clear()  # answers still coming go nowhere
        self.deferred.clear()

    def pause_writing(self) -> None:
        # The client is not reading its answers: read no more requests until it does.
        self.writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        while self.deferred and not (self.writing_paused or self.refused) and self.transport is not None:
            self._handle(self.deferred.popleft())
        if not self.writing_paused and self.transport is not None and not self.refused:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.phase != BODY:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                return self._refuse(cause.status, cause.body)
            throttled.error("serving connection failed", exc_info=cause)
            return self._refuse(500, _INTERNAL[2])
        except httptools.HttpParserUpgrade:
            return self._refuse(400, b'{"error":"protocol upgrades are not served here"}')
        except httptools.HttpParserError as exc:
            return self._refuse(400, b'{"error":"malformed HTTP request: ' + str(exc).encode(errors="replace")[:100]
                                .replace(b'"', b"'") + b'"}')
        if self.phase == HEAD and self.head_bytes > MAX_HEAD:
            self._refuse(431, b'{"error":"request line and headers exceed %d bytes"}' % MAX_HEAD)

    def _refuse(self, status: int, body: bytes) -> None:
        """Answer ``status`` once the answers still due on this connection have left, then close it."""
        self.refused = True
        self._release()
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.pause_reading()
        slot = _Slot(False)
        self.slots.append(slot)
        self._answer(slot, (status, _JSON, body))

    def _release(self) -> None:
        self.stats.buffered -= self._size
        self._size = 0

    def tick(self, deadlines: tuple[int, int, int]) -> None:
        """One sweep: close the connection if it has waited on its client past the deadline of where it is."""
        seen = (self.requests, self.phase, self.refused)
        if seen != self._seen or (self.slots and not self.writing_paused):  # moved on, or an answer is due
            self._seen, self._ticks = seen, 0
            return
        self._ticks += 1
        if self.refused or self.writing_paused:  # only a client that reads can take what is left to send
            if self._ticks >= deadlines[IDLE]:
                self.stats.timeouts += 1
                self.transport.abort()
            return
        phase = self.phase
        # A connection that has not begun a request yet is closed without a word; a new one sooner (its head).
        if self._ticks < deadlines[HEAD if phase == IDLE and not self.requests else phase]:
            return
        self.stats.timeouts += 1
        if phase == IDLE:
            self.transport.close()
        elif phase == HEAD:
            self._refuse(408, b'{"error":"request head not received within %d s"}' % self.limits.header_timeout_s)
        else:
            self._refuse(408, b'{"error":"request body not received within %d s"}' % self.limits.body_timeout_s)

    # ------------------------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, []
        self.phase = HEAD
        self.requests += 1

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.phase, self.head_bytes = BODY, 0
        length = self._headers.get(b"content-length")
        if length is not None and length.strip().isdigit():
            n, limits = int(length), self.limits
            if n > limits.max_body:
                raise _Refused(413, b'{"error":"request body exceeds the limit of %d bytes"}' % limits.max_body)
            if n > limits.max_buffered - self.stats.buffered:
                self._shed_memory()
        expect = self._headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        n = len(body)
        self._size += n
        stats = self.stats
        stats.buffered += n
        if self._size > self.limits.max_body:
            raise _Refused(413, b'{"error":"request body exceeds the limit of %d bytes"}' % self.limits.max_body)
        if stats.buffered > self.limits.max_buffered:
            self._shed_memory()
        self._body.append(body)

    def _shed_memory(self) -> None:
        self.stats.shed_memory += 1
        throttled.warning("serving refused request bodies: %d bytes being received, its limit "
                          "([serving] max_buffered_mb)", self.stats.buffered)
        raise _Refused(503, b'{"error":"the server is receiving too many request bodies at once; retry later"}')

    def on_message_complete(self) -> None:
        self.phase = IDLE
        if self._size:  # the body is the request's now, no longer a buffer being filled
            self.stats.buffered -= self._size
            self._size = 0
        url = httptools.parse_url(self._url)
        req = Request()
        req.method = self.parser.get_method().decode()
        req.path = url.path.decode("latin-1")
        req.query = url.query or b""
        req.headers = self._headers
        req.body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        req.keep_alive = self.parser.should_keep_alive()
        req.version = self.parser.get_http_version()
        if self.writing_paused or self.deferred:
            self.deferred.append(req)
        else:
            self._handle(req)

    def _handle(self, req: Request) -> None:
        slot = _Slot(req.keep_alive)
        self.slots.append(slot)
        try:
            reply = self.app.handle(req, lambda *later: self._answer(slot, later))
        except Exception:
            throttled.exception("serving request failed")
            reply = _INTERNAL
        if reply is not None:
            self._answer(slot, reply)

    def _answer(self, slot: _Slot, reply: tuple) -> None:
        """Fill the request's slot, then send every answer that is next in order (pipelining keeps order)."""
        status, headers, body = reply
        slot.data = _response(status, headers, body, slot.keep_alive)
        if self.transport is None:
            return
        out = []
        while self.slots and self.slots[0].data is not None:
            done = self.slots.popleft()
            out.append(done.data)
            if not done.keep_alive:
                self.slots.clear()
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))


_HEADS: dict[tuple, bytes] = {}  # (status, constant headers) -> the status line and header lines


def _response(status: int, headers, body: bytes, keep_alive: bool) -> bytes:
    if type(headers) is tuple:  # constant headers (the code's own tuples): built once per status
        head = _HEADS.get((status, headers))
        if head is None:
            head = _head(status, headers)
            if len(_HEADS) < 256:
                _HEADS[(status, headers)] = head
    else:  # headers made for this answer (a binary response's header length)
        head = _head(status, headers)
    return b"%scontent-length: %d\r\n%s\r\n%s" % (head, len(body), b"" if keep_alive else b"connection: close\r\n",
                                                  body)


def _head(status: int, headers) -> bytes:
    return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b"Unknown"))]
                    + [k + b": " + v + b"\r\n" for k, v in headers])


class HttpServer:
    """The server on its own thread and uvloop loop, so serving never waits on the control API."""

    def __init__(self, app, sock: socket.socket, limits: Limits):
        self.app, self.sock, self.limits = app, sock, limits
        self.stats = Stats(connection_limit(limits.max_connections))
        self.connections: set[_Connection] = set()
        # Sweeps a connection may wait on its client in each phase (IDLE, HEAD, BODY).
        self._deadlines = tuple(max(1, math.ceil(s / TICK_S)) for s in (
            limits.idle_timeout_s, limits.header_timeout_s, limits.body_timeout_s))
        self.port = sock.getsockname()[1]
        self.loop = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="serving", daemon=True)

    def _run(self) -> None:
        import uvloop

        name_thread("serving")  # what `top -H` shows beside "prediction-log" and "duckdb"

        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(_loop_error)
        server = self.loop.run_until_complete(self.loop.create_server(
            lambda: _Connection(self.app, self), sock=self.sock, backlog=4096))
        self.loop.call_later(TICK_S, self._sweep)
        self.started.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

    def _sweep(self) -> None:
        self.loop.call_later(TICK_S, self._sweep)
        for conn in list(self.connections):
            try:
                conn.tick(self._deadlines)
            except Exception:
                throttled.exception("serving sweep failed on a connection")

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        self.started.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        deadline = time.monotonic() + timeout
        self.thread.join(max(0.0, deadline - time.monotonic()))


def _loop_error(loop, context: dict) -> None:
    """What the loop itself reports (a failed accept, a protocol callback that raised): throttled per message."""
    message = context.get("message") or "serving loop error"
    throttled.error("serving loop: %s", message, key=message, exc_info=context.get("exception"))
