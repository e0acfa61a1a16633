"""The core's own control API routes: health, status, plugins, jobs, events, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from starlette.concurrency import run_in_threadpool

from ..contract import Reply, Route, Stream
from ..errors import BadRequest
from ..events import Subscriber
from ..jobs.runner import TERMINAL
from .request import ApiRequest, parse_int
from .server import sse_chunks

MAX_JOB_WAIT_S = 60
#: Longest a long poll goes without looking at its job again.
RELOOK_S = 5.0
END_EVENTS = frozenset({"job.succeeded", "job.failed", "job.cancelled"})


def health(req: ApiRequest) -> dict:
    """``status``: ok, degraded (something fails, the box copes) or damaged (a store needs repair), or stopping;
    ``problems``: each with its part, what is wrong and the remedy."""
    report = req.app.health.summary()
    if req.app.stopping.is_set():
        report["status"] = "stopping"
    return {**report, "version": req.app.version}


def status(req: ApiRequest) -> dict:
    app = req.app
    plugins = app.host.plugins.values()
    return {
        "version": app.version,
        "pid": os.getpid(),
        "home": str(app.home.root),
        "project": str(app.config.project_dir) if app.config.project_dir else None,
        "uptime_s": round(time.time() - app.started, 3),
        "ports": app.ports,
        "stopping": app.stopping.is_set(),
        "plugins": {"loaded": sum(p.status == "loaded" for p in plugins),
                    "failed": sum(p.status != "loaded" for p in plugins),
                    "failures": len(app.host.failures)},
        "jobs": app.jobs.counts(),
        "job_kinds": sorted(app.registry("job_kinds").names()),
    }


def plugins(req: ApiRequest) -> dict:
    return req.app.host.report()


def install_plugin(req: ApiRequest) -> dict:
    from .. import plugin_admin

    body = req.json_object()
    unknown = set(body) - {"spec"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; expected spec")
    return plugin_admin.install(req.app, body.get("spec"))


def reload_plugin(req: ApiRequest) -> dict:
    from .. import plugin_admin

    return plugin_admin.reload(req.app, req.path_params["name"])


def job_kinds(req: ApiRequest) -> list:
    reg = req.app.registry("job_kinds")
    return [{"name": name, "plugin": reg.owner(name), "description": k.description, "gpu": k.gpu,
             "process": k.process, "retries": k.retries, "timeout_s": k.timeout_s} for name, k in reg.items()]


def list_jobs(req: ApiRequest) -> list:
    return req.app.jobs.list(state=req.query.get("state") or None, kind=req.query.get("kind") or None,
                             limit=req.int_query("limit", 100, minimum=1, maximum=10_000),
                             before=req.int_query("before"))


def submit_job(req: ApiRequest) -> Reply:
    body = req.json_object()
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise BadRequest("field 'kind' is required: the name of a registered job kind")
    unknown = set(body) - {"kind", "params", "retries", "backoff_s", "timeout_s"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; expected kind, params, retries, "
                         "backoff_s, timeout_s")
    for field in ("retries", "backoff_s", "timeout_s"):
        value = body.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadRequest(f"field {field!r} must be a number, got {value!r}")
    job = req.app.jobs.submit(kind, body.get("params") or {}, retries=body.get("retries"),
                              backoff_s=body.get("backoff_s"), timeout_s=body.get("timeout_s"), origin="api")
    return Reply(job, 202)


async def get_job(req: ApiRequest) -> dict:
    # ?wait=N: answer when the job ends, or after N seconds with it as it is then (a long poll, so a client
    # waiting on a job neither polls the daemon nor learns of the end up to a poll interval late). The wait is
    # on the event loop, not in a worker thread: a hundred waiting clients must not starve the other routes.
    job_id, wait = req.int_param("id"), req.int_query("wait", 0, maximum=MAX_JOB_WAIT_S)
    jobs = req.app.jobs
    if not wait:
        return await run_in_threadpool(jobs.get, job_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    watch = _JobEnd(loop, f"job:{job_id}")
    req.app.events.subscribe(watch, None)
    try:
        while True:
            # Cleared before the job is read, not after: an end that comes while it is being read must still
            # wake the wait below (cleared after, it was wiped and the poll answered only at the next look).
            watch.news.clear()
            job = await run_in_threadpool(jobs.get, job_id)
            left = deadline - loop.time()
            if job["state"] in TERMINAL or left <= 0 or req.app.stopping.is_set():
                return job
            # Woken by the job's end (or a failure it will retry); looking again every few seconds regardless
            # keeps a client from waiting out its whole wait for a state that changed without an event.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.news.wait(), min(left, RELOOK_S))
    finally:
        req.app.events.unsubscribe(watch)


class _JobEnd:
    """An event-bus subscriber that wakes one long poll when its job ends (or the daemon ends the streams)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, subject: str):
        self.loop, self.subject = loop, subject
        self.news = asyncio.Event()

    def offer(self, event) -> None:
        if event is None or (event.subject == self.subject and event.type in END_EVENTS):
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
                self.loop.call_soon_threadsafe(self.news.set)


