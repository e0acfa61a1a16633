"""A drop-in plugin for the core tests: job kinds that sleep, fail, crash and use the GPU gate, plus one of
every other hook, so each hook is exercised through a real daemon."""

import json
import os
import time
from pathlib import Path

import click

from appliance import JobKind, Migrations, Reply, Route, hookimpl

APPLIANCE_CONTRACT = "1.0"

migrations = Migrations("fixture_jobs")


@migrations()
def m001_notes(db):
    db["fixture_notes"].create({"id": int, "text": str}, pk="id")


def _sleep(job):
    end = time.monotonic() + float(job.params.get("seconds", 1))
    while time.monotonic() < end:
        if job.wait(0.02):
            job.check_cancelled()
        job.progress(1 - (end - time.monotonic()) / max(0.001, float(job.params.get("seconds", 1))), "sleeping")
    return {"slept": job.params.get("seconds", 1)}


def _first_attempt_hangs(job):
    """Hangs (until killed) on its first attempt, succeeds afterwards: for the kill -9 recovery test."""
    marker = Path(job.params["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        job.log("first attempt: hanging")
        while not job.wait(0.1):
            pass
        job.check_cancelled()
    return {"attempt": job.attempt}


def _flaky(job):
    """Fails until its Nth attempt; records when each attempt started."""
    log = Path(job.params["log"])
    with open(log, "a") as f:
        f.write(json.dumps({"attempt": job.attempt, "t": time.time()}) + "\n")
    if job.attempt < int(job.params.get("succeed_on", 3)):
        raise RuntimeError(f"flaky failure on attempt {job.attempt}")
    return {"attempt": job.attempt}


def _gpu_work(job):
    """Appends its start and end times: the test checks two never overlap."""
    log = Path(job.params["log"])
    start = time.time()
    time.sleep(float(job.params.get("seconds", 0.3)))
    with open(log, "a") as f:
        f.write(json.dumps({"id": job.id, "start": start, "end": time.time()}) + "\n")
    return {}


def child_sum(job):
    job.progress(0.5, "adding")
    job.log("child says hello")
    print("printed by the child")
    job.send("note", {"n": len(job.params["numbers"])})
    return {"sum": sum(job.params["numbers"]), "pid": os.getpid()}


def child_exit(job):
    job.log("about to die")
    os._exit(1)


def child_sleep(job):
    job.log(f"child pid {os.getpid()}")
    time.sleep(float(job.params.get("seconds", 60)))
    return {}


def child_raises(job):
    raise ValueError("bad value in the child")


def child_finds(job):
    """Where the child would import ``params.module`` from (None when it cannot), without importing it; and the
    plugin's settings, as the child is given them."""
    import importlib.util

    spec = importlib.util.find_spec(job.params["module"])
    return {"origin": spec and spec.origin, "locations": list(spec.submodule_search_locations or []) if spec else [],
            "settings": job.settings}


def _on_message(job, type, data):
    Path(job.params["messages"]).write_text(json.dumps({"type": type, "data": data}))


@hookimpl
def register_migrations(register):
    register(migrations)


@hookimpl
def register_job_kinds(register):
    register(JobKind("sleep", _sleep, description="sleeps for params.seconds"))
    register(JobKind("hang_first", _first_attempt_hangs, retries=1, backoff_s=0.1))
    register(JobKind("flaky", _flaky, retries=3, backoff_s=0.2))
    register(JobKind("gpu_work", _gpu_work, gpu=True))
    register(JobKind("child_sum", child_sum, process=True, on_message=_on_message))
    register(JobKind("child_exit", child_exit, process=True))
    register(JobKind("child_sleep", child_sleep, process=True))
    register(JobKind("child_raises", child_raises, process=True))
    register(JobKind("child_finds", child_finds, process=True))


def _hello(request):
    db = request.app.catalog.db
    return {"hello": request.query.get("name", "world"), "notes_table": "fixture_notes" in db.table_names()}


def _echo(request):
    return Reply({"got": request.json_object()}, status=201)


def _boom(request):
    raise RuntimeError("/secret/path/in/traceback")


@hookimpl
def register_routes(register):
    register(Route("GET", "/fixture/hello", _hello))
    register(Route("POST", "/fixture/echo", _echo))
    register(Route("GET", "/fixture/boom", _boom))


class _Greeter:
    name = "greeter"

    def greet(self, who):
        return f"hello {who}"


@hookimpl
def register_services(register):
    register(_Greeter())


@hookimpl
def register_commands(register):
    @click.command(name="fixture-hello")
    @click.pass_context
    def fixture_hello(ctx):
        """Says hello through the daemon."""
        from appliance.cli import connect

        click.echo(connect(ctx).get("/fixture/hello", name="cli")["hello"])

    register(fixture_hello)


@hookimpl
def configure(app, config):
    section = config.section("fixture")
    if "greeting" in section and not isinstance(section["greeting"], str):
        raise config.error(f"expected a string, got {section['greeting']!r}", "fixture", "greeting")


def _marker(app, name):
    d = app.settings("fixture").get("markers")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        Path(d, name).write_text(str(time.time()))


@hookimpl
def startup(app):
    _marker(app, "startup")
    greeter = app.registry("services").get("greeter")
    app.events.emit("fixture.started", subject="fixture", data={"greeting": greeter.greet("daemon")})


@hookimpl
def shutdown(app):
    _marker(app, "shutdown")


@hookimpl
def on_event(event, app):
    d = app.settings("fixture").get("markers")
    if d:
        with open(Path(d, "events.jsonl"), "a") as f:
            f.write(json.dumps({"id": event.id, "type": event.type, "t": time.time()}) + "\n")
