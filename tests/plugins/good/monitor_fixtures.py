"""Test helpers for monitoring: write prediction-log rows with chosen times, a monitor kind whose verdict a
test sets, a metrics collector, and a sink that records when each alert event reached it."""

import threading
import time

from appliance import Route, hookimpl

APPLIANCE_CONTRACT = "1.0"

SCHEMA = """
create schema if not exists serving;
create table if not exists serving.predictions (
    deployment varchar, model varchar, version integer, request_id varchar, row_index integer,
    ts timestamp, latency_us integer, shadow boolean, inputs json, outputs json);
create table if not exists serving.feedback (request_id varchar, row_index integer, label double, ts timestamp);
"""

_lock = threading.Lock()
_level = {"value": 0.0}
_seen: list = []


def _predictions(request):
    """``{"deployment", "model", "version", "ts": [...], "inputs": [{...}], "outputs": [{...}], "labels": [...]}``."""
    import json

    b = request.json_object()
    cur = request.app.store.cursor()
    cur.execute(SCHEMA)
    labels = b.get("labels") or []
    rows, feedback = [], []
    for i, (ts, inp, out) in enumerate(zip(b["ts"], b["inputs"], b["outputs"], strict=True)):
        rid = f"{b.get('prefix', 'r')}-{i}"
        latency = b.get("latency_us", 1000)
        rows.append((b["deployment"], b.get("model", b["deployment"]), b.get("version", 1), rid, 0, ts,
                     latency[i] if isinstance(latency, list) else latency, False, json.dumps(inp), json.dumps(out)))
        if i < len(labels) and labels[i] is not None:
            feedback.append((rid, 0, labels[i], ts))
    cur.executemany("insert into serving.predictions (deployment, model, version, request_id, row_index, ts, "
                    "latency_us, shadow, inputs, outputs) values (?, ?, ?, ?, ?, to_timestamp(?), ?, ?, ?, ?)", rows)
    if feedback:
        cur.executemany("insert into serving.feedback values (?, ?, ?, to_timestamp(?))", feedback)
    return {"rows": len(rows), "labels": len(feedback)}


def _emit(request):
    """Emit an event as another plugin would (``{"type", "subject", "data"}``)."""
    b = request.json_object()
    return request.app.events.emit(b["type"], subject=b["subject"], data=b.get("data", {})).to_dict()


def _model_version(request):
    """Register a model version whose lineage names a training set (``{"name", "training_set"}``)."""
    b = request.json_object()
    app = request.app
    digest = app.artifacts.put_bytes(b"a stand-in for an ONNX file; monitoring only reads the lineage")
    return app.registry("services").get("model_registry").register_version(
        b["name"], run_id=None, onnx_sha256=digest, signature={}, metrics={}, holdout_sha256=None,
        lineage={"training_set": b["training_set"]})


def _set_level(request):
    with _lock:
        _level["value"] = float(request.json_object()["value"])
    return _level


def _seen_events(request):
    with _lock:
        return list(_seen)


class LevelKind:
    name = "level"
    description = "fires while the level a test sets is over the limit"
    options = {"limit": 1.0}

    def run(self, ctx):
        with _lock:
            value = _level["value"]
        ctx.value("level", value)
        ctx.check("too_high", value > ctx.options["limit"], f"level {value:g} (limit {ctx.options['limit']:g})",
                  value=value, threshold=ctx.options["limit"])


class ConstantCollector:
    name = "fixture_constant"

    def collect(self):
        return "# HELP fixture_constant A constant.\n# TYPE fixture_constant gauge\nfixture_constant 42\n"


class BrokenCollector:
    name = "fixture_broken"

    def collect(self):
        raise RuntimeError("this collector always fails")


@hookimpl
def register_monitors(register):
    register(LevelKind())


@hookimpl
def register_metrics_collectors(register):
    register(ConstantCollector())
    register(BrokenCollector())


@hookimpl
def register_routes(register):
    register(Route("POST", "/fixture/predictions", _predictions))
    register(Route("POST", "/fixture/level", _set_level))
    register(Route("POST", "/fixture/emit", _emit))
    register(Route("POST", "/fixture/model-version", _model_version))
    register(Route("GET", "/fixture/seen", _seen_events))


@hookimpl
def on_event(event, app):
    if event.type.startswith("alert."):
        with _lock:
            _seen.append({"type": event.type, "id": event.id, "event_time": event.time, "seen": time.time(),
                          "subject": event.subject, "data": event.data})