def job_logs(req: ApiRequest) -> list:
    return req.app.jobs.logs(req.int_param("id"), after=req.int_query("after", 0),
                             limit=req.int_query("limit", 1000, minimum=1, maximum=100_000))


def cancel_job(req: ApiRequest) -> dict:
    return req.app.jobs.cancel(req.int_param("id"))


def list_events(req: ApiRequest) -> list:
    limit = req.int_query("limit", 100, minimum=1, maximum=100_000)
    after = req.int_query("after")
    bus = req.app.events
    if after is None and not req.query.get("type") and not req.query.get("subject"):
        events = bus.latest(limit)
    else:
        events = bus.list(after=after or 0, limit=limit, type=req.query.get("type") or None,
                          subject=req.query.get("subject") or None)
    return [e.to_dict() for e in events]


async def stream_events(req: ApiRequest) -> Stream:
    """SSE. Resumes after ``Last-Event-ID`` (or ``?after=``) with no gap; without either, live events only."""
    raw = req.headers.get("last-event-id") or req.query.get("after")
    after = parse_int(raw, "'after' (an event id)") if raw else None
    types = tuple(t for t in (req.query.get("type") or "").split(",") if t)
    sub = Subscriber(asyncio.get_running_loop(), types)
    bus = req.app.events
    backlog = bus.subscribe(sub, after)
    if types:
        backlog = [e for e in backlog if e.type.startswith(types)]
    return Stream(sse_chunks(bus, sub, backlog, None))


def apply_project(req: ApiRequest) -> dict:
    from pathlib import Path

    from .. import project

    body = req.json_object()
    path = body.get("project")
    if path is not None and not isinstance(path, str):
        raise BadRequest(f"field 'project' must be a path, got {path!r}")
    if body.get("dry_run"):
        return project.preview(req.app, Path(path) if path else None)
    return project.apply(req.app, Path(path) if path else None)


def tui_panels(req: ApiRequest) -> list:
    reg = req.app.registry("tui_panels")
    return [{**panel.to_dict(), "plugin": reg.owner(name)} for name, panel in reg.items()]


def shutdown(req: ApiRequest) -> Reply:
    req.app.request_stop()
    return Reply({"status": "stopping"}, 202)


ROUTES = [
    Route("GET", "/health", health, "liveness and version"),
    Route("GET", "/status", status, "what the daemon is doing"),
    Route("GET", "/plugins", plugins, "loaded and failed plugins, with failures"),
    Route("POST", "/plugins/install", install_plugin, "pip install a plugin package and load it ({\"spec\"})"),
    Route("POST", "/plugins/{name}/reload", reload_plugin, "read a drop-in plugin again, without a restart"),
    Route("GET", "/job-kinds", job_kinds, "registered job kinds"),
    Route("GET", "/jobs", list_jobs, "jobs, newest first"),
    Route("POST", "/jobs", submit_job, "queue a job"),
    Route("GET", "/jobs/{id}", get_job, "one job; ?wait=SECONDS answers when it ends (at most 60)"),
    Route("GET", "/jobs/{id}/logs", job_logs, "a job's log lines"),
    Route("POST", "/jobs/{id}/cancel", cancel_job, "cancel a queued or running job"),
    Route("GET", "/events", list_events, "persisted events"),
    Route("GET", "/events/stream", stream_events, "live events (server-sent events)"),
    Route("GET", "/tui/panels", tui_panels, "dashboard panels registered by plugins"),
    Route("POST", "/apply", apply_project, "re-read appliance.toml and apply it"),
    Route("POST", "/shutdown", shutdown, "stop the daemon gracefully"),
]
