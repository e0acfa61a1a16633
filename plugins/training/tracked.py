"""Runs tracked from outside the box's trainer: a script or notebook (``appliance.track``), MLflow's client, or a
command under ``appliance run``.

They are ordinary runs (``training_runs``, ``training_metrics``, ``training_artifacts``), so ``appliance runs``,
``runs compare`` and the dashboard's curves show them as they show trained ones. Their ``spec`` says where they
came from (``{"source": "track" | "mlflow" | "command"}``) instead of holding a training spec, and what they log
as parameters is kept as the run's hyperparameters. Offered to other plugins as the ``run_tracking`` service.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from typing import Any

from appliance import BadRequest, Conflict, NotFound

from . import tracking
from .tracking import transaction

SOURCES = ("track", "mlflow", "command")
STATES = ("running", "succeeded", "failed", "cancelled")
KEY = re.compile(r"^[A-Za-z0-9_\-. /:]{1,250}$")
ARTIFACT_PATH = re.compile(r"^[A-Za-z0-9_\-. /=+@,]{1,500}$")
MAX_METRICS = 100_000  # per call; a client sends its buffer in batches of this many at most


class TrackedRuns:
    """The ``run_tracking`` service. Thread-safe: each write is one SQLite transaction."""

    name = "run_tracking"

    def __init__(self):
        self.app: Any = None

    @property
    def db(self):
        return self.app.catalog.db

    # ------------------------------------------------------------------------------------------- experiments

    def experiment(self, name: str, *, create: bool = True) -> dict:
        """The experiment called ``name`` (made on first use unless ``create`` is false)."""
        if not isinstance(name, str) or not name.strip() or len(name) > 250:
            raise BadRequest(f"experiment name must be a non-empty string of at most 250 characters, got {name!r}")
        if create:
            tracking.experiment_id(self.db, name)
        rows = list(self.db.query("select id, name, created from training_experiments where name = ?", [name]))
        if not rows:
            raise NotFound(f"no experiment {name!r}")
        return rows[0]

    def experiment_by_id(self, experiment_id: int) -> dict:
        rows = list(self.db.query("select id, name, created from training_experiments where id = ?",
                                  [int(experiment_id)]))
        if not rows:
            raise NotFound(f"no experiment {experiment_id}")
        return rows[0]

    def experiments(self) -> list[dict]:
        return list(self.db.query("select id, name, created from training_experiments order by id"))

    # ------------------------------------------------------------------------------------------- runs

    def start(self, *, experiment: str, name: str, source: str, params: dict | None = None,
              tags: dict | None = None, env: dict | None = None, command: list[str] | None = None,
              state: str = "running", start_time: float | None = None) -> dict:
        """A new run, running (or ``queued`` for a command not started yet); returns it."""
        if source not in SOURCES:
            raise BadRequest(f"source must be one of {', '.join(SOURCES)}")
        if not isinstance(name, str) or len(name) > 250:
            raise BadRequest(f"run name must be a string of at most 250 characters, got {name!r}")
        params, tags = _params(params or {}), _tags(tags or {})
        if env is not None and not isinstance(env, dict):
            raise BadRequest("field 'env' must be an object")
        exp = self.experiment(experiment)
        spec = {"source": source, **({"command": command} if command else {})}
        now = time.time()
        run_id = self.db.execute(
            "insert into training_runs (experiment_id, spec_name, state, created, started, attempts, spec, params, "
            "config_hash, seed, data, env, tags) values (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            [exp["id"], name, state, now, (start_time or now) if state == "running" else None,
             int(state == "running"), json.dumps(spec), json.dumps({"hyperparameters": params}),
             _hash(params), json.dumps({"source": source}), json.dumps(env) if env is not None else None,
             json.dumps(tags)]).lastrowid
        if state == "running":
            self.app.events.emit("run.started", subject=f"run:{run_id}", data={
                "run_id": run_id, "spec": name, "job_id": None, "attempt": 1, "source": source})
        return tracking.get_run(self.db, run_id)

    def get(self, run_id: int) -> dict:
        return tracking.get_run(self.db, run_id)

    def tracked(self, run_id: int) -> dict:
        """The run's row (spec parsed), refused (409) when a training spec made it: its trainer alone writes to
        it. Read on every logging call, so it reads the one row, not the run's metrics."""
        rows = list(self.db.query("select id, spec_name, state, spec from training_runs where id = ?", [int(run_id)]))
        if not rows:
            raise NotFound(f"no run {run_id}")
        run = {**rows[0], "spec": json.loads(rows[0]["spec"])}
        if run["spec"].get("source") not in SOURCES:
            raise Conflict(f"run {run_id} is a run of training spec {run['spec_name']!r}; only its trainer logs to "
                           "it. Start a run of your own to log from outside (appliance.track.start_run)")
        return run

    def log(self, run_id: int, *, metrics: dict | None = None, params: dict | None = None,
            tags: dict | None = None, env: dict | None = None) -> dict:
        """Log a batch: metric columns (``key``, ``value``, ``step``, optional ``time``), parameters (a value
        already logged cannot change), tags, and environment entries; one transaction. Returns counts."""
        self.tracked(run_id)
        batch = _metric_columns(metrics) if metrics else None
        params, tags = _params(params or {}), _tags(tags or {})
        if env is not None and not isinstance(env, dict):
            raise BadRequest("field 'env' must be an object")
        db = self.db
        with transaction(db):
            row = list(db.query("select params, tags, env from training_runs where id = ?", [run_id]))[0]
            if params:
                known = json.loads(row["params"])
                hp = known.setdefault("hyperparameters", {})
                for key, value in params.items():
                    if key in hp and hp[key] != value:
                        raise Conflict(f"parameter {key!r} of run {run_id} is {hp[key]!r}; it cannot change to "
                                       f"{value!r} (log the new value under another name, or start a new run)")
                    hp[key] = value
                db.execute("update training_runs set params = ?, config_hash = ? where id = ?",
                           [json.dumps(known), _hash(hp), run_id])
            if tags:
                db.execute("update training_runs set tags = ? where id = ?",
                           [json.dumps({**json.loads(row["tags"]), **tags}), run_id])
            if env:
                db.execute("update training_runs set env = ? where id = ?",
                           [json.dumps({**json.loads(row["env"] or "{}"), **env}), run_id])
            if batch:
                db.conn.executemany(
                    "insert into training_metrics (run_id, key, step, epoch, value, time) values (?, ?, ?, null, ?, ?)",
                    ((run_id, k, s, v, t) for k, s, v, t in zip(*batch, strict=True)))
                db.execute("update training_runs set step = max(step, ?) where id = ?",
                           [max((s for s in batch[1] if s < 10**12), default=0), run_id])
        return {"metrics": len(batch[0]) if batch else 0, "params": len(params), "tags": len(tags)}

    def end(self, run_id: int, state: str, error: str | None = None, end_time: float | None = None) -> dict:
        """End a run as ``succeeded``, ``failed`` or ``cancelled``. A command's run ends with its job instead."""
        if state not in STATES[1:]:
            raise BadRequest(f"state must be one of {', '.join(STATES[1:])}, got {state!r}")
        run = self.tracked(run_id)
        if run["spec"]["source"] == "command":
            return tracking.get_run(self.db, run_id)  # its job's end decides, whatever its own client says
        self.db.execute("update training_runs set state = ?, error = ?, finished = ? where id = ?",
                        [state, error, end_time or time.time(), run_id])
        self.app.events.emit("run.finished", subject=f"run:{run_id}",
                             data={"run_id": run_id, "state": state, "error": error,
                                   "metrics": tracking.latest_metrics(self.db, run_id)})
        return tracking.get_run(self.db, run_id)

    def reopen(self, run_id: int) -> dict:
        """Mark an ended run running again (a client resuming it)."""
        run = self.tracked(run_id)
        if run["state"] != "running" and run["spec"]["source"] != "command":
            self.db.execute("update training_runs set state = 'running', finished = null where id = ?", [run_id])
        return tracking.get_run(self.db, run_id)

    def rename(self, run_id: int, name: str) -> None:
        self.tracked(run_id)
        self.db.execute("update training_runs set spec_name = ? where id = ?", [str(name)[:250], run_id])

    def _exists(self, run_id: int) -> None:
        if not self.db.execute("select 1 from training_runs where id = ?", [int(run_id)]).fetchone():
            raise NotFound(f"no run {run_id}")

    def latest_metrics(self, run_id: int) -> list[dict]:
        """Each metric's value at its highest step (the latest logged there), with that step and its time."""
        rows = self.db.query(
            "select m.key, m.value, m.step, m.time from training_metrics m join (select key, max(step) step from "
            "training_metrics where run_id = ? group by key) last on m.key = last.key and m.step = last.step "
            "where m.run_id = ? order by m.key, m.rowid", [run_id, run_id])
        return list({r["key"]: r for r in rows}.values())

    def metric_history(self, run_id: int, key: str, offset: int = 0, limit: int = 25_000) -> list[dict]:
        """A metric's values in step order (``limit`` -1: all of them)."""
        self._exists(run_id)
        return list(self.db.query("select key, step, value, time from training_metrics where run_id = ? and key = ? "
                                  "order by step, rowid limit ? offset ?", [run_id, key, limit, offset]))

    # ------------------------------------------------------------------------------------------- artifacts

    def put_artifact(self, run_id: int, path: str, data: bytes) -> dict:
        """Store ``data`` by hash as the run's file ``path`` (a later file under the same path replaces it)."""
        self.tracked(run_id)
        path = artifact_path(path)
        digest = self.app.artifacts.put_bytes(data)
        with transaction(self.db):
            self.db.execute("delete from training_artifacts where run_id = ? and kind = 'file' and path = ?",
                            [run_id, path])
            self.db.execute("insert into training_artifacts (run_id, kind, sha256, size, created, path) "
                            "values (?, 'file', ?, ?, ?, ?)", [run_id, digest, len(data), time.time(), path])
        return {"path": path, "sha256": digest, "size": len(data)}

    def artifacts(self, run_id: int, prefix: str = "") -> list[dict]:
        self._exists(run_id)
        return list(self.db.query("select path, sha256, size from training_artifacts where run_id = ? and kind = "
                                  "'file' and substr(path, 1, length(?)) = ? order by path",
                                  [run_id, prefix, prefix]))

    def artifact_bytes(self, run_id: int, path: str) -> bytes:
        rows = [a for a in self.artifacts(run_id, path) if a["path"] == path]
        if not rows:
            raise NotFound(f"run {run_id} has no file {path!r}")
        return self.app.artifacts.get_bytes(rows[0]["sha256"])


