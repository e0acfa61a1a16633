"""Experiment tracking in the daemon: the catalog tables, and the messages a run's child process sends.

Metrics arrive in batches (see ``child.Reporter``) and each batch is one transaction, so tracking keeps up with
tens of thousands of metrics a second while every one of them is committed to ``catalog.db``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from typing import Any

from appliance import ApplianceError, Migrations, NotFound

log = logging.getLogger("appliance.training")

migrations = Migrations("training")


@migrations()
def m001_tracking(db) -> None:
    db.execute("""create table training_experiments (
        id integer primary key autoincrement, name text not null unique, created real not null)""")
    db.execute("""create table training_sweeps (
        id integer primary key autoincrement, spec_name text not null, experiment_id integer not null,
        sweep text not null, created real not null)""")
    db.execute("""create table training_runs (
        id integer primary key autoincrement,
        experiment_id integer not null references training_experiments(id),
        sweep_id integer references training_sweeps(id),
        spec_name text not null, state text not null, job_id integer,
        created real not null, started real, finished real, attempts integer not null default 0,
        spec text not null, params text not null, config_hash text not null, seed integer not null,
        data text not null, env text, result text, error text,
        epoch integer not null default 0, step integer not null default 0, tags text not null default '{}')""")
    db.execute("create index training_runs_job on training_runs(job_id)")
    db.execute("create index training_runs_experiment on training_runs(experiment_id, id)")
    db.execute("""create table training_metrics (
        run_id integer not null, key text not null, step integer not null, epoch integer,
        value real not null, time real not null)""")
    db.execute("create index training_metrics_run on training_metrics(run_id, key, step)")
    db.execute("""create table training_artifacts (
        run_id integer not null, kind text not null, sha256 text not null, epoch integer, step integer,
        size integer, created real not null)""")
    db.execute("create index training_artifacts_run on training_artifacts(run_id, kind, epoch)")


@migrations()
def m002_artifact_paths(db) -> None:
    # Files a run logs from outside (appliance.track, MLflow's client) keep the path they were logged under.
    db.execute("alter table training_artifacts add column path text")
    db.execute("create index training_artifacts_path on training_artifacts(run_id, path)")


@contextlib.contextmanager
def transaction(db):
    """One explicit transaction: the catalog's connections are in autocommit mode, one commit per statement."""
    db.execute("begin immediate")
    try:
        yield
    except BaseException:
        db.execute("rollback")
        raise
    db.execute("commit")


# ----------------------------------------------------------------------------------------------- creating runs


def experiment_id(db, name: str) -> int:
    db.execute("insert or ignore into training_experiments (name, created) values (?, ?)", [name, time.time()])
    return db.execute("select id from training_experiments where name = ?", [name]).fetchone()[0]


def create_run(app, spec: dict, data: dict, params: dict, *, sweep_id: int | None = None) -> int:
    """Insert a queued run (the job is submitted by the caller); ``params`` is what ``runs compare`` compares."""
    from .spec import config_hash

    db = app.catalog.db
    cur = db.execute(
        "insert into training_runs (experiment_id, sweep_id, spec_name, state, created, spec, params, config_hash,"
        " seed, data, tags) values (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
        [experiment_id(db, spec["experiment"]), sweep_id, spec["name"], time.time(), json.dumps(spec),
         json.dumps(params), config_hash(spec), spec["seed"], json.dumps(data), json.dumps(spec["tags"])])
    return cur.lastrowid


def set_job(app, run_id: int, job_id: int) -> None:
    app.catalog.db.execute("update training_runs set job_id = ?, state = 'queued', error = null where id = ?",
                           [job_id, run_id])


# ----------------------------------------------------------------------------------------------- messages


def on_message(job, type: str, data: dict) -> None:
    """What a run's child sends, handled in the daemon (the runner's reader thread for that job)."""
    handler = HANDLERS.get(type)
    if handler is None:
        raise ApplianceError(f"unknown message {type!r} from a train job")
    handler(job.app, int(data["run_id"]), data)


