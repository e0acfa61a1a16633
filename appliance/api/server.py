"""Builds the control API's ASGI app from the registered routes (the core's and every plugin's)."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

from ..contract import Reply, Route, Stream
from ..errors import ApplianceError, BadRequest
from ..health import explain_os_error
from .request import ApiRequest
from .security import Gate

log = logging.getLogger("appliance.api")

PREFIX = "/api/v1"
#: The largest request body the control API takes; refused by its declared length before a byte is read.
MAX_BODY_BYTES = 16 * 1024 * 1024


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(data, default=str, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(exc: ApplianceError) -> Response:
    return json_response(exc.to_dict(), exc.status)


def _endpoint(app: Any, route: Route, owner: str):
    handler = route.handler
    is_async = inspect.iscoroutinefunction(handler)

    async def endpoint(request: Request) -> Response:
        try:
            body = await read_body(request, body_limit(route)) if request.method not in ("GET", "HEAD") else b""
        except ApplianceError as exc:
            # The rest of the body is never read: the connection closes once the refusal is sent.
            return json_response(exc.to_dict(), exc.status, {"connection": "close"})
        req = ApiRequest(app, request.method, request.path_params, request.query_params, request.headers, body)
        try:
            result = await handler(req) if is_async else await run_in_threadpool(handler, req)
        except ApplianceError as exc:
            return error_response(exc)
        except OSError as exc:
            # A full disk or no descriptors left is the box's state, not a bug in the route: say which (507/503).
            said = explain_os_error(exc, app.home.root, f"{route.name} could not finish")
            if said is None:
                return _internal_error(app, route, owner, exc)
            log.warning("route %s: %s", route.name, said.message)
            return error_response(said)
        except Exception as exc:
            return _internal_error(app, route, owner, exc)
        if isinstance(result, Stream):
            return StreamingResponse(result.chunks, media_type=result.media_type,
                                     headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        if isinstance(result, Reply):
            return json_response(result.data, result.status, dict(result.headers))
        return json_response(result)

    return endpoint


def _internal_error(app: Any, route: Route, owner: str, exc: Exception) -> Response:
    ref = uuid.uuid4().hex[:8]
    log.error("route %s failed (ref %s)\n%s", route.name, ref, traceback.format_exc())
    app.host.record_failure(owner, f"route {route.name}", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    return json_response({"error": {"title": "Internal error",
                                    "message": f"the daemon failed on this request; see its log (ref {ref})"}}, 500)


def body_limit(route: Route) -> int:
    """The largest body ``route`` takes: its own ``max_body`` (a number or a function of none), else 16 MB."""
    limit = route.max_body() if callable(route.max_body) else route.max_body
    return MAX_BODY_BYTES if limit is None else int(limit)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, refused (413) by its Content-Length before any of it is read, or, sent chunked, as
    soon as what arrived passes ``limit``: a client cannot make the daemon hold more than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"Content-Length must be a number of bytes, got {declared[:40]!r}")
        if int(declared) > limit:
            raise _too_large(f"the request body is {declared} bytes", limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large("the request body passed the limit", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str, limit: int) -> ApplianceError:
    return ApplianceError(f"{what}; the control API takes at most {limit} bytes", title="Request too large",
                          status=413)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    titles = {404: "Not found", 405: "Method not allowed"}
    message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return json_response({"error": {"title": titles.get(exc.status_code, "Error"),
                                    "message": message.get(exc.status_code, str(exc.detail))}}, exc.status_code)


def build(app: Any, routes: list[tuple[Route, str]] | Callable[[], list[tuple[Route, str]]], *, token: str,
          allowed_hosts: list[str]) -> Gate:
    """The ASGI app: every route under ``/api/v1`` behind the gate. ``routes`` pairs each route with its owner;
    given as a function, it is asked again whenever plugins come or go (an install, a reload, a plugin disabled),
    so the API serves exactly the routes of the plugins loaded now."""
    star = Starlette(routes=[], exception_handlers={HTTPException: _http_error})

    def mount() -> None:
        pairs = routes() if callable(routes) else routes
        # One assignment: a request in flight sees the old list or the new one, never half of either.
        star.router.routes = [StarletteRoute(PREFIX + r.path, _endpoint(app, r, owner), methods=[r.method.upper()])
                              for r, owner in pairs]

    mount()
    if callable(routes):
        app.host.on_change.append(mount)
    return Gate(star, token=token, allowed_hosts=allowed_hosts)


async def sse_chunks(bus, subscriber, backlog, stopping: asyncio.Event | None, heartbeat: float = 15.0):
    """Server-sent events: the backlog, then live events, with a comment line as a heartbeat."""
    try:
        for ev in backlog:
            yield _sse(ev)
        while True:
            try:
                ev = await asyncio.wait_for(subscriber.queue.get(), heartbeat)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if ev is None or subscriber.overflowed:
                return
            yield _sse(ev)
    finally:
        bus.unsubscribe(subscriber)


def _sse(ev) -> str:
    return f"id: {ev.id}\nevent: {ev.type}\ndata: {json.dumps(ev.to_dict(), default=str)}\n\n"