def artifact_path(path: str) -> str:
    """A file's path inside a run: relative, no '..', plain characters (it is a name, never opened as a path)."""
    if not isinstance(path, str):
        raise BadRequest("an artifact path is a string")
    clean = path.strip("/")
    parts = clean.split("/")
    if not ARTIFACT_PATH.match(clean) or any(p in ("", ".", "..") for p in parts):
        raise BadRequest(f"artifact path {path!r}: use relative paths of letters, digits and _-. /=+@, without "
                         "'..' or empty parts")
    return clean


def _params(params: dict) -> dict:
    if not isinstance(params, dict):
        raise BadRequest("params must be an object of NAME: VALUE")
    for key, value in params.items():
        if not KEY.match(key):
            raise BadRequest(f"parameter name {key!r}: use letters, digits and _-. /: (at most 250 characters)")
        if isinstance(value, dict | list) and len(json.dumps(value)) > 8000 or \
                isinstance(value, str) and len(value) > 8000:
            raise BadRequest(f"parameter {key!r} is longer than 8000 characters")
    return params


def _tags(tags: dict) -> dict:
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise BadRequest("tags must be an object of string values")
    for key in tags:
        if not KEY.match(key):
            raise BadRequest(f"tag name {key!r}: use letters, digits and _-. /: (at most 250 characters)")
    return tags