def store_metrics(db, run_id: int, batch: dict) -> None:
    """One transaction per batch (columns ``key, step, epoch, value, time``): the commit makes it durable."""
    with transaction(db):
        db.conn.executemany(
            "insert into training_metrics (run_id, key, step, epoch, value, time) values (?, ?, ?, ?, ?, ?)",
            zip(itertools.repeat(run_id), batch["key"], batch["step"], batch["epoch"], batch["value"],
                batch["time"]))


def _metrics(app, run_id: int, data: dict) -> None:
    store_metrics(app.catalog.db, run_id, data)


def _started(app, run_id: int, data: dict) -> None:
    db = app.catalog.db
    resumed = data.get("resumed_from")
    step = resumed["step"] if resumed else 0
    epoch = resumed["epoch"] if resumed else 0
    with transaction(db):
        # A retried or resumed attempt replays from its starting point: drop what the lost attempt logged after it.
        db.execute("delete from training_metrics where run_id = ? and step > ? and key not like 'system/%'",
                   [run_id, step])
        db.execute("delete from training_artifacts where run_id = ? and kind = 'checkpoint' and epoch > ?",
                   [run_id, epoch])
        db.execute("update training_runs set state = 'running', started = coalesce(started, ?), env = ?, "
                   "attempts = attempts + 1, epoch = ?, step = ? where id = ?",
                   [time.time(), json.dumps(data["env"]), epoch, step, run_id])
    run = _row(db, run_id)
    app.events.emit("run.started", subject=f"run:{run_id}", data={
        "run_id": run_id, "spec": run["spec_name"], "job_id": run["job_id"], "attempt": data["attempt"],
        "resumed_from_epoch": epoch if resumed else None})


def _command_started(app, run_id: int, data: dict) -> None:
    """A command's run begins. Its own tracking client may have logged already (metrics, the environment it
    sees): nothing is deleted, and the machine's environment fills in only what the client did not say."""
    db = app.catalog.db
    with transaction(db):
        row = db.execute("select env from training_runs where id = ?", [run_id]).fetchone()
        env = {**data["env"], **json.loads(row[0] or "{}")}
        db.execute("update training_runs set state = 'running', started = coalesce(started, ?), env = ?, "
                   "attempts = attempts + 1 where id = ?", [time.time(), json.dumps(env), run_id])
    run = _row(db, run_id)
    app.events.emit("run.started", subject=f"run:{run_id}", data={
        "run_id": run_id, "spec": run["spec_name"], "job_id": run["job_id"], "attempt": data["attempt"],
        "source": "command"})


def _epoch(app, run_id: int, data: dict) -> None:
    db = app.catalog.db
    with transaction(db):
        db.execute("insert into training_artifacts (run_id, kind, sha256, epoch, step, size, created) "
                   "values (?, 'checkpoint', ?, ?, ?, ?, ?)",
                   [run_id, data["checkpoint"], data["epoch"], data["step"], data["size"], time.time()])
        db.execute("update training_runs set epoch = ?, step = ? where id = ?", [data["epoch"], data["step"], run_id])
    app.events.emit("run.epoch", subject=f"run:{run_id}", data={
        "run_id": run_id, "epoch": data["epoch"], "step": data["step"], "metrics": data["metrics"],
        "checkpoint": data["checkpoint"]})


def _finished(app, run_id: int, data: dict) -> None:
    db = app.catalog.db
    run = _row(db, run_id)
    spec = json.loads(run["spec"])
    result = {k: data[k] for k in ("holdout_metrics", "holdout_sha256", "model", "rows")}
    result["dropped"] = data.get("dropped") or {"null_labels": 0}
    if data.get("champion"):
        result["champion"] = data["champion"]
    model = data.get("model")
    if model:
        db.execute("insert into training_artifacts (run_id, kind, sha256, epoch, step, size, created) "
                   "values (?, 'onnx', ?, ?, ?, ?, ?)",
                   [run_id, model["onnx_sha256"], run["epoch"], run["step"], model["size"], time.time()])
        if spec.get("model"):
            result["registered"] = _register(app, run, spec, data)
    db.execute("update training_runs set state = 'succeeded', finished = ?, result = ?, error = null where id = ?",
               [time.time(), json.dumps(result), run_id])
    app.events.emit("run.finished", subject=f"run:{run_id}", data={
        "run_id": run_id, "state": "succeeded", "metrics": data["holdout_metrics"],
        "model": result.get("registered"), "dropped": result["dropped"]})


