"""A small HTTP/1.1 server for the serving port: httptools parsing on uvloop, one socket write per response.

Why not uvicorn and ASGI here: an ASGI server writes the status line and headers as soon as the app starts its
response, then the body in a second write (each a syscall that wakes the client), and it runs every request as
a task with its receive/send coroutines. Here a parsed request goes straight to ``ServingApp.handle`` from the
parser's callback; most answers come back at once and leave in one write, with no task at all. A batched
inference answers later, through a callback. It supports what inference clients use: keep-alive, pipelining
(answers leave in request order), content-length and chunked request bodies, ``Expect: 100-continue``; it
refuses anything larger than the body limit with 413.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import socket
import threading
import time

import httptools

from appliance import name_thread

log = logging.getLogger("appliance.serving.http")

_PHRASES = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_JSON = ((b"content-type", b"application/json"),)
_INTERNAL = (500, _JSON, b'{"error":"internal error; see the daemon log"}')


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


class _Connection(asyncio.Protocol):
    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.slots: collections.deque[_Slot] = collections.deque()
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False

    # ------------------------------------------------------------------------------------------- transport

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.slots.clear()  # answers still coming go nowhere

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b'{"error":"protocol upgrades are not served here"}')
        except httptools.HttpParserError as exc:
            self._fail(400, b'{"error":"malformed HTTP request: ' + str(exc).encode(errors="replace")[:100]
                       .replace(b'"', b"'") + b'"}')

    def _fail(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_response(status, _JSON, body, False))
            self.transport.close()

    # ------------------------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size, self._too_large = b"", {}, [], 0, False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        length = self._headers.get(b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            self._too_large = True
        expect = self._headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            self._too_large = True
        elif not self._too_large:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._too_large:
            # The body was not kept; say so and close, since the client may still be sending.
            return self._fail(413, b'{"error":"request body exceeds the limit of ' + str(self.max_body).encode()
                              + b' bytes"}')
        url = httptools.parse_url(self._url)
        req = Request()
        req.method = self.parser.get_method().decode()
        req.path = url.path.decode("latin-1")
        req.query = url.query or b""
        req.headers = self._headers
        req.body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        req.keep_alive = self.parser.should_keep_alive()
        req.version = self.parser.get_http_version()
        slot = _Slot(req.keep_alive)
        self.slots.append(slot)
        try:
            reply = self.app.handle(req, lambda *later: self._answer(slot, later))
        except Exception:
            log.exception("serving request failed")
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

    def __init__(self, app, sock: socket.socket, max_body: int):
        self.app, self.sock, self.max_body = app, sock, max_body
        self.port = sock.getsockname()[1]
        self.loop = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="serving", daemon=True)

    def _run(self) -> None:
        import uvloop

        name_thread("serving")  # what `top -H` shows beside "prediction-log" and "duckdb"

        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(
            lambda: _Connection(self.app, self.max_body), sock=self.sock, backlog=4096))
        self.started.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        self.started.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        deadline = time.monotonic() + timeout
        self.thread.join(max(0.0, deadline - time.monotonic()))