def _metric_columns(metrics: dict) -> tuple[list, list, list, list]:
    """``{"key": [...], "value": [...], "step": [...], "time": [...]}`` checked: equal lengths, valid names,
    integer steps, numbers (NaN refused: the catalog cannot keep it), times in seconds."""
    if not isinstance(metrics, dict):
        raise BadRequest("metrics must be an object of columns: key, value, step and (optional) time")
    keys, values, steps = metrics.get("key"), metrics.get("value"), metrics.get("step")
    if not all(isinstance(c, list) for c in (keys, values, steps)):
        raise BadRequest("metrics needs the columns key, value and step, each a list")
    n = len(keys)
    times = metrics.get("time") or [time.time()] * n
    if not (len(values) == len(steps) == len(times) == n):
        raise BadRequest(f"metric columns differ in length: key {n}, value {len(values)}, step {len(steps)}, "
                         f"time {len(times)}")
    if n > MAX_METRICS:
        raise BadRequest(f"{n} metrics in one call; send at most {MAX_METRICS} at a time")
    for key in set(keys):
        if not isinstance(key, str) or not KEY.match(key):
            raise BadRequest(f"metric name {key!r}: use letters, digits and _-. /: (at most 250 characters)")
    for k, v, s, t in zip(keys, values, steps, times, strict=True):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadRequest(f"metric {k!r} at step {s!r}: value must be a number, got {v!r}")
        if math.isnan(v):
            raise BadRequest(f"metric {k!r} at step {s!r} is NaN; NaN cannot be kept (log it as a tag, or skip it)")
        if isinstance(s, bool) or not isinstance(s, int) or abs(s) >= 2**63:
            raise BadRequest(f"metric {k!r}: step must be an integer, got {s!r}")
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise BadRequest(f"metric {k!r} at step {s}: time must be seconds since the epoch, got {t!r}")
    return keys, steps, [float(v) for v in values], [float(t) for t in times]


def _hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
