"""A drop-in fixture plugin for the pipeline tests: step kinds that record when they ran, fail, flake, use the
GPU gate and write to DuckDB idempotently, plus a route that emits events (to drive event triggers)."""

import json
import time
from pathlib import Path

from appliance import JobKind, Route, hookimpl

APPLIANCE_CONTRACT = "1.0"


def _append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _record(job):
    """Sleeps params.seconds (waking on cancel) and appends its label with start and end times to params.log."""
    start = time.time()
    if job.wait(float(job.params.get("seconds", 0))):
        job.check_cancelled()
    job.log(f"step {job.params.get('label')} ran")
    _append(job.params["log"], {"label": job.params.get("label"), "start": start, "end": time.time(),
                                "job": job.id})
    return {"label": job.params.get("label")}


def _fail(job):
    """Fails while params.marker does not exist (then creates it when params.once), else succeeds."""
    marker = Path(job.params["marker"]) if job.params.get("marker") else None
    if marker is None or not marker.exists():
        if marker is not None and job.params.get("once"):
            marker.write_text("failed once")
        job.log("about to fail")
        raise RuntimeError("the step failed on purpose")
    return {}


def _flaky(job):
    _append(job.params["log"], {"attempt": job.attempt, "t": time.time()})
    if job.attempt < int(job.params.get("succeed_on", 3)):
        raise RuntimeError(f"flaky failure on attempt {job.attempt}")
    return {"attempt": job.attempt}


def _duck(job):
    """Loads params.rows rows for params.batch into DuckDB, idempotently: the batch's rows and its ledger entry
    are replaced in one transaction, so a re-run leaves exactly one copy."""
    cur = job.app.store.cursor()
    cur.execute("create table if not exists pf_rows (batch text, n integer)")
    cur.execute("create table if not exists pf_ledger (batch text primary key, rows integer, loaded double)")
    cur.execute("begin transaction")
    try:
        cur.execute("delete from pf_rows where batch = ?", [job.params["batch"]])
        cur.execute("insert into pf_rows select ?, range from range(?)", [job.params["batch"], job.params["rows"]])
        cur.execute("insert or replace into pf_ledger values (?, ?, ?)",
                    [job.params["batch"], job.params["rows"], time.time()])
        cur.execute("commit")
    except BaseException:
        cur.execute("rollback")
        raise
    return {"batch": job.params["batch"]}


@hookimpl
def register_job_kinds(register):
    register(JobKind("step_record", _record, description="records when it ran"))
    register(JobKind("step_fail", _fail))
    register(JobKind("step_flaky", _flaky))
    register(JobKind("step_gpu", _record, gpu=True))
    register(JobKind("step_duck", _duck))


def _emit(req):
    body = req.json_object()
    for i in range(int(body.get("count", 1))):
        req.app.events.emit(body["type"], subject=body.get("subject", "fixture"), data={"i": i})
    return {"emitted": body.get("count", 1)}


def _duck_counts(req):
    cur = req.app.store.cursor()
    rows = cur.execute("select batch, count(*) from pf_rows group by batch order by batch").fetchall()
    ledger = cur.execute("select count(*) from pf_ledger").fetchall()[0][0]
    return {"rows": dict(rows), "ledger": ledger}


@hookimpl
def register_routes(register):
    register(Route("POST", "/pipeline-fixture/emit", _emit))
    register(Route("GET", "/pipeline-fixture/duck", _duck_counts))