def _register(app, run: dict, spec: dict, data: dict) -> dict | None:
    """Hand the exported model to the registry (another plugin, met through its service)."""
    registry = app.registry("services").get("model_registry")
    if registry is None:
        log.warning("run %s: no model_registry service; the model is not registered", run["id"])
        return None
    source = json.loads(run["data"])
    model = data["model"]
    try:
        version = registry.register_version(
            spec["model"], run_id=run["id"], onnx_sha256=model["onnx_sha256"], signature=model["signature"],
            metrics=data["holdout_metrics"], holdout_sha256=data["holdout_sha256"],
            lineage={"run_id": run["id"], "spec": spec["name"], "config_hash": run["config_hash"],
                     "data_sha256": source.get("sha256"), "training_set": source.get("training_set"),
                     "manifest": source.get("manifest"), "parity_max_abs_diff": model["parity_max_abs_diff"]},
            description=spec["description"], tags=spec["tags"])
    except ApplianceError as exc:  # the run still succeeded: its model is in the artifact store, by hash
        return {"name": spec["model"], "error": exc.message}
    out = {"name": spec["model"], "version": version["version"]}
    if spec.get("alias"):
        policy = None
        if spec.get("gate", "better") != "none":
            metric = spec.get("gate_metric", "auc" if spec["task"] == "binary" else "loss")
            champion = data.get("champion") or {}
            policy = {"metric": metric, "higher_is_better": metric in ("auc", "accuracy", "r2"),
                      "source": f"spec {spec['name']}", "holder_version": champion.get("version"),
                      "holder_score": (champion.get("metrics") or {}).get(metric)}
        try:
            registry.set_alias(spec["model"], spec["alias"], version["version"], reason=f"run {run['id']}",
                               actor=f"run:{run['id']}", policy=policy)
            out["alias"] = spec["alias"]
        except ApplianceError as exc:  # a refused promotion leaves the run a success: its model is registered
            out["alias_refused"] = exc.message
    return out


HANDLERS = {"metrics": _metrics, "started": _started, "epoch": _epoch, "finished": _finished,
            "command_started": _command_started}
RUN_JOB_KINDS = ("train", "command", "command_gpu")


def on_job_event(event, app) -> None:
    """Follow a run's job: a failure or cancel its child could not report is recorded on the run, and a
    command's run ends as its job does."""
    data = event.data
    if data.get("kind") not in RUN_JOB_KINDS or event.type not in ("job.failed", "job.cancelled",
                                                                    "job.interrupted", "job.succeeded"):
        return
    db = app.catalog.db
    rows = list(db.query("select id, state from training_runs where job_id = ?", [data["job_id"]]))
    if not rows:
        return
    run_id = rows[0]["id"]
    if event.type == "job.succeeded":
        if rows[0]["state"] == "succeeded":
            return
        if data["kind"] != "train":
            state, error = "succeeded", None
        else:  # the child finished but its result never landed (see the plugin failures for why)
            state, error = "failed", "the run finished but its result could not be recorded"
    elif event.type == "job.failed" and not data.get("will_retry"):
        state, error = "failed", data.get("error")
    elif event.type == "job.cancelled":
        state, error = "cancelled", None
    else:
        state, error = "queued", data.get("error")
    db.execute("update training_runs set state = ?, error = ?, finished = ? where id = ?",
               [state, error, time.time() if state != "queued" else None, run_id])
    if state != "queued":
        app.events.emit("run.finished", subject=f"run:{run_id}",
                        data={"run_id": run_id, "state": state, "error": error})


# ----------------------------------------------------------------------------------------------- reading


