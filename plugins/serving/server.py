"""The serving port's requests: the Open Inference Protocol, answered on the serving thread's loop.

No framework, no ASGI and no per-request middleware: the path is split by hand and each request does only what
the protocol needs, because every microsecond here is paid on every prediction. A handler returns its answer
as ``(status, headers, body)``; a batched inference answers later through the ``later`` callback. Errors follow
Triton's shape, ``{"error": "..."}``, with 4xx for anything the client sent wrong; a bug becomes a 500 without
a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import orjson

from appliance.logthrottle import LogThrottle
from appliance.net import listen

from .feedback import max_labels, read_feedback
from .online import entity_rows, metadata, with_features
from .protocol import (
    JSON_HEADERS as JSON,
)
from .protocol import (
    ProtocolError,
    check_outputs,
    encode_response,
    parse_inputs,
    parse_json,
    split_body,
)

log = logging.getLogger("appliance.serving.http")
# A failure a client can cause on every request (a shadow that cannot take the input, say) is logged at most once
# a minute per kind; the metrics count every one.
throttled = LogThrottle(log)

# Request ids the server makes up: unique per daemon start without paying for uuid4 on every request.
_ID_PREFIX = uuid.uuid4().hex[:12]
_ids = itertools.count(1)

ACCEPTED_TYPES = (b"", b"application/json", b"application/octet-stream")
INTERNAL = (500, JSON, b'{"error":"internal error; see the daemon log"}')
PROMETHEUS = ((b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),)
UNAUTHORIZED = ((b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"))

Reply = tuple[int, tuple | list, bytes]  # status, headers (without content-length), body
#: An entity-key request looking up more rows than this is done on a worker thread and answered from there, so
#: the loop keeps answering everyone else meanwhile (a lookup is a few microseconds of Python per row).
OFFLOAD_ROWS = 256
#: Such requests in progress at once; beyond, a 503 (each holds its rows' worth of memory).
MAX_OFFLOADED = 8


class ServingApp:
    def __init__(self, manager, metrics, predlog, *, version: str, features=None, collected_metrics=None,
                 feedback_queue=None, feedback_token: str | None = None):
        self.manager, self.metrics, self.predlog = manager, metrics, predlog
        self.feedback_queue = feedback_queue
        self.feedback_auth = b"Bearer " + feedback_token.encode() if feedback_token else None
        self.collected_metrics = collected_metrics  # a callable: other plugins' collectors' Prometheus text
        self.version = version
        self.features = features  # a callable giving the online feature service, or None
        self.connection_stats = None  # the port's http.Stats, once it listens
        self._workers: ThreadPoolExecutor | None = None  # large entity-key requests; started with the first
        self._offloaded = 0  # of those in progress (counted on the loop)

    def handle(self, req, later: Callable[[int, list, bytes], None]) -> Reply | None:
        """The answer to ``req`` now, or None when it comes later through ``later`` (a batched inference)."""
        t0 = time.perf_counter()
        try:
            return self.route(req, later, t0)
        except ProtocolError as exc:
            return exc.status, JSON, orjson.dumps({"error": exc.message})
        except Exception:
            throttled.exception("serving request failed")
            return INTERNAL

    def route(self, req, later, t0) -> Reply | None:
        path, method = req.path, req.method
        if path == "/v2/models/stats":  # Triton's statistics of every model
            _method(method, "GET", path)
            return 200, JSON, orjson.dumps({"model_stats": self.metrics.model_stats()})
        if path.startswith("/v2/models/"):
            parts = path[11:].split("/")
            name, version, action = parts[0], None, ""
            rest = parts[1:]
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            if rest:
                action = rest[0]
            if len(rest) > 1:
                raise ProtocolError(404, f"no route {path}")
            if action == "infer":
                _method(method, "POST", path)
                return self.infer(req, later, name, version, t0)
            _method(method, "GET", path)
            dep, model = self._model(name, version, need_ready=False)
            if action == "stats":
                return 200, JSON, orjson.dumps({"model_stats": self.metrics.model_stats(name, version)})
            if action == "ready":
                ok = model is not None
                return (200, JSON, b"{}") if ok else (503, JSON, orjson.dumps(
                    {"error": f"model '{name}' is not ready ({dep.state}{': ' + dep.error if dep.error else ''})"}))
            if action == "":
                if model is None:
                    raise ProtocolError(503, f"model '{name}' is not ready ({dep.state})")
                return 200, JSON, orjson.dumps(metadata(dep.spec, model, self.features() if self.features else None))
            raise ProtocolError(404, f"no route {path}")
        if path == "/v2/health/live":
            return 200, JSON, b"{}"
        if path == "/v2/health/ready":
            deps = list(self.manager.deployments.values())
            ready = bool(deps) and all(d.current is not None for d in deps)
            return (200, JSON, b"{}") if ready else (503, JSON, b'{"error":"not all models ready"}')
        if path == "/v2":
            return 200, JSON, orjson.dumps({"name": "appliance", "version": self.version,
                                            "extensions": ["binary_tensor_data", "statistics"]})
        if path == "/metrics":
            stats = self.predlog.stats() | (self.feedback_queue.stats() if self.feedback_queue else {})
            body = (self.metrics.render(stats, self.connection_stats)
                    + (self.collected_metrics() if self.collected_metrics else "")).encode()
            return 200, PROMETHEUS, body
        if path == "/v2/feedback":
            _method(method, "POST", path)
            return self.feedback(req, later)
        raise ProtocolError(404, f"no route {path}")

    def _model(self, name: str, version: str | None, need_ready: bool = True):
        dep = self.manager.deployments.get(name)
        if dep is None:
            raise ProtocolError(404, f"unknown model '{name}'")
        model = dep.current
        if model is not None and version is not None and version != str(model.version):
            raise ProtocolError(404, f"version {version} of model '{name}' is not loaded; "
                                     f"version {model.version} is serving")
        if model is None and need_ready:
            raise ProtocolError(503, f"model '{name}' is not ready ({dep.state}"
                                     f"{': ' + dep.error if dep.error else ''})")
        return dep, model

    def infer(self, req, later, name, version, t0) -> Reply | None:
        dep, model = self._model(name, version)
        spec = dep.spec
        headers = req.headers
        ctype = headers.get(b"content-type", b"")
        if ctype not in ACCEPTED_TYPES:  # the exact usual spellings skip the parsing
            ctype = ctype.split(b";")[0].strip().lower()
        if ctype not in ACCEPTED_TYPES:
            self.metrics.failed(name, str(model.version), "content_type")
            raise ProtocolError(415, f"content type {ctype.decode(errors='replace')!r} is not read here; send "
                                     "application/json or Triton's binary tensors")
        hl = headers.get(b"inference-header-content-length")
        try:
            head, binary = split_body(req.body, hl.decode() if hl is not None else None)
            parsed = parse_json(head)
            if spec.entity_keys and self.features is not None:
                rows = entity_rows(spec, parsed)  # checked against the limit before any lookup
                if rows is not None and rows > OFFLOAD_ROWS:
                    return self._offload(dep, model, name, parsed, binary, later, t0)
                if rows is not None:
                    parsed, binary = with_features(spec, model, parsed, self.features(), binary)
            ir = parse_inputs(parsed, binary, model.inputs, spec.max_request_rows, model.nullable)
            check_outputs(ir, model.output_names)
        except ProtocolError:
            self.metrics.failed(name, str(model.version), "bad_request")
            raise
        if dep.batcher is None:
            started = time.perf_counter()
            try:
                outputs = model.infer(ir.arrays)
            except Exception:
                self.metrics.failed(name, str(model.version), "internal")  # the server's failure, not the client's
                raise
            self.metrics.executed(name, str(model.version), _rows(ir.arrays), 0.0, time.perf_counter() - started)
            reply, note = self._answer(dep, model, name, ir, outputs, t0)
            if note is not None:
                self.predlog.append(name, model.name, model.version, *note, model.input_features)
            return reply

        def batched(outputs):
            """Answer one request of the batch; what it returns is logged with the batch (``batch_answered``)."""
            if isinstance(outputs, BaseException):
                throttled.error("batched inference on %s failed: %s", name, outputs, key=f"batch {name}")
                self.metrics.failed(name, str(model.version), "internal")
                later(*INTERNAL)
                return None
            try:
                reply, note = self._answer(dep, model, name, ir, outputs, t0)
                later(*reply)
                return note
            except Exception:
                throttled.exception("serving request failed")
                later(*INTERNAL)
                return None

        dep.batcher.submit(model, ir.arrays, batched)
        return None

    def _offload(self, dep, model, name, parsed: dict, binary, later, t0) -> Reply | None:
        """A large entity-key request: its lookups, parsing, inference and encoding on the worker thread (a
        batch of its size gains nothing from company), then counted, logged and answered back on the loop."""
        if self._offloaded >= MAX_OFFLOADED:
            self.metrics.failed(name, str(model.version), "busy")
            return 503, JSON, b'{"error":"%d large requests are in progress; retry later"}' % MAX_OFFLOADED
        if self._workers is None:
            self._workers = ThreadPoolExecutor(1, thread_name_prefix="serving-work")
        self._offloaded += 1
        loop, spec = asyncio.get_running_loop(), dep.spec

        def work() -> None:
            try:
                ir = parse_inputs(*with_features(spec, model, parsed, self.features(), binary), model.inputs,
                                  spec.max_request_rows, model.nullable)
                check_outputs(ir, model.output_names)
                started = time.perf_counter()
                outputs = model.infer(ir.arrays)
                infer_s = time.perf_counter() - started
                done = (ir, outputs, infer_s, self._encode(name, str(model.version), ir, outputs))
            except Exception as exc:
                done = exc
            loop.call_soon_threadsafe(self._offloaded_done, dep, model, name, done, later, t0)

        self._workers.submit(work)
        return None

    def _offloaded_done(self, dep, model, name, done, later, t0) -> None:
        self._offloaded -= 1
        version = str(model.version)
        if isinstance(done, ProtocolError):
            self.metrics.failed(name, version, "bad_request")
            return later(done.status, JSON, orjson.dumps({"error": done.message}))
        if isinstance(done, Exception):
            throttled.error("serving request failed", exc_info=done)
            self.metrics.failed(name, version, "internal")
            return later(*INTERNAL)
        ir, outputs, infer_s, encoded = done
        self.metrics.executed(name, version, _rows(ir.arrays), 0.0, infer_s)
        reply, note = self._answer(dep, model, name, ir, outputs, t0, encoded)
        if note is not None:
            self.predlog.append(name, model.name, model.version, *note, model.input_features)
        later(*reply)

    @staticmethod
    def _encode(name: str, version: str, ir, outputs) -> tuple[str, bytes, list | tuple]:
        rid = ir.id or f"{_ID_PREFIX}-{next(_ids)}"
        return rid, *encode_response(name, version, rid, outputs, ir)

    def _answer(self, dep, model, name, ir, outputs, t0, encoded=None) -> tuple[Reply, tuple | None]:
        """Encode the response (unless ``encoded`` already holds it) and count it (after the answer is built,
        before it is sent); with it, what the prediction log takes for it, or None when the deployment's
        sample leaves it out."""
        spec, version = dep.spec, str(model.version)
        if encoded is None:
            rid = ir.id or f"{_ID_PREFIX}-{next(_ids)}"
            payload, hdrs = encode_response(name, version, rid, outputs, ir)
        else:
            rid, payload, hdrs = encoded
        elapsed = time.perf_counter() - t0
        self.metrics.ok(name, version, _rows(ir.arrays), elapsed)
        if spec.shadow:
            # After this callback, so the challenger never delays the answer.
            asyncio.get_running_loop().call_soon(self._shadow, spec.shadow, rid, ir.arrays)
        logged = spec.log_sample >= 1.0 or random.random() < spec.log_sample
        return (200, hdrs, payload), ((rid, elapsed, False, ir.arrays, outputs) if logged else None)

    def batch_answered(self, name: str, model, inputs: dict, outputs: dict, notes: list) -> None:
        """Log a batch's predictions: one append of its stacked rows when every request of it is logged (the
        usual case, and a few microseconds per batch instead of per request), else each logged one alone."""
        if notes and all(n is not None for n in notes):
            self.predlog.append_batch(name, model.name, model.version, [n[0] for n in notes],
                                      [n[1] for n in notes], [_rows(n[3]) for n in notes], inputs, outputs,
                                      model.input_features)
            return
        for note in notes:
            if note is not None:
                self.predlog.append(name, model.name, model.version, *note, model.input_features)

    def _shadow(self, name: str, rid: str, arrays: dict) -> None:
        """The challenger answers the same request; its answer is logged and never returned."""
        dep = self.manager.deployments.get(name)
        model = dep.current if dep else None
        if model is None:
            return
        t0 = time.perf_counter()

        def done(outputs) -> None:
            if isinstance(outputs, BaseException):
                self.metrics.failed(name, str(model.version), "shadow_error")
                throttled.warning("shadow deployment %s failed: %s", name, outputs, key=f"shadow {name}")
                return
            self.predlog.append(name, model.name, model.version, rid, time.perf_counter() - t0, True, arrays,
                                outputs, model.input_features)

        if dep.batcher is not None:
            dep.batcher.submit(model, arrays, done)
            return
        try:
            outputs = model.infer(arrays)
        except Exception as exc:
            done(exc)
            return
        done(outputs)

    def feedback(self, req, later) -> Reply | None:
        """Labels for a logged prediction, with the feedback token; answered once the prediction log's writer
        has stored (or refused) them."""
        auth = req.headers.get(b"authorization")
        if auth is None or self.feedback_auth is None or not hmac.compare_digest(auth, self.feedback_auth):
            return 401, UNAUTHORIZED, (b'{"error":"feedback changes what monitoring reports: send the feedback '
                                       b'token as Authorization: Bearer TOKEN (`appliance feedback token` prints '
                                       b'it), or post to the control API (POST /api/v1/feedback)"}')
        if req.headers.get(b"content-type", b"").split(b";")[0].strip().lower() != b"application/json":
            raise ProtocolError(415, "feedback is JSON: send content-type application/json")
        rid, labels = read_feedback(parse_json(req.body), max_labels(self.manager.deployments, self.feedback_queue))
        loop = asyncio.get_running_loop()
        self.feedback_queue.submit(rid, labels, lambda status, body: loop.call_soon_threadsafe(
            later, status, JSON, orjson.dumps(body)))
        return None


def _method(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise ProtocolError(405, f"{method} is not allowed on {path}; use {allowed}")


def _rows(arrays: dict) -> int:
    for a in arrays.values():
        return a.shape[0] if a.ndim else 1
    return 0


class ServingServer:
    """The serving port: a socket bound at start (so a taken port fails the start loudly) and the HTTP server."""

    def __init__(self, handler, host: str, port: int, limits):
        from .http import HttpServer

        sock = listen(host, port, hint="set [serving] port", backlog=4096)
        self.http = HttpServer(handler, sock, limits)
        self.port = self.http.port
        self.stats = self.http.stats

    def start(self, timeout: float = 10.0) -> None:
        self.http.start(timeout)

    def stop(self) -> None:
        self.http.stop()
