"""Monitors in the daemon: ``[monitors.NAME]`` tables checked and taken in, runs as ``monitor`` jobs on a
timer, each run recorded with its values and checks, and the checks turned into alerts.

    [monitors.fraud_drift]
    kind = "drift"            # a registered monitor kind (``appliance monitors list`` shows them)
    deployment = "fraud"
    every_s = 3600            # run on this interval (leave out to run only by hand or from a pipeline)
    severity = "warning"      # of the alerts its checks raise
    pipeline = "retrain"      # started when one of its alerts is raised
"""

from __future__ import annotations

import difflib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from appliance import ApplianceError, BadRequest, NotFound, Options

from .alerts import Alerts
from .context import SEVERITIES, MonitorContext

log = logging.getLogger("appliance.monitoring")

COMMON = {"kind": None, "every_s": None, "severity": "warning", "pipeline": None, "enabled": True}


@dataclass(frozen=True)
class MonitorSpec:
    name: str
    kind: str
    options: dict
    every_s: float | None
    severity: str
    pipeline: str | None
    enabled: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "every_s": self.every_s, "severity": self.severity,
                "pipeline": self.pipeline, "enabled": self.enabled, "options": self.options}


def read_specs(config, kinds) -> dict[str, MonitorSpec]:
    """Check every ``[monitors.NAME]`` table against its kind; the first mistake is a located ConfigError."""
    section = config.section("monitors")
    if not isinstance(section, dict):
        raise config.error("expected tables [monitors.NAME]", "monitors")
    specs = {}
    for name, table in section.items():
        if not isinstance(table, dict):
            raise config.error(f"expected a table [monitors.{name}], got {type(table).__name__}", "monitors", name)
        kind_name = table.get("kind")
        if not isinstance(kind_name, str):
            raise config.error(f"needs kind = one of {', '.join(sorted(kinds.names()))}", "monitors", name)
        kind = kinds.get(kind_name)
        if kind is None:
            close = difflib.get_close_matches(kind_name, kinds.names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known kinds: {', '.join(sorted(kinds.names()))}"
            raise config.error(f"unknown monitor kind {kind_name!r}{hint}", "monitors", name, "kind")
        allowed = {**COMMON, **kind.options}
        # Declared options (appliance.Options) carry their types; a plain dict of defaults is typed by them.
        declared = kind.options.specs if isinstance(kind.options, Options) else {}
        for key, value in table.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; {kind_name} takes: {', '.join(sorted(allowed))}"
                raise config.error(f"unknown key for a {kind_name} monitor{hint}", "monitors", name, key)
            if key in declared and key not in COMMON:
                if (problem := declared[key].problem(value)) is not None:
                    raise config.error(problem, "monitors", name, key)
                continue
            _check_type(config, name, key, value, allowed[key], builtin=kinds.owner(kind_name) == "monitoring")
        for key in [*getattr(kind, "required", ()), *(k for k, o in declared.items() if o.required)]:
            if table.get(key) is None:
                raise config.error(f"a {kind_name} monitor needs {key} = ...", "monitors", name)
        every = table.get("every_s")
        if every is not None and every <= 0:
            raise config.error(f"expected a positive number of seconds, got {every}", "monitors", name, "every_s")
        severity = table.get("severity", "warning")
        if severity not in SEVERITIES:
            raise config.error(f"expected one of {', '.join(SEVERITIES)}, got {severity!r}", "monitors", name,
                               "severity")
        if "window_s" in table and table["window_s"] <= 0:
            raise config.error("expected a positive number of seconds", "monitors", name, "window_s")
        options = {**kind.options, **{k: v for k, v in table.items() if k not in COMMON}}
        specs[name] = MonitorSpec(name, kind_name, options, float(every) if every else None, severity,
                                  table.get("pipeline"), bool(table.get("enabled", True)))
    return specs


#: The type of the built-in kinds' options whose default is None (required, or off until set; any other such
#: option of theirs is a number); every other option takes the type of its default. A plugin kind that gives
#: its options as a plain dict (contract 1.0) cannot say more, so its options whose default is None take any
#: value; one that declares ``appliance.Options`` has each checked as declared.
STRINGS = {"kind", "pipeline", "severity", "deployment", "output", "group", "provider", "reference", "test", "task"}
LISTS = {"features", "outputs", "throttle_reasons"}
TABLES = {"tests", "thresholds"}


def _check_type(config, name: str, key: str, value: Any, default: Any, *, builtin: bool) -> None:
    if key in STRINGS or isinstance(default, str):
        want, ok = "a string", isinstance(value, str)
    elif key in LISTS:
        want, ok = "a list of strings", isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif key in TABLES or isinstance(default, dict):
        want, ok = "a table", isinstance(value, dict)
    elif isinstance(default, list):
        want, ok = "a list", isinstance(value, list)
    elif isinstance(default, bool) or key == "enabled":
        want, ok = "true or false", isinstance(value, bool)
    elif default is None and not builtin:
        return
    else:
        want, ok = "a number", isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise config.error(f"expected {want}, got {type(value).__name__} {value!r}", "monitors", name, key)


class Monitors:
    def __init__(self) -> None:
        self.app: Any = None
        self.specs: dict[str, MonitorSpec] = {}
        self.alerts = Alerts()
        self.latest: dict[str, dict] = {}  # monitor -> its last run (values feed /metrics)
        self._due: dict[str, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    # ------------------------------------------------------------------------------------------- lifecycle

    def configure(self, app, config) -> None:
        specs = read_specs(config, app.registry("monitors"))
        self.app = self.alerts.app = app
        with self._lock:
            self.specs = specs
            self._due = {n: self._due.get(n, 0.0) for n, s in specs.items() if s.every_s and s.enabled}
        self._wake.set()

    def startup(self, app) -> None:
        self.app = self.alerts.app = app
        for row in app.catalog.db.query("select * from monitor_runs where id in "
                                        "(select max(id) from monitor_runs group by monitor)"):
            self.latest[row["monitor"]] = _run_row(row)
        self._thread = threading.Thread(target=self._schedule, name="monitor-scheduler", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._wake.set()
        if self._thread:
            self._thread.join(5)

    def _schedule(self) -> None:
        """Submit each scheduled monitor when due, unless its previous run is still queued or running."""
        while not self.app.stopping.is_set():
            now = time.time()
            with self._lock:
                due = [n for n, t in self._due.items() if t <= now]
            for name in due:
                spec = self.specs.get(name)
                if spec is None:
                    continue
                with self._lock:
                    self._due[name] = now + spec.every_s
                if self._in_flight(name):
                    continue
                try:
                    self.submit(name, origin="schedule")
                except Exception:
                    log.exception("scheduling monitor %s failed", name)
            with self._lock:
                wait = min([t - time.time() for t in self._due.values()] + [5.0])
            self._wake.wait(max(0.05, wait))
            self._wake.clear()

    def _in_flight(self, name: str) -> bool:
        for job in self.app.jobs.list(kind="monitor", limit=50):
            if job["state"] in ("queued", "running") and job["params"].get("monitor") == name:
                return True
        return False

    # ------------------------------------------------------------------------------------------- running

    def spec(self, name: str) -> MonitorSpec:
        spec = self.specs.get(name)
        if spec is None:
            raise NotFound(f"no monitor {name!r}; monitors: {', '.join(sorted(self.specs)) or 'none configured'}")
        return spec

    def submit(self, name: str, origin: str = "manual") -> dict:
        self.spec(name)
        return self.app.jobs.submit("monitor", {"monitor": name}, origin=origin)

    def run_job(self, job) -> dict:
        """The ``monitor`` job kind. Idempotent: a rerun computes the same window again and re-applies checks,
        which dedup makes harmless."""
        name = job.params.get("monitor")
        if not isinstance(name, str):
            raise BadRequest("a monitor job needs params {\"monitor\": NAME}")
        spec = self.spec(name)
        return self.run(spec, job)

    def run(self, spec: MonitorSpec, job=None) -> dict:
        kind = self.app.registry("monitors").get(spec.kind)
        ctx = MonitorContext(self.app, spec.name, spec.kind, dict(spec.options), job, spec.severity)
        start = time.time()
        error = None
        try:
            kind.run(ctx)
        except Exception as exc:
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            ctx.status = "error"
        outcomes = {}
        if error is None:
            for check in ctx.checks:
                outcomes[f"{check.rule} {check.subject}"] = self.alerts.apply(check, spec.name, spec.pipeline)
            if any(c.firing for c in ctx.checks):
                ctx.status = "alert"
        record = {"monitor": spec.name, "kind": spec.kind, "job_id": getattr(job, "id", None), "time": start,
                  "duration_s": time.time() - start, "status": ctx.status, "error": error,
                  "values": [{"metric": m, "labels": lb, "value": v} for m, lb, v in ctx.values],
                  "checks": [c.to_dict() for c in ctx.checks], "details": ctx.details}
        cur = self.app.catalog.db.execute(
            'insert into monitor_runs (monitor, kind, job_id, time, duration_s, status, error, "values", checks, '
            "details) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [spec.name, spec.kind, record["job_id"], start, record["duration_s"], ctx.status, error,
             json.dumps(record["values"]), json.dumps(record["checks"]), json.dumps(ctx.details, default=str)])
        record["id"] = cur.lastrowid
        self.latest[spec.name] = record
        self.app.events.emit("monitor.finished", subject=f"monitor:{spec.name}",
                             data={"monitor": spec.name, "kind": spec.kind, "status": ctx.status, "error": error,
                                   "alerts": outcomes}, source="monitoring")
        if error is not None:
            raise MonitorFailed(f"monitor {spec.name} failed: {error}")
        return {"run_id": record["id"], "status": ctx.status, "checks": record["checks"], "alerts": outcomes,
                "details": ctx.details}

    def runs(self, name: str, limit: int = 20) -> list[dict]:
        self.spec(name)
        return [_run_row(r) for r in self.app.catalog.db.query(
            "select * from monitor_runs where monitor = ? order by id desc limit ?", [name, int(limit)])]

    def summary(self, spec: MonitorSpec) -> dict:
        last = self.latest.get(spec.name)
        return {**spec.to_dict(), "next_run": self._due.get(spec.name),
                "last_run": {k: last[k] for k in ("id", "time", "status", "error", "checks")} if last else None}


class MonitorHistory:
    """The ``monitor_history`` service: what retention prunes of monitoring. Each monitor's newest run stays,
    however old: it is what ``monitors list`` and the dashboard show as the monitor's state."""

    name = "monitor_history"

    def __init__(self, monitors: Monitors):
        self._monitors = monitors

    def prune(self, before: float) -> int:
        """Delete monitor runs recorded before ``before`` (epoch seconds); returns how many."""
        return self._monitors.app.catalog.db.execute(
            "delete from monitor_runs where time < ? and id not in (select max(id) from monitor_runs group by "
            "monitor)", [before]).rowcount


class MonitorFailed(ApplianceError):
    """A monitor's kind raised; the run is recorded and the job fails with this message."""

    default_title = "Monitor failed"


def _run_row(row: dict) -> dict:
    out = dict(row)
    for key in ("values", "checks", "details"):
        out[key] = json.loads(row[key])
    return out