def _row(db, run_id: int) -> dict:
    rows = list(db.query("select * from training_runs where id = ?", [int(run_id)]))
    if not rows:
        raise NotFound(f"no run {run_id}")
    return rows[0]


def run_summary(db, row: dict) -> dict:
    out = {k: row[k] for k in ("id", "spec_name", "state", "job_id", "sweep_id", "created", "started", "finished",
                               "attempts", "config_hash", "seed", "epoch", "step", "error")}
    out["experiment"] = db.execute("select name from training_experiments where id = ?",
                                   [row["experiment_id"]]).fetchone()[0]
    out["params"] = json.loads(row["params"])
    out["result"] = json.loads(row["result"]) if row["result"] else None
    out["tags"] = json.loads(row["tags"])
    return out


def get_run(db, run_id: int) -> dict:
    row = _row(db, run_id)
    out = run_summary(db, row)
    out["spec"] = json.loads(row["spec"])
    out["data"] = json.loads(row["data"])
    out["env"] = json.loads(row["env"]) if row["env"] else None
    out["metrics"] = latest_metrics(db, run_id)
    out["artifacts"] = list(db.query(
        "select kind, sha256, epoch, step, size, created, path from training_artifacts where run_id = ? "
        "order by created, epoch", [run_id]))
    return out


def latest_metrics(db, run_id: int) -> dict[str, float]:
    """Each metric's last value (system metrics included, under ``system/``)."""
    # The highest step of each key first (an index range per key), then those rows: linear in the run's keys,
    # where a subquery per row made every read of a run with 100k metrics scan all of them.
    rows = db.query("select m.key, m.value from training_metrics m join (select key, max(step) step from "
                    "training_metrics where run_id = ? group by key) last on m.key = last.key and m.step = last.step "
                    "where m.run_id = ? order by m.rowid", [run_id, run_id])
    return {r["key"]: r["value"] for r in rows}


def list_runs(db, *, experiment: str | None = None, spec: str | None = None, state: str | None = None,
              sweep: int | None = None, limit: int = 100) -> list[dict]:
    sql, args = ("select r.* from training_runs r join training_experiments e on e.id = r.experiment_id "
                 "where 1=1"), []
    for clause, value in (("e.name = ?", experiment), ("r.spec_name = ?", spec), ("r.state = ?", state),
                          ("r.sweep_id = ?", sweep)):
        if value is not None:
            sql += f" and {clause}"
            args.append(value)
    sql += " order by r.id desc limit ?"
    args.append(limit)
    return [run_summary(db, r) for r in db.query(sql, args)]


def metric_series(db, run_id: int, key: str | None, after_step: int, limit: int) -> list[dict]:
    _row(db, run_id)
    sql = "select key, step, epoch, value, time from training_metrics where run_id = ? and step > ?"
    args: list[Any] = [run_id, after_step]
    if key:
        sql += " and key = ?"
        args.append(key)
    return list(db.query(sql + " order by step, rowid limit ?", [*args, limit]))


def compare(db, a: int, b: int) -> dict:
    """What differs between two runs in params, final metrics and environment (equal entries left out)."""
    ra, rb = get_run(db, a), get_run(db, b)
    sections = {
        "params": (_flat(ra["params"]), _flat(rb["params"])),
        "metrics": ({k: v for k, v in ra["metrics"].items() if not k.startswith("system/")} |
                    _flat((ra["result"] or {}).get("holdout_metrics") or {}, "holdout."),
                    {k: v for k, v in rb["metrics"].items() if not k.startswith("system/")} |
                    _flat((rb["result"] or {}).get("holdout_metrics") or {}, "holdout.")),
        "environment": (_flat(ra["env"] or {}), _flat(rb["env"] or {})),
        "data": (_flat(ra["data"]), _flat(rb["data"])),
    }
    out: dict[str, Any] = {"a": a, "b": b}
    for name, (left, right) in sections.items():
        out[name] = {k: {"a": left.get(k), "b": right.get(k)} for k in sorted(set(left) | set(right))
                     if left.get(k) != right.get(k)}
    return out


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}
